"""Cellpose-SAM (Pachitariu, Rariden, Stringer 2025; cellpose 4.x, model ``cpsam``), in its own
environment (workflow/envs/cellpose4.yaml).

- ``cellpose-sam``: the published generalist, zero-shot: no training, Cellpose-SAM's defaults
  (no diameter: it was trained to be size-invariant; flow threshold 0.4, cell probability 0).
- ``cellpose-sam-trained``: Cellpose 4's own training (`cellpose.train.train_seg`, its default
  optimiser settings) on our training split, starting from ``cpsam``; same splits and seeds as
  every other baseline.

The weights come from config ``baselines.weights.NAME`` (``--weights``) or Cellpose's cache
(:mod:`.weights`); without them the method writes ``NOT_RUN.txt`` and exits 0, and the
library never tries to download. Model folder: ``generalist.json``, ``dataset.json``,
``memory.json`` and, trained, ``models/cellpose-sam`` and ``log.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import read_json, write_json
from ..layout import LOG_CSV, MEMORY_JSON, not_run_beside
from ..runtime import resolve_device, seed_everything, write_memory_json
from . import weights as pretrained
from .common import (
    GENERALIST_JSON,
    consecutive,
    load_settings,
    predict_folder,
    start_training,
    write_log,
    write_not_run,
    zero_shot_train,
)
from .configs import CellposeSAMTrainConfig, GeneralistPredictConfig, TrainConfig

TRAINED_NAME = "cellpose-sam"


def channel_axis(image: np.ndarray) -> int | None:
    """Cellpose 4 takes any channels (up to 3) given their axis; greyscale (H, W) has none."""
    return 0 if image.ndim == 3 else None


def choose(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig) -> int:
    """`cellpose-sam`: nothing to train; record the model."""
    return zero_shot_train(data_dir, out_dir, config.seed, {"model": "cpsam"})


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: CellposeSAMTrainConfig) -> int:
    """`cellpose-sam-trained`: fine-tune cpsam on the training split (validation loss on val)."""
    weights, reason = pretrained.resolve("cellpose-sam-trained", config.weights)
    if weights is None:  # predict turns the record into NOT_RUN.txt
        return zero_shot_train(data_dir, out_dir, config.seed, {"not_run": reason})
    from cellpose import models
    from cellpose import train as cellpose_train

    device = resolve_device(config.device)
    seed_everything(config.seed)
    model_dir = Path(out_dir)
    _, train_split, val_split = start_training(data_dir, model_dir, config.seed)
    model = models.CellposeModel(gpu=device.type == "cuda", device=device, pretrained_model=str(weights))
    path, train_losses, val_losses = cellpose_train.train_seg(
        model.net,
        train_data=train_split.images,
        train_labels=train_split.labels,
        test_data=val_split.images,
        test_labels=val_split.labels,
        channel_axis=channel_axis(train_split.images[0]),
        save_path=model_dir,
        model_name=TRAINED_NAME,
        n_epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        min_train_masks=1,  # small crops of sparse data sets must not be dropped
    )
    write_log(
        model_dir / LOG_CSV,
        [
            {"epoch": epoch, "train_loss": float(loss), "val_loss": float(val) if val else None}
            for epoch, (loss, val) in enumerate(zip(train_losses, val_losses))
        ],
    )
    write_memory_json(model_dir / MEMORY_JSON, device)
    write_json(
        model_dir / GENERALIST_JSON, {"model": "cpsam", "pretrained_model": str(Path(path).relative_to(model_dir))}
    )
    return 0


def predict(
    model_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: GeneralistPredictConfig,
) -> int:
    """Segment every image; without weights write NOT_RUN.txt (the fix command in it) instead."""
    settings = load_settings(model_dir)
    chosen = read_json(Path(model_dir) / GENERALIST_JSON)
    if "not_run" in chosen:
        write_not_run(not_run_beside(out_dir), chosen["not_run"])
        return 0
    if "pretrained_model" in chosen:
        weights = Path(model_dir) / chosen["pretrained_model"]
    else:
        weights, reason = pretrained.resolve("cellpose-sam", config.weights)
        if weights is None:
            write_not_run(not_run_beside(out_dir), reason)
            return 0
    from cellpose import models

    device = resolve_device(config.device)
    model = models.CellposeModel(gpu=device.type == "cuda", device=device, pretrained_model=str(weights))
    predict_folder(
        image_dir,
        out_dir,
        settings,
        lambda image: consecutive(model.eval(image, channel_axis=channel_axis(image))[0]),
    )
    not_run_beside(out_dir).unlink(missing_ok=True)  # a marker left by an earlier offline run
    return 0
