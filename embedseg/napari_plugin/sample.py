"""napari sample data: synthetic nuclei of the embedded demo (:mod:`embedseg.data.synthetic`),
generated on the spot — nothing is downloaded."""

from __future__ import annotations

from ..data.synthetic import VOXEL_SIZE_3D, generate
from .reader import LayerData

SAMPLE_SEED = 0


def synthetic_nuclei() -> list[LayerData]:
    """One 256 × 256 DSB-like fluorescence image (8-bit) and its ground truth."""
    _, image, labels = next(generate("synthetic-nuclei", 1, 256, SAMPLE_SEED))
    return [
        (image, {"name": "synthetic nuclei"}, "image"),
        (labels, {"name": "synthetic nuclei: ground truth"}, "labels"),
    ]


def synthetic_nuclei_3d() -> list[LayerData]:
    """One 32 × 96 × 96 confocal-like volume (voxels 2 × 1 × 1 µm) and its ground truth."""
    _, image, labels = next(generate("synthetic-nuclei-3d", 1, 96, SAMPLE_SEED))
    scale = {"scale": VOXEL_SIZE_3D}
    return [
        (image, {"name": "synthetic nuclei 3-D", **scale}, "image"),
        (labels, {"name": "synthetic nuclei 3-D: ground truth", **scale}, "labels"),
    ]
