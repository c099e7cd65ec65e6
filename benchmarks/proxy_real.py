"""Does the demo's synthetic proxy give the verdict the real data give? (a benchmark, not a test)

    nice .venv/bin/python benchmarks/proxy_real.py [--pairs nuclei cells] [--seeds 1] [--work DIR]

For each pair — synthetic-nuclei ↔ greyscale DSB, synthetic-cells ↔ Usiigaci (both from
../shared/data or $EMBEDSEG_SHARED_DATA) — EmbedSeg and the 3-class U-Net are trained at the
demo's budget (config/demo.yaml: 20 epochs × 64 patches of the crop size, the rate annealed over
20 epochs, the same crop size for both sets of a pair) through the same `embedseg` commands the
workflow runs, predicted without TTA (the Usiigaci images are 1 Mpx) and scored with AP_dsb. It
prints AP@0.5 and AP@0.75, mean over test images with the 95 % t-interval of the per-image
values (report/stats.py), and whether the two methods' order on the synthetic set matches the
order on the real set at each τ (a tie: intervals overlap).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import describe_machine

from embedseg.report.stats import t_quantile

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
TAUS = (0.5, 0.75)
# pair: (synthetic set, its prepare options; real registry name, its source folder and options)
PAIRS = {
    "nuclei": (
        ("synthetic-nuclei", ["--n-images", "40", "--image-size", "256", "--test-fraction", "0.5"]),
        ("dsb-2018", ["--source", "dsb2018-stage1", "--limit", "40", "--test-fraction", "0.5"]),
        "64",
    ),
    "cells": (
        ("synthetic-cells", ["--n-images", "40", "--image-size", "384", "--test-fraction", "0.5"]),
        ("usiigaci-2017", ["--source", "usiigaci-2017", "--limit", "20", "--test-fraction", "0.5"]),
        "96",
    ),
}
# config/demo.yaml's budget, the same for both methods
EMBEDSEG_TRAIN = (
    "--epochs 20 --lr-horizon 20 --batch-size 2 --virtual-batch 1 --train-size 64 --val-size 16 --val-batch-size 8"
)
UNET_TRAIN = "--epochs 20 --lr-horizon 20 --train-size 64 --batch-size 2 --depth 3 --filters 16"


def embedseg(*args: str | Path) -> float:
    """Run one `embedseg` step on the CPU, one thread; returns its CPU seconds (children's)."""
    before = os.times()
    env = dict(os.environ, EMBEDSEG_DEVICE="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "embedseg", *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"embedseg {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    after = os.times()
    return after.children_user + after.children_system - before.children_user - before.children_system


def per_image_ap(data: Path, predictions: Path, out: Path) -> pd.DataFrame:
    embedseg("evaluate", data / "test" / "masks", predictions, "--out", out)
    scores = pd.read_csv(out)
    return scores[scores.tau.round(2).isin(TAUS)].pivot(index="image", columns="tau", values="ap")


def run_set(name: str, options: list[str], crop_size: str, work: Path, seeds: list[int]) -> dict[str, pd.DataFrame]:
    """Per-image AP (rows: images × seeds, columns: τ) of EmbedSeg and the U-Net on one set."""
    data, cpu = work / "data", 0.0
    if "--source" in options:
        options = [str(SHARED_DATA / o) if p == "--source" else o for p, o in zip(["", *options], options)]
    cpu += embedseg("prepare", name, "--out", data, "--crop-size", crop_size, *options)
    cpu += embedseg("crops", data, "--out", work / "crops")
    results: dict[str, list[pd.DataFrame]] = {"EmbedSeg": [], "3-class U-Net": []}
    for seed in seeds:
        model, unet = work / f"embedseg-{seed}", work / f"unet-{seed}"
        cpu += embedseg("train", work / "crops", "--out", model, "--seed", seed, *EMBEDSEG_TRAIN.split())
        cpu += embedseg("predict", model / "best.pt", "--images", data / "test" / "images", "--out", work / f"p-{seed}",
                        "--no-tta", "--clustering", "current")  # fmt: skip
        results["EmbedSeg"].append(per_image_ap(data, work / f"p-{seed}", work / f"s-{seed}.csv"))
        cpu += embedseg("baseline", "3class-unet", "train", data, "--out", unet, "--seed", seed, *UNET_TRAIN.split())
        cpu += embedseg("baseline", "3class-unet", "predict", unet, "--images", data / "test" / "images",
                        "--out", work / f"u-{seed}")  # fmt: skip
        results["3-class U-Net"].append(per_image_ap(data, work / f"u-{seed}", work / f"us-{seed}.csv"))
    print(f"  {name}: {cpu / 60:.1f} CPU-min", flush=True)
    return {method: pd.concat(frames) for method, frames in results.items()}


def interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    half = t_quantile(len(values)) * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def order(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """'>' or '<' when the intervals are apart, '=' (a tie) when they overlap."""
    if a[1] > b[2]:
        return ">"
    return "<" if a[2] < b[1] else "="


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=sorted(PAIRS, reverse=True))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--work", type=Path, help="keep the data, models and scores here (default: a temp folder)")
    args = parser.parse_args(argv)
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"real data not found at {SHARED_DATA} (set EMBEDSEG_SHARED_DATA)")
    print(describe_machine(), flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        rows, verdicts = [], []
        for pair in args.pairs:
            sets = PAIRS[pair][:2]
            found = {
                name: run_set(name, options, PAIRS[pair][2], work / pair / name, args.seeds) for name, options in sets
            }
            for tau in TAUS:
                orders = []
                for name, _ in sets:
                    es, unet = (interval(found[name][m][tau].to_numpy()) for m in ("EmbedSeg", "3-class U-Net"))
                    orders.append(order(es, unet))
                    rows.append(f"| {name} | {tau} | {es[0]:.3f} [{es[1]:.3f}, {es[2]:.3f}] | "
                                f"{unet[0]:.3f} [{unet[1]:.3f}, {unet[2]:.3f}] | EmbedSeg {orders[-1]} U-Net |")  # fmt: skip
                verdicts.append(f"{pair} τ={tau}: synthetic {orders[0]}, real {orders[1]}: "
                                + ("match" if orders[0] == orders[1] else "MISMATCH"))  # fmt: skip
    n_images = {len(frame) for frames in found.values() for frame in frames.values()}
    print(f"\nAP_dsb, mean over test images × seeds {args.seeds} [95 % t-interval]; rows per set: {sorted(n_images)}")
    print("| set | τ | EmbedSeg | 3-class U-Net | order |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n".join(verdicts))
    print(f"wall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
