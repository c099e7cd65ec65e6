"""`embedseg describe-data`: what an instance data set looks like, in numbers (docs/data.md).

Per image and per set: object count, object area (median, quartiles), the fraction of objects
touching another, the contrast at object–object contacts relative to the object interiors (in
units of the interiors' noise sd), foreground/background contrast and SNR, and for one-hot
(K, H, W) sets the fraction of foreground pixels covered by more than one object.

These statistics decide whether a synthetic look-alike is a fair proxy of a real set: the demo's
generators (embedseg.data.synthetic) are held to the 10th–90th percentile of the real sets'
per-image values (:data:`REFERENCE_BANDS`, tests/test_data_describe.py).

Definitions (pixels of one image; an object's interior is its pixels at least
:data:`INTERIOR_DEPTH` px from its border, the background is at least that far from any object):

- ``touching``: share of objects with another object within :data:`CONTACT_RADIUS` px (label
  images drawn from ROIs often leave a 1-px gap between touching cells).
- ``contact_contrast``: (mean at contact pixels − mean of the interiors) / interior sd, where the
  interior sd is the pooled sd of interior pixels about their own object's mean (texture and
  noise together); a bright or dark seam between touching objects shows as |value| ≫ 0.
- ``fg_bg_contrast``: (mean interior − mean background) / (mean interior + mean background).
- ``snr``: |mean interior − mean background| / background sd.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..io import DataError

INTERIOR_DEPTH = 3  # px from the border: a blurred edge is neither object nor background
CONTACT_RADIUS = 2  # px: objects this close count as touching
PERCENTILES = (10, 50, 90)
STATISTICS = (
    "count",
    "area_q25",
    "area_median",
    "area_q75",
    "touching",
    "contact_contrast",
    "fg_bg_contrast",
    "snr",
    "overlap",
)
# Per synthetic set: the real set it stands for (a folder of ../shared/data), the image size at
# which it is compared (the real images' usual size: a count per image depends on the field) and
# the real set's per-image 10th and 90th percentiles (`embedseg describe-data` on ../shared/data,
# docs/data.md); the synthetic set's per-image median must lie inside each band. Worms: BBBC010
# is not in ../shared/data and its description gives no overlap fraction, only that worms touch
# and overlap, so the band asks for overlaps to be there (docs/data.md).
REFERENCE_BANDS: dict[str, dict] = {
    "synthetic-cells": {
        "real": "usiigaci-2017",
        "image_size": 1024,
        "bands": {
            "area_median": (1232.0, 3989.0),
            "area_q25": (849.9, 2835.0),
            "area_q75": (1667.0, 5241.0),
            "contact_contrast": (0.5692, 1.498),
            "count": (42.4, 91.2),
            "fg_bg_contrast": (-0.04154, -0.004681),
            "snr": (0.1748, 0.9409),
            "touching": (0.3125, 0.6497),
        },
    },
    "synthetic-nuclei": {
        "real": "dsb2018-stage1",
        "image_size": 256,
        "bands": {
            "area_median": (86.0, 1806.0),
            "area_q25": (56.02, 911.3),
            "area_q75": (111.0, 2195.0),
            "contact_contrast": (-3.036, 1.654),
            "count": (9.0, 110.5),
            "fg_bg_contrast": (0.6072, 0.8934),
            "snr": (12.48, 63.91),
            "touching": (0.0, 0.5),
        },
    },
    "synthetic-worms": {"real": None, "image_size": 128, "bands": {"overlap": (0.001, 1.0)}},
}


def flatten(labels: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(H, W) label image of `labels` and, for a (K, H, W) one-hot stack, the fraction of the
    foreground covered by two or more objects (None for a label image)."""
    if labels.ndim == 2:
        return labels, None
    stack = labels.astype(bool)
    depth = stack.sum(axis=0)
    ids = np.where(depth > 0, stack.argmax(axis=0) + 1, 0)  # overlaps go to the first object
    return ids.astype(np.int32), float((depth >= 2).sum() / max((depth >= 1).sum(), 1))


def describe_image(image: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The statistics of :data:`STATISTICS` for one (H, W) image (channels averaged) and its
    (H, W) label image or (K, H, W) one-hot stack; NaN where a statistic is undefined."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.mean(axis=0)
    flat, overlap = flatten(np.asarray(labels))
    flat = flat.astype(np.int64)
    n = int(flat.max(initial=0)) + 1
    areas = np.bincount(flat.ravel(), minlength=n)
    ids = np.flatnonzero(areas[1:]) + 1
    nan = float("nan")
    stats = dict.fromkeys(STATISTICS, nan)
    stats["count"] = float(len(ids))
    stats["overlap"] = nan if overlap is None else overlap
    if not len(ids):
        return stats
    stats["area_q25"], stats["area_median"], stats["area_q75"] = (
        float(v) for v in np.percentile(areas[ids], (25, 50, 75))
    )

    window = 2 * CONTACT_RADIUS + 1
    highest = ndimage.maximum_filter(flat, size=window)
    lowest = ndimage.minimum_filter(np.where(flat > 0, flat, n), size=window)
    contact = (flat > 0) & ((highest > flat) | (lowest < flat))
    stats["touching"] = float(len(np.unique(flat[contact])) / len(ids))

    # distance to the nearest pixel of another label (object border or background)
    border = ndimage.maximum_filter(flat, size=3) != ndimage.minimum_filter(flat, size=3)
    depth = ndimage.distance_transform_edt(~border)
    interior = (flat > 0) & (depth >= INTERIOR_DEPTH)
    background = (flat == 0) & (depth >= INTERIOR_DEPTH)
    if interior.sum() < 2:
        return stats
    means = np.bincount(flat[interior], weights=image[interior], minlength=n) / np.maximum(
        np.bincount(flat[interior], minlength=n), 1
    )
    interior_mean = float(image[interior].mean())
    interior_sd = float(np.sqrt(np.mean((image[interior] - means[flat[interior]]) ** 2)))
    if contact.any() and interior_sd > 0:
        stats["contact_contrast"] = (float(image[contact].mean()) - interior_mean) / interior_sd
    if background.sum() >= 2:
        bg_mean, bg_sd = float(image[background].mean()), float(image[background].std())
        total = interior_mean + bg_mean
        stats["fg_bg_contrast"] = (interior_mean - bg_mean) / total if total else nan
        stats["snr"] = abs(interior_mean - bg_mean) / bg_sd if bg_sd > 0 else nan
    return stats


def summarise(per_image: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per statistic: the 10th, 50th and 90th percentile over images (NaNs left out)."""
    summary = {}
    for name in STATISTICS:
        values = np.array([row[name] for row in per_image], dtype=float)
        values = values[np.isfinite(values)]
        summary[name] = {f"p{q}": float(np.percentile(values, q)) if len(values) else float("nan") for q in PERCENTILES}
    return summary


def describe_samples(samples: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    """``{"images": {name: stats}, "set": summarise(...)}`` of (name, image, labels) triples."""
    images = {name: describe_image(image, labels) for name, image, labels in samples}
    return {"images": images, "set": summarise(list(images.values()))}


def read_samples(directory: Path, max_images: int | None = None) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, labels) of every sample of the source or prepared folder `directory` (all
    splits), or of `max_images` of them evenly spread over the sorted names."""
    from .formats import read_source

    source = read_source(directory)
    samples = source.pool + source.test
    if not samples:
        raise DataError(f"{directory}: no images found")
    if max_images is not None and len(samples) > max_images:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, max_images).round().astype(int)]
    for sample in samples:
        yield sample.name, sample.read_image(), sample.read_labels()


def in_bands(summary: dict[str, dict[str, float]], bands: dict[str, tuple[float, float]]) -> dict[str, bool]:
    """Per statistic of `bands`: whether the set's median lies inside the (low, high) band."""
    return {name: low <= summary[name]["p50"] <= high for name, (low, high) in bands.items()}


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    rows = [f"{'statistic':<18}" + "".join(f"{f'p{q}':>12}" for q in PERCENTILES)]
    rows += [f"{name:<18}" + "".join(f"{summary[name][f'p{q}']:>12.4g}" for q in PERCENTILES) for name in STATISTICS]
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data_dir", type=Path, help="a source folder (any layout `embedseg prepare` reads) or a prepared data set"
    )
    parser.add_argument("--out", type=Path, help="write per-image and per-set statistics to this JSON file")
    parser.add_argument("--max-images", type=int, help="describe this many images, evenly spread over the names")


def run(args: argparse.Namespace) -> int:
    from ..io import write_json

    if args.max_images is not None and args.max_images < 1:
        raise DataError("--max-images must be at least 1")
    description = describe_samples(read_samples(args.data_dir, args.max_images))
    print(f"{args.data_dir}: {len(description['images'])} images, per-image percentiles")
    print(format_summary(description["set"]))
    if args.out:
        write_json(args.out, description)
    return 0
