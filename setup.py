"""Python metadata of one2any_ros (name, version, description, licence come from package.xml).

The package is built with CMake (ament_cmake), not with this file: `make` on a plain machine, `colcon
build` in a ROS 2 workspace. Both compile srv/ and msg/ into one2any_ros.srv / one2any_ros.msg and
install the Python package beside them, with the `one2any` and `one2any_node` commands.

This file is for tools that read setup metadata, and for `pip install .` of the pure-Python library
into an environment *without* the CMake build (no generated interfaces there, so no node).
Never `pip install -e .` into the environment that holds the CMake install: pip takes the generator's
egg-info for an old install of the same name and deletes the generated one2any_ros.msg/srv.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

from setuptools import setup

_xml = ET.parse(Path(__file__).resolve().parent / "package.xml").getroot()
_maintainer = _xml.find("maintainer")

setup(
    name=_xml.findtext("name"),
    version=_xml.findtext("version"),
    description=" ".join(_xml.findtext("description").split()),
    maintainer=_maintainer.text,
    maintainer_email=_maintainer.get("email"),
    license=_xml.findtext("license"),
)
