"""A training run's config: the YAML merged over ``DEFAULTS``, then dotted overrides (``--set train.max_steps=100``).

One home for the merge rules, so the network's run and the scorer's (``train_scorer``) read their YAML alike.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.model.network import NetConfig

if TYPE_CHECKING:
    from one2any_ros.training.pairs import PairConfig

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out_dir": None,  # None: runs/<config file stem>
    "model": {},  # NetConfig fields
    "data": {  # PairConfig fields (input_size/output_stride come from the model) + loader settings
        "workers": 2,
        "val_pairs": 64,
        "val_objects": 32,
        "sampler": {},
    },
    "train": {
        "batch_size": 16,
        "lr": 5e-4,
        "weight_decay": 1e-4,
        "warmup_steps": 200,
        "max_steps": 200_000,
        "max_minutes": None,  # wall-clock budget of this invocation (None: none)
        "grad_clip": 1.0,
        "log_every": 20,
        "val_every": 1000,
        "checkpoint_minutes": 5.0,
        "init_from": None,  # a checkpoint whose weights start a NEW run (warm start; --resume continues a run instead)
        "max_bad_steps": 50,  # consecutive steps with a non-finite loss or gradient (skipped) before giving up
        "amp": True,  # mixed precision on CUDA
        "cpu_threads": None,  # torch threads of the training process on a CPU; None: cores - data workers (>= 1)
        "loss": {"beta": 0.1, "match_weight": 0.5, "conf_weight": 0.1, "noncovisible_weight": 1.0,
                 "match_ce_weight": 0.0, "match_ce_band": 0.15},
    },
}


def merge_config(base: dict, over: dict | None) -> dict:
    """A deep copy of ``base`` with ``over`` merged in: nested sections merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """``cfg["train"]["max_steps"] = value`` for ``key`` "train.max_steps", making missing sections."""
    parts = key.split(".")
    d = cfg
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def load_config(config_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """YAML config merged over DEFAULTS; ``overrides`` maps dotted keys ("train.max_steps") to values."""
    path = Path(config_path)
    if not path.is_file():
        raise One2AnyError(f"training config {path} does not exist", reason="config_missing")
    try:
        user = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise One2AnyError(f"training config {path} is not valid YAML: {e}", reason="bad_config") from e
    cfg = merge_config(DEFAULTS, user)
    for k, v in (overrides or {}).items():
        set_dotted(cfg, k, v)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise One2AnyError(f"training config {path}: unknown sections {sorted(unknown)}", reason="bad_config")
    NetConfig.from_dict(cfg["model"])  # validate early
    return cfg


def pair_config(cfg: dict) -> PairConfig:
    """The pair sampler's settings: the config's ``data.sampler`` with the input size and stride of its model."""
    from one2any_ros.training.pairs import PairConfig  # pairs pulls in the renderers: only when a run starts

    net = NetConfig.from_dict(cfg["model"])
    return PairConfig.from_dict({**cfg["data"].get("sampler", {}), "input_size": net.input_size,
                                 "output_stride": net.output_stride})
