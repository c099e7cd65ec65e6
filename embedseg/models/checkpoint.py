"""Saving and loading trained networks: our checkpoints and the official EmbedSeg/Neven ones.

Our checkpoint is a ``torch.save`` dict with ``model_state_dict``, ``model_config``
(constructor arguments of :class:`BranchedERFNet`), ``settings`` (``DatasetSettings.to_dict()``
of the training crops, so prediction normalises exactly as training did), ``epoch``,
``best_iou``, ``optim_state_dict``, ``rng_state`` and ``train_args``. Only tensors and plain
Python values are stored, so every checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..dataset_settings import DatasetSettings
from ..io import DataError, atomic_write
from ..runtime import resolve_device
from .erfnet import BranchedERFNet

REQUIRED_KEYS = ("model_state_dict", "model_config", "settings")


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any]) -> None:
    """Write `checkpoint` atomically, so an interrupted run never leaves a truncated file."""
    with atomic_write(path) as tmp:
        torch.save(dict(checkpoint), tmp)


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (tensors mapped to `device`), checking that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; train a model first (embedseg train)")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds for corrupt or foreign files
        raise DataError(f"{path}: cannot read checkpoint ({exc}); the file is corrupt or not a torch checkpoint") from exc
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise DataError(
            f"{path}: not an embedseg checkpoint (missing {missing}); "
            "official EmbedSeg checkpoints load with embedseg.models.load_official_checkpoint"
        )
    return checkpoint


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "auto") -> tuple[BranchedERFNet, DatasetSettings]:
    """Network (eval mode, on `device`) and data-set settings of a checkpoint written by `embedseg train`."""
    device = resolve_device(device) if isinstance(device, str) else device
    checkpoint = read_checkpoint(path, device)
    model = BranchedERFNet(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state_dict"])
    settings = DatasetSettings.from_dict(checkpoint["settings"], source=f"{path} (settings)")
    return model.to(device).eval(), settings


def strip_dataparallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds (EmbedSeg v0.1 checkpoints)."""
    prefix = "module."
    return {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in state_dict.items()}


def load_official_checkpoint(path: str | os.PathLike, in_channels: int = 1, n_sigma: int = 2,
                             device: torch.device | str = "auto") -> BranchedERFNet:
    """Network (eval mode) from an official EmbedSeg/Neven ``.pth`` (``best_iou_model.pth``).

    Those files hold a pickled dict whose ``model_state_dict`` may carry ``module.`` prefixes.
    They are unpickled with ``weights_only=False``: load only files from a source you trust.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: official checkpoint not found")
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    state_dict = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, Mapping):
        raise DataError(f"{path}: no model_state_dict inside; expected an EmbedSeg best_iou_model.pth / checkpoint.pth")
    model = BranchedERFNet(in_channels=in_channels, n_sigma=n_sigma)
    model.load_state_dict(strip_dataparallel_prefix(state_dict))
    return model.to(device).eval()
