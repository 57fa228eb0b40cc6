"""Which torch device a run uses: one rule for inference (the learned backend) and training."""
from __future__ import annotations

import torch

from one2any_ros.core.errors import One2AnyError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an explicit ``cuda`` that is absent raises One2AnyError.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N".

    Returns:
        torch.device.

    Raises:
        One2AnyError: "device_unavailable" (CUDA asked for and absent) or "bad_device".
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise One2AnyError(f"device '{device}' was requested but CUDA is not available", reason="device_unavailable")
    if device != "cpu" and not device.startswith("cuda"):
        raise One2AnyError(f"unknown device '{device}' (auto|cpu|cuda)", reason="bad_device")
    return torch.device(device)
