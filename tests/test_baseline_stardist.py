"""StarDist baseline, run by subprocess in `.venv-stardist` (TensorFlow, no torch): `make venv-stardist`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from embedseg.io import read_labels

# Mean AP@0.5 of the run below on its 2 test images, measured 2026-11-30 on CPU: 0.62
# (10 epochs x 10 steps of 2 patches: 0.37, 2 x 3 steps: 0). The floor leaves margin for
# TensorFlow's thread-order arithmetic and fails for empty or random predictions.
AP50_FLOOR = 0.3


@pytest.fixture(scope="module")
def stardist_python(baseline_venv):
    return baseline_venv(".venv-stardist", "stardist, tensorflow", "venv-stardist")


def test_train_optimise_thresholds_predict(stardist_python, nuclei_split, embedseg_cli, ap50, tmp_path):
    data = nuclei_split(tmp_path / "data", counts={"train": 3, "val": 1, "test": 2})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / "stardist" / "seed0"
    embedseg_cli(
        stardist_python,
        "baseline",
        "stardist",
        "train",
        data,
        "--out",
        model_dir,
        "--device",
        "cpu",
        "--epochs",
        "30",
        "--steps-per-epoch",
        "20",
        "--batch-size",
        "4",
        "--patch-size",
        "64",
    )
    thresholds = json.loads((model_dir / "stardist" / "thresholds.json").read_text())
    assert 0 < thresholds["prob"] < 1 and 0 < thresholds["nms"] < 1
    with open(model_dir / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in log] == list(range(30)) and all(float(row["val_loss"]) > 0 for row in log)
    assert json.loads((model_dir / "memory.json").read_text())["kind"] == "cpu_peak_rss"
    embedseg_cli(
        stardist_python,
        "baseline",
        "stardist",
        "predict",
        model_dir,
        "--images",
        data / "test" / "images",
        "--out",
        pred_dir,
        "--device",
        "cpu",
    )
    for name in ("img0.tif", "img1.tif"):
        predicted = read_labels(pred_dir / name)
        assert predicted.shape == (64, 64) and predicted.dtype == np.uint16
    ap = ap50(data / "test" / "masks", pred_dir, tmp_path / "scores.csv")
    assert ap >= AP50_FLOOR, f"AP@0.5 {ap:.3f} below the measured floor {AP50_FLOOR}"
