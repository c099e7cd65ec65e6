"""embedseg/packaging without a full export: the model card and the bioimage.io description of
hand-made ModelFacts, the facts gathered from real checkpoints and score files, the test crop.

tests/test_export.py exports whole packages (workflow and CLI) and runs bioimageio.core's test on
them; here each part is checked on its own, in seconds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from embedseg.core.cluster import ClusterParams
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError
from embedseg.models import BranchedERFNet, save_checkpoint
from embedseg.packaging.build import central_crop, write_files
from embedseg.packaging.card import model_card
from embedseg.packaging.describe import build_description, embedseg_config
from embedseg.packaging.facts import (
    METHOD_CITATIONS,
    DataFacts,
    ModelFacts,
    PackageOptions,
    ScoreSummary,
    TrainingFacts,
    channel_names,
    gather_facts,
)
from embedseg.packaging.runs import read_runs
from embedseg.report.results import TAUS

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_ARGS = {"seed": 2, "epochs": 10, "batch_size": 4, "virtual_batch": 2, "train_size": 100, "val_size": 20}
SETTINGS_2D = DatasetSettings(
    name="synthetic-nuclei",
    center="medoid",
    crop_size=128,
    extra={"counts": {"train": 30, "val": 5, "test": 10}, "split_seed": 1234, "source": "synthesised"},
)
SETTINGS_3D = DatasetSettings(name="synthetic-nuclei-3d", ndim=3, voxel_size=(2.0, 1.0, 1.0), crop_size=32)
SCORES = ScoreSummary(
    taus=(0.5, 0.6),
    model=(0.8123, 0.7012),
    runs=3,
    mean=(0.8, 0.69),
    sd=(0.0141, 0.0222),
    score_files=("a.csv", "b.csv", "c.csv"),
)


def make_facts(settings: DatasetSettings = SETTINGS_2D, **changes) -> ModelFacts:
    """Facts of a 2-D (or, with SETTINGS_3D, 3-D) model as they could come from a real export."""
    model = BranchedERFNet(n_sigma=settings.ndim, ndim=settings.ndim)
    facts = ModelFacts(
        name="EmbedSeg nuclei seed 2",
        file_name="nuclei.zip",
        settings=settings,
        model_config=model.config,
        parameter_count=sum(p.numel() for p in model.parameters()),
        channels=channel_names(model),
        training=TrainingFacts(seed=2, best_iou=0.81234, epoch=6, args=TRAIN_ARGS, run_seeds=(1, 2, 3)),
        data=DataFacts(citation="Someone et al. 2020, Nuclei", doi="10.1234/nuclei", licence="CC0-1.0"),
        scores=SCORES,
        clustering="current",
        params=ClusterParams(seed_thresh=0.7, fg_thresh=0.4, min_mask_sum=0, min_unclustered_sum=0, min_object_size=9),
        tta=True,
        code_version="0.1.0 (git abc123)",
        pytorch_version="2.5.1+cpu",
        authors=("A. Person",),
    )
    return dataclasses.replace(facts, **changes)


def test_card_tables_the_scores_per_tau_with_the_spread_over_runs() -> None:
    card = model_card(make_facts())
    assert "| τ | AP_dsb (this model) | mean ± sd over 3 runs |" in card
    assert "| 0.50 | 0.812 | 0.800 ± 0.014 |" in card and "| 0.60 | 0.701 | 0.690 ± 0.022 |" in card
    assert "averaged over the synthetic-nuclei test images" in card and "TTA on" in card
    single = model_card(make_facts(scores=dataclasses.replace(SCORES, runs=1, sd=None)))
    assert "| τ | AP_dsb (this model) |\n" in single and "± " not in single
    assert "No test scores were given" in model_card(make_facts(scores=None))


def test_card_cites_the_method_papers_and_the_data() -> None:
    card = model_card(make_facts())
    citations = card[card.index("## Citations") :]
    for text, doi in METHOD_CITATIONS:
        assert f"- {text} (doi:{doi})" in citations
    assert "- Data: Someone et al. 2020, Nuclei (doi:10.1234/nuclei)" in citations
    no_doi = model_card(make_facts(data=DataFacts("not recorded", "", "not recorded")))
    assert no_doi.rstrip().endswith("- Data: not recorded")


def test_card_states_the_clustering_tta_and_the_predict_command() -> None:
    card = model_card(make_facts())
    for row in ("| preset | current |", "| seed_thresh | 0.7 |", "| fg_thresh | 0.4 |", "| min_object_size | 9 |"):
        assert row in card
    assert "8 rotations/flips" in card
    command = "embedseg predict nuclei.zip --images DIR --out PRED_DIR --clustering current --min-object-size 9"
    assert f"`{command} --seed-thresh 0.7 --fg-thresh 0.4 --tta`" in card
    assert "Test-time augmentation: off" in model_card(make_facts(tta=False))


def test_card_records_data_split_and_training() -> None:
    card = model_card(make_facts())
    assert card.startswith("# EmbedSeg nuclei seed 2\n") and "2-D microscopy images" in card
    assert "| split | train 30, val 5, test 10 images (split seed 1234) |" in card
    assert "| licence of the data | CC0-1.0 |" in card and "| source | synthesised |" in card
    assert "| epochs | 10 (best validation IoU 0.8123 after epoch 7) |" in card
    assert "| selection | best validation IoU of 3 runs (seeds 1, 2, 3) |" in card
    assert "| crops | 128 px, centre: medoid |" in card and "| batch | 4 (virtual batch 2), 100 crops" in card
    assert "| code version | 0.1.0 (git abc123) |" in card and "| PyTorch | 2.5.1+cpu |" in card


@pytest.mark.parametrize(
    "settings, text",
    [
        (DatasetSettings(name="x", normalization_factor=65535), "divided by 65535"),
        (DatasetSettings(name="x", normalization="percentile", percentiles=(3, 99.5)), "percentiles 3–99.5 of each"),
        (DatasetSettings(name="x", normalization="mean-std"), "zero mean, unit variance per image"),
    ],
)
def test_card_describes_the_normalisation(settings: DatasetSettings, text: str) -> None:
    assert f"| normalisation | {text}" in model_card(make_facts(settings))


def test_3d_card_gives_voxel_size_anisotropy_and_16_transforms() -> None:
    card = model_card(make_facts(SETTINGS_3D))
    assert "3-D microscopy volumes" in card and "per-voxel spatial embeddings" in card
    assert "| voxel size (z, y, x) | 2 × 1 × 1 µm |" in card
    assert "anisotropy = voxel z / voxel x = 2" in card and "16 rotations/flips" in card
    assert "tiles of 2528 × 2528 × 2528 voxels overlapping by 1264 voxels" in card


def test_config_holds_what_turns_raw_output_into_labels() -> None:
    config = embedseg_config(make_facts(SETTINGS_3D))
    assert config["ndim"] == 3 and config["settings"]["voxel_size"] == (2.0, 1.0, 1.0)
    np.testing.assert_allclose(config["embedding"]["grid_spacing"], [1 / 1023, 1 / 1023, 2 / 1023])
    assert config["clustering"] == {
        "preset": "current",
        "seed_thresh": 0.7,
        "fg_thresh": 0.4,
        "min_mask_sum": 0,
        "min_unclustered_sum": 0,
        "min_object_size": 9,
    }
    assert config["output_channels"] == ["offset_x", "offset_y", "offset_z", "sigma_x", "sigma_y", "sigma_z", "seed"]
    assert config["training"] == {"seed": 2, "best_val_iou": 0.81234, "best_epoch": 6, "args": TRAIN_ARGS}
    assert config["scores"]["model"] == [0.8123, 0.7012]  # lists, not tuples, for the YAML
    assert config["scores"]["score_files"] == ["a.csv", "b.csv", "c.csv"]


def test_channel_names_follow_the_networks_outputs() -> None:
    assert channel_names(BranchedERFNet(n_sigma=1)) == ("offset_x", "offset_y", "sigma_0", "seed")
    assert channel_names(BranchedERFNet(n_seed=2)) == ("offset_x", "offset_y", "sigma_x", "sigma_y", "seed_0", "seed_1")


def test_central_crop_keeps_multiples_of_8_and_refuses_small_samples() -> None:
    image = np.zeros((1, 300, 45), np.uint8)
    assert central_crop(image, 2).shape == (1, 256, 40)
    assert central_crop(np.zeros((1, 70, 90, 20)), 3).shape == (1, 64, 64, 16)
    with pytest.raises(DataError, match="below 16 px"):
        central_crop(np.zeros((1, 64, 15)), 2, "tiny.tif")


def checkpoint(path: Path, model: BranchedERFNet, seed: int, best_iou: float) -> Path:
    record = {
        "model_state_dict": model.state_dict(),
        "model_config": model.config,
        "settings": SETTINGS_2D.to_dict(),
        "epoch": 4,
        "best_iou": best_iou,
        "train_args": {**TRAIN_ARGS, "seed": seed},
    }
    save_checkpoint(path, record)
    return path


def scores_csv(path: Path, per_image: list[float]) -> Path:
    """Scores of `evaluate`'s form: AP = value · (1 − τ) of each image at each of the paper's τ."""
    rows = [
        {"image": f"{i}.tif", "tau": tau, "tp": 1, "fp": 0, "fn": 0, "ap": value * (1 - tau)}
        for tau in TAUS
        for i, value in enumerate(per_image)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_facts_of_the_run_best_on_validation_with_scores_over_all_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BranchedERFNet()
    models = [checkpoint(tmp_path / f"{seed}.pt", model, seed, iou) for seed, iou in ((1, 0.5), (2, 0.7), (3, 0.7))]
    per_image = {1: [0.2, 0.4], 2: [0.6, 1.0], 3: [0.5, 0.5]}
    scores = [scores_csv(tmp_path / f"{seed}.csv", values) for seed, values in per_image.items()]
    selection = read_runs(models, scores)
    assert selection.chosen.seed == 2  # the first of the two best
    assert selection.checkpoint["train_args"]["seed"] == 2 and selection.settings == SETTINGS_2D
    facts = gather_facts(selection, selection.model(), PackageOptions(tta=False), "pkg.zip")
    assert facts.name == "EmbedSeg synthetic-nuclei seed 2" and facts.training.run_seeds == (1, 2, 3)
    assert facts.training.best_iou == 0.7 and facts.training.epoch == 4
    assert facts.data.licence != "" and facts.clustering_config()["preset"] == "paper"
    taus = np.array(TAUS)
    run_means = np.array([0.3, 0.8, 0.5])  # mean over each run's two images
    assert facts.scores.taus == TAUS and facts.scores.runs == 3
    np.testing.assert_allclose(facts.scores.model, 0.8 * (1 - taus))
    np.testing.assert_allclose(facts.scores.mean, run_means.mean() * (1 - taus))
    np.testing.assert_allclose(facts.scores.sd, run_means.std(ddof=1) * (1 - taus))
    with pytest.raises(DataError, match="one scores CSV per model"):
        read_runs(models, scores[:2])


@pytest.mark.parametrize(
    "settings, shape",
    [
        (DatasetSettings(name="synthetic-nuclei", normalization="percentile"), (1, 48, 64)),
        (DatasetSettings(name="synthetic-nuclei-3d", ndim=3, voxel_size=(2.0, 0.5, 0.5)), (1, 16, 24, 32)),
    ],
)
def test_description_of_a_random_network(settings: DatasetSettings, shape: tuple[int, ...], tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.spec", reason="pip install -e '.[export]'")
    torch.manual_seed(0)
    ndim = settings.ndim
    model = BranchedERFNet(n_sigma=ndim, ndim=ndim).eval()
    facts = make_facts(settings, model_config=model.config, tta=False)
    crop = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    write_files(tmp_path, model, facts, crop)
    description = build_description(tmp_path, facts, str(crop.dtype))  # validates, reading the files

    (inputs,), (outputs,) = description.inputs, description.outputs
    space = [axis for axis in inputs.axes if axis.type == "space"]
    assert [str(axis.id) for axis in space] == ["z", "y", "x"][-ndim:]
    assert all((axis.size.min, axis.size.step) == (16, 8) for axis in space)
    assert [axis.scale for axis in space] == list(settings.voxel_size or (1.0, 1.0))
    assert [axis.type for axis in inputs.axes[:2]] == ["batch", "channel"] and inputs.data.type == "uint8"
    steps = [step.id for step in inputs.preprocessing]
    assert steps == ["ensure_dtype", "scale_range" if ndim == 2 else "scale_linear", "ensure_dtype"]
    if ndim == 2:
        kwargs = inputs.preprocessing[1].kwargs
        assert (kwargs.min_percentile, kwargs.max_percentile) == settings.percentiles
        assert [str(axis) for axis in kwargs.axes] == ["y", "x"]
    else:
        assert inputs.preprocessing[1].kwargs.gain == pytest.approx(1 / 255)
    channels = next(axis for axis in outputs.axes if axis.type == "channel").channel_names
    assert [str(name) for name in channels] == list(facts.channels) and len(channels) == 2 * ndim + 1
    assert all(axis.size.tensor_id == "image" for axis in outputs.axes if axis.type == "space")
    test_output = np.load(tmp_path / "test_output.npy")
    assert test_output.shape == (1, 2 * ndim + 1, *shape[1:]) and test_output.dtype == np.float32
    assert description.weights.pytorch_state_dict.architecture.kwargs == model.config
    assert description.config.bioimageio.model_parameter_count == facts.parameter_count
    assert f"{ndim}d" in description.tags and [a.name for a in description.authors] == ["A. Person"]
    assert {str(cite.doi) for cite in description.cite} >= {"10.48550/arXiv.2101.10033", "10.1234/nuclei"}
    assert description.config.embedseg["settings"]["ndim"] == ndim
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == model_card(facts)
