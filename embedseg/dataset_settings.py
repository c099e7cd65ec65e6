"""Typed per-data-set settings that travel from `prepare` through crops and training to inference.

`prepare` writes them as ``dataset.json`` next to the split; `crops` copies them (adding the
centre type and, in 3D, the foreground weight); training stores them inside every checkpoint so
that `predict` normalises test images exactly as the training crops were normalised.
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
    # One edge length (every axis), or one per axis: (Y, X) in 2D, (Z, Y, X) in 3D; see crop_shape.
    crop_size: int | tuple[int, ...] = 256
    one_hot: bool = False  # masks stored as (K, H, W) stacks of possibly overlapping objects
    in_channels: int = 1
    min_object_size: int = 0  # smallest GT object (train+val), for the `current` clustering preset
    val_split: str = "image"  # image: val/ folder of whole images; crop: a share of the train crops
    val_fraction: float | int = 0.15  # a fraction of the images or crops, or a count of images
    center: str | None = None  # set by `crops`: medoid | approximate-medoid | centroid
    # Set by `crops`: the crop images are already normalised. `percentile` and `mean-std` need the
    # statistics of the whole source image (as EmbedSeg HEAD, which normalises before cropping);
    # `absolute` crops stay in the stored dtype (paper code v0.1) and are divided when loaded.
    prenormalized: bool = False
    # Spatial dimension of the data: 2 (images (H, W) / (C, H, W)) or 3 (volumes (Z, Y, X) /
    # (C, Z, Y, X)). It decides how a 3-axis array is read; it is never guessed from one array.
    ndim: int = 2
    voxel_size: tuple[float, ...] | None = None  # 3D: (z, y, x) in µm; None in 2D
    # Seed-loss weight of foreground pixels: 10 in 2D (official); in 3D set by `crops` from the
    # training masks (official calculate_foreground_weight: mean over masks of #bg / #fg).
    foreground_weight: float = 10.0
    # Defaults of training and prediction for this data set (their `auto`; a given option wins):
    # the paper code's broadcast variance term and 128/128/36 clustering in 2D, the per-channel
    # term and the 0/0/min-object-size preset of the follow-up paper's 3D code.
    variance_loss: str = "paper"  # paper | fixed (embedseg.core.losses.VARIANCE_LOSSES)
    clustering: str = "paper"  # paper | current (embedseg.core.cluster.PRESETS)
    # Unannotated block not scored by `evaluate` (official test.py `mask_region`): a box
    # [[z0, y0, x0], [z1, y1, x1]] (2D: [[y0, x0], [y1, x1]]), ends exclusive, or the path of a
    # 0/1 mask TIFF of the images' shape (relative: to the data set folder); None: all scored.
    ignore_region: list[list[int]] | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise DataError(f"normalization {self.normalization!r} unknown; choose one of {NORMALIZATIONS}")
        if self.normalization == "absolute" and not self.normalization_factor:
            raise DataError("normalization 'absolute' needs normalization_factor (255 or 65535)")
        if self.val_split not in ("image", "crop"):
            raise DataError(f"val_split {self.val_split!r} unknown; choose 'image' or 'crop'")
        self.percentiles = tuple(self.percentiles)
        if self.ndim not in (2, 3):
            raise DataError(f"ndim {self.ndim!r}: data sets are 2 (images) or 3 (volumes) dimensional")
        if not isinstance(self.crop_size, int):
            self.crop_size = tuple(int(size) for size in self.crop_size)
        if self.ndim == 3 and self.voxel_size is None:
            self.voxel_size = (1.0, 1.0, 1.0)
        if self.voxel_size is not None:
            self.voxel_size = tuple(float(size) for size in self.voxel_size)
            if len(self.voxel_size) != self.ndim or min(self.voxel_size) <= 0:
                raise DataError(
                    f"voxel_size {list(self.voxel_size)}: give {self.ndim} positive sizes "
                    f"({'z, y, x' if self.ndim == 3 else 'y, x'}, µm)"
                )
        if self.variance_loss not in ("paper", "fixed") or self.clustering not in ("paper", "current"):
            raise DataError(
                f"variance_loss {self.variance_loss!r} / clustering {self.clustering!r}: "
                "choose paper or fixed / paper or current"
            )
        if isinstance(self.ignore_region, (list, tuple)):
            box = np.asarray(self.ignore_region)
            if box.shape != (2, self.ndim) or (box[0] > box[1]).any() or (box < 0).any():
                raise DataError(
                    f"ignore_region {self.ignore_region}: give [[start per axis], [end per axis]] "
                    f"({self.ndim} non-negative values each, ends exclusive) or a mask file"
                )
            self.ignore_region = box.astype(int).tolist()
        if len(self.crop_shape) != self.ndim:
            raise DataError(
                f"crop_size {list(self.crop_shape)}: give one size or {self.ndim} (one per axis) for {self.ndim}D data"
            )

    @property
    def crop_shape(self) -> tuple[int, ...]:
        """Crop edge lengths per spatial axis: (Y, X) in 2D, (Z, Y, X) in 3D."""
        return (self.crop_size,) * self.ndim if isinstance(self.crop_size, int) else self.crop_size

    @property
    def anisotropy(self) -> float:
        """voxel z / voxel x (the official anisotropy factor; y and x assumed equal); 1.0 in 2D."""
        return self.voxel_size[0] / self.voxel_size[-1] if self.ndim == 3 else 1.0

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
    """Normalise a whole image (H, W) / (C, H, W), or volume (Z, Y, X) / (C, Z, Y, X) in 3D, to
    float32 as the data set prescribes.

    `absolute` divides by the factor (paper: /255, /65535); `percentile` maps p_low..p_high to
    0..1 over the whole image or volume (per channel), without clipping, as EmbedSeg HEAD (3D:
    over axes (0, 1, 2), as the official process_3d); `mean-std` standardises.
    """
    x = np.asarray(image, dtype=np.float64)
    if settings.normalization == "absolute":
        out = x / float(settings.normalization_factor)
    else:
        axes = tuple(range(-settings.ndim, 0))
        if settings.normalization == "percentile":
            lo, hi = np.percentile(x, settings.percentiles, axis=axes, keepdims=True)
            out = (x - lo) / (hi - lo + 1e-20)
        else:
            out = (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + 1e-20)
    return out.astype(np.float32)
