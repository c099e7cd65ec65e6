"""Speed of the inference core against the official EmbedSeg 0.2.5 figures on this CPU kind.

Prints seconds (median of --repeats runs) for:
  1. 8-fold TTA inference of an untrained Branched ERF-Net on a 1024² image,
  2. greedy clustering of a synthetic 1024² prediction with 100 objects,
  3. the exact medoid of a 20,000 px object (disk, and a ring where many pixels nearly tie),
     with the peak memory the computation allocates; and of small blobs (64-4,000 px) through
     each path of ``centers.medoid_index`` (exact sums, tangent-plane screen, FFT screen), the
     timings behind its size limits,
  4. crop generation with medoid centres on a real Usiigaci label image (synthetic if the
     shared data is absent).
Official EmbedSeg 0.2.5 reference figures (measured on 2 cores, near idle): TTA 1024² 18.8 s,
clustering 0.63 s, medoid 5.7 s with a 3.05 GB matrix — compare only with runs on an idle
machine of that kind. Run: ``python benchmarks/bench_core.py [--threads 1] [--skip-tta]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine

from embedseg import crops, inference
from embedseg.core import centers, cluster
from embedseg.core.embedding import GRID_SPACING
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import read_image

OFFICIAL = {"tta": 18.8, "cluster": 0.63, "medoid": 5.7}
USIIGACI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "usiigaci-2017" / "train" / "set1"


def timed(function, repeats: int) -> float:
    """Median wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_prediction(size: int = 1024, n_side: int = 10, radius: int = 30) -> torch.Tensor:
    """Raw outputs (5, size, size) of n_side² disks whose offsets point to their centres."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    spacing = size / n_side
    cy = (np.floor(yy / spacing) + 0.5) * spacing
    cx = (np.floor(xx / spacing) + 0.5) * spacing
    inside = np.hypot(yy - cy, xx - cx) <= radius
    raw = np.zeros((5, size, size))
    raw[0] = np.arctanh(np.where(inside, (cx - xx) * GRID_SPACING, 0))
    raw[1] = np.arctanh(np.where(inside, (cy - yy) * GRID_SPACING, 0))
    raw[2:4] = math.log(math.log(2) / ((radius / 2) * GRID_SPACING) ** 2) / 10
    rng = np.random.default_rng(0)
    raw[4] = np.where(inside, 4.0, -4.0) + rng.normal(scale=0.5, size=(size, size))
    return torch.from_numpy(raw.astype(np.float32))


def bench_tta(repeats: int, batch_size: int, size: int) -> float:
    from embedseg.models import BranchedERFNet

    torch.manual_seed(0)
    model = BranchedERFNet(in_channels=1).eval()
    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    inference.predict_raw(model, image[:256, :256], tta=True, batch_size=batch_size)  # warm-up
    return timed(lambda: inference.predict_raw(model, image, tta=True, batch_size=batch_size), repeats)


def bench_cluster(repeats: int) -> tuple[float, int]:
    raw = synthetic_prediction()
    params = cluster.preset("paper")
    labels = cluster.cluster(raw, params)
    return timed(lambda: cluster.cluster(raw, params), repeats), int(labels.max())


def peak_allocation(function) -> int:
    """Peak bytes allocated (NumPy allocations are traced) while `function` runs."""
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench_medoid(repeats: int) -> list[tuple[str, int, float, int]]:
    yy, xx = np.mgrid[:400, :400]
    r = np.hypot(yy - 200, xx - 200)
    shapes = {"disk": r < 79.8, "ring": (r < 120) & (r > 90.4)}
    rows = []
    for name, mask in shapes.items():
        coords = np.argwhere(mask)
        centers.medoid(coords)  # imports scipy.signal once

        def run(coords: np.ndarray = coords) -> np.ndarray:  # bound now, not at the loop's end
            return centers.medoid(coords)

        rows.append((name, len(coords), timed(run, repeats), peak_allocation(run)))
    return rows


# Size limits of `centers` that send every object through one path of `medoid_index`.
MEDOID_PATHS = {
    "exact": {"EXACT_ALL_MAX_PIXELS": 10**9},
    "tangent": {"EXACT_ALL_MAX_PIXELS": 0, "TANGENT_MAX_PIXELS": 10**9, "TANGENT_MAX_CANDIDATES": 10**9},
    "fft": {"EXACT_ALL_MAX_PIXELS": 0, "TANGENT_MAX_PIXELS": 0},
}


def bench_small_medoids(repeats: int, areas: tuple[int, ...] = (64, 128, 500, 2000, 4000)) -> list[str]:
    """Per area: median over 5 blobs (compare_official's shape) of the median time of each path."""
    from compare_official import blob_mask

    rng = np.random.default_rng(0)
    defaults = {name: getattr(centers, name) for limits in MEDOID_PATHS.values() for name in limits}
    lines = []
    for area in areas:
        blobs = [np.argwhere(blob_mask(area, rng)) for _ in range(5)]
        row = []
        for path, limits in MEDOID_PATHS.items():
            if path == "exact" and area > 1000:
                continue  # N² distances: tens of ms
            for name, value in limits.items():
                setattr(centers, name, value)
            seconds = statistics.median(timed(lambda c=c: centers.medoid(c), max(repeats, 20)) for c in blobs)
            for name, value in defaults.items():
                setattr(centers, name, value)
            row.append(f"{path} {seconds * 1e6:.0f} µs")
        lines.append(f"medoid of a {area} px blob: " + ", ".join(row))
    return lines


def bench_crops(repeats: int, crop_size: int) -> tuple[float, str, int]:
    if (USIIGACI / "instances_ids.png").exists():
        image, labels = read_image(USIIGACI / "raw.tif"), read_image(USIIGACI / "instances_ids.png")
        source = "Usiigaci set1"
    else:
        rng = np.random.default_rng(0)
        labels = np.zeros((1022, 1024), dtype=np.uint16)
        for i in range(80):
            y, x = rng.integers(0, 980, size=2)
            labels[y : y + rng.integers(20, 60), x : x + rng.integers(20, 60)] = i + 1
        image = rng.integers(0, 65535, labels.shape, dtype=np.uint16)
        source = "synthetic 1022×1024"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        DatasetSettings(name="bench", normalization_factor=65535.0, crop_size=crop_size).save(data)
        for subset in ("train", "val"):
            for folder in ("images", "masks"):
                (data / subset / folder).mkdir(parents=True)
        import tifffile

        tifffile.imwrite(data / "train" / "images" / "set1.tif", image)
        tifffile.imwrite(data / "train" / "masks" / "set1.tif", labels.astype(np.uint16))
        seconds = timed(lambda: crops.make_crops(data, Path(tmp) / "crops", "medoid"), repeats)
    return seconds, source, len(np.unique(labels)) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 8],
        help="TTA transforms per forward pass (1 = eight separate passes, as the official code)",
    )
    parser.add_argument("--tta-size", type=int, default=1024, help="edge length of the TTA test image")
    parser.add_argument("--crop-size", type=int, default=512, help="crop size (paper Usiigaci: 512)")
    parser.add_argument("--skip-tta", action="store_true", help="skip the (slow on CPU) TTA benchmark")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; 1 is steadier on a busy machine)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{describe_machine()}; {torch.get_num_threads()} threads")

    seconds, n_objects = bench_cluster(args.repeats)
    print(
        f"clustering 1024² with {n_objects} objects: {seconds:.3f} s "
        f"(official {OFFICIAL['cluster']} s, {OFFICIAL['cluster'] / seconds:.0f}× faster)"
    )
    for name, n_pixels, seconds, peak in bench_medoid(args.repeats):
        print(
            f"exact medoid, {name} of {n_pixels} px: {seconds:.3f} s, peak {peak / 2**20:.0f} MiB "
            f"(official {OFFICIAL['medoid']} s / 3.05 GB, {OFFICIAL['medoid'] / seconds:.0f}× faster)"
        )
    for line in bench_small_medoids(args.repeats):
        print(line)
    seconds, source, n_objects = bench_crops(1, args.crop_size)
    print(f"medoid crops ({args.crop_size}²) of {source} ({n_objects} objects): {seconds:.2f} s")
    if not args.skip_tta:
        for batch_size in args.batch_sizes:
            seconds = bench_tta(max(1, args.repeats // 2), batch_size, args.tta_size)
            print(
                f"8-fold TTA inference {args.tta_size}² (batch {batch_size}): {seconds:.2f} s "
                f"(official 1024²: {OFFICIAL['tta']} s)"
            )


if __name__ == "__main__":
    main()
