"""Cellpose baselines, run by subprocess in `.venv-cellpose` (torch 2.13 + cellpose 3.1.1.3): `make venv-cellpose`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from embedseg.io import read_labels

# Mean AP@0.5 of the run below on its 2 test images, measured 2026-11-30 on CPU: 0.50 (6 epochs:
# 0.23, 2 epochs: 0, 40 epochs: 0.67). The floor leaves margin for other platforms' arithmetic
# and fails for empty or random predictions.
AP50_FLOOR = 0.25


@pytest.fixture(scope="module")
def cellpose_python(baseline_venv):
    return baseline_venv(".venv-cellpose", "cellpose.models", "venv-cellpose")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No weights may be downloaded in tests: an empty model cache and a proxy that refuses connections.
    One torch thread: on a busy 2-core machine OpenMP threads spin-wait (an epoch took 17 s, not 3.5 s)."""
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cellpose-models"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


def test_trained_from_scratch(cellpose_python, offline, nuclei_split, embedseg_cli, ap50, tmp_path):
    data = nuclei_split(tmp_path / "data", counts={"train": 3, "val": 1, "test": 2})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / "cellpose-trained" / "seed0"
    embedseg_cli(
        cellpose_python,
        "baseline",
        "cellpose-trained",
        "train",
        data,
        "--out",
        model_dir,
        "--epochs",
        "20",
        "--batch-size",
        "2",
        "--flow-thresholds",
        "0",
        "0.4",
        "--cellprob-thresholds",
        "0",
    )
    chosen = json.loads((model_dir / "cellpose.json").read_text())
    assert chosen["flow_threshold"] in (0, 0.4) and chosen["val_ap50"] > 0  # it found val nuclei
    assert (model_dir / chosen["pretrained_model"]).is_file()
    with open(model_dir / "log.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(20))
    embedseg_cli(
        cellpose_python,
        "baseline",
        "cellpose-trained",
        "predict",
        model_dir,
        "--images",
        data / "test" / "images",
        "--out",
        pred_dir,
    )
    # The recorded val AP is the score of the chosen thresholds: predicting the val image with
    # the saved model and scoring it with `embedseg evaluate` gives the same number.
    val_pred = tmp_path / "pred-val"
    embedseg_cli(
        cellpose_python,
        "baseline",
        "cellpose-trained",
        "predict",
        model_dir,
        "--images",
        data / "val" / "images",
        "--out",
        val_pred,
    )
    val_ap = ap50(data / "val" / "masks", val_pred, tmp_path / "val-scores.csv")
    assert val_ap == pytest.approx(chosen["val_ap50"], abs=1e-6), (val_ap, chosen["val_ap50"])
    for name in ("img0.tif", "img1.tif"):
        predicted = read_labels(pred_dir / name)
        assert predicted.shape == (64, 64) and predicted.dtype == np.uint16
    ap = ap50(data / "test" / "masks", pred_dir, tmp_path / "scores.csv")
    assert ap >= AP50_FLOOR, f"AP@0.5 {ap:.3f} below the measured floor {AP50_FLOOR}"


def test_public_model_offline_is_marked_not_run(cellpose_python, offline, nuclei_split, embedseg_cli, tmp_path):
    data = nuclei_split(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / "cellpose-public" / "seed0"
    embedseg_cli(cellpose_python, "baseline", "cellpose-public", "train", data, "--out", model_dir)
    chosen = json.loads((model_dir / "cellpose.json").read_text())
    assert chosen["model_type"] == "nuclei" and 10 < chosen["diameter"] < 17  # discs of radius 5–8 px
    result = embedseg_cli(
        cellpose_python,
        "baseline",
        "cellpose-public",
        "predict",
        model_dir,
        "--images",
        data / "test" / "images",
        "--out",
        pred_dir,
    )
    reason = (pred_dir.parent / "NOT_RUN.txt").read_text()
    assert "nuclei" in reason and "internet" in reason and "not run" in result.stderr
    assert not pred_dir.exists()  # no seed folder: the tables must not mistake it for a result
