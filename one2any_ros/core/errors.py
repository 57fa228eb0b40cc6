"""Typed errors: every bad input names its problem, so callers (CLI, ROS node) can report and carry on."""
from __future__ import annotations


class One2AnyError(Exception):
    """Base class. ``reason`` is a short stable key used in reports and diagnostics (e.g. ``empty_mask``)."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InputError(One2AnyError, ValueError):
    """An input image, mask, depth or intrinsics that cannot be used."""

    reason = "bad_input"


class NoReferenceError(One2AnyError):
    """Estimation was asked for before any reference was set."""

    reason = "no_reference"


class ReferenceFileError(One2AnyError):
    """A saved reference is missing, truncated, corrupt or from an incompatible version."""

    reason = "bad_reference_file"


class CheckpointError(One2AnyError):
    """A model checkpoint is missing, truncated or does not match its architecture."""

    reason = "bad_checkpoint"


class EstimationFailure(One2AnyError):
    """The pipeline ran but found no pose it trusts (too few inliers, low confidence, ...)."""

    reason = "estimation_failed"
