"""3-D end to end: evaluation of label volumes, Table 1 and Fig. 1 of a 3-D data set, training
augmentation, tiled 3-D prediction, the `embedseg` steps by CLI and a tiny 3-D Snakemake run.

Volumes are small (≤ 16 × 64 × 64), so every test takes seconds; the workflow test a minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from embedseg import layout
from embedseg.cli import main
from embedseg.core.metrics import EVALUATION_THRESHOLDS
from embedseg.io import write_json, write_labels, write_tiff
from embedseg.report.results import TAUS_3D, collect

DS3 = "blobs-3d"


def ball_labels(shape: tuple[int, int, int], balls: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(Z, Y, X) uint16 label volume, ball i = (z, y, x, radius) has id i + 1."""
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for i, (cz, cy, cx, r) in enumerate(balls):
        labels[(zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
    return labels


BALLS = [(5, 8, 8, 4), (8, 20, 22, 5), (10, 8, 24, 3)]


def write_3d_data(data_dir: Path, names: list[str]) -> np.ndarray:
    """A prepared-data-like folder of a 3-D data set: dataset.json (ndim 3) and test volumes."""
    labels = ball_labels((16, 32, 32), BALLS)
    write_json(data_dir / "dataset.json", {"name": DS3, "ndim": 3, "voxel_size": [2.0, 1.0, 1.0]})
    for name in names:
        write_tiff(data_dir / "test" / "images" / name, (40 + 150 * (labels > 0)).astype(np.uint8))
        write_labels(data_dir / "test" / "masks" / name, labels)
    return labels


def test_evaluate_scores_volumes_by_the_data_sets_ndim(tmp_path: Path, capsys) -> None:
    labels = write_3d_data(tmp_path / "data", ["a.tif"])
    missed = np.where(labels == 2, 0, labels)  # one of three objects missed
    write_labels(tmp_path / "pred" / "a.tif", missed)
    gt_dir = tmp_path / "data" / "test" / "masks"
    assert main(["evaluate", str(gt_dir), str(tmp_path / "pred"), "--out", str(tmp_path / "s.csv")]) == 0
    scores = pd.read_csv(tmp_path / "s.csv").round({"tau": 2}).set_index("tau")
    assert scores.loc[0.5, ["tp", "fp", "fn"]].tolist() == [2, 0, 1]
    assert scores.loc[0.5, "ap"] == pytest.approx(2 / 3)
    # The same volume read as 2-D data is a one-hot stack whose shape no label image has.
    assert main(["evaluate", str(gt_dir), str(tmp_path / "pred"), "--out", str(tmp_path / "t.csv"), "--ndim", "2"])
    assert "prediction shape (16, 32, 32) does not match" in capsys.readouterr().err
    # The border of a volume is its six faces.
    touching = set(np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel()])))
    touching |= set(np.unique(np.concatenate([labels[:, -1].ravel(), labels[..., 0].ravel(), labels[..., -1].ravel()])))
    argv = ["evaluate", str(gt_dir), str(tmp_path / "pred"), "--out", str(tmp_path / "u.csv"), "--exclude-border"]
    assert main(argv) == 0
    inner = pd.read_csv(tmp_path / "u.csv").round({"tau": 2}).set_index("tau")
    kept = set(np.unique(labels)) - touching - {0}
    assert inner.loc[0.5, "tp"] + inner.loc[0.5, "fn"] == len(kept)


def write_scores(path: Path, names: list[str], ap_at_010: float) -> None:
    """Scores at every threshold `evaluate` writes, AP falling with τ."""
    rows = [
        dict(image=n, tau=t, tp=1, fp=0, fn=0, ap=ap_at_010 - (t - 0.1) / 2)
        for n in names
        for t in EVALUATION_THRESHOLDS
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def results_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with one 3-D data set: data, EmbedSeg predictions (one object missed), scores."""
    run = tmp_path_factory.mktemp("results") / "demo3d"
    names = ["v0.tif", "v1.tif"]
    labels = write_3d_data(run / "data" / DS3, names)
    for seed, ap in ((1, 0.9), (2, 0.8)):
        for name in names:
            write_labels(
                run / "predictions" / DS3 / "embedseg-medoid-tta" / f"seed{seed}" / name,
                np.where(labels == 3, 0, labels),
            )
        write_scores(run / "scores" / DS3 / "embedseg-medoid-tta" / f"seed{seed}.csv", names, ap)
    return run


def test_table1_reports_3d_data_sets_at_tau_01_to_09(results_3d: Path, tmp_path: Path) -> None:
    collection = collect(results_3d)
    assert collection.taus_of(DS3) == TAUS_3D == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    out = tmp_path / "tables"
    assert main(["tables", str(results_3d), "--out", str(out)]) == 0
    table = pd.read_csv(out / "table1.csv").set_index("method")
    ours = table.loc["embedseg-medoid-tta"]
    assert ours["ap_0.10"] == pytest.approx(0.85) and ours["ap_0.90"] == pytest.approx(0.45)
    assert "ap_0.55" not in table.columns  # no 2-D data set here: only the 3-D thresholds
    markdown = (out / "table1.md").read_text()
    assert "| Method | Runs | 0.10 | 0.20 |" in markdown and "3-D data sets: τ = 0.1 … 0.9" in markdown


def test_comparison_names_each_condition_that_differs_from_the_follow_up_paper(results_3d: Path) -> None:
    """The 3-D section of comparison_to_paper.md: conditions beside the paper's, rows beside its table."""
    from embedseg.report.paper3d import PAPER_3D_FILE, comparison3d_markdown, load_paper3d

    shipped = load_paper3d(Path(__file__).parents[1] / "config" / PAPER_3D_FILE)
    assert shipped.conditions["Mouse-Organoid-Cells-CBG"]["ignore_region"] == [[51, 0, 231], [72, 152, 408]]
    organoid, _ = shipped.rows["Mouse-Organoid-Cells-CBG"]["embedseg-medoid-tta"]
    assert organoid[[0, 4, 8]].tolist() == [0.988, 0.973, 0.929]  # MIDL 2021 Table 2 at τ 0.1, 0.5, 0.9
    assert shipped.runs == 3 and set(shipped.conditions) == {
        "Mouse-Organoid-Cells-CBG",
        "Platynereis-Nuclei-CBG",
        "Mouse-Skull-Nuclei-CBG",
        "Platynereis-ISH-Nuclei-CBG",
    }
    train_json = results_3d / "models" / DS3 / "embedseg-medoid" / "seed1" / "train.json"
    write_json(train_json, {"args": {"variance_loss": "fixed"}})
    paper = shipped
    paper.conditions[DS3] = {
        "split_seed": 1000,
        "ignore_region": None,
        "variance_loss": "fixed",
        "clustering": "current",
    }
    paper.rows[DS3] = {"embedseg-medoid-tta": (np.full(len(TAUS_3D), 0.7), "")}
    text = comparison3d_markdown(collect(results_3d), paper, results_3d)
    assert "## 3-D: the paper's 3-D table" in text and f"### {DS3}" in text
    # the made dataset.json records neither a split seed nor a preset: both are named
    assert "split_seed 'not recorded' here, 1000 in the paper" in text
    assert "clustering 'paper' here, 'current' in the paper" in text and "variance_loss 'fixed' here" not in text
    assert "This run: split_seed 'not recorded', ignore_region None, variance_loss 'fixed', clustering 'paper'." in text
    assert "| EmbedSeg (ours) | 2 | 0.850 |" in text and "(paper) | 3 | 0.700 |" in text
    train_json.unlink()


def test_fig1_of_a_volume_shows_middle_slice_and_projection(results_3d: Path) -> None:
    import matplotlib.pyplot as plt

    from embedseg.report.figures import qualitative_panel

    panel = qualitative_panel(results_3d, collect(results_3d), DS3)
    try:
        titles = [ax.get_title() for ax in panel.axes if ax.get_title()]
        assert titles == ["Input", "Ground truth", "EmbedSeg"]  # no 2-D-only U-Net column
        n_columns = len(panel.axes) // 2
        gt_slice = panel.axes[1].get_images()[0].get_array()  # column 1: ground truth
        gt_projection = panel.axes[n_columns + 1].get_images()[0].get_array()
        assert gt_slice.shape == gt_projection.shape == (32, 32, 3)
        slice_colours = {tuple(c) for c in gt_slice.reshape(-1, 3)} - {(0.0, 0.0, 0.0)}
        projection_colours = {tuple(c) for c in gt_projection.reshape(-1, 3)} - {(0.0, 0.0, 0.0)}
        # All three balls reach the middle slice z = 8; each keeps its colour in the projection,
        # which shows more of them (larger discs) than the slice.
        assert (gt_projection.any(axis=2)).sum() > (gt_slice.any(axis=2)).sum()
        assert len(projection_colours) == 3 and slice_colours <= projection_colours
        assert panel.axes[0].get_ylabel() == "slice z = 8"
    finally:
        plt.close(panel)


def test_2d_training_transforms_are_the_8_dihedral_ones_in_order() -> None:
    """2-D training draws are unchanged: transform t is dihedral transform t (rotate, flip Y)."""
    from embedseg.crop_dataset import augment, training_transforms

    x = torch.arange(2 * 4 * 6).reshape(2, 4, 6)
    square = torch.arange(2 * 5 * 5).reshape(2, 5, 5)
    expected = [(k, flip) for k in range(4) for flip in (False, True)]
    for transform, (k, flip) in zip(training_transforms(2), expected, strict=True):
        for tensor in (x, square):
            reference = tensor.rot90(k, dims=(-2, -1))
            torch.testing.assert_close(augment(tensor, transform), reference.flip(-2) if flip else reference)


def test_3d_training_transforms_have_the_official_distribution() -> None:
    """EmbedSeg's 3-D draw: plane (Z,Y)/(Y,X)/(X,Z), k ∈ 0..3 (×2 outside (Y,X)), then a flip
    along Z, Y or X with probability 1/2. Identity: 1/2 · (1/3·1/2 + 1/3·1/4 + 1/3·1/2) = 5/24."""
    from embedseg.crop_dataset import augment, training_transforms

    transforms = training_transforms(3)
    assert len(transforms) == 72
    crop = torch.rand(1, 8, 12, 12)  # (C, Z, Y, X): Z differs, Y = X as crops are
    outputs = [augment(crop, t) for t in transforms]
    assert all(out.shape == crop.shape for out in outputs)  # batches of any draws stack
    identities = sum(torch.equal(out, crop) for out in outputs)
    assert identities == 72 * 5 // 24
    flipped_z = sum(torch.equal(out, crop.flip(-3)) for out in outputs)
    # Z flip: no rotation and a Z flip (5/12 · 1/6), or a 180° (Z,Y)/(X,Z) turn then a flip of the
    # other in-plane axis (Y resp. X: 1/3 · 1/2 · 1/6 each) — 5/72 + 2/36 = 9/72.
    assert flipped_z == 9
    assert any(torch.equal(out, crop.rot90(1, (-2, -1))) for out in outputs)  # 90° turns in (Y, X)


def conv_toy_3d() -> nn.Module:
    """Translation-equivariant 3-D toy with a 5×5×5 receptive field and the 7 output channels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, 7, 3, padding=1)).eval()


@pytest.mark.parametrize("tta", [False, True])
def test_tiled_3d_prediction_equals_untiled(tta: bool) -> None:
    from embedseg.inference import predict_raw

    image = np.random.default_rng(5).random((1, 20, 45, 38)).astype(np.float32)
    model = conv_toy_3d()
    whole = predict_raw(model, image, tta=tta, tile_size=(24, 48, 40))
    tiled = predict_raw(model, image, tta=tta, tile_size=(16, 16, 16), overlap=4)  # 2 × 3 × 3 tiles
    assert whole.shape == (7, 20, 45, 38) and whole.dtype == torch.float32
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="at least 16"):  # a tile of 8 along Z could not overlap
        predict_raw(model, image, tta=False, tile_size=(8, 16, 16))


def test_cli_steps_run_a_3d_data_set(tmp_path: Path, one_thread) -> None:
    """prepare → crops → train (2 steps) → predict (16-fold TTA, tiled) → evaluate on volumes."""
    from embedseg.crop_dataset import CropDataset
    from embedseg.dataset_settings import DatasetSettings
    from embedseg.io import read_json, read_labels

    data, crops, model, pred = (tmp_path / name for name in ("data", "crops", "model", "pred"))
    size = ["--n-images", "6", "--image-size", "32", "--image-depth", "16", "--crop-size", "16", "32", "32"]
    assert main(["prepare", "synthetic-nuclei-3d", "--out", str(data), *size]) == 0
    assert main(["crops", str(data), "--out", str(crops), "--center", "medoid"]) == 0
    geometry = read_json(crops / "crops.json")
    assert geometry["ndim"] == 3 and geometry["anisotropy"] == 2.0 and geometry["foreground_weight"] > 1
    item = CropDataset(crops / "train", DatasetSettings.load(crops))[(0, 5)]
    assert item["image"].shape == (1, 16, 32, 32) and item["instances"].shape == item["center"].shape == (16, 32, 32)
    steps = ["--epochs", "1", "--train-size", "2", "--batch-size", "2", "--virtual-batch", "1"]
    assert main(["train", str(crops), "--out", str(model), *steps, "--val-size", "2", "--val-batch-size", "2"]) == 0
    assert read_json(model / "train.json")["model_config"]["ndim"] == 3
    images = data / "test" / "images"
    tiles = ["--tile-size", "16", "16", "16"]  # 2 × 2 tiles in Y and X
    assert main(["predict", str(model / "last.pt"), "--images", str(images), "--out", str(pred), *tiles]) == 0
    for gt in sorted((data / "test" / "masks").iterdir()):
        assert read_labels(pred / gt.name).shape == read_labels(gt).shape
    assert main(["evaluate", str(data / "test" / "masks"), str(pred), "--out", str(tmp_path / "scores.csv")]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == len(list(images.iterdir())) * len(EVALUATION_THRESHOLDS)
    assert scores["ap"].between(0, 1).all()


def test_oracle_3d_raw_outputs_cluster_and_score_ap_1(tmp_path: Path) -> None:
    """Raw outputs that point every voxel of a nucleus at its centroid (anisotropic grid) →
    cluster → evaluate: every nucleus found, AP = 1 at every τ, so the 3-D chain loses nothing."""
    from test_cluster import ANISOTROPIC, SIX_NUCLEI, synthetic_raw

    from embedseg.core import cluster

    labels = cluster.cluster(
        synthetic_raw(SIX_NUCLEI, radius_px=2, spacing=ANISOTROPIC), cluster.preset("current", 10), ANISOTROPIC
    )
    write_labels(tmp_path / "gt" / "v.tif", SIX_NUCLEI)
    write_labels(tmp_path / "pred" / "v.tif", labels)
    assert (
        main(
            ["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "--out", str(tmp_path / "s.csv"), "--ndim", "3"]
        )
        == 0
    )
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == len(EVALUATION_THRESHOLDS) and (scores["ap"] == 1).all() and (scores["tp"] == 6).all()


def test_3d_data_set_runs_through_the_workflow_into_table1(tmp_path: Path) -> None:
    """A tiny 3-D config through the real Snakemake workflow (no conda): Table 1 has the 3-D
    data set at τ 0.1 … 0.9 and Fig. 1 its panel."""
    import yaml
    from test_workflow import snakemake

    config = {
        "run_name": "test3d",
        "device": "cpu",
        "seeds": [1],
        "centers": ["medoid"],
        "tta": [True],
        "datasets": {
            "synthetic-nuclei-3d": {
                "n_images": 6,
                "image_size": 32,
                "image_depth": 16,
                "crop_size": [16, 32, 32],
                "train": {
                    "epochs": 1,
                    "batch_size": 2,
                    "virtual_batch": 1,
                    "train_size": 2,
                    "val_size": 2,
                    "val_batch_size": 2,
                },
            }
        },
        "predict": {"clustering": "current", "tile_size": [16, 32, 32]},
        "report": {"not_comparable": "test run: tiny 3-D data, 1 epoch"},
    }
    path = tmp_path / "test3d.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "all", "--cores", "2", "--configfile", str(path))
    results = tmp_path / "results" / "test3d"
    table1 = pd.read_csv(results / "tables" / "table1.csv")
    row = table1[(table1["dataset"] == "synthetic-nuclei-3d") & (table1["method"] == "embedseg-medoid-tta")]
    assert len(row) == 1 and row["runs"].item() == 1
    scores = pd.read_csv(layout.scores_file(results, "synthetic-nuclei-3d", "embedseg-medoid-tta", 1))
    at_010 = scores[scores["tau"].round(2) == 0.1]["ap"].mean()  # one run: its per-image mean
    assert row["ap_0.10"].item() == pytest.approx(at_010, abs=1e-5) and "ap_0.55" not in table1.columns
    assert "| Method | Runs | 0.10 | 0.20 |" in (results / "tables" / "table1.md").read_text()
    assert (results / "figures" / "fig1_synthetic-nuclei-3d.png").stat().st_size > 10_000
