"""Checkpoint I/O: ``NAME.safetensors`` (tensors only) + ``NAME.json`` (architecture, input size,
normalisation, training summary, checksum).

Nothing executes code from a data file: safetensors holds raw tensors and the JSON plain values. Every
problem (missing file, truncated or corrupt tensors, architecture fields this build does not know, missing,
unexpected or wrongly shaped tensors, checksum mismatch) raises ``CheckpointError`` naming the file and
the mismatch.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from one2any_ros.core.checkpoint_files import DEFAULT_CHECKPOINT, checkpoint_paths, read_description  # noqa: F401 (re-exported)
from one2any_ros.core.errors import CheckpointError
from one2any_ros.core.files import atomic_path, write_atomic
from one2any_ros.core.model.network import ARCHITECTURE_NAME, ARCHITECTURE_VERSION, NetConfig, One2AnyNet

CHECKPOINT_FORMAT = "one2any_checkpoint"
CHECKPOINT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (``files.atomic_path``, which also gives the file a plain open()'s permissions:
    a bundled or shared checkpoint must be readable).

    Args:
        tensors: name -> tensor of any dtype and device (written as contiguous CPU tensors).
        path: the ``.safetensors`` file; replaced if it exists.
        metadata: string -> string header entries, or None.
    """
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file; CheckpointError when missing, truncated or corrupt.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        name -> CPU tensor, with the file's shapes and dtypes.

    Raises:
        CheckpointError: "checkpoint_missing" or "checkpoint_corrupt".
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint tensors {path} do not exist", reason="checkpoint_missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint tensors {path} are truncated or corrupt: {e}", reason="checkpoint_corrupt") from e


def save_checkpoint(model: One2AnyNet, path: str | os.PathLike, *, training: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the model's weights and its JSON description; returns (tensors path, json path).

    The tensors are written first, then the JSON (which carries their checksum), each atomically, so a
    crash in between leaves a checksum mismatch that ``load_checkpoint`` reports rather than a silent mix.

    Args:
        model: the network (or a DistributedDataParallel around it).
        path: ``X.safetensors``, ``X.json`` or the stem ``X``.
        training: the training summary stored under "training", or None.
        extra: further top-level JSON fields, or None.

    Returns:
        (Path ``X.safetensors``, Path ``X.json``).
    """
    st_path, js_path = checkpoint_paths(path)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v for k, v in model.state_dict().items()}
    save_tensors(state, st_path, metadata={"format": CHECKPOINT_FORMAT})
    cfg: NetConfig = model.cfg
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": {"name": ARCHITECTURE_NAME, "version": ARCHITECTURE_VERSION, **cfg.to_dict()},
        "input_size": cfg.input_size,
        "output_size": cfg.output_size,
        "normalisation": {
            "rgb": "rgb/255 then (x - rgb_mean) / rgb_std inside the network",
            "rgb_mean": list(cfg.rgb_mean), "rgb_std": list(cfg.rgb_std),
            "reference_roc": "Reference.roc_map: (points in C) / s, 0 outside camera.object_depth_mask",
            "query_points": "(query points - their median) / reference scale s over camera.object_depth_mask",
            "crop": "camera.crop_box(mask, pad=1.2), resized to input_size",
        },
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "num_parameters": int(sum(v.numel() for k, v in state.items())),
        "training": training or {},
    }
    write_description(st_path, js_path, meta, extra)
    return st_path, js_path


def write_description(st_path: Path, js_path: Path, meta: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """The JSON beside written tensors: ``meta`` + ``extra`` + the tensors' checksum, written atomically (after the
    tensors, so a crash in between leaves a checksum mismatch the loader reports).

    Args:
        st_path: the tensors already written (their SHA-256 is stored).
        js_path: the ``.json`` file to write.
        meta: the JSON's fields.
        extra: more fields, overriding ``meta``'s, or None.
    """
    write_atomic(js_path, json.dumps({**meta, **(extra or {}), "sha256": _sha256(st_path)}, indent=1))


def load_state_into(model: torch.nn.Module, st_path: Path, js_path: Path, meta: dict[str, Any], *,
                    what: str = "checkpoint", verify_checksum: bool = True) -> None:
    """Load the tensors of ``st_path`` into ``model`` after every check (present, checksum of ``meta``, readable,
    exactly the model's names and shapes, finite); CheckpointError naming the file and the mismatch.

    Args:
        model: the module to load into (its state_dict names the expected tensors, shapes and dtypes).
        st_path: the ``.safetensors`` file.
        js_path: its ``.json`` (named in the messages).
        meta: the parsed JSON (its "sha256").
        what: what the file is, for the messages.
        verify_checksum: compare the file's SHA-256 with ``meta``'s.

    Raises:
        CheckpointError: "checkpoint_missing", "checkpoint_corrupt" (checksum, unreadable, NaN/inf) or
            "checkpoint_mismatch" (names or shapes).
    """
    if not st_path.is_file():
        raise CheckpointError(f"{what} tensors {st_path} do not exist (described by {js_path})", reason="checkpoint_missing")
    if verify_checksum and meta.get("sha256") and _sha256(st_path) != meta["sha256"]:
        raise CheckpointError(f"{what} tensors {st_path} do not match the checksum in {js_path} "
                              f"(truncated, or written by another run)", reason="checkpoint_corrupt")
    tensors = load_tensors(st_path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{what} tensors {st_path} do not match the architecture in {js_path}: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}", reason="checkpoint_mismatch")
    bad = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
           if tuple(tensors[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{what} tensors {st_path} do not match the architecture in {js_path}, wrongly shaped: "
                              + "; ".join(bad[:5]), reason="checkpoint_mismatch")
    nonfinite = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if nonfinite:
        raise CheckpointError(f"{what} tensors {st_path} have NaN/inf in {nonfinite[:5]}", reason="checkpoint_corrupt")
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in expected.items()})


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's JSON, validated for format and version (the tensors are not read).

    Args:
        path: ``X.safetensors``, ``X.json`` or the stem ``X``.

    Returns:
        the parsed JSON.

    Raises:
        CheckpointError: missing or not JSON (``read_description``), or another format, version or architecture
            ("checkpoint_mismatch").
    """
    st_path, js_path = checkpoint_paths(path)
    meta = read_description(js_path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{js_path} is not a one2any checkpoint (format {meta.get('format')!r})",
                              reason="checkpoint_mismatch")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{js_path} has checkpoint version {meta.get('version')!r}; this build reads {CHECKPOINT_VERSION}",
                              reason="checkpoint_mismatch")
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("name") != ARCHITECTURE_NAME or arch.get("version") != ARCHITECTURE_VERSION:
        got = (arch.get("name"), arch.get("version")) if isinstance(arch, dict) else arch
        raise CheckpointError(f"{js_path}: architecture {got!r} is not {ARCHITECTURE_NAME!r} version {ARCHITECTURE_VERSION}",
                              reason="checkpoint_mismatch")
    return meta


def net_config_from_meta(meta: dict[str, Any], js_path: Path | str = "checkpoint") -> NetConfig:
    """The network configuration a checkpoint's JSON describes, checked against this build.

    Args:
        meta: a checkpoint's JSON (``read_checkpoint_config``).
        js_path: the JSON's path, for the messages.

    Returns:
        NetConfig of the "architecture" fields.

    Raises:
        CheckpointError: "checkpoint_mismatch" for fields this build does not know or an ``input_size`` that
            disagrees.
    """
    arch = {k: v for k, v in meta["architecture"].items() if k not in ("name", "version")}
    try:
        cfg = NetConfig.from_dict(arch)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{js_path}: architecture does not match this build: {e}", reason="checkpoint_mismatch") from e
    if meta.get("input_size") not in (None, cfg.input_size):
        raise CheckpointError(f"{js_path}: input_size {meta.get('input_size')} disagrees with the architecture's {cfg.input_size}",
                              reason="checkpoint_mismatch")
    return cfg


def load_checkpoint(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                    verify_checksum: bool = True) -> tuple[One2AnyNet, dict[str, Any]]:
    """Load ``(model in eval mode on device, the JSON config)``; ``path`` None = the bundled default.

    Args:
        path: ``X.safetensors``, ``X.json`` or the stem ``X``; None = ``DEFAULT_CHECKPOINT``.
        device: the torch device the model is moved to.
        verify_checksum: compare the tensors' SHA-256 with the JSON's.

    Returns:
        (One2AnyNet in eval mode on ``device``, the parsed JSON).

    Raises:
        CheckpointError: naming the file and the mismatch (missing, corrupt, another format or architecture).
    """
    st_path, js_path = checkpoint_paths(DEFAULT_CHECKPOINT if path is None else path)
    meta = read_checkpoint_config(js_path)
    cfg = net_config_from_meta(meta, js_path)
    model = One2AnyNet(cfg)
    load_state_into(model, st_path, js_path, meta, verify_checksum=verify_checksum)
    model.to(device).eval()
    return model, meta
