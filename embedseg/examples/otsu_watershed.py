"""A classical method of one's own, as the workflow's `methods:` runs it: Gaussian smoothing and
Otsu's threshold, then a watershed of the distance transform from its local maxima. No training.

    python -m embedseg.examples.otsu_watershed IMAGES_DIR OUT_DIR [--min-distance 3] [--sigma 1]

writes OUT_DIR/<name> (uint16 labels) for every TIFF image IMAGES_DIR/<name>.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from ..io import list_images, read_image, write_labels


def segment(image: np.ndarray, min_distance: int = 3, sigma: float = 1.0) -> np.ndarray:
    """(H, W) label image: foreground above Otsu's threshold of the image smoothed with a Gaussian
    of `sigma` pixels, split by a watershed on the negated distance transform, seeded at its local
    maxima at least `min_distance` pixels apart (touching maxima of a plateau: one seed)."""
    image = image.astype(np.float32)
    if image.ndim == 3:  # channels last: their mean
        image = image.mean(axis=-1)
    smoothed = ndimage.gaussian_filter(image, sigma)
    if smoothed.min() == smoothed.max():
        return np.zeros(image.shape, np.int32)
    foreground = smoothed > threshold_otsu(smoothed)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = np.zeros(image.shape, bool)
    peaks[tuple(peak_local_max(distance, min_distance=min_distance, labels=ndimage.label(foreground)[0]).T)] = True
    return watershed(-distance, ndimage.label(peaks)[0], mask=foreground)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder of TIFF images")
    parser.add_argument("out", type=Path, help="folder for the label TIFFs (created)")
    parser.add_argument("--min-distance", type=int, default=3, help="least distance between two seeds (pixels)")
    parser.add_argument("--sigma", type=float, default=1.0, help="Gaussian smoothing before thresholding (pixels)")
    args = parser.parse_args(argv)
    paths = list_images(args.images)
    if not paths:
        parser.error(f"{args.images}: no TIFF images")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        write_labels(args.out / path.name, segment(read_image(path), args.min_distance, args.sigma))
    return 0


if __name__ == "__main__":
    sys.exit(main())
