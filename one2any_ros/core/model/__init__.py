"""The One2Any network (ROPE encoder + conditioned U-Net decoder with a matching head), its inputs
(the fixed crop rule), and checkpoint I/O (safetensors + JSON).

Importing this package imports torch; the rest of the library does not need it.
"""
from one2any_ros.core.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_checkpoint_config, save_checkpoint
from one2any_ros.core.model.network import NetConfig, One2AnyNet, confidence_from_log_b

__all__ = ["DEFAULT_CHECKPOINT", "NetConfig", "One2AnyNet", "confidence_from_log_b", "load_checkpoint",
           "read_checkpoint_config", "save_checkpoint"]
