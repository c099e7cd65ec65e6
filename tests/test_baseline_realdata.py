"""Real data (DSB 2018 greyscale nuclei): EmbedSeg and the 3-class U-Net trained with the same budget.

Marked `slow`. Both train for $EMBEDSEG_SLOW_EPOCHS epochs (default 95, about 3 + 1 minutes on an
idle 2-core machine) of the same number of patches. A fixed budget in epochs, not in seconds, gives
the same AP on a busy and on an idle machine (seeded CPU training), so the floor below can be tight.
Both AP@0.5 values are printed (run with `-s`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

TRAIN_SIZE = 32  # patches (crops) per epoch, both methods
PATCH = 128
N_TEST = 6
AP50_FLOOR = 0.25
# Each training took about 4 min here; machines without AVX-512 are up to 3x slower.
TRAIN_TIMEOUT_S = 1800


def first_test_images(data: Path, out: Path, count: int) -> Path:
    """A copy of the first `count` test images and masks (prediction on CPU is the slow part)."""
    for kind in ("images", "masks"):
        (out / kind).mkdir(parents=True)
        for path in sorted((data / "test" / kind).iterdir())[:count]:
            shutil.copy(path, out / kind / path.name)
    return out


def mean_ap50(scores_csv: Path) -> float:
    scores = pd.read_csv(scores_csv)
    return float(scores.loc[scores["tau"].round(2) == 0.5, "ap"].mean())


@pytest.mark.slow
def test_embedseg_and_3class_unet_with_the_same_budget_on_dsb(shared_data, embedseg_cli, main_python, tmp_path):
    epochs = int(os.environ.get("EMBEDSEG_SLOW_EPOCHS", 95))
    data, crops = tmp_path / "data", tmp_path / "crops"
    embedseg_cli(
        main_python, "prepare", "dsb-2018", "--source", shared_data / "dsb2018-stage1", "--out", data, "--limit", "24"
    )
    test = first_test_images(data, tmp_path / "test", N_TEST)
    embedseg_cli(main_python, "crops", data, "--out", crops, "--center", "medoid", "--crop-size", str(PATCH))

    start = time.perf_counter()
    embedseg_cli(
        main_python,
        "train",
        crops,
        "--out",
        tmp_path / "embedseg",
        "--batch-size",
        "2",
        "--virtual-batch",
        "1",
        "--train-size",
        str(TRAIN_SIZE),
        "--val-size",
        "8",
        "--epochs",
        str(epochs),
        timeout=TRAIN_TIMEOUT_S,
    )
    embedseg_seconds = time.perf_counter() - start
    start = time.perf_counter()
    embedseg_cli(
        main_python,
        "baseline",
        "3class-unet",
        "train",
        data,
        "--out",
        tmp_path / "unet",
        "--epochs",
        str(epochs),
        "--train-size",
        str(TRAIN_SIZE),
        "--batch-size",
        "2",
        "--patch-size",
        str(PATCH),
        "--depth",
        "3",
        "--filters",
        "16",
        timeout=TRAIN_TIMEOUT_S,
    )
    unet_seconds = time.perf_counter() - start

    embedseg_cli(
        main_python,
        "predict",
        tmp_path / "embedseg" / "best.pt",
        "--images",
        test / "images",
        "--out",
        tmp_path / "pred-embedseg",
        "--no-tta",
    )
    embedseg_cli(
        main_python,
        "baseline",
        "3class-unet",
        "predict",
        tmp_path / "unet",
        "--images",
        test / "images",
        "--out",
        tmp_path / "pred-unet",
    )
    results = {}
    for method in ("embedseg", "unet"):
        embedseg_cli(
            main_python, "evaluate", test / "masks", tmp_path / f"pred-{method}", "--out", tmp_path / f"{method}.csv"
        )
        results[method] = mean_ap50(tmp_path / f"{method}.csv")
    print(
        f"\nDSB greyscale, {epochs} epoch(s) x {TRAIN_SIZE} patches of {PATCH}^2, {N_TEST} test images: "
        f"EmbedSeg AP@0.5 {results['embedseg']:.3f} (train {embedseg_seconds:.0f} s), "
        f"3-class U-Net AP@0.5 {results['unet']:.3f} (train {unet_seconds:.0f} s)"
    )
    # Measured 2026-11-30 (95 epochs, split seed 1234, 2-core machine): EmbedSeg 0.352, U-Net 0.509.
    # With the old split seed 1000 the same budget gave 0.768 / 0.788: this early in training AP
    # depends strongly on which images are trained and tested on. The floor fails for predictions
    # that miss the nuclei (8 epochs of 16 crops left EmbedSeg's seeds below 0.9: AP 0).
    for method, value in results.items():
        assert value >= AP50_FLOOR, f"{method}: AP@0.5 {value:.3f} < {AP50_FLOOR} after {epochs} epochs"
