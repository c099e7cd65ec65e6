"""The generalist baselines, run by subprocess in `.venv-torchvision` (`make venv-torchvision`):
each runner end to end on a tiny image on CPU with the library's real model class and random
weights written as the library stores them (tests/generalist_models.py); no weights are
downloaded. Also `embedseg fetch-weights` against a local HTTP server, and the NOT_RUN.txt
record of a run without weights.

Without the venv the runner tests skip, naming it; with EMBEDSEG_REQUIRE_PEERS=1 (CI) the skip
is a failure (tests/conftest.py).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import json
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from embedseg.baselines import weights as pretrained
from embedseg.io import read_labels

REPO = Path(__file__).resolve().parents[1]
VENV = ".venv-torchvision"
MODELS = REPO / "tests" / "generalist_models.py"


@functools.cache
def generalists_python(module: str) -> Path:
    python = REPO / VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} missing: build it with `make venv-torchvision`")
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(
            f"{module} not importable in {python}: {probe.stderr.strip().splitlines()[-1]}; `make venv-torchvision`"
        )
    return python


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty library caches and a proxy that refuses connections; one torch thread."""
    for name in ("CELLPOSE_LOCAL_MODELS_PATH", "MICROSAM_CACHEDIR", "INSTANSEG_BIOIMAGEIO_PATH"):
        monkeypatch.setenv(name, str(tmp_path / "cache" / name))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


def random_model(python: Path, library: str, out: Path) -> Path:
    result = subprocess.run([str(python), str(MODELS), library, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


def run_method(python, embedseg_cli, nuclei_split, tmp_path, method, *predict_options, train_options=()) -> list:
    """Train (choose) and predict `method` on 1 test image; the label images it wrote."""
    data = nuclei_split(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / method / "seed0"
    embedseg_cli(python, "baseline", method, "train", data, "--out", model_dir, *train_options)
    embedseg_cli(
        python, "baseline", method, "predict", model_dir, "--images", data / "test" / "images", "--out", pred_dir,
        *predict_options,
    )  # fmt: skip
    return [read_labels(path) for path in sorted(pred_dir.glob("*.tif"))]


def check_labels(labels: list[np.ndarray]) -> None:
    """One label image per test image, (64, 64) uint16, ids 1 … n without gaps."""
    assert len(labels) == 1
    for image in labels:
        assert image.shape == (64, 64) and image.dtype == np.uint16
        ids = np.unique(image[image > 0])
        assert ids.tolist() == list(range(1, len(ids) + 1))


def test_instanseg_with_random_weights(offline, nuclei_split, embedseg_cli, tmp_path):
    python = generalists_python("instanseg")
    model = random_model(python, "instanseg", tmp_path / "instanseg.pt")
    labels = run_method(python, embedseg_cli, nuclei_split, tmp_path, "instanseg", "--weights", model)
    check_labels(labels)
    assert labels[0].max() >= 1  # the export's thresholds are 0: random weights find something
    chosen = json.loads((tmp_path / "model" / "generalist.json").read_text())
    assert chosen == {"model": "fluorescence_nuclei_and_cells", "target": "nuclei"}  # a nuclei data set


@pytest.mark.slow
def test_cellpose_sam_with_random_weights(offline, nuclei_split, embedseg_cli, tmp_path):
    python = generalists_python("cellpose.vit")
    model = random_model(python, "cellpose", tmp_path / "cpsam")
    check_labels(run_method(python, embedseg_cli, nuclei_split, tmp_path, "cellpose-sam", "--weights", model))


@pytest.mark.slow
def test_cellpose_sam_trained_fine_tunes_random_weights(offline, nuclei_split, embedseg_cli, tmp_path):
    """Cellpose 4's own training (train_seg) from a random CPSAM, one epoch, then predict with it."""
    python = generalists_python("cellpose.vit")
    model = random_model(python, "cellpose", tmp_path / "cpsam")
    train_options = ("--weights", model, "--epochs", "1", "--batch-size", "2")
    check_labels(
        run_method(python, embedseg_cli, nuclei_split, tmp_path, "cellpose-sam-trained", train_options=train_options)
    )
    chosen = json.loads((tmp_path / "model" / "generalist.json").read_text())
    assert chosen["model"] == "cpsam" and (tmp_path / "model" / chosen["pretrained_model"]).is_file()
    with open(tmp_path / "model" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0"] and np.isfinite(float(rows[0]["train_loss"]))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["micro-sam-ais", "micro-sam-apg"])
def test_micro_sam_with_random_weights(method, offline, nuclei_split, embedseg_cli, tmp_path):
    python = generalists_python("micro_sam.automatic_segmentation")
    model = random_model(python, "micro-sam", tmp_path / "vit_b_lm.pt")
    check_labels(run_method(python, embedseg_cli, nuclei_split, tmp_path, method, "--weights", model))


@pytest.mark.parametrize("method", ["cellpose-sam", "micro-sam-apg", "instanseg", "cellpose-sam-trained"])
def test_without_weights_the_rule_records_the_fix(method, offline, nuclei_split, embedseg_cli, tmp_path):
    """Offline, empty caches: NOT_RUN.txt names the fix command, no seed folder; the library is
    never imported, so the main venv runs it too."""
    python = REPO / ".venv" / "bin" / "python"
    data = nuclei_split(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    model_dir, pred_dir = tmp_path / "model", tmp_path / "pred" / method / "seed0"
    embedseg_cli(python, "baseline", method, "train", data, "--out", model_dir)
    result = embedseg_cli(
        python, "baseline", method, "predict", model_dir, "--images", data / "test" / "images", "--out", pred_dir
    )
    reason = (pred_dir.parent / "NOT_RUN.txt").read_text()
    assert reason.startswith("no weights") and f"embedseg fetch-weights {method}" in reason
    assert f"baselines.weights.{method}" in reason and "not run" in result.stderr
    assert not pred_dir.exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www (nothing reaches the internet)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_fetch_weights_downloads_checks_and_unzips(local_server, tmp_path, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    root, url = local_server
    (root / "model.pt").write_bytes(b"weights")
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    with zipfile.ZipFile(root / "m.zip", "w") as archive:
        archive.writestr("instanseg.pt", b"scripted")
    single = pretrained.Weights(
        "cellpose", "m", (pretrained.WeightFile("models/m", f"{url}/model.pt", digest),), "X_CACHE", "models/m"
    )
    zipped = pretrained.Weights(
        "instanseg", "m", (pretrained.WeightFile("m/0.1", f"{url}/m.zip", unzip=True),), "X_CACHE", "m/0.1/instanseg.pt"
    )
    cache = tmp_path / "cache"
    assert pretrained.fetch("cellpose-sam", cache, single).read_bytes() == b"weights"
    assert pretrained.fetch("instanseg", cache, zipped).read_bytes() == b"scripted"
    monkeypatch.setenv("X_CACHE", str(cache))
    assert pretrained.resolve("cellpose-sam", None, single) == (cache / "models" / "m", "")
    wrong = pretrained.Weights(
        "cellpose", "m", (pretrained.WeightFile("w", f"{url}/model.pt", "sha256:" + "0" * 64),), "X_CACHE", "w"
    )
    with pytest.raises(ValueError, match="SHA256 hash"):
        pretrained.fetch("cellpose-sam", cache, wrong)


def test_cache_folders_are_the_libraries_own(monkeypatch, tmp_path):
    """Our cache paths equal the ones the libraries compute (in their venv) for the same env."""
    python = generalists_python("cellpose.models, micro_sam.util, instanseg")
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "msam"))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    monkeypatch.delenv("INSTANSEG_BIOIMAGEIO_PATH", raising=False)
    probe = (
        "import os, cellpose.models as c, micro_sam.util as m, instanseg\n"
        "print(c.MODEL_DIR); print(m.microsam_cachedir())\n"
        "print(os.path.join(os.path.dirname(instanseg.__file__), 'bioimageio_models'))"
    )
    cellpose, micro_sam, instanseg = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert pretrained.WEIGHTS["cellpose-sam"].cache() == Path(cellpose)
    assert pretrained.WEIGHTS["micro-sam-ais"].cache() == Path(micro_sam)
    found = subprocess.run(
        [str(python), "-c", "from embedseg.baselines.weights import WEIGHTS; print(WEIGHTS['instanseg'].cache())"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout.strip()  # fmt: skip
    assert Path(found).resolve() == Path(instanseg).resolve()


def test_config_weights_reach_the_actions_that_load_them():
    from embedseg.workflow_args import weights_option

    weights = {"cellpose-sam": "/w/cp sam", "cellpose-sam-trained": "/w/cpsam", "micro-sam-apg": "/w/m.pt"}
    assert weights_option("cellpose-sam", "predict", weights) == "--weights '/w/cp sam'"
    assert weights_option("cellpose-sam", "train", weights) == ""  # zero-shot: nothing to train
    assert weights_option("cellpose-sam-trained", "train", weights) == "--weights /w/cpsam"
    assert weights_option("micro-sam-ais", "predict", weights) == ""  # not configured: the cache
    assert weights_option("stardist", "predict", weights) == ""
