"""Training data pipeline: steps/s with 0, 1 and 2 DataLoader workers, and what holding the
crops in memory saves per draw.

    .venv/bin/python benchmarks/bench_loader.py [--crops 200] [--size 256] [--batches 30] [--rounds 3]

Writes `--crops` synthetic crops (uint8 images of discs, uint16 masks, centre images, as
`embedseg crops` stores them) to a scratch folder, then for each worker count, alternating
(0, 1, 2, 0, 1, 2, …) for `--rounds` rounds: batches/s of the loader alone (batch 2, as the
paper's training) and training steps/s (ERF-Net forward, loss, backward, Adam on the CPU).
Worker start-up is excluded: the loaders are persistent, as in `embedseg train`, and one epoch
runs before timing. Finally the per-draw cost of reading a crop's three TIFFs (what every draw
paid before the crops were held) against an item from memory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine

from embedseg.core.losses import SpatialEmbLoss
from embedseg.crop_dataset import CropDataset
from embedseg.data.synthetic import disc_centers, disc_image, disc_labels, random_discs
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import write_labels, write_tiff
from embedseg.models import BranchedERFNet
from embedseg.train import make_loader


def write_crops(root: Path, n_crops: int, size: int) -> None:
    """`n_crops` crops of 20 discs (radius 8–20 px) as `embedseg crops` writes them."""
    rng = np.random.default_rng(0)
    for i in range(n_crops):
        discs = random_discs(rng, size, 20, radius=(8, 20))
        labels = disc_labels((size, size), discs)
        image = disc_image(labels, rng, background=60, contrast=120, noise=10)
        write_tiff(root / "train" / "images" / f"crop_{i:04d}.tif", image)
        write_labels(root / "train" / "masks" / f"crop_{i:04d}.tif", labels)
        write_tiff(root / "train" / "centers" / f"crop_{i:04d}.tif", disc_centers((size, size), discs))
    DatasetSettings(name="bench", crop_size=size, center="centroid").save(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="batches per timed pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-steps", action="store_true", help="time the loader alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_crops(root, args.crops, args.size)
        start = time.perf_counter()
        dataset = CropDataset(root / "train", DatasetSettings.load(root))
        load_s = time.perf_counter() - start
        model = BranchedERFNet().train()
        criterion = SpatialEmbLoss(variance_loss="fixed")
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        loaders = {
            w: make_loader(
                dataset,
                args.batches * 2,
                2,
                torch.Generator().manual_seed(w),
                w,
                drop_last=True,
                device=torch.device("cpu"),
            )
            for w in args.workers
        }
        for loader in loaders.values():  # start the persistent workers
            for _ in loader:
                pass

        def loader_pass(loader) -> float:
            start = time.perf_counter()
            for _ in loader:
                pass
            return args.batches / (time.perf_counter() - start)

        def step_pass(loader) -> float:
            start = time.perf_counter()
            for batch in loader:
                optimizer.zero_grad()
                criterion(model(batch["image"]), batch["instances"], batch["center"])[0].backward()
                optimizer.step()
            return args.batches / (time.perf_counter() - start)

        rates: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for workers, loader in loaders.items():
                rates.setdefault(("loader", workers), []).append(loader_pass(loader))
                if not args.no_steps:
                    rates.setdefault(("steps", workers), []).append(step_pass(loader))

        index = np.random.default_rng(1).integers(len(dataset), size=200)
        start = time.perf_counter()
        for i in index:
            dataset.read_crop(int(i))
        read_ms = (time.perf_counter() - start) / len(index) * 1e3
        start = time.perf_counter()
        for n, i in enumerate(index):
            dataset[int(i), n % 8]
        item_ms = (time.perf_counter() - start) / len(index) * 1e3

    print(describe_machine())
    print(
        f"{args.crops} crops of {args.size}^2 held in memory in {load_s:.1f} s; {args.threads} threads; "
        f"medians of {args.rounds} alternating rounds of {args.batches} batches of 2"
    )
    for workers in args.workers:
        line = f"  workers {workers}: loader {statistics.median(rates['loader', workers]):7.1f} batches/s"
        if not args.no_steps:
            line += f", training {statistics.median(rates['steps', workers]):5.2f} steps/s"
        print(line)
    print(f"  per draw: reading the crop's TIFFs {read_ms:.2f} ms (before: every draw) + item {item_ms:.2f} ms")


if __name__ == "__main__":
    main()
