"""`embedseg evaluate GT_DIR PRED_DIR --out scores.csv`: per-image AP_dsb at τ = 0.50 … 0.90.

Ground truth and predictions are label TIFFs with the same file names. The scores file has one
row per image and threshold, columns ``image,tau,tp,fp,fn,ap``; the mean of `ap` over images at a
τ is the number the paper reports.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .io import DataError, atomic_write, list_images, read_labels
from .metrics import THRESHOLDS, MatchCounts, match_labels, match_one_hot
from .outputs import check_output_file

COLUMNS = ["image", "tau", "tp", "fp", "fn", "ap"]


def paired_files(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(GT, prediction) paths matched by file name; DataError listing missing or extra files."""
    gt = {p.name: p for p in list_images(gt_dir)}
    pred = {p.name: p for p in list_images(pred_dir)}
    missing, extra = sorted(set(gt) - set(pred)), sorted(set(pred) - set(gt))
    if missing or extra:
        raise DataError(
            f"{pred_dir}: predictions do not match the ground truth in {gt_dir}: "
            f"missing {missing or 'none'}, extra {extra or 'none'}; predict every GT image, nothing else"
        )
    if not gt:
        raise DataError(f"{gt_dir}: no label TIFFs to evaluate")
    return [(gt[name], pred[name]) for name in sorted(gt)]


def score_pair(gt_path: Path, pred_path: Path, one_hot: str = "auto",
               thresholds: np.ndarray = THRESHOLDS) -> MatchCounts:
    """Counts for one image. one_hot: auto (a (K, H, W) GT is a stack of overlapping objects),
    yes (GT must be such a stack) or no (GT must be a label image (H, W))."""
    gt, pred = read_labels(gt_path), read_labels(pred_path)
    stacked = gt.ndim == 3
    if (one_hot == "yes" and not stacked) or (one_hot == "no" and stacked) or gt.ndim not in (2, 3):
        raise DataError(f"{gt_path}: GT shape {gt.shape} does not fit --one-hot {one_hot}; "
                        "one-hot GT is (K, H, W), label images are (H, W)")
    if pred.ndim != 2 or pred.shape != gt.shape[-2:]:
        raise DataError(f"{pred_path}: prediction shape {pred.shape} does not match GT {gt_path} "
                        f"{gt.shape}; predictions must be (H, W) label images of the GT's size")
    return match_one_hot(gt, pred, thresholds) if stacked else match_labels(gt, pred, thresholds)


def score_folders(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, one_hot: str = "auto",
                  thresholds: np.ndarray = THRESHOLDS) -> pd.DataFrame:
    """Scores table with COLUMNS, one row per image and threshold."""
    tables = []
    for gt_path, pred_path in tqdm(paired_files(gt_dir, pred_dir), desc="evaluate", unit="image"):
        counts = score_pair(gt_path, pred_path, one_hot, thresholds)
        tables.append(pd.DataFrame({
            "image": gt_path.name, "tau": counts.thresholds, "tp": counts.tp,
            "fp": counts.fp, "fn": counts.fn, "ap": counts.ap,
        }))
    return pd.concat(tables, ignore_index=True)[COLUMNS]


def write_scores(path: str | os.PathLike, scores: pd.DataFrame) -> None:
    with atomic_write(path) as tmp:
        scores.to_csv(tmp, index=False)


def is_scores_file(path: Path) -> bool:
    """True for a CSV that `embedseg evaluate` wrote (its header starts with image,tau)."""
    with open(path, "rb") as handle:
        return handle.readline().startswith(b"image,tau,")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt_dir", metavar="GT_DIR", help="ground-truth label TIFFs")
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="predicted label TIFFs (same file names)")
    parser.add_argument("--out", required=True, metavar="CSV", help="scores file (image,tau,tp,fp,fn,ap)")
    parser.add_argument("--one-hot", choices=("auto", "yes", "no"), default="auto",
                        help="GT as (K, H, W) stacks of overlapping objects (BBBC010); auto: by the GT's shape")
    parser.add_argument("--force", action="store_true",
                        help="replace CSV even if it is a file not written by `embedseg evaluate` "
                             "(never an input)")


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, {"GT_DIR": args.gt_dir, "PRED_DIR": args.pred_dir}, is_scores_file,
                      "embedseg evaluate", args.force)
    scores = score_folders(args.gt_dir, args.pred_dir, args.one_hot)
    write_scores(args.out, scores)
    means = scores.groupby("tau")["ap"].mean()
    n_images = scores["image"].nunique()
    print(f"mean AP_dsb over {n_images} images:")
    for tau, ap in means.items():
        print(f"  tau {tau:.2f}: {ap:.4f}")
    return 0
