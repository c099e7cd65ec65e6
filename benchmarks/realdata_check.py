"""The real-data check: EmbedSeg and the 3-class U-Net trained with one budget on real DSB 2018
nuclei, scored per test image, so that the result has a standard error a test can bound.

    .venv/bin/python benchmarks/realdata_check.py [--epochs 300] [--n-train 150] [--n-test 62]

Data: the shared DSB 2018 stage1 images, prepared as `embedseg prepare dsb-2018 --seed 1234`
(greyscale fluorescence only, the paper's split seed), then only the 256 × 256 images — one
modality and one scale, so that AP varies with the training, not with the mix of image kinds:
training images from the train split, validation images from the val split, test images from
the test split (all 29 of its 256² images) topped up with val-split images not validated on.
Both methods train for the same epochs of the same number of 128² patches (batch 2) in fp32 on
the CPU, predict without TTA, and are scored with `embedseg evaluate`. The image is the unit:
the mean AP@0.5 over test images, its standard error (sd / √n), and the per-image paired
difference EmbedSeg − U-Net with its standard error.

tests/test_baseline_realdata.py runs the bounded budget (the defaults here) and asserts a band
of ± 3 standard errors around the values measured with it; this script's larger budgets are the
long version (not run in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
SPLIT_SEED = 1234
SHAPE = (256, 256)
METHODS = ("embedseg", "unet")


@dataclass(frozen=True)
class Budget:
    """What both methods get: images, epochs and patches per epoch."""

    epochs: int = 32
    train_size: int = 64  # patches per epoch
    patch: int = 128
    n_train: int = 48
    n_val: int = 8
    n_test: int = 40


def embedseg(*args: object, timeout: float = 3600) -> None:
    """`python -m embedseg ARGS` in this interpreter; its output is shown only on failure."""
    command = [sys.executable, "-m", "embedseg", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")


def square_images(folder: Path) -> list[str]:
    """Names of the SHAPE images of one split folder, sorted."""
    import tifffile

    return sorted(p.name for p in (folder / "images").iterdir() if tifffile.TiffFile(p).pages[0].shape == SHAPE)


def subset(prepared: Path, out: Path, budget: Budget) -> dict[str, int]:
    """Copy the SHAPE images of `prepared` into `out` as train / val / test (see the module
    docstring); dataset.json comes along unchanged. Returns the image count per split."""
    train, val, test = (square_images(prepared / split) for split in ("train", "val", "test"))
    if len(train) < budget.n_train or len(val) < budget.n_val or len(val) + len(test) < budget.n_val + budget.n_test:
        raise SystemExit(f"{prepared}: too few {SHAPE} images for {budget}")
    picks = {
        "train": [("train", n) for n in train[: budget.n_train]],
        "val": [("val", n) for n in val[: budget.n_val]],
        "test": ([("test", n) for n in test] + [("val", n) for n in val[budget.n_val :]])[: budget.n_test],
    }
    out.mkdir(parents=True)
    shutil.copy(prepared / "dataset.json", out / "dataset.json")
    for split, names in picks.items():
        for kind in ("images", "masks"):
            (out / split / kind).mkdir(parents=True)
            for source, name in names:
                # the file name says where a test image came from (val-split ones are renamed)
                target = name if source == split else f"{source}-{name}"
                shutil.copy(prepared / source / kind / name, out / split / kind / target)
    return {split: len(names) for split, names in picks.items()}


def per_image_ap50(scores_csv: Path) -> pd.Series:
    scores = pd.read_csv(scores_csv)
    return scores.loc[scores["tau"].round(2) == 0.5].set_index("image")["ap"].sort_index()


def train_and_score(data: Path, work: Path, budget: Budget) -> tuple[dict[str, pd.Series], dict[str, float]]:
    """Train both methods on `data`, predict and score its test images: per-image AP@0.5 and
    training seconds per method."""
    common = ["--epochs", budget.epochs, "--train-size", budget.train_size, "--batch-size", 2, "--device", "cpu"]
    seconds = {}
    embedseg("crops", data, "--out", work / "crops", "--center", "medoid", "--crop-size", budget.patch)
    start = time.perf_counter()
    embedseg(
        "train", work / "crops", "--out", work / "embedseg", *common,
        "--virtual-batch", 1, "--val-size", 8, "--precision", "fp32", "--seed", 1,
    )  # fmt: skip
    seconds["embedseg"] = time.perf_counter() - start
    start = time.perf_counter()
    embedseg(
        "baseline", "3class-unet", "train", data, "--out", work / "unet", *common,
        "--patch-size", budget.patch, "--depth", 3, "--filters", 16, "--seed", 1,
    )  # fmt: skip
    seconds["unet"] = time.perf_counter() - start
    test = data / "test"
    embedseg(
        "predict", work / "embedseg" / "best.pt", "--images", test / "images", "--out", work / "pred-embedseg",
        "--no-tta", "--precision", "fp32", "--device", "cpu",
    )  # fmt: skip
    embedseg(
        "baseline", "3class-unet", "predict", work / "unet", "--images", test / "images", "--out", work / "pred-unet"
    )
    ap = {}
    for method in METHODS:
        embedseg("evaluate", test / "masks", work / f"pred-{method}", "--out", work / f"{method}.csv")
        ap[method] = per_image_ap50(work / f"{method}.csv")
    return ap, seconds


@dataclass(frozen=True)
class Estimate:
    """A mean over test images and its standard error (sd / √n, n images)."""

    mean: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.se:.3f} (SE, {self.n} images)"


def estimate(values: pd.Series) -> Estimate:
    values = values.to_numpy(dtype=float)
    return Estimate(float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))), len(values))


def summarise(ap: dict[str, pd.Series]) -> dict[str, Estimate]:
    """Each method's mean AP@0.5 and the paired per-image difference EmbedSeg − U-Net."""
    if not ap["embedseg"].index.equals(ap["unet"].index):
        raise ValueError("the two methods were scored on different images")
    return {**{m: estimate(ap[m]) for m in METHODS}, "difference": estimate(ap["embedseg"] - ap["unet"])}


def run_check(
    shared_data: Path, work: Path, budget: Budget
) -> tuple[dict[str, int], dict[str, Estimate], dict[str, float]]:
    """Prepare, subset, train, predict and score in `work`: image counts, estimates, seconds."""
    source = shared_data / "dsb2018-stage1"
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: the shared DSB 2018 data is missing")
    embedseg("prepare", "dsb-2018", "--source", source, "--out", work / "prepared", "--seed", SPLIT_SEED)
    counts = subset(work / "prepared", work / "data", budget)
    ap, seconds = train_and_score(work / "data", work, budget)
    return counts, summarise(ap), seconds


def report(counts: dict[str, int], estimates: dict[str, Estimate], seconds: dict[str, float], budget: Budget) -> str:
    lines = [
        f"DSB 2018 greyscale {SHAPE[0]}x{SHAPE[1]}, split seed {SPLIT_SEED}: "
        f"{counts['train']} train / {counts['val']} val / {counts['test']} test images; "
        f"{budget.epochs} epochs x {budget.train_size} patches of {budget.patch}^2, batch 2, fp32, no TTA",
        f"  EmbedSeg AP@0.5 {estimates['embedseg']}  (train {seconds['embedseg']:.0f} s)",
        f"  3-class U-Net AP@0.5 {estimates['unet']}  (train {seconds['unet']:.0f} s)",
        f"  paired per-image EmbedSeg - U-Net {estimates['difference']}",
    ]
    return "\n".join(lines)


def main() -> None:
    defaults = Budget()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("epochs", "train_size", "n_train", "n_val", "n_test"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, deleted)")
    args = parser.parse_args()
    budget = Budget(args.epochs, args.train_size, defaults.patch, args.n_train, args.n_val, args.n_test)
    import torch
    from machine import describe_machine

    print(describe_machine(), f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        counts, estimates, seconds = run_check(SHARED_DATA, work, budget)
    print(report(counts, estimates, seconds, budget))
    print(json.dumps({k: vars(v) for k, v in estimates.items()}))


if __name__ == "__main__":
    main()
