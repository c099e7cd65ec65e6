"""Tiny synthetic instance images (discs) and crop folders for the nn-core tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedseg.dataset_settings import DatasetSettings
from embedseg.io import write_labels, write_tiff

Disc = tuple[int, int, int]  # (centre y, centre x, radius)


def disc_labels(shape: tuple[int, int], discs: list[Disc]) -> np.ndarray:
    """(H, W) uint16 label image, disc i has id i + 1 (later discs cover earlier ones)."""
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx, r) in enumerate(discs):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
    return labels


def disc_stack(shape: tuple[int, int], discs: list[Disc]) -> np.ndarray:
    """(K, H, W) uint8 one-hot stack of possibly overlapping discs."""
    return np.stack([disc_labels(shape, [disc]) > 0 for disc in discs]).astype(np.uint8)


def disc_centers(shape: tuple[int, int], discs: list[Disc]) -> np.ndarray:
    """(H, W) uint8 centre image with a 1 at every disc centre."""
    centers = np.zeros(shape, np.uint8)
    for cy, cx, _ in discs:
        centers[cy, cx] = 1
    return centers


def disc_image(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8-bit image: bright objects with a darker rim on a noisy background, (H, W) or from (K, H, W)."""
    foreground = labels.max(axis=0) if labels.ndim == 3 else labels
    image = 40 + 150 * (foreground > 0) + rng.normal(0, 8, foreground.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def random_discs(rng: np.random.Generator, size: int, n_discs: int, radius: tuple[int, int] = (5, 12)) -> list[Disc]:
    """`n_discs` discs with random radii whose centres lie at least one radius inside the image."""
    radii = rng.integers(*radius, size=n_discs)
    return [(int(rng.integers(r, size - r)), int(rng.integers(r, size - r)), int(r)) for r in radii]


def write_crop_folder(
    root: Path, n_train: int = 4, n_val: int = 2, size: int = 32, n_discs: int = 3, one_hot: bool = False, seed: int = 0
) -> Path:
    """A crops folder as `embedseg crops` writes it: dataset.json + {train,val}/{images,masks,centers}."""
    rng = np.random.default_rng(seed)
    for subset, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            discs = random_discs(rng, size, n_discs)
            masks = disc_stack((size, size), discs) if one_hot else disc_labels((size, size), discs)
            write_tiff(root / subset / "images" / f"crop_{i:03d}.tif", disc_image(masks, rng))
            write_labels(root / subset / "masks" / f"crop_{i:03d}.tif", masks)
            write_tiff(root / subset / "centers" / f"crop_{i:03d}.tif", disc_centers((size, size), discs))
    DatasetSettings(name="discs", crop_size=size, one_hot=one_hot, center="centroid").save(root)
    return root
