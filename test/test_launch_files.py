"""The launch files' logic, without the launch library (no wheel exists for `launch` / `launch_ros`).

Each launch file is loaded with tiny stand-ins for `launch`, `launch_ros` and `ament_index_python`, put into
sys.modules only for the test (same names and signatures as the real APIs: launch 3.x, launch_ros 0.28,
ament_index_python 1.x). What is checked: a parameter argument the user did not give adds no override (the
params file alone sets it), given ones win over the file, bools are typed, and the camera launch passes
params_file, log_level and only the given parameter arguments on to the core launch. Where the real
libraries are installed, the stand-ins' signatures are compared with theirs.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "launch" / "one2any.launch.py"
CAMERA = REPO / "launch" / "one2any_camera.launch.py"
SHARE = "/opt/stand-in/share/one2any_ros"  # what the stand-in ament index answers
DEFAULT_PARAMS = os.path.join(SHARE, "config", "one2any.yaml")


# --- stand-ins (signatures as in the real libraries) ------------------------------------------------------
class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None, **left_over_kwargs):
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class IncludeLaunchDescription:
    def __init__(self, launch_description_source, *, launch_arguments=None, **kwargs):
        self.launch_description_source = launch_description_source
        self.launch_arguments = () if launch_arguments is None else tuple(launch_arguments)


class SetEnvironmentVariable:
    def __init__(self, name, value, **kwargs):
        self.name, self.value = name, value


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path):
        self.location = launch_file_path


class Node:
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, **kwargs):
        self.executable, self.package, self.name, self.namespace = executable, package, name, namespace
        self.parameters, self.remappings = parameters, remappings
        self.ros_arguments, self.arguments, self.kwargs = ros_arguments, arguments, kwargs


class ParameterValue:
    def __init__(self, value, *, value_type=None):
        self.value, self.value_type = value, value_type

    def __eq__(self, other):
        return isinstance(other, ParameterValue) and (self.value, self.value_type) == (other.value, other.value_type)

    def __repr__(self):
        return f"ParameterValue({self.value!r}, value_type={self.value_type})"


def get_package_share_directory(package_name, print_warning=True):
    assert package_name == "one2any_ros"
    return SHARE


STAND_INS = {  # module -> {name: object}
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction,
                       "IncludeLaunchDescription": IncludeLaunchDescription,
                       "SetEnvironmentVariable": SetEnvironmentVariable},
    "launch.launch_description_sources": {"PythonLaunchDescriptionSource": PythonLaunchDescriptionSource},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node},
    "launch_ros.parameter_descriptions": {"ParameterValue": ParameterValue},
    "ament_index_python": {},
    "ament_index_python.packages": {"get_package_share_directory": get_package_share_directory},
}


class Context:
    """The part of launch.LaunchContext the launch files use."""

    def __init__(self, launch_configurations):
        self.launch_configurations = dict(launch_configurations)


@pytest.fixture
def load(monkeypatch):
    """Load a launch file as a module with the stand-ins in sys.modules (restored after the test)."""
    for name, attrs in STAND_INS.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, module)

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no launch/__pycache__ (it would be installed)

    def _load(path: Path):
        spec = importlib.util.spec_from_file_location(f"_launch_{path.name.split('.')[0]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return _load


def run(description: LaunchDescription, given: dict[str, str]):
    """What `ros2 launch ... name:=value` does with these entities: the given arguments, the declared
    defaults for the rest (DeclareLaunchArgument.execute), then the OpaqueFunction's actions."""
    configs = dict(given)
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument) and entity.name not in configs:
            assert entity.default_value is not None, f"{entity.name} has no default"
            configs[entity.name] = entity.default_value
    functions = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    assert len(functions) == 1
    return functions[0].execute(Context(configs))


def declared(description):
    return {e.name: e.default_value for e in description.entities if isinstance(e, DeclareLaunchArgument)}


# --- the core launch ----------------------------------------------------------------------------------------
def test_core_no_argument_no_override(load):
    core = load(CORE)
    assert core.parameter_overrides({}) == {}
    assert core.parameter_overrides({name: "" for name, _, _ in core.PARAMETER_ARGS}) == {}
    assert core.node_parameters({}, "/d.yaml") == ["/d.yaml"]
    assert core.node_parameters({"params_file": ""}, "/d.yaml") == ["/d.yaml"]


def test_core_given_values_win_and_are_typed(load):
    core = load(CORE)
    cfg = {"params_file": "/user.yaml", "backend": "classic", "device": "", "publish_tf": "False", "debug": "true",
           "use_sim_time": "1", "object_frame": "on"}
    assert core.node_parameters(cfg, "/d.yaml") == [
        "/user.yaml", {"backend": "classic", "object_frame": "on", "publish_tf": False, "debug": True,
                       "use_sim_time": True}]
    for text, value in [("true", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False)]:
        assert core.parse_bool("debug", text) is value
    with pytest.raises(ValueError, match="debug:='maybe'"):
        core.parameter_overrides({"debug": "maybe"})


def test_core_declares_empty_parameter_defaults(load):
    core = load(CORE)
    defaults = declared(core.generate_launch_description())
    for name, _, _ in core.PARAMETER_ARGS:
        assert defaults[name] == "", f"{name} must default to '' (not given): a default would override the file"
    assert defaults["params_file"] == DEFAULT_PARAMS
    assert defaults["node_name"] == "one2any" and defaults["namespace"] == "" and defaults["log_level"] == "info"


def test_core_node_without_arguments_gets_the_file_only(load):
    core = load(CORE)
    (node,) = run(core.generate_launch_description(), {})
    assert isinstance(node, Node)
    assert (node.package, node.executable, node.name, node.namespace) == ("one2any_ros", "one2any_node", "one2any", None)
    assert node.parameters == [DEFAULT_PARAMS]
    assert node.remappings == [("rgb", "rgb"), ("depth", "depth"), ("mask", "mask"), ("camera_info", "camera_info")]
    assert node.ros_arguments == ["--log-level", "info"]


def test_core_node_with_arguments(load):
    core = load(CORE)
    (node,) = run(core.generate_launch_description(),
                  {"backend": "classic", "debug": "true", "params_file": "/user.yaml", "namespace": "/cam1",
                   "rgb_topic": "/cam1/color/image_raw", "log_level": "debug"})
    assert node.parameters == ["/user.yaml", {"backend": ParameterValue("classic", value_type=str), "debug": True}]
    assert node.namespace == "/cam1"
    assert ("rgb", "/cam1/color/image_raw") in node.remappings
    assert node.ros_arguments == ["--log-level", "debug"]


# --- the camera launch ---------------------------------------------------------------------------------------
def test_camera_defaults_pass_no_parameter_argument(load):
    cam = load(CAMERA)
    description = cam.generate_launch_description()
    defaults = declared(description)
    assert defaults["params_file"] == DEFAULT_PARAMS and defaults["log_level"] == "info"
    for name, _ in cam.PARAMETER_ARGS:
        assert defaults[name] == ""
    (include,) = run(description, {})
    assert isinstance(include, IncludeLaunchDescription)
    assert include.launch_description_source.location == os.path.join(SHARE, "launch", "one2any.launch.py")
    assert dict(include.launch_arguments) == {
        "namespace": "camera",
        "rgb_topic": "/camera/camera/color/image_raw",
        "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
        "camera_info_topic": "/camera/camera/color/camera_info",
        "mask_topic": "/camera/mask",
        "params_file": DEFAULT_PARAMS,
        "log_level": "info",
    }


def test_camera_passes_given_arguments(load):
    cam = load(CAMERA)
    (include,) = run(cam.generate_launch_description(),
                     {"camera": "cam2", "camera_name": "d435", "mask_topic": "/seg/mask", "params_file": "/u.yaml",
                      "log_level": "warn", "backend": "icp", "object_frame": "mug", "use_sim_time": "true"})
    args = dict(include.launch_arguments)
    assert args["namespace"] == "cam2" and args["rgb_topic"] == "/cam2/d435/color/image_raw"
    assert args["mask_topic"] == "/seg/mask"  # absolute: as given
    assert {k: args[k] for k in ("params_file", "log_level", "backend", "object_frame", "use_sim_time")} == {
        "params_file": "/u.yaml", "log_level": "warn", "backend": "icp", "object_frame": "mug",
        "use_sim_time": "true"}
    assert "device" not in args and "debug" not in args and "publish_tf" not in args


def test_camera_arguments_are_core_arguments(load):
    """Every argument the camera launch passes on is one the core launch declares, and the camera launch
    offers every core parameter argument."""
    core, cam = load(CORE), load(CAMERA)
    core_declared = declared(core.generate_launch_description())
    full = {name: "x" for name in declared(cam.generate_launch_description())}
    assert set(cam.core_arguments(full)) <= set(core_declared)
    assert [n for n, _ in cam.PARAMETER_ARGS] == [n for n, _, _ in core.PARAMETER_ARGS]


# --- the stand-ins are the real APIs ------------------------------------------------------------------------
def _real(module_name, attr):
    import importlib

    return getattr(importlib.import_module(module_name), attr)


def test_stand_ins_match_the_real_signatures():
    """Run where launch / launch_ros are installed (a full ROS 2 install): same parameters, same kinds."""
    # (from the repo root, the folder launch/ imports as an empty namespace package named `launch`)
    launch = pytest.importorskip("launch", reason="the launch library is not installed (a full ROS 2 install has it)")
    if not hasattr(launch, "LaunchDescription"):
        pytest.skip("the launch library is not installed (a full ROS 2 install has it)")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (a full ROS 2 install has it)")
    for module_name, attrs in STAND_INS.items():
        for attr, stand_in in attrs.items():
            real = _real(module_name, attr)
            real_params = inspect.signature(real).parameters
            for name, param in inspect.signature(stand_in).parameters.items():
                if param.kind is param.VAR_KEYWORD:
                    continue
                assert name in real_params, f"{module_name}.{attr} has no parameter {name}"
                assert real_params[name].kind == param.kind, f"{module_name}.{attr}({name}) kind differs"
