"""Typed per-data-set settings that travel from `prepare` through crops and training to inference.

`prepare` writes them as ``dataset.json`` next to the split; `crops` copies them (adding the
centre type); training stores them inside every checkpoint so that `predict` normalises test
images exactly as the training crops were normalised.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import DataError, read_json, write_json

NORMALIZATIONS = ("absolute", "percentile", "mean-std")
DATASET_JSON = "dataset.json"


@dataclass
class DatasetSettings:
    """What the method needs to know about a data set (paper-parity defaults)."""

    name: str
    normalization: str = "absolute"  # absolute | percentile | mean-std
    normalization_factor: float | None = 255.0  # for `absolute`: 255 (8-bit) or 65535 (16-bit)
    percentiles: tuple[float, float] = (1.0, 99.8)  # for `percentile` (HEAD: p1/p99.8, no clip)
    crop_size: int = 256
    one_hot: bool = False  # masks stored as (K, H, W) stacks of possibly overlapping objects
    in_channels: int = 1
    min_object_size: int = 0  # smallest GT object (train+val), for the `current` clustering preset
    val_split: str = "image"  # image: val/ folder of whole images; crop: a share of the train crops
    val_fraction: float = 0.15
    center: str | None = None  # set by `crops`: medoid | approximate-medoid | centroid
    # Set by `crops`: the crop images are already normalised. `percentile` and `mean-std` need the
    # statistics of the whole source image (as EmbedSeg HEAD, which normalises before cropping);
    # `absolute` crops stay in the stored dtype (paper code v0.1) and are divided when loaded.
    prenormalized: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise DataError(f"normalization {self.normalization!r} unknown; choose one of {NORMALIZATIONS}")
        if self.normalization == "absolute" and not self.normalization_factor:
            raise DataError("normalization 'absolute' needs normalization_factor (255 or 65535)")
        if self.val_split not in ("image", "crop"):
            raise DataError(f"val_split {self.val_split!r} unknown; choose 'image' or 'crop'")
        self.percentiles = tuple(self.percentiles)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "settings") -> DatasetSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{source}: unknown data set setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / DATASET_JSON
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DatasetSettings:
        path = Path(directory) / DATASET_JSON
        return cls.from_dict(read_json(path), source=str(path))


def normalize(image: np.ndarray, settings: DatasetSettings) -> np.ndarray:
    """Normalise a whole image (H, W) or (C, H, W) to float32 as the data set prescribes.

    `absolute` divides by the factor (paper: /255, /65535); `percentile` maps p_low..p_high to
    0..1 over the whole image (per channel for C, H, W), without clipping, as EmbedSeg HEAD;
    `mean-std` standardises.
    """
    x = np.asarray(image, dtype=np.float64)
    if settings.normalization == "absolute":
        out = x / float(settings.normalization_factor)
    else:
        axes = (-2, -1)
        if settings.normalization == "percentile":
            lo, hi = np.percentile(x, settings.percentiles, axis=axes, keepdims=True)
            out = (x - lo) / (hi - lo + 1e-20)
        else:
            out = (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + 1e-20)
    return out.astype(np.float32)
