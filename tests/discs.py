"""Crop folders of tiny disc images (embedseg.data.synthetic) for the nn-core tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedseg.data.synthetic import disc_centers, disc_image, disc_labels, disc_stack, random_discs
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import write_labels, write_tiff


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
