"""3-class U-Net baseline: targets, post-processing, and a short train → predict → evaluate run."""

from __future__ import annotations

import csv

import numpy as np

from embedseg.baselines.common import random_patches
from embedseg.baselines.unet3class import (
    BOUNDARY,
    IGNORE,
    INTERIOR,
    UNet,
    probabilities_to_instances,
    three_class_target,
)
from embedseg.io import read_labels

from conftest import check_peak_memory

# Mean AP@0.5 of the short run below on its 2 test images, measured 2026-11-30 on CPU: 0.75
# (0.56 with data and training seed 1; 0.14 after 12 epochs, 0 after 6). The floor leaves margin
# for other platforms' arithmetic and fails for empty or random predictions.
AP50_FLOOR = 0.4


def test_target_marks_the_border_between_touching_objects():
    labels = np.zeros((8, 12), np.uint16)
    labels[1:7, 1:6], labels[1:7, 6:11] = 1, 2  # two touching boxes
    target = three_class_target(labels)
    assert np.all(target[labels == 0] == 0)
    assert np.all(target[3, 5:7] == BOUNDARY)  # both sides of the contact line
    assert np.all(target[2:5, 2:5] == INTERIOR)


def test_perfect_probabilities_give_back_the_objects(nuclei):
    """One-hot probabilities of the GT classes → the GT instances (all discs here have >= 37 px)."""
    _, labels = nuclei(np.random.default_rng(3), 96, n_objects=10)
    probs = np.eye(3)[three_class_target(labels)].transpose(2, 0, 1)
    predicted = probabilities_to_instances(probs, min_size=37)
    assert predicted.dtype == np.int32 and predicted.max() == labels.max()
    # Boundary pixels where two objects touch may go to either one: compare by IoU.
    for object_id in range(1, labels.max() + 1):
        gt = labels == object_id
        best = np.bincount(predicted[gt]).argmax()
        assert best > 0 and np.sum(gt & (predicted == best)) / np.sum(gt | (predicted == best)) > 0.9


def test_small_objects_are_dropped():
    probs = np.zeros((3, 20, 20))
    probs[0] = 1
    probs[:, 2:8, 2:8] = np.array([0, 1, 0])[:, None, None]  # 36 px: dropped
    probs[:, 10:17, 10:17] = np.array([0, 1, 0])[:, None, None]  # 49 px: kept
    predicted = probabilities_to_instances(probs, min_size=37)
    assert predicted.max() == 1 and np.sum(predicted == 1) == 49


def test_unet_shapes_and_batches_with_padding():
    rng = np.random.default_rng(0)
    images = [rng.random((1, 20, 40), dtype=np.float32)]
    targets = [np.ones((20, 40), np.int64)]
    x, y = random_patches(images, targets, 32, 3, rng, IGNORE)
    assert x.shape == (3, 1, 32, 32) and y.shape == (3, 32, 32)
    assert np.all(np.isin(y, [-1, 1])) and np.any(y == -1)  # padding is ignored by the loss
    assert UNet(1, depth=2, filters=4)(__import__("torch").from_numpy(x)).shape == (3, 3, 32, 32)


def test_train_predict_evaluate(nuclei_split, embedseg_cli, main_python, ap50, tmp_path):
    data = nuclei_split(tmp_path / "data", counts={"train": 4, "val": 1, "test": 2})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / "3class-unet" / "seed0"
    embedseg_cli(
        main_python,
        "baseline",
        "3class-unet",
        "train",
        data,
        "--out",
        model_dir,
        "--epochs",
        "30",
        "--train-size",
        "24",
        "--batch-size",
        "4",
        "--depth",
        "2",
        "--filters",
        "8",
    )
    with open(model_dir / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in log] == list(range(30))
    assert float(log[-1]["train_loss"]) < float(log[0]["train_loss"])
    check_peak_memory(model_dir / "memory.json", model_dir / "model.pt", "baseline_train")
    assert 0 < float(log[-1]["val_pixel_miou"]) <= 1 and not log[-1]["val_iou"]  # pixel mIoU, not object IoU
    embedseg_cli(
        main_python,
        "baseline",
        "3class-unet",
        "predict",
        model_dir,
        "--images",
        data / "test" / "images",
        "--out",
        pred_dir,
    )
    for name in ("img0.tif", "img1.tif"):
        predicted = read_labels(pred_dir / name)
        assert predicted.shape == (64, 64) and predicted.dtype == np.uint16
    ap = ap50(data / "test" / "masks", pred_dir, tmp_path / "scores.csv")
    assert ap >= AP50_FLOOR, f"AP@0.5 {ap:.3f} below the measured floor {AP50_FLOOR}"


def test_train_and_predict_are_plain_python_functions(nuclei_split, one_thread, tmp_path):
    """No command line needed: a config dataclass and folders (as from a notebook)."""
    from embedseg.baselines import unet3class
    from embedseg.baselines.configs import UNetPredictConfig, UNetTrainConfig

    data = nuclei_split(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    config = UNetTrainConfig(epochs=1, train_size=4, batch_size=2, depth=2, filters=4, device="cpu")
    assert unet3class.train(data, tmp_path / "model", config) == 0
    assert (
        unet3class.predict(
            tmp_path / "model", data / "test" / "images", tmp_path / "pred", UNetPredictConfig(device="cpu")
        )
        == 0
    )
    assert read_labels(tmp_path / "pred" / "img0.tif").shape == (64, 64)
