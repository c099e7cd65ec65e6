"""Checks on an (image, label image) pair before it enters the pipeline.

Problems that would silently corrupt training (NaN pixels, shapes that do not match) are
errors naming the file; an image without any object is legal (DSB has one) but suspicious,
so it only warns. `ndim` is the data set's spatial dimension (2: images, 3: volumes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..io import DataError

log = logging.getLogger(__name__)

IMAGE_SHAPES = {2: "(H, W) or (C, H, W)", 3: "(Z, Y, X) or (C, Z, Y, X)"}


def check_image(image: np.ndarray, path: Path, ndim: int = 2) -> None:
    """An image must be (H, W) / (C, H, W), in 3D (Z, Y, X) / (C, Z, Y, X), with finite pixel values."""
    if image.ndim not in (ndim, ndim + 1):
        raise DataError(
            f"{path}: image has shape {image.shape}; expected {IMAGE_SHAPES[ndim]} for this {ndim}D data set"
            + ("" if ndim == 3 else " (pass --ndim 3 for volumes)" if image.ndim == 4 else "")
        )
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise DataError(f"{path}: image contains NaN or infinite pixels; replace them (e.g. by 0)")


def check_pair(image: np.ndarray, labels: np.ndarray, image_path: Path, mask_path: Path, ndim: int = 2) -> None:
    """The mask must cover the image: 2D a label image (H, W) or one-hot stack (K, H, W) with the
    image's (H, W); 3D a label volume (Z, Y, X) with the image's (Z, Y, X).

    Warns (not an error) when the mask has no object at all.
    """
    check_image(image, image_path, ndim)
    if ndim == 3:
        spatial = image.shape[-3:]
        if labels.shape != spatial:
            raise DataError(
                f"{mask_path}: mask shape {labels.shape} does not match image {image_path} of shape "
                f"{image.shape}; a 3D mask must be one (Z, Y, X) label stack with the image's Z, Y and X"
            )
    elif labels.ndim not in (2, 3) or labels.shape[-2:] != image.shape[-2:]:
        raise DataError(
            f"{mask_path}: mask shape {labels.shape} does not match image {image_path} of shape {image.shape}; "
            "the mask must be (H, W) or (K, H, W) with the image's H and W"
        )
    if not labels.any():
        log.warning(
            "%s: mask has no objects (all background); the image %s only teaches background", mask_path, image_path
        )
