"""Test session defaults shared by every test module.

Set before any test imports rclpy:
- ROS_HOME / ROS_LOG_DIR: a fresh ``.ros/pytest`` in the repo (emptied at session start), so logs and the
  node's saved reference never come from, or go to, the user's ``~/.ros`` or an earlier run.
- ROS_DOMAIN_ID: derived from this process id, so that concurrent test runs on one machine (and any live
  ROS graph on domain 0) do not see each other's topics. ``ONE2ANY_TEST_DOMAIN_ID`` overrides it.
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: discovery traffic stays on this machine.
Subprocesses started by tests inherit all of these.

Hypothesis profiles (test_property.py): "ci" (loaded when the environment sets CI, as CI services and .ci/run
do) is derandomized: the same examples on every run and every machine, no example database, no deadline;
"dev" (the default elsewhere) draws new examples each run and keeps failing ones in .hypothesis/.
HYPOTHESIS_PROFILE=ci|dev chooses one explicitly. The example counts are set per test (max_examples 40-80).

Comparisons of rendered images (``images_close``): the same scene rendered twice may differ where a pixel
centre lies on an edge (BLAS kernels and GL drivers round differently), so masks may differ in a bounded
number of pixels and depth by a bounded amount, never more.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_ROS_HOME = REPO_ROOT / ".ros" / "pytest"

shutil.rmtree(TEST_ROS_HOME, ignore_errors=True)
(TEST_ROS_HOME / "log").mkdir(parents=True, exist_ok=True)
os.environ["ROS_HOME"] = str(TEST_ROS_HOME)
os.environ["ROS_LOG_DIR"] = str(TEST_ROS_HOME / "log")
os.environ["ROS_DOMAIN_ID"] = os.environ.get("ONE2ANY_TEST_DOMAIN_ID") or str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# The shipped Fast DDS profile, before any test creates a participant in this process: Fast DDS reads it once
# per process, so a test that calls rclpy.init before a GraphClient would otherwise leave this process on the
# default transport while the node's process uses the profile, and camera-sized images stop arriving.
from one2any_ros.ros.transport import apply_default_transport  # noqa: E402 (after the ROS variables above)

apply_default_transport()

try:
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings
except ImportError:  # only test_property.py needs it (and says so when it is missing)
    hypothesis_settings = None
if hypothesis_settings is not None:
    _slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]
    hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=60,
                                         print_blob=True, suppress_health_check=_slow_ok)
    hypothesis_settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=_slow_ok)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds (training, many renders, a running node graph); "
        "deselect with -m 'not slow'")


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and OpenMP spin-waiting on a busy shared machine made the
    model tests 10x slower with 2 threads: run them on one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images_close(a: dict, b: dict, *, keys=("mask", "depth"), max_px: int | None = None, depth_atol: float = 1e-5,
                  rgb_levels: int = 2) -> None:
    """Two renders of one scene ({'mask', 'depth' (m), 'rgb', ...}) agree: masks (and where depth is valid) differ in
    at most ``max_px`` pixels (default: 4, or 0.1 % of the larger mask); depth differs by more than ``depth_atol``
    in at most as many pixels; rgb by more than ``rgb_levels`` grey levels in at most as many pixels."""
    if max_px is None:
        max_px = max(4, int(0.001 * max(np.count_nonzero(a["mask"]), np.count_nonzero(b["mask"]))))
    if "mask" in keys:
        assert a["mask"].shape == b["mask"].shape
        n = int(np.count_nonzero(a["mask"] != b["mask"]))
        assert n <= max_px, f"masks differ in {n} pixels (at most {max_px} allowed)"
    if "depth" in keys:
        da, db = np.asarray(a["depth"], np.float64), np.asarray(b["depth"], np.float64)
        assert da.shape == db.shape
        valid = (da > 0) != (db > 0)
        n = int(np.count_nonzero(valid))
        assert n <= max_px, f"depth is valid in one image only in {n} pixels (at most {max_px} allowed)"
        off = np.abs(da - db) > depth_atol
        n = int(np.count_nonzero(off))
        assert n <= max_px, f"depth differs by more than {depth_atol} m in {n} pixels (at most {max_px} allowed)"
    if "rgb" in keys:
        ra, rb = np.asarray(a["rgb"], np.int16), np.asarray(b["rgb"], np.int16)
        assert ra.shape == rb.shape
        n = int(np.count_nonzero((np.abs(ra - rb) > rgb_levels).any(axis=-1)))
        assert n <= max_px, f"rgb differs by more than {rgb_levels} levels in {n} pixels (at most {max_px} allowed)"


@pytest.fixture
def images_close():
    """``images_close(a, b, keys=..., max_px=..., depth_atol=...)``: see :func:`_images_close`."""
    return _images_close


@pytest.fixture(scope="session")
def two_object_scene():
    """``multi_scene.two_object_scene()``: (objects, K, three labelled frames), rendered once per session."""
    pytest.importorskip("pybullet")
    from one2any_ros.data.multi_scene import two_object_scene as scene

    return scene()
