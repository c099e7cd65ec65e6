"""Saving and loading trained networks: our checkpoints and the official EmbedSeg/Neven ones.

Our checkpoint is a ``torch.save`` dict with ``model_state_dict``, ``model_config``
(constructor arguments of :class:`BranchedERFNet`, including ``ndim``; configs written before
3-D support lack it and load as 2-D networks), ``settings`` (``DatasetSettings.to_dict()``
of the training crops, so prediction normalises exactly as training did), ``epoch``,
``best_iou``, ``optim_state_dict``, ``rng_state`` and ``train_args``. Only tensors and plain
Python values are stored, so every checkpoint loads with ``weights_only=True``.

A bioimage.io package written by `embedseg export` loads the same way (:func:`load_checkpoint`
recognises it by its ``rdf.yaml``): its state-dict weights plus ``model_config`` and ``settings``
from the package's ``config.embedseg``. Reading it needs only zipfile and yaml, not bioimageio.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..dataset_settings import DatasetSettings
from ..io import DataError, atomic_write
from ..runtime import resolve_device
from .erfnet import BranchedERFNet

REQUIRED_KEYS = ("model_state_dict", "model_config", "settings")
PACKAGE_CONFIG_KEY = "embedseg"  # our section of a bioimage.io package's `config`
PACKAGE_RDF = "rdf.yaml"


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any]) -> None:
    """Write `checkpoint` atomically, so an interrupted run never leaves a truncated file."""
    with atomic_write(path) as tmp:
        torch.save(dict(checkpoint), tmp)


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (tensors mapped to `device`), checking that it is one of ours."""
    path = Path(path)
    if path.is_dir():
        found = [name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        raise DataError(
            f"{path}: a folder, not a checkpoint; pass its checkpoint file, e.g. {path / found[0]}"
            if found
            else f"{path}: a folder without best.pt; pass a checkpoint file, or train a model first (embedseg train)"
        )
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; train a model first (embedseg train)")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds for corrupt or foreign files
        raise DataError(
            f"{path}: cannot read checkpoint ({exc}); the file is corrupt or not a torch checkpoint"
        ) from exc
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise DataError(
            f"{path}: not an embedseg checkpoint (missing {missing}); "
            "official EmbedSeg checkpoints load with embedseg.models.load_official_checkpoint"
        )
    return checkpoint


def is_package(path: str | os.PathLike) -> bool:
    """Whether `path` is a bioimage.io package (a zip with rdf.yaml; torch checkpoints are zips too)."""
    with_rdf = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            with_rdf = PACKAGE_RDF in archive.namelist()
    return with_rdf


def read_package(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Checkpoint-like dict (model_state_dict, model_config, settings) of an `embedseg export` package."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            rdf = yaml.safe_load(archive.read(PACKAGE_RDF))
            ours = (rdf.get("config") or {}).get(PACKAGE_CONFIG_KEY)
            if not isinstance(ours, dict) or not {"model_config", "settings"} <= set(ours):
                raise DataError(
                    f"{path}: a bioimage.io package without config.{PACKAGE_CONFIG_KEY}; only "
                    "packages of `embedseg export` work here (run others with bioimageio.core)"
                )
            weights = archive.read(rdf["weights"]["pytorch_state_dict"]["source"])
    except (KeyError, TypeError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        raise DataError(f"{path}: broken bioimage.io package ({exc!r}); export it again") from exc
    state_dict = torch.load(io.BytesIO(weights), map_location=device, weights_only=True)
    return {"model_state_dict": state_dict, **{key: ours[key] for key in ("model_config", "settings")}}


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str = "auto"
) -> tuple[BranchedERFNet, DatasetSettings]:
    """Network (eval mode, on `device`) and data-set settings of a checkpoint written by `embedseg train`
    or a package written by `embedseg export`."""
    device = resolve_device(device) if isinstance(device, str) else device
    package = Path(path).is_file() and is_package(path)
    checkpoint = read_package(path, device) if package else read_checkpoint(path, device)
    model = BranchedERFNet(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state_dict"])
    settings = DatasetSettings.from_dict(checkpoint["settings"], source=f"{path} (settings)")
    return model.to(device).eval(), settings


def strip_dataparallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds (EmbedSeg v0.1 checkpoints)."""
    prefix = "module."
    return {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state_dict.items()}


def load_official_checkpoint(
    path: str | os.PathLike,
    in_channels: int = 1,
    n_sigma: int | None = None,
    device: torch.device | str = "auto",
    ndim: int = 2,
) -> BranchedERFNet:
    """Network (eval mode) from an official EmbedSeg/Neven ``.pth`` (``best_iou_model.pth``):
    ``ndim=2`` for ``branched_erfnet``, ``ndim=3`` for ``branched_erfnet_3d``; n_sigma defaults to ndim.

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
    model = BranchedERFNet(in_channels=in_channels, n_sigma=n_sigma, ndim=ndim)
    model.load_state_dict(strip_dataparallel_prefix(state_dict))
    return model.to(device).eval()
