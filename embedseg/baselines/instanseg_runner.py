"""InstanSeg (Goldsborough et al. 2024, instanseg-torch 0.1.x), a published model, zero-shot, in
its own environment (workflow/envs/instanseg.yaml).

The model as the data set fits (``--model auto``): ``fluorescence_nuclei_and_cells`` for the
fluorescence nuclei data sets (DSB, its nuclei output), else ``brightfield_nuclei``; InstanSeg
has no model for phase-contrast cells or worms, so its rows there measure a mismatch. The
TorchScript file comes from config ``baselines.weights.instanseg`` or InstanSeg's cache
(``$INSTANSEG_BIOIMAGEIO_PATH/{model}/{version}/instanseg.pt``); without it, ``NOT_RUN.txt``
(:mod:`.weights`). No pixel size is passed: our data sets record none, so the image is used at
its own scale.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import read_json
from ..layout import not_run_beside
from ..runtime import resolve_device
from . import weights as pretrained
from .common import (
    GENERALIST_JSON,
    NUCLEI_DATA_SETS,
    consecutive,
    load_settings,
    predict_folder,
    write_not_run,
    zero_shot_train,
)
from .configs import GeneralistPredictConfig, InstanSegChooseConfig


def choose_model(requested: str, dataset_name: str) -> str:
    if requested != "auto":
        pretrained.instanseg_weights(requested)  # ValueError for an unknown name
        return requested
    nuclei = any(part in dataset_name.lower() for part in NUCLEI_DATA_SETS)
    return pretrained.INSTANSEG_DEFAULT if nuclei else "brightfield_nuclei"


def choose(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: InstanSegChooseConfig) -> int:
    """Nothing to train; record the model and which of its outputs is scored."""
    from ..dataset_settings import DatasetSettings

    model = choose_model(config.model, DatasetSettings.load(data_dir).name)
    return zero_shot_train(data_dir, out_dir, config.seed, {"model": model, "target": "nuclei"})


def predict(
    model_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: GeneralistPredictConfig,
) -> int:
    """Segment every image; without weights write NOT_RUN.txt instead."""
    chosen = read_json(Path(model_dir) / GENERALIST_JSON)
    weights, reason = pretrained.resolve("instanseg", config.weights, pretrained.instanseg_weights(chosen["model"]))
    if weights is None:
        write_not_run(not_run_beside(out_dir), reason)
        return 0
    import torch
    from instanseg import InstanSeg

    settings = load_settings(model_dir)
    device = resolve_device(config.device)
    model = InstanSeg(torch.jit.load(str(weights), map_location=device), device=str(device), verbosity=0)

    def segment(image: np.ndarray) -> np.ndarray:
        labels = model.eval_small_image(image, pixel_size=None, target=chosen["target"], return_image_tensor=False)
        labels = labels.cpu().numpy().reshape(-1, *image.shape[-2:])
        return consecutive(labels[0])

    predict_folder(image_dir, out_dir, settings, segment)
    not_run_beside(out_dir).unlink(missing_ok=True)  # a marker left by an earlier offline run
    return 0
