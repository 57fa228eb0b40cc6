"""Where a checkpoint's two files are and how its JSON is read: no torch, so the ROS node can check a
checkpoint inside a parameter callback (importing ``one2any_ros.core.model`` imports torch, seconds on a CPU).
``model/checkpoint.py`` loads and saves the tensors with these."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from one2any_ros.core.errors import CheckpointError

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "model" / "default.safetensors"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(tensors, json) for a path given as ``X.safetensors``, ``X.json`` or the stem ``X``.

    Args:
        path: ``X.safetensors``, ``X.json`` or ``X``.

    Returns:
        (Path ``X.safetensors``, Path ``X.json``); nothing is read from disk.
    """
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def read_description(js_path: Path, what: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint's JSON as a dict; CheckpointError when it is missing, not JSON or not an object.

    Args:
        js_path: the checkpoint's ``.json`` file.
        what: what the file describes, for the error message.

    Returns:
        the parsed JSON object.

    Raises:
        CheckpointError: "checkpoint_missing", "checkpoint_corrupt" (unreadable or not JSON) or
            "checkpoint_mismatch" (not an object).
    """
    if not js_path.is_file():
        raise CheckpointError(f"{what} description {js_path} does not exist", reason="checkpoint_missing")
    try:
        meta = json.loads(js_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} description {js_path} is not valid JSON: {e}", reason="checkpoint_corrupt") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{what} description {js_path} is not a JSON object", reason="checkpoint_mismatch")
    return meta
