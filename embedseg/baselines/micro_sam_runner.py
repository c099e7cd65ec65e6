"""µSAM (Archit et al. 2025, micro-sam 1.8.x), its light-microscopy generalist ``vit_b_lm``,
zero-shot, in its own environment (workflow/envs/micro-sam.yaml).

- ``micro-sam-ais``: automatic instance segmentation, the decoder's foreground and distance
  maps post-processed by seeded watershed (`InstanceSegmentationWithDecoder`).
- ``micro-sam-apg``: automatic prompt generation: point prompts from the decoder's maps,
  segmented by SAM's prompt decoder (`AutomaticPromptGenerator`, Archit & Pape 2026).

Weights: config ``baselines.weights.NAME`` (one checkpoint with ``model_state`` and
``decoder_state``, micro-sam's export format) or micro-sam's cache (``vit_b_lm`` and
``vit_b_lm_decoder``, checked by micro-sam against its xxh128 hashes); without them,
``NOT_RUN.txt`` (:mod:`.weights`). Images go in channels-last; micro-sam maps them to three
channels and uint8 itself.
"""

from __future__ import annotations

import os

import numpy as np

from ..layout import not_run_beside
from ..runtime import resolve_device
from . import weights as pretrained
from .common import consecutive, load_settings, predict_folder, write_not_run, zero_shot_train
from .configs import GeneralistPredictConfig, TrainConfig

MODEL_TYPE = "vit_b_lm"
MODES = {"micro-sam-ais": "ais", "micro-sam-apg": "apg"}


def choose(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig) -> int:
    """Nothing to train; record the model."""
    return zero_shot_train(data_dir, out_dir, config.seed, {"model": MODEL_TYPE})


def segment_folder(
    method: str, model_dir: str | os.PathLike, image_dir: str | os.PathLike, out_dir: str | os.PathLike, config
) -> int:
    """Segment every image with `method`'s mode; without weights write NOT_RUN.txt instead."""
    weights, reason = pretrained.resolve(method, config.weights)
    if weights is None:
        write_not_run(not_run_beside(out_dir), reason)
        return 0
    from micro_sam.automatic_segmentation import automatic_instance_segmentation, get_predictor_and_segmenter

    settings = load_settings(model_dir)
    device = resolve_device(config.device)
    predictor, segmenter = get_predictor_and_segmenter(
        model_type=MODEL_TYPE,
        checkpoint=str(weights) if config.weights else None,  # None: micro-sam's registry (its hashes)
        device=str(device),
        segmentation_mode=MODES[method],
    )

    def segment(image: np.ndarray) -> np.ndarray:
        image = np.moveaxis(image, 0, -1) if image.ndim == 3 else image
        labels = automatic_instance_segmentation(predictor, segmenter, input_path=image, ndim=2, verbose=False)
        return consecutive(labels)

    predict_folder(image_dir, out_dir, settings, segment)
    not_run_beside(out_dir).unlink(missing_ok=True)  # a marker left by an earlier offline run
    return 0


def predict_ais(model_dir, image_dir, out_dir, config: GeneralistPredictConfig) -> int:
    return segment_folder("micro-sam-ais", model_dir, image_dir, out_dir, config)


def predict_apg(model_dir, image_dir, out_dir, config: GeneralistPredictConfig) -> int:
    return segment_folder("micro-sam-apg", model_dir, image_dir, out_dir, config)
