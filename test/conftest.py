"""Test session defaults shared by every test module.

Set before any test imports rclpy:
- ROS_HOME / ROS_LOG_DIR: a fresh ``.ros/pytest`` in the repo (emptied at session start), so logs and the
  node's saved reference never come from, or go to, the user's ``~/.ros`` or an earlier run.
- ROS_DOMAIN_ID: derived from this process id, so that concurrent test runs on one machine (and any live
  ROS graph on domain 0) do not see each other's topics. ``ONE2ANY_TEST_DOMAIN_ID`` overrides it.
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: discovery traffic stays on this machine.
Subprocesses started by tests inherit all of these.
"""
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_ROS_HOME = REPO_ROOT / ".ros" / "pytest"

shutil.rmtree(TEST_ROS_HOME, ignore_errors=True)
(TEST_ROS_HOME / "log").mkdir(parents=True, exist_ok=True)
os.environ["ROS_HOME"] = str(TEST_ROS_HOME)
os.environ["ROS_LOG_DIR"] = str(TEST_ROS_HOME / "log")
os.environ["ROS_DOMAIN_ID"] = os.environ.get("ONE2ANY_TEST_DOMAIN_ID") or str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


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
