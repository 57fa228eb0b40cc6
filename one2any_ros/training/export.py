"""Bundling a trained checkpoint: re-saved (verified by loading it) where the backend finds it, within a size limit.

``promote`` decides whether a checkpoint is bundled; this only writes it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.model.checkpoint import load_checkpoint, save_checkpoint


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, max_mb: float = 25.0,
                      inference: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Re-save a checkpoint (verified by loading it) to ``dst`` (e.g. the bundled ``model/default``);
    ``inference``: how the backend should use it, as measured on validation scenes (``one2any_ros.training.promote``)."""
    model, meta = load_checkpoint(src)
    paths = save_checkpoint(model, dst, training=meta.get("training", {}),
                            extra={"inference": inference} if inference else None)
    size = paths[0].stat().st_size / 1e6
    if size > max_mb:
        raise CheckpointError(f"{paths[0]} is {size:.1f} MB, over the {max_mb} MB limit", reason="checkpoint_too_large")
    return paths
