"""Checks on an (image, label image) pair before it enters the pipeline.

Problems that would silently corrupt training (NaN pixels, shapes that do not match) are
errors naming the file; an image without any object is legal (DSB has one) but suspicious,
so it only warns.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..io import DataError

log = logging.getLogger(__name__)


def check_image(image: np.ndarray, path: Path) -> None:
    """An image must be (H, W) or (C, H, W) with finite pixel values."""
    if image.ndim not in (2, 3):
        raise DataError(f"{path}: image has shape {image.shape}; expected (H, W) or (C, H, W)")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise DataError(f"{path}: image contains NaN or infinite pixels; replace them (e.g. by 0)")


def check_pair(image: np.ndarray, labels: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """The label image (H, W) or one-hot stack (K, H, W) must cover the image's (H, W).

    Warns (not an error) when the mask has no object at all.
    """
    check_image(image, image_path)
    if labels.ndim not in (2, 3) or labels.shape[-2:] != image.shape[-2:]:
        raise DataError(
            f"{mask_path}: mask shape {labels.shape} does not match image {image_path} of shape {image.shape}; "
            "the mask must be (H, W) or (K, H, W) with the image's H and W"
        )
    if not labels.any():
        log.warning(
            "%s: mask has no objects (all background); the image %s only teaches background", mask_path, image_path
        )
