"""one2any_ros: one-reference 6D object pose estimation (One2Any) for ROS 2.

The library (everything outside ``ros/``) imports no ROS, so it can be used and tested without a graph.
"""
# The CMake install puts the generated ``msg``/``srv`` packages under the same package name in the venv's
# site-packages; extending __path__ lets ``one2any_ros.msg`` resolve there even when this source tree is
# the one first on sys.path (running from the repo root).
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
