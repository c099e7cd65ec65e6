"""Label-image helpers shared by data reading, crops, baselines and figures (NumPy/SciPy only).

A label image is (H, W) with 0 = background and one positive id per object; a one-hot stack is
(K, H, W) with one (possibly overlapping) object per slice.
"""

from __future__ import annotations

import numpy as np


def label_dtype(max_label: int) -> type:
    """Smallest of uint16/uint32 that holds `max_label` (never uint8/int16: no 255/32767 overflow)."""
    return np.uint16 if max_label <= np.iinfo(np.uint16).max else np.uint32


def flatten_labels(labels: np.ndarray) -> np.ndarray:
    """(K, H, W) one-hot stack → (H, W) label image with ids 1..K; (H, W) is returned unchanged.

    Methods that predict one flat label map (the baselines, the figures) need this; where
    objects overlap, the later slice wins.
    """
    if labels.ndim == 2:
        return labels
    ids = np.arange(1, labels.shape[0] + 1, dtype=np.uint32)[:, None, None]
    return (labels.astype(bool) * ids).max(axis=0)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Instance ids mapped to 1..K in ascending order (0 stays background), as int64."""
    from skimage.segmentation import relabel_sequential as relabel

    return relabel(labels)[0].astype(np.int64)


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes of every object of a label image (H, W), each in its own bounding box.

    Objects are painted in ascending id order into a fresh image, as StarDist's
    ``fill_label_holes`` that the official crop code uses (a hole holding a smaller id is
    overwritten by the enclosing object).
    """
    from scipy.ndimage import binary_fill_holes, find_objects

    filled = np.zeros_like(labels)
    for label_id, box in enumerate(find_objects(labels), start=1):
        if box is None:
            continue
        # Grow the box by one pixel (where the image allows) so holes touching it stay holes.
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region = binary_fill_holes(labels[grown] == label_id)
        filled[grown][region] = label_id
    return filled


def object_extents(labels: np.ndarray) -> list[list[int]]:
    """Extent (max − min coordinate, per axis) of every object of a label image or volume."""
    from scipy.ndimage import find_objects

    return [[s.stop - s.start - 1 for s in box] for box in find_objects(labels) if box is not None]


def min_object_size(labels: np.ndarray, one_hot: bool) -> int:
    """Pixel (voxel) count of the smallest object in a label image (H, W) or volume (Z, Y, X),
    or in a one-hot stack (K, H, W)."""
    if one_hot:
        sizes = labels.reshape(len(labels), -1).astype(bool).sum(axis=1)
    else:
        sizes = np.bincount(labels.ravel())[1:]
    return int(sizes[sizes > 0].min())
