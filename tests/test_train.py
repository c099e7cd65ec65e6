"""Training: schedule, crop sampling and augmentation, virtual batches, resume, outputs, CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from embedseg.cli import main
from embedseg.crop_dataset import CropDataset, RandomCropSampler, collate_crops
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError, read_labels, write_labels
from embedseg.models import read_checkpoint
from embedseg.train import LOG_COLUMNS, TrainConfig, learning_rate, train

from conftest import check_peak_memory
from discs import write_crop_folder

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(batch_size=2, virtual_batch=1, train_size=2, val_size=3, val_batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    return write_crop_folder(tmp_path_factory.mktemp("crops"))


def test_learning_rate_schedule_matches_official_values() -> None:
    expected = [5.0000e-4, 4.9775e-4, 4.9550e-4, 4.9324e-4, 4.9099e-4]
    assert [learning_rate(e) for e in range(5)] == pytest.approx(expected, rel=2e-5)
    assert learning_rate(199) == pytest.approx(5e-4 * (1 / 200) ** 0.9)
    for epoch in (200, 201, 350):  # (1 − e/200)^0.9 would be complex beyond 200
        assert learning_rate(epoch) == 0.0 and isinstance(learning_rate(epoch), float)


def test_a_short_horizon_anneals_inside_the_run() -> None:
    """--lr-horizon 30: a 30-epoch run ends near 0, not at 87 % of the base as with 200."""
    assert learning_rate(29) / learning_rate(0) > 0.85
    assert learning_rate(29, horizon=30) / learning_rate(0) == pytest.approx((1 / 30) ** 0.9)
    assert learning_rate(0, horizon=30) == learning_rate(0)


def test_dataset_normalises_relabels_and_transforms_all_arrays_alike(crops) -> None:
    dataset = CropDataset(crops / "train", DatasetSettings.load(crops))
    raw_mask = read_labels(crops / "train" / "masks" / "crop_001.tif")
    for transform, (k, flip) in enumerate((k, flip) for k in range(4) for flip in (False, True)):
        item = dataset[1, transform]
        assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
        assert 0 < item["image"].max() <= 1  # /255 of an 8-bit image
        labels = item["instances"].numpy()
        assert np.array_equal(np.unique(labels), np.arange(len(np.unique(raw_mask))))  # 0..K
        rotated = np.rot90(raw_mask > 0, k)
        assert np.array_equal(labels > 0, np.flip(rotated, 0) if flip else rotated)
        assert np.all(labels[item["center"].numpy()] > 0)  # centres moved together with their objects


def test_sampler_draws_with_replacement_reproducibly() -> None:
    draws = list(RandomCropSampler(3, 8, 400, torch.Generator().manual_seed(5)))
    assert len(draws) == 400
    assert {crop for crop, _ in draws} == {0, 1, 2}
    assert {t for _, t in draws} == set(range(8))
    assert draws == list(RandomCropSampler(3, 8, 400, torch.Generator().manual_seed(5)))


def test_collate_pads_one_hot_stacks(tmp_path) -> None:
    root = write_crop_folder(tmp_path, n_train=2, n_val=1, one_hot=True)
    dataset = CropDataset(root / "train", DatasetSettings.load(root))
    first, second = dataset[0, 3], dataset[1, 0]
    second["instances"] = second["instances"][:2]
    batch = collate_crops([first, second])
    assert batch["instances"].shape == (2, 3, 32, 32)
    assert batch["instances"][1, 2].sum() == 0


def test_bad_crops_raise_data_error(tmp_path) -> None:
    root = write_crop_folder(tmp_path, n_train=2, n_val=1)
    (root / "train" / "centers" / "crop_001.tif").unlink()
    with pytest.raises(DataError, match="crop_001.tif"):
        CropDataset(root / "train", DatasetSettings.load(root))
    write_labels(root / "val" / "masks" / "crop_000.tif", np.zeros((16, 16), np.uint16))
    with pytest.raises(DataError, match="does not fit"):
        CropDataset(root / "val", DatasetSettings.load(root))[0, 0]


def test_virtual_batch_steps_optimiser_every_m_iterations(crops, tmp_path) -> None:
    config = TrainConfig(**{**TINY, "batch_size": 1, "virtual_batch": 3, "train_size": 7, "epochs": 1})
    train(crops, tmp_path, config)
    state = read_checkpoint(tmp_path / "last.pt")["optim_state_dict"]["state"]
    assert int(state[0]["step"]) == 2  # 7 mini-batches: steps after the 3rd and 6th; the 7th is discarded


def test_resume_gives_bit_identical_weights(crops, tmp_path) -> None:
    full = train(crops, tmp_path / "full", TrainConfig(**TINY, epochs=4))
    train(crops, tmp_path / "split", TrainConfig(**TINY, epochs=2))
    resumed = train(crops, tmp_path / "split", TrainConfig(**TINY, epochs=4))
    expected = read_checkpoint(tmp_path / "full" / "last.pt")["model_state_dict"]
    got = read_checkpoint(tmp_path / "split" / "last.pt")["model_state_dict"]
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert [row["train_loss"] for row in resumed] == [row["train_loss"] for row in full]

    with open(tmp_path / "split" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == LOG_COLUMNS and [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert all(math.isfinite(float(r["train_loss"])) and 0 <= float(r["val_iou"]) <= 1 for r in rows)
    assert json.loads((tmp_path / "split" / "memory.json").read_text())["kind"] == "cpu_peak_rss"
    check_peak_memory(tmp_path / "split" / "memory.json", tmp_path / "split" / "last.pt", "train")
    best = read_checkpoint(tmp_path / "split" / "best.pt")
    assert best["best_iou"] == max(float(r["val_iou"]) for r in rows)


def test_cli_trains_and_reports_missing_crops(crops, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    status = main(
        [
            "train",
            str(crops),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--train-size",
            "2",
            "--val-size",
            "2",
            "--virtual-batch",
            "1",
            "--variance-loss",
            "fixed",
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "log.csv", "memory.json", "train.json"}
    record = json.loads((out / "train.json").read_text())
    assert record["args"]["variance_loss"] == "fixed" and record["settings"]["center"] == "centroid"
    assert record["clustering"] == {
        "preset": "paper",
        **{
            "seed_thresh": 0.9,
            "fg_thresh": 0.5,
            "min_mask_sum": 128,
            "min_unclustered_sum": 128,
            "min_object_size": 36,
        },
    }
    assert main(["train", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "embedseg crops" in capsys.readouterr().err


def test_variance_term_and_clustering_default_to_the_data_sets(crops, tmp_path) -> None:
    """`--variance-loss auto` (default) takes dataset.json's (3-D sets: fixed) and train.json
    records it and the clustering `predict --clustering auto` will use (issue 30)."""
    import shutil

    own = tmp_path / "crops"
    shutil.copytree(crops, own)
    settings = json.loads((own / "dataset.json").read_text())
    settings.update(variance_loss="fixed", clustering="current", min_object_size=7)
    (own / "dataset.json").write_text(json.dumps(settings))
    argv = ["train", str(own), "--out", str(tmp_path / "m"), "--epochs", "1", "--train-size", "2", "--val-size", "2"]
    assert main([*argv, "--virtual-batch", "1", "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "m" / "train.json").read_text())
    assert record["args"]["variance_loss"] == "fixed" and record["fingerprint"]["variance_loss"] == "fixed"
    assert record["clustering"] == {
        "preset": "current",
        **{"seed_thresh": 0.9, "fg_thresh": 0.5, "min_mask_sum": 0, "min_unclustered_sum": 0, "min_object_size": 7},
    }
