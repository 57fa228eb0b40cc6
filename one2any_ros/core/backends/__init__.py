"""Backends behind one interface, created by name; imports are lazy so torch loads only when needed."""
from __future__ import annotations

from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.backends.base import Backend, Proposal, QueryContext, SearchSettings

BACKENDS = ("auto", "one2any", "classic", "icp")


def create_backend(name: str, *, device: str = "auto", checkpoint: str | None = None) -> Backend:
    """``auto``: the learned backend when a checkpoint loads, else ``classic``. The backend's ``recipe`` makes the
    same one again (another process: core/object_processes.py).

    Args:
        name: one of ``BACKENDS``.
        device: torch device for the learned backend ("auto", "cpu", "cuda", ...).
        checkpoint: the learned backend's checkpoint path, or None for the default.

    Returns:
        Backend with ``recipe`` = (its name, device, checkpoint); ``auto`` without a checkpoint gives ``classic``
        with ``fallback_reason`` set.

    Raises:
        ValueError: an unknown name.
        ImportError, CheckpointError: ``one2any`` asked for by name and not available.
    """
    backend = _create(name, device, checkpoint)
    backend.recipe = (backend.name, device, checkpoint)
    return backend


def _create(name: str, device: str, checkpoint: str | None) -> Backend:
    if name == "classic":
        from one2any_ros.core.backends.classic import ClassicBackend

        return ClassicBackend()
    if name == "icp":
        from one2any_ros.core.backends.icp import IcpBackend

        return IcpBackend()
    if name in ("one2any", "auto"):
        try:
            from one2any_ros.core.backends.one2any import One2AnyBackend

            return One2AnyBackend(device=device, checkpoint=checkpoint)
        except (ImportError, CheckpointError) as e:
            if name == "one2any":
                raise
            from one2any_ros.core.backends.classic import ClassicBackend

            fallback = ClassicBackend()
            fallback.fallback_reason = f"one2any unavailable ({e}); using classic"
            return fallback
    raise ValueError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")


__all__ = ["Backend", "Proposal", "QueryContext", "SearchSettings", "create_backend", "BACKENDS"]
