"""package.xml declares what the code imports: a ROS workspace user's `rosdep install` must bring in every
library the package needs, so an import without a package.xml entry fails here.

Each third-party top-level import (found by walking the AST of every file, so imports inside functions
count too; the standard library and the package itself excluded) must be in IMPORT_TO_DEPENDENCY, and its
dependency must be declared: a ROS package or rosdep key as an element of the manifest, or, for a library
without a rosdep key (PIP_ONLY), named in the manifest's pip-only comment.
"""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_XML = REPO / "package.xml"
PACKAGE = "one2any_ros"

# import name -> ROS package or rosdep key (rosdistro rosdep/python.yaml) that provides it
IMPORT_TO_DEPENDENCY = {
    # ROS packages
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces",
    "rosgraph_msgs": "rosgraph_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "geometry_msgs": "geometry_msgs",
    "sensor_msgs": "sensor_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "vision_msgs": "vision_msgs",
    "tf2_msgs": "tf2_msgs",
    "tf2_ros": "tf2_ros_py",  # the Python module's package; `tf2_ros` is the C++ library
    "message_filters": "message_filters",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
    # Python libraries with a rosdep key
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "psutil": "python3-psutil",
    "numba": "python3-numba",
    "torch": "python3-torch",
    "trimesh": "python3-trimesh-pip",
    "pybullet": "python3-pybullet-pip",
    "pybullet_data": "python3-pybullet-pip",  # shipped inside the pybullet distribution
    "rosbags": "python3-rosbags-pip",
    # tests
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
}
# Libraries without a rosdep key: import name -> pip distribution, named in package.xml's pip-only comment.
PIP_ONLY = {
    "safetensors": "safetensors",
    "moderngl": "moderngl",
    "glcontext": "glcontext",
    "pykdtree": "pykdtree",
}
TEST_ONLY = {"pytest", "hypothesis"}
# Optional libraries of one developer tool, never of the package: not in package.xml (a workcell never needs them),
# allowed only in these files (the tool says how to install its library when the import fails).
OPTIONAL_TOOL_IMPORTS = {"open3d": {"tools/compare_open3d.py", "test/test_compare_open3d.py"}}
# Where the code lives: installed code (runtime dependencies) and the tests (test dependencies count too).
RUNTIME_DIRS = ("one2any_ros", "launch", "tools")
TEST_DIRS = ("test",)


def _manifest():
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    return ET.parse(PACKAGE_XML, parser=parser).getroot()


def _declared(root, tags) -> set[str]:
    return {(e.text or "").strip() for e in root if e.tag in tags}


def _pip_only_comment(root) -> str:
    comments = [e.text or "" for e in root.iter() if e.tag is ET.Comment and (e.text or "").strip().startswith("pip-only:")]
    assert len(comments) == 1, "package.xml must hold one comment naming the pip-only libraries ('pip-only: ...')"
    return comments[0]


RUNTIME_TAGS = {"depend", "exec_depend", "build_export_depend"}
TEST_TAGS = RUNTIME_TAGS | {"test_depend"}


def _local_modules(directory: Path) -> set[str]:
    """Modules a directory's own files can import by plain name (test helpers such as test_model)."""
    return {p.stem for p in directory.glob("*.py")} | {p.name for p in directory.iterdir() if p.is_dir()}


def third_party_imports(directories, root: Path = REPO) -> dict[str, set[str]]:
    """Top-level third-party import names -> the files importing them."""
    found: dict[str, set[str]] = {}
    for d in directories:
        for path in sorted((root / d).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            # scripts and tests import their neighbours by plain name; a package's modules never do
            local = set() if (path.parent / "__init__.py").exists() else _local_modules(path.parent)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top == PACKAGE or top in local:
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


def test_manifest_basics():
    root = _manifest()
    assert root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    email = root.find("maintainer").get("email", "")
    assert "@" in email and "." in email.split("@")[-1], f"maintainer e-mail {email!r} is not valid"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert root.find("export").findtext("build_type") == "ament_cmake"
    assert {"ament_cmake_pytest", "python3-pytest"} <= _declared(root, {"test_depend"})


@pytest.mark.parametrize("kind, directories, tags", [
    ("runtime", RUNTIME_DIRS, RUNTIME_TAGS),
    ("test", TEST_DIRS, TEST_TAGS),
])
def test_every_import_is_declared(kind, directories, tags):
    root = _manifest()
    declared = _declared(root, tags)
    pip_comment = _pip_only_comment(root).split()
    imports = third_party_imports(directories)
    assert imports, f"no {kind} imports found: the AST walk is broken"
    for name, allowed in OPTIONAL_TOOL_IMPORTS.items():
        files = imports.pop(name, set())
        assert files <= allowed, f"{name} is an optional tool's library: imported outside {sorted(allowed)} by {sorted(files - allowed)}"
    unknown = {name: sorted(files) for name, files in imports.items()
               if name not in IMPORT_TO_DEPENDENCY and name not in PIP_ONLY}
    assert not unknown, (
        f"imports with no known dependency: {unknown}. Add the ROS package or rosdep key to package.xml "
        "(or, without a rosdep key, to its pip-only comment) and to IMPORT_TO_DEPENDENCY/PIP_ONLY in "
        "test/test_package_manifest.py")
    missing = {}
    for name, files in sorted(imports.items()):
        if name in PIP_ONLY:
            if PIP_ONLY[name] not in pip_comment:
                missing[name] = f"pip-only {PIP_ONLY[name]} (not named in the pip-only comment)"
        elif kind == "runtime" and name in TEST_ONLY:
            missing[name] = f"a test-only library imported by installed code: {sorted(files)}"
        elif IMPORT_TO_DEPENDENCY[name] not in declared:
            missing[name] = f"{IMPORT_TO_DEPENDENCY[name]} (imported by {sorted(files)[:3]})"
    assert not missing, f"{kind} imports whose dependency package.xml does not declare: {missing}"


def test_pip_only_libraries_have_no_declared_key():
    """The pip-only comment lists exactly the PIP_ONLY libraries (a new rosdep key moves one out of it)."""
    words = set(_pip_only_comment(_manifest()).replace(":", " ").split())
    assert set(PIP_ONLY.values()) <= words


def test_walker_sees_nested_and_unknown_imports(tmp_path):
    """The check catches imports inside functions and reports an unknown library by name."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "m.py").write_text("import os\nfrom . import x\n\ndef f():\n    import some_new_lib.sub as s\n"
                              "    from one2any_ros import cli\n    import numpy\n", encoding="utf-8")
    found = third_party_imports(["pkg"], root=tmp_path)
    assert set(found) == {"some_new_lib", "numpy"}
    assert "some_new_lib" not in IMPORT_TO_DEPENDENCY and "some_new_lib" not in PIP_ONLY
