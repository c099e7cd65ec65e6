"""Cellpose (Stringer et al. 2021) baselines, run in their own environment (Cellpose 3.x + torch).

- ``cellpose-trained``: Cellpose 3's U-Net trained from scratch on the training split
  (``pretrained_model=None``, no download); the flow-error and cell-probability thresholds are
  then chosen on the validation images (mean AP@0.5), because an under-trained model finds
  nothing with the default flow threshold 0.4.
- ``cellpose-public``: the published generalist model (``nuclei`` for nuclei data sets, else
  ``cyto3``), with the median object diameter of the training masks. Cellpose fetches the
  weights on first use; where that fails (offline), `predict` writes ``NOT_RUN.txt`` with the
  reason and exits 0, so the workflow goes on and the table shows "not run".

Cellpose 3.x, not 4.x: 4.x (Cellpose-SAM) cannot train from scratch and needs hub weights.
Cellpose applies its own percentile normalisation on top of the data set's; it is part of the
method (its networks were trained that way).

Model folder: ``cellpose.json`` (model and thresholds), ``models/cellpose`` (trained weights),
``log.csv`` (trained only), ``memory.json``, ``dataset.json``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_json, write_json
from ..layout import LOG_CSV, MEMORY_JSON, not_run_beside
from ..runtime import resolve_device, seed_everything, write_memory_json
from .common import (
    NUCLEI_DATA_SETS,
    Split,
    load_settings,
    mean_ap50,
    predict_folder,
    start_training,
    write_log,
    write_not_run,
)
from .configs import CellposePublicConfig, CellposeTrainConfig, PredictConfig

SETTINGS_JSON = "cellpose.json"
TRAINED_NAME = "cellpose"
TUNE_IMAGES = 16  # validation images used to pick thresholds (each setting re-runs the network)


def eval_kwargs(n_channels: int) -> dict[str, Any]:
    """Cellpose channel arguments: greyscale [0, 0]; multi-channel (C, H, W): cytoplasm 1, nucleus 2."""
    if n_channels == 1:
        return {"channels": [0, 0]}
    return {"channels": [1, 2], "channel_axis": 0}


def n_channels(split: Split) -> int:
    return split.images[0].shape[0] if split.images[0].ndim == 3 else 1


def tune_thresholds(
    model, split: Split, flow_thresholds, cellprob_thresholds, base: dict[str, Any]
) -> dict[str, float]:
    """Flow/cell-probability thresholds with the best mean AP@0.5 on (at most TUNE_IMAGES) validation images."""
    from ..runtime import progress

    split = Split(split.names[:TUNE_IMAGES], split.images[:TUNE_IMAGES], split.labels[:TUNE_IMAGES])
    grid = list(itertools.product(flow_thresholds, cellprob_thresholds))
    scores = [
        mean_ap50(split.labels, model.eval(split.images, flow_threshold=flow, cellprob_threshold=cellprob, **base)[0])
        for flow, cellprob in progress(grid, desc="tune thresholds", unit="setting")
    ]
    flow, cellprob = grid[int(np.argmax(scores))]
    return {"flow_threshold": flow, "cellprob_threshold": cellprob, "val_ap50": max(scores)}


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: CellposeTrainConfig) -> int:
    """`cellpose-trained`: train from scratch, tune thresholds on validation."""
    from cellpose import models
    from cellpose import train as cellpose_train

    device = resolve_device(config.device)
    seed_everything(config.seed)
    model_dir = Path(out_dir)
    settings, train_split, val_split = start_training(data_dir, model_dir, config.seed)
    channels = eval_kwargs(n_channels(train_split))
    net = models.CellposeModel(
        gpu=device.type == "cuda", device=device, pretrained_model=None, model_type=None, nchan=2
    )
    weights, train_losses, val_losses = cellpose_train.train_seg(
        net.net,
        train_data=train_split.images,
        train_labels=train_split.labels,
        test_data=val_split.images,
        test_labels=val_split.labels,
        save_path=model_dir,
        model_name=TRAINED_NAME,
        n_epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        **channels,
    )
    # Cellpose evaluates the validation loss only at epoch 5 and every 10th epoch.
    write_log(
        model_dir / LOG_CSV,
        [
            {"epoch": epoch, "train_loss": float(loss), "val_loss": float(val) if val else None}
            for epoch, (loss, val) in enumerate(zip(train_losses, val_losses))
        ],
    )
    write_memory_json(model_dir / MEMORY_JSON, device)
    trained = models.CellposeModel(gpu=device.type == "cuda", device=device, pretrained_model=str(weights))
    thresholds = tune_thresholds(trained, val_split, config.flow_thresholds, config.cellprob_thresholds, channels)
    write_json(
        model_dir / SETTINGS_JSON,
        {"pretrained_model": str(Path(weights).relative_to(model_dir)), "diameter": None, **channels, **thresholds},
    )
    return 0


def public_model_type(requested: str, dataset_name: str) -> str:
    """`auto` → ``nuclei`` for nuclei data sets (DSB), else the generalist ``cyto3``."""
    if requested != "auto":
        return requested
    return "nuclei" if any(part in dataset_name.lower() for part in NUCLEI_DATA_SETS) else "cyto3"


def choose_public(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: CellposePublicConfig) -> int:
    """`cellpose-public`: no training; record model name, channels and object diameter."""
    from cellpose.utils import diameters

    model_dir = Path(out_dir)
    settings, train_split, _ = start_training(data_dir, model_dir, config.seed)
    diameter = config.diameter or float(np.median([diameters(labels)[0] for labels in train_split.labels]))
    write_json(
        model_dir / SETTINGS_JSON,
        {
            "model_type": public_model_type(config.model_type, settings.name),
            "diameter": diameter,
            "flow_threshold": 0.4,
            "cellprob_threshold": 0.0,
            **eval_kwargs(n_channels(train_split)),
        },
    )
    write_memory_json(model_dir / MEMORY_JSON)
    return 0


def predict(
    model_dir: str | os.PathLike, image_dir: str | os.PathLike, out_dir: str | os.PathLike, config: PredictConfig
) -> int:
    """Segment every image; for a public model that cannot be fetched, write NOT_RUN.txt instead."""
    from cellpose import models

    device = resolve_device(config.device)
    settings = load_settings(model_dir)
    chosen = read_json(Path(model_dir) / SETTINGS_JSON)
    if "model_type" in chosen:
        try:
            model = models.CellposeModel(gpu=device.type == "cuda", device=device, model_type=chosen["model_type"])
        except Exception as exc:  # urllib/OS/HTTP errors of Cellpose's download differ by version
            write_not_run(
                not_run_beside(out_dir),
                f"Cellpose could not fetch the public model "
                f"{chosen['model_type']!r} ({type(exc).__name__}: {exc}); run once with internet access "
                f"to cache it in ~/.cellpose/models (or $CELLPOSE_LOCAL_MODELS_PATH)",
            )
            return 0
    else:
        model = models.CellposeModel(
            gpu=device.type == "cuda", device=device, pretrained_model=str(Path(model_dir) / chosen["pretrained_model"])
        )
    kwargs = {
        key: chosen[key]
        for key in ("channels", "channel_axis", "diameter", "flow_threshold", "cellprob_threshold")
        if key in chosen
    }
    predict_folder(image_dir, out_dir, settings, lambda image: model.eval(image, **kwargs)[0])
    not_run_beside(out_dir).unlink(missing_ok=True)  # a marker left by an earlier offline run
    return 0
