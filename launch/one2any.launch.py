"""One one2any node (a full ROS 2 install: `ros2 launch one2any_ros one2any.launch.py`).

Inputs are the node's relative topics rgb, depth, mask, camera_info, remapped here; outputs are
<namespace>/<node_name>/{pose,estimate,debug_image}, /tf and /diagnostics.

Parameters: the file `params_file` (default: the package's config/one2any.yaml, `/**` keys: any name and
namespace) is the base. The parameter arguments below (backend, device, ...) default to "" = not given:
only those given on the command line (or by an including launch) are passed, after the file, so they
win over it; the others come from the file alone, e.g.
    ros2 launch one2any_ros one2any.launch.py params_file:=my.yaml backend:=classic
On a machine without `launch`, the same node runs as:
    one2any node --ros-args --params-file config/one2any.yaml -r __ns:=/cam1 -r rgb:=/cam1/color/image_raw ...
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "one2any_ros"

# Launch arguments that set one node parameter each: (name, type, description). Default "" = not given.
PARAMETER_ARGS = [
    ("backend", str, "auto | one2any | classic | icp (auto: one2any when a checkpoint loads, else classic)"),
    ("device", str, "auto | cpu | cuda"),
    ("object_frame", str, "TF child frame of the object"),
    ("publish_tf", bool, "true | false: broadcast <camera frame> -> object_frame on /tf"),
    ("debug", bool, "true | false: publish the pose overlay on ~/debug_image"),
    ("use_sim_time", bool, "true | false: use /clock (replaying a bag with --clock)"),
]

OTHER_ARGS = [  # (name, default, description); params_file's default is set in generate_launch_description
    ("namespace", "", "namespace of the node (e.g. /cam1): private names become <namespace>/<node_name>/..."),
    ("node_name", "one2any", "node name; the saved reference is named after <namespace>/<node_name>"),
    ("params_file", None, "parameter file (`/**: ros__parameters:`); '' = the package's config/one2any.yaml"),
    ("rgb_topic", "rgb", "colour image (rgb8/bgr8)"),
    ("depth_topic", "depth", "depth registered to the colour image (16UC1 mm or 32FC1 m)"),
    ("mask_topic", "mask", "object mask (mono8 / mono16 labels) from any segmenter"),
    ("camera_info_topic", "camera_info", "CameraInfo of the colour image"),
    ("log_level", "info", "logging level of the node"),
]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def default_params_file():
    return os.path.join(get_package_share_directory(PACKAGE), "config", "one2any.yaml")


def parse_bool(name, text):
    """A launch argument's text as a bool (true/false, as ROS and YAML spell it; any case)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} is not a boolean (true or false)")


def parameter_overrides(launch_configurations):
    """The node parameters given as launch arguments: {name: typed value} of the non-empty ones, in
    PARAMETER_ARGS order; {} when the user gave none (the parameters then come from the file alone)."""
    overrides = {}
    for name, kind, _ in PARAMETER_ARGS:
        text = launch_configurations.get(name, "")
        if text == "":
            continue
        overrides[name] = parse_bool(name, text) if kind is bool else text
    return overrides


def node_parameters(launch_configurations, default_file):
    """The node's `parameters`: the params file, then the given overrides (last wins) when there are any."""
    params_file = launch_configurations.get("params_file", "") or default_file
    overrides = parameter_overrides(launch_configurations)
    return [params_file, overrides] if overrides else [params_file]


def _launch_node(context):
    cfg = context.launch_configurations
    parameters = []
    for entry in node_parameters(cfg, default_params_file()):
        if isinstance(entry, dict):
            # strings stay strings (a frame named "on" or "1" must not become a bool or an int)
            entry = {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in entry.items()}
        parameters.append(entry)
    return [Node(
        package=PACKAGE,
        executable="one2any_node",
        name=cfg["node_name"] or None,  # None: the node's own default name (one2any)
        namespace=cfg["namespace"] or None,  # None: no namespace given (a pushed ROS namespace still applies)
        output="screen",
        emulate_tty=True,
        parameters=parameters,
        remappings=[
            ("rgb", cfg["rgb_topic"]),
            ("depth", cfg["depth_topic"]),
            ("mask", cfg["mask_topic"]),
            ("camera_info", cfg["camera_info_topic"]),
        ],
        ros_arguments=["--log-level", cfg["log_level"]],
    )]


def generate_launch_description():
    defaults = {"params_file": default_params_file()}
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=desc)
               for name, default, desc in OTHER_ARGS]
    actions += [DeclareLaunchArgument(name, default_value="", description=f"{desc} (default: from params_file)")
                for name, _, desc in PARAMETER_ARGS]
    return LaunchDescription(actions + [OpaqueFunction(function=_launch_node)])
