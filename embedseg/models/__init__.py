"""The Branched ERF-Net and its checkpoints."""

from .checkpoint import (
    load_checkpoint,
    load_official_checkpoint,
    read_checkpoint,
    save_checkpoint,
    strip_dataparallel_prefix,
)
from .erfnet import BranchedERFNet

__all__ = [
    "BranchedERFNet",
    "load_checkpoint",
    "load_official_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "strip_dataparallel_prefix",
]
