"""Weights and run state load safely: no pickle-based file is tracked (safetensors + JSON only)."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".npy")


def test_no_pickle_is_tracked():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    bad = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    zips = [f for f in files if f.endswith((".zip", ".npz")) and "pkl" in (REPO / f).read_bytes()[:4096].decode("latin-1")]
    assert not bad and not zips, f"pickle-based files are tracked (use safetensors + JSON): {bad + zips}"
