"""one2any_ros: one-reference 6D object pose estimation (One2Any) for ROS 2.

Layers, each a folder (docs/architecture.md draws them; test_layers.py holds them):
``core/`` (one frame in, one pose out) <- ``data/`` (objects, rendering, BOP) <- ``training/`` (train,
evaluate, promote) <- ``apps/`` (CLI, demo, bench); ``ros/`` (the node runtime) uses the core only and
``ros_tools/`` (player, harness, soak bench, demo graph) drives a graph around it. Nothing outside ``ros/``
and ``ros_tools/`` imports ROS.
"""
# The CMake install puts the generated ``msg``/``srv`` packages under the same package name in the venv's
# site-packages; extending __path__ lets ``one2any_ros.msg`` resolve there even when this source tree is
# the one first on sys.path (running from the repo root).
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
