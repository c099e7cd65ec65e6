"""StarDist baseline, run by subprocess in `.venv-stardist` (TensorFlow, no torch): `make venv-stardist`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from embedseg.io import read_labels
from test_baseline_data import baseline_python, make_nuclei_split, run_embedseg, score_predictions

@pytest.fixture(scope="module")
def stardist_python():
    return baseline_python(".venv-stardist", "stardist, tensorflow", "venv-stardist")


def test_train_optimise_thresholds_predict(stardist_python, tmp_path):
    data = make_nuclei_split(tmp_path / "data", counts={"train": 3, "val": 1, "test": 2})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / "stardist" / "seed0"
    run_embedseg(stardist_python, "baseline", "stardist", "train", data, "--out", model_dir, "--device", "cpu",
                 "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "2", "--patch-size", "64")
    thresholds = json.loads((model_dir / "stardist" / "thresholds.json").read_text())
    assert 0 < thresholds["prob"] < 1 and 0 < thresholds["nms"] < 1
    with open(model_dir / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [row["epoch"] for row in log] == ["0", "1"] and all(float(row["val_loss"]) > 0 for row in log)
    assert json.loads((model_dir / "memory.json").read_text())["kind"] == "cpu_peak_rss"
    run_embedseg(stardist_python, "baseline", "stardist", "predict", model_dir, "--images", data / "test" / "images",
                 "--out", pred_dir, "--device", "cpu")
    for name in ("img0.tif", "img1.tif"):
        predicted = read_labels(pred_dir / name)
        assert predicted.shape == (64, 64) and predicted.dtype == np.uint16
    score_predictions(data / "test" / "masks", pred_dir, tmp_path / "scores.csv")
