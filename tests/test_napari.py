"""The napari plugin (docs/napari.md): its manifest passes `npe2 validate`, and a headless napari
session (Qt offscreen) opens a small results folder and an exported package with the reader,
opens the sample data and segments the results' images with the widget.

napari and Qt live in their own venv (`make venv-napari`, .venv-napari), not in the project's:
the session runs there by subprocess (tests/napari_session.py), as the baseline tests run their
venvs. Without that venv the tests skip, unless EMBEDSEG_REQUIRE_PEERS=1 (CI), where they fail.
The fixtures (results, model, package, reference labels) are made here, with the project venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from embedseg import cli, layout
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import read_labels, write_labels
from embedseg.models import BranchedERFNet, save_checkpoint
from embedseg.napari_plugin.reader import get_reader, label_image, stacked
from embedseg.napari_plugin.segment import model_file

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
NAPARI_PYTHON = REPO / ".venv-napari" / "bin" / "python"
DATASET = "tiny-nuclei"
# A random network's seed scores hover around 0.5: low thresholds give it objects to label.
CLUSTERING = {"clustering": "current", "min_object_size": 5, "seed_thresh": 0.3, "fg_thresh": 0.3}
METHODS = {"stardist": "one object missed", "embedseg-medoid-tta": "perfect"}  # in methods.order


@pytest.fixture(scope="module")
def napari_python() -> Path:
    """The napari venv's interpreter, able to import napari, Qt and this package."""
    probe = NAPARI_PYTHON.exists() and subprocess.run(
        [str(NAPARI_PYTHON), "-c", "import napari, qtpy.QtWidgets, embedseg.napari_plugin.widget"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=session_env(),
    )
    if not probe or probe.returncode:
        reason = f"{NAPARI_PYTHON}: " + (probe.stderr.strip().splitlines()[-1] if probe else "missing")
        pytest.skip(f"{reason}; build it with `make venv-napari`")
    return NAPARI_PYTHON


def session_env(home: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    if home:  # napari keeps its settings under the user's config folder
        env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, nuclei_split) -> Path:
    """A results folder: a data set of two 64² test images, two methods' labels and their scores."""
    run = tmp_path_factory.mktemp("results")
    data = layout.data_dir(run, DATASET)
    nuclei_split(data, size=64, counts={"test": 2})
    masks = layout.test_masks(data)
    for method, kind in METHODS.items():
        out = layout.predictions_dir(run, DATASET, method, 1)
        for gt in sorted(masks.iterdir()):
            labels = read_labels(gt)
            if kind == "one object missed":
                labels[labels == labels.max()] = 0
            write_labels(out / gt.name, labels)
        scores = layout.scores_file(run, DATASET, method, 1)
        assert cli.main(["evaluate", str(masks), str(out), "--out", str(scores)]) == 0
    return run


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, results: Path) -> Path:
    """A random-weight model folder (best.pt) and its package, exported with CLUSTERING."""
    pytest.importorskip("bioimageio.core", reason="pip install -e '.[export]'")
    folder = tmp_path_factory.mktemp("model") / "seed1"
    torch.manual_seed(0)
    model = BranchedERFNet(n_sigma=2)
    settings = DatasetSettings(name=DATASET, crop_size=64, min_object_size=37)
    checkpoint = {"model_state_dict": model.state_dict(), "model_config": model.config, "settings": settings.to_dict()}
    save_checkpoint(folder / layout.BEST_PT, checkpoint)
    out = folder.parent / "tiny.zip"
    options = [f"--{key.replace('_', '-')}={value}" for key, value in CLUSTERING.items()]
    images = layout.test_images(layout.data_dir(results, DATASET))
    assert cli.main(["export", str(folder), "--sample", str(images), "--out", str(out), "--no-check", *options]) == 0
    return out


@pytest.fixture(scope="module")
def session(napari_python: Path, results: Path, package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("napari-session")
    command = [str(napari_python), str(REPO / "tests" / "napari_session.py"), str(results), str(package), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=session_env(out), timeout=600)
    assert done.returncode == 0, f"napari session failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return out


def test_npe2_validates_the_manifest(napari_python: Path) -> None:
    """`npe2 validate` by distribution name (the manifest's name must be it), importing every
    command, and by the manifest file."""
    npe2 = napari_python.parent / "npe2"
    for target in (["embedseg-pipeline", "--imports"], [str(REPO / "embedseg" / "napari.yaml")]):
        done = subprocess.run([str(npe2), "validate", *target], capture_output=True, text=True, env=session_env())
        assert done.returncode == 0 and "valid!" in done.stdout, done.stdout + done.stderr


def test_reader_opens_images_truth_and_each_methods_labels_with_scores(session: Path) -> None:
    seen = json.loads((session / "session.json").read_text())
    layers = {layer["name"]: layer for layer in seen["results"]}
    names = [f"{DATASET}: image", f"{DATASET}: ground truth", *(f"{DATASET}: {m} seed 1" for m in METHODS)]
    assert list(layers) == names  # baselines before EmbedSeg (methods.order)
    assert [layers[name]["type"] for name in names] == ["Image", "Labels", "Labels", "Labels"]
    assert all(
        layer["shape"] == [2, 64, 64] and layer["images"] == ["img0.tif", "img1.tif"] for layer in layers.values()
    )
    missed, perfect = (layers[f"{DATASET}: {m} seed 1"]["scores"] for m in METHODS)
    assert set(perfect) == {"img0.tif", "img1.tif"}
    assert all(s["ap@0.5"] == 1.0 and s["msa"] == 1.0 and s["fn@0.5"] == 0 for s in perfect.values())
    assert all(s["fn@0.5"] == 1 and s["ap@0.5"] < 1.0 for s in missed.values())


def test_reader_opens_a_package_as_its_test_input_and_instances(session: Path, package: Path) -> None:
    image, instances = json.loads((session / "session.json").read_text())["package"]
    assert (image["type"], instances["type"]) == ("Image", "Labels")
    assert image["shape"] == instances["shape"] == [64, 64]
    assert image["model"] == instances["model"] == str(package)


def test_sample_data_is_a_synthetic_image_with_its_truth(session: Path) -> None:
    image, truth = json.loads((session / "session.json").read_text())["sample"]
    assert (image["type"], truth["type"], image["shape"], truth["shape"]) == ("Image", "Labels", [256, 256], [256, 256])


def test_widget_segments_the_stack_as_predict_does(session: Path, results: Path, package: Path, tmp_path: Path) -> None:
    """The widget took the opened package as its model with the package's clustering, ran on the
    CPU image by image and added labels equal to `embedseg predict`'s with the same options."""
    seen = json.loads((session / "session.json").read_text())
    assert seen["default_model"] == str(package)
    expected = {**CLUSTERING, "tta": True}
    assert seen["controls"] == expected
    assert seen["devices"][:2] == ["auto", "cpu"]
    assert seen["progress"] == [2, 2], seen["status"]
    (added,) = seen["added"]
    assert added["type"] == "Labels" and added["shape"] == [2, 64, 64], seen["status"]
    assert seen["added_metadata"]["embedseg_model"] == str(package)
    assert seen["error"].endswith("/no-model: no model here; choose a package of `embedseg export` (.zip) or a best.pt")
    labels = np.load(session / "labels.npy")
    images = layout.test_images(layout.data_dir(results, DATASET))
    options = [f"--{key.replace('_', '-')}={value}" for key, value in CLUSTERING.items()]
    assert cli.main(["predict", str(package), "--images", str(images), "--out", str(tmp_path / "pred"), *options]) == 0
    reference = np.stack([read_labels(tmp_path / "pred" / name) for name in ("img0.tif", "img1.tif")])
    assert reference.max() > 0  # the thresholds give the random network objects to compare
    np.testing.assert_array_equal(labels, reference)


def test_reader_declines_other_paths_and_finds_a_model_folders_checkpoint(results: Path, package: Path) -> None:
    """Plain folders and zips are left to other readers; a model folder means its best.pt."""
    assert get_reader(str(results)) is not None and get_reader(str(package)) is not None
    assert get_reader(str(results / "predictions")) is None
    other = shutil.make_archive(str(results.parent / "other"), "zip", results / "scores")
    assert get_reader(other) is None
    assert model_file(package.parent / "seed1") == package.parent / "seed1" / layout.BEST_PT


def test_one_hot_truth_flattens_and_stacks_pad_to_the_largest_image() -> None:
    stack = np.zeros((2, 4, 4), np.uint8)
    stack[0, :2], stack[1, 1:3] = 1, 1  # two overlapping objects
    assert label_image(stack, 2).tolist() == [[1] * 4, [2] * 4, [2] * 4, [0] * 4]
    padded = stacked([np.ones((2, 3)), np.ones((3, 2))])
    assert padded.shape == (2, 3, 3) and padded.sum() == 12


def test_a_3d_data_set_stacks_volumes_scaled_by_its_voxel_size(tmp_path: Path) -> None:
    """In the project venv, without napari: the reader's layer data of a 3-D data set."""
    data = layout.data_dir(tmp_path, "tiny-3d")
    rng = np.random.default_rng(0)
    for name, depth in (("a.tif", 8), ("b.tif", 6)):
        write_labels(layout.test_masks(data) / name, rng.integers(0, 3, (depth, 16, 16)))
        write_labels(layout.test_images(data) / name, rng.integers(0, 255, (depth, 16, 16)))
    DatasetSettings(name="tiny-3d", ndim=3, voxel_size=(2.0, 1.0, 1.0)).save(data)
    image, truth = get_reader(str(tmp_path))(str(tmp_path))  # no predictions yet: images and GT
    assert image[0].shape == truth[0].shape == (2, 8, 16, 16)
    assert image[1]["scale"] == truth[1]["scale"] == (1.0, 2.0, 1.0, 1.0)
    assert truth[0][1, 6:].max() == 0  # the shorter volume, zero-padded
