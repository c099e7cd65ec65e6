"""`embedseg export`: bioimage.io packages that pass bioimageio.core's model test offline, carry
the model's evidence, and give `embedseg predict` the labels of the checkpoint they came from.

One tiny real Snakemake run (synthetic nuclei, two seeds trained for one epoch, medoid + TTA,
`export: true`) trains, predicts, scores and exports through the workflow's `export` target; the
tests read its results. A 3-D model (synthetic nuclei volumes of 16 × 32 × 32, voxels 2 × 1 × 1 µm,
trained for one step by the CLI) is exported by `embedseg export` itself. Snakemake (and with it
`embedseg export`, which runs bioimageio.core's test before writing) and the explicit model test
run without network: in a network namespace of their own where the kernel allows one
(`unshare -rn`), and always with proxies that refuse every request.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from embedseg import cli
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import read_labels, write_tiff
from embedseg.models import BranchedERFNet, save_checkpoint

pytest.importorskip("bioimageio.core", reason="pip install -e '.[export]'")
pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
RUN = Path("results") / "export"
PACKAGE = RUN / "export" / "synthetic-nuclei" / "embedseg-medoid-tta.zip"
# Low thresholds: a one-epoch network's seed scores hover around 0.5; these make sure the labels
# compared below hold many objects, so that equal labels mean equal raw outputs.
PREDICT = {"clustering": "current", "seed_thresh": 0.01, "fg_thresh": 0.01}
CONFIG = {
    "run_name": "export",
    "device": "cpu",
    "seeds": [1, 2],
    "centers": ["medoid"],
    "tta": [True],
    "export": True,
    "datasets": {
        "synthetic-nuclei": {
            "n_images": 8,
            "image_size": 64,
            "crop_size": 32,
            "train": {
                "epochs": 1,
                "batch_size": 2,
                "virtual_batch": 1,
                "train_size": 4,
                "val_size": 2,
                "val_batch_size": 2,
            },
        },
    },
    "predict": PREDICT,
}
# httpx and urllib honour these: any remote request fails at once instead of reaching a server.
NO_NETWORK_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def without_network_namespace() -> list[str]:
    """`unshare -rn` (a user and network namespace with no interfaces up) where it works, else []."""
    prefix = ["unshare", "-rn"]
    works = shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    return prefix if works else []


def offline(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `command` without network (see the module docstring); fails the test on an error."""
    env = {
        **os.environ,
        **NO_NETWORK_ENV,
        "BIOIMAGEIO_CACHE_PATH": str(cwd / "bioimageio-cache"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        without_network_namespace() + command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        logs = "\n".join(f"{log}\n{log.read_text()[-1500:]}" for log in cwd.glob("results/*/logs/**/*.log"))
        pytest.fail(f"{' '.join(command[:4])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}\n{logs}")
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working directory of the finished `export` target."""
    workdir = tmp_path_factory.mktemp("export-run")
    (workdir / "config").symlink_to(REPO / "config")  # config/paper_results.yaml etc., as in the checkout
    (workdir / "export.yaml").write_text(yaml.safe_dump(CONFIG))
    offline(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(SNAKEFILE),
            "--directory",
            str(workdir),
            "--workflow-profile",
            "none",
            "--configfile",
            "export.yaml",
            "--cores",
            "2",
            "export",
        ],
        workdir,
    )
    return workdir


def rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def package_file(package: Path, name: str) -> bytes:
    with zipfile.ZipFile(package) as archive:
        return archive.read(name)


def test_export_target_packages_the_seed_best_on_validation_with_test_scores(run: Path) -> None:
    description = rdf(run / PACKAGE)
    ours = description["config"]["embedseg"]
    val_iou = {
        seed: pd.read_csv(run / RUN / f"models/synthetic-nuclei/embedseg-medoid/seed{seed}/log.csv")["val_iou"].max()
        for seed in CONFIG["seeds"]
    }
    assert ours["training"]["seed"] == max(val_iou, key=val_iou.get)
    assert ours["training"]["best_val_iou"] == pytest.approx(max(val_iou.values()))
    # The card's AP per τ: this seed's mean over test images, and mean ± sd over both seeds.
    # (the scores files hold τ = 0.10 … 0.95; the card the paper's 0.50 … 0.90)
    ap = {
        seed: pd.read_csv(run / RUN / f"scores/synthetic-nuclei/embedseg-medoid-tta/seed{seed}.csv")
        .query("0.5 <= tau <= 0.9")
        .groupby("tau")["ap"]
        .mean()
        .to_numpy()
        for seed in CONFIG["seeds"]
    }
    scores = ours["scores"]
    assert scores["runs"] == 2 and len(scores["taus"]) == 9 and scores["taus"][0] == 0.5
    np.testing.assert_allclose(scores["model"], ap[ours["training"]["seed"]])
    np.testing.assert_allclose(scores["mean"], np.mean([ap[1], ap[2]], axis=0))
    np.testing.assert_allclose(scores["sd"], np.std([ap[1], ap[2]], axis=0, ddof=1))
    readme = package_file(run / PACKAGE, "README.md").decode()
    assert "## Validation" in readme and "mean ± sd over 2 runs" in readme
    assert "seeds 1, 2" in readme and "split seed 1234" in readme and "code version" in readme


def assert_model_test_passes_offline(package: Path, cwd: Path) -> None:
    """bioimageio.core's test_model, in a subprocess without network, passes for both weight formats."""
    script = (
        "import json, sys; from bioimageio.core import test_model; s = test_model(sys.argv[1]); "
        "print(json.dumps({'status': s.status, 'tests': [[d.name, d.status] for d in s.details]}))"
    )
    result = offline([sys.executable, "-c", script, str(package)], cwd)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "passed", summary
    names = " ".join(name for name, _ in summary["tests"])
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in names


def test_package_passes_bioimageio_model_test_offline(run: Path) -> None:
    assert_model_test_passes_offline(PACKAGE, run)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # bioimage.io format
def test_package_describes_inputs_outputs_weights_and_clustering(run: Path) -> None:
    package = run / PACKAGE
    description = rdf(package)
    assert description["format_version"].startswith("0.5.")
    (inputs,), (outputs,) = description["inputs"], description["outputs"]
    spatial = [axis for axis in inputs["axes"] if axis["type"] == "space"]
    assert [axis["size"]["step"] for axis in spatial] == [8, 8]
    steps = [step["id"] for step in inputs["preprocessing"]]
    assert steps == ["ensure_dtype", "scale_linear", "ensure_dtype"]
    assert inputs["preprocessing"][1]["kwargs"]["gain"] == pytest.approx(1 / 255)  # synthetic nuclei: 8-bit
    channels = next(axis for axis in outputs["axes"] if axis["type"] == "channel")["channel_names"]
    assert channels == ["offset_x", "offset_y", "sigma_x", "sigma_y", "seed"]
    weights = description["weights"]
    architecture = weights["pytorch_state_dict"]["architecture"]
    assert architecture["callable"] == "BranchedERFNet"
    assert package_file(package, architecture["source"]) == (REPO / "embedseg/models/erfnet.py").read_bytes()
    clustering = description["config"]["embedseg"]["clustering"]
    assert clustering["preset"] == "current" and clustering["min_mask_sum"] == 0
    assert clustering["seed_thresh"] == clustering["fg_thresh"] == 0.01
    assert any(cite.get("doi") == "10.48550/arXiv.2101.10033" for cite in description["cite"])
    assert package_file(package, description["covers"][0]["source"]).startswith(b"\x89PNG")
    # TorchScript and the state dict on the stored test input give the stored output.
    test_input = np.load(io.BytesIO(package_file(package, inputs["test_tensor"]["source"])))
    expected = np.load(io.BytesIO(package_file(package, outputs["test_tensor"]["source"])))
    assert test_input.shape[-2] % 8 == 0 and expected.shape == (1, 5, *test_input.shape[-2:])
    scripted = torch.jit.load(io.BytesIO(package_file(package, weights["torchscript"]["source"])))
    with torch.inference_mode():
        raw = scripted(torch.from_numpy(test_input.astype(np.float32) / 255))
    np.testing.assert_allclose(raw.numpy(), expected, atol=1e-5)


def test_predict_on_the_package_gives_the_checkpoints_labels(run: Path, tmp_path: Path) -> None:
    seed = rdf(run / PACKAGE)["config"]["embedseg"]["training"]["seed"]
    checkpoint = run / RUN / f"models/synthetic-nuclei/embedseg-medoid/seed{seed}/best.pt"
    images = run / RUN / "data/synthetic-nuclei/test/images"
    options = [
        "--images",
        str(images),
        "--device",
        "cpu",
        "--clustering",
        PREDICT["clustering"],
        "--seed-thresh",
        str(PREDICT["seed_thresh"]),
        "--fg-thresh",
        str(PREDICT["fg_thresh"]),
    ]
    for name, model in (("package", run / PACKAGE), ("checkpoint", checkpoint)):
        assert cli.main(["predict", str(model), "--out", str(tmp_path / name), *options]) == 0
    names = sorted(p.name for p in images.iterdir())
    for name in names:
        from_package = read_labels(tmp_path / "package" / name)
        from_checkpoint = read_labels(tmp_path / "checkpoint" / name)
        np.testing.assert_array_equal(from_package, from_checkpoint)
        assert from_package.max() > 1  # many objects: equal labels need equal raw outputs
    # ... and the labels the workflow scored for that seed.
    workflow = run / RUN / f"predictions/synthetic-nuclei/embedseg-medoid-tta/seed{seed}"
    for name in names:
        np.testing.assert_array_equal(read_labels(tmp_path / "package" / name), read_labels(workflow / name))


def test_mistakes_are_reported_without_touching_files(run: Path, tmp_path: Path, capsys) -> None:
    model = str(run / RUN / "models/synthetic-nuclei/embedseg-medoid/seed1")
    sample = str(run / RUN / "data/synthetic-nuclei/test/images")
    existing = tmp_path / "taken.zip"
    existing.write_bytes(b"a user's file")
    assert cli.main(["export", model, "--sample", sample, "--out", str(existing)]) == 2
    assert "--force" in capsys.readouterr().err and existing.read_bytes() == b"a user's file"
    scores = str(run / RUN / "scores/synthetic-nuclei/embedseg-medoid-tta/seed1.csv")
    assert (
        cli.main(["export", model, model, "--scores", scores, "--sample", sample, "--out", str(tmp_path / "new.zip")])
        == 2
    )
    assert "one scores CSV per model" in capsys.readouterr().err.replace("\n", " ")
    assert cli.main(["export", model, "--sample", sample, "--out", str(tmp_path / "model.pt")]) == 2
    assert ".zip" in capsys.readouterr().err
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "config": {}}))
    assert cli.main(["predict", str(foreign), "--images", sample, "--out", str(tmp_path / "pred")]) == 2
    assert "embedseg export" in capsys.readouterr().err
    assert not (tmp_path / "new.zip").exists() and not (tmp_path / "pred").exists()


def test_export_never_writes_into_its_inputs(run: Path, tmp_path: Path, capsys) -> None:
    """Even with --force, the package may not land in (or on) the model folder it packages."""
    model = run / RUN / "models/synthetic-nuclei/embedseg-medoid/seed1"
    sample = str(run / RUN / "data/synthetic-nuclei/test/images")
    before = {path: path.read_bytes() for path in model.iterdir() if path.is_file()}
    assert cli.main(["export", str(model), "--sample", sample, "--out", str(model / "pkg.zip"), "--force"]) == 2
    assert "input" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in model.iterdir() if path.is_file()} == before


@pytest.mark.parametrize(
    "normalization, step, shape",
    [
        ("percentile", "scale_range", (96, 80)),
        ("mean-std", "zero_mean_unit_variance", (96, 80)),
        ("percentile", "scale_range", (24, 40, 48)),  # a volume: percentiles over z, y, x
    ],
)
def test_each_normalisation_becomes_the_packages_preprocessing(normalization, step, shape, tmp_path) -> None:
    """bioimageio.core's test only passes if its preprocessing of the test input matches ours."""
    torch.manual_seed(0)
    ndim = len(shape)
    model = BranchedERFNet(n_sigma=ndim, ndim=ndim)
    settings = DatasetSettings(
        name="synthetic-nuclei", normalization=normalization, normalization_factor=None, ndim=ndim
    )
    save_checkpoint(
        tmp_path / "untrained.pt",
        {"model_state_dict": model.state_dict(), "model_config": model.config, "settings": settings.to_dict()},
    )
    image = np.random.default_rng(0).integers(0, 4000, shape).astype(np.uint16)
    write_tiff(tmp_path / "sample.tif", image)
    package = tmp_path / "untrained.zip"
    assert (
        cli.main(
            ["export", str(tmp_path / "untrained.pt"), "--sample", str(tmp_path / "sample.tif"), "--out", str(package)]
        )
        == 0
    )  # runs bioimageio.core's test_model
    preprocessing = rdf(package)["inputs"][0]["preprocessing"]
    assert [entry["id"] for entry in preprocessing] == ["ensure_dtype", step, "ensure_dtype"]
    # per image and channel, as in training
    assert preprocessing[1]["kwargs"]["axes"] == ["z", "y", "x"][-ndim:]
    if normalization == "percentile":
        kwargs = preprocessing[1]["kwargs"]
        assert (kwargs["min_percentile"], kwargs["max_percentile"]) == settings.percentiles


PACKAGE_3D = Path("nuclei-3d.zip")
VOXEL_SIZE = [2.0, 1.0, 1.0]  # the registry's for synthetic-nuclei-3d: anisotropy 2


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a tiny prepared 3-D data set, a model trained on it for one step and the model's
    package, written by `embedseg export` without network (which runs bioimageio.core's test)."""
    workdir = tmp_path_factory.mktemp("export-3d")
    size = ["--n-images", "6", "--image-size", "32", "--image-depth", "16", "--crop-size", "16", "32", "32"]
    assert cli.main(["prepare", "synthetic-nuclei-3d", "--out", str(workdir / "data"), *size]) == 0
    crops = ["crops", str(workdir / "data"), "--out", str(workdir / "crops"), "--center", "medoid"]
    assert cli.main(crops) == 0
    steps = ["--epochs", "1", "--train-size", "2", "--batch-size", "2", "--virtual-batch", "1"]
    train = ["train", str(workdir / "crops"), "--out", str(workdir / "model"), *steps]
    assert cli.main([*train, "--val-size", "2", "--val-batch-size", "2"]) == 0
    clustering = [f"--{key.replace('_', '-')}={value}" for key, value in PREDICT.items()]
    sample = str(workdir / "data" / "test" / "images")
    export = ["-m", "embedseg", "export", "model", "--sample", sample, "--out", str(PACKAGE_3D), *clustering]
    offline([sys.executable, *export], workdir)
    return workdir


def test_3d_package_passes_bioimageio_model_test_offline(run_3d: Path) -> None:
    assert_model_test_passes_offline(PACKAGE_3D, run_3d)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # bioimage.io format
def test_3d_package_has_a_scaled_z_axis_volumes_and_the_anisotropic_grid(run_3d: Path) -> None:
    package = run_3d / PACKAGE_3D
    description = rdf(package)
    assert "3d" in description["tags"]
    (inputs,), (outputs,) = description["inputs"], description["outputs"]
    for tensor in (inputs, outputs):
        spatial = [axis for axis in tensor["axes"] if axis["type"] == "space"]
        assert [axis["id"] for axis in spatial] == ["z", "y", "x"]
        assert [axis["scale"] for axis in spatial] == VOXEL_SIZE  # output sizes refer to the input's
        assert {axis["unit"] for axis in spatial} == {"micrometer"}
    assert [axis["size"]["step"] for axis in inputs["axes"] if axis["type"] == "space"] == [8, 8, 8]
    channels = next(axis for axis in outputs["axes"] if axis["type"] == "channel")["channel_names"]
    assert channels == ["offset_x", "offset_y", "offset_z", "sigma_x", "sigma_y", "sigma_z", "seed"]
    ours = description["config"]["embedseg"]
    assert ours["ndim"] == ours["model_config"]["ndim"] == 3 and ours["settings"]["voxel_size"] == VOXEL_SIZE
    assert ours["embedding"]["anisotropy"] == 2.0
    np.testing.assert_allclose(ours["embedding"]["grid_spacing"], [1 / 1023, 1 / 1023, 2 / 1023])
    assert ours["tiling"]["tile_size"] == [2528, 2528, 2528]  # 4 × the 632 px receptive-field overlap
    # The test tensors are the whole sample volume (16 × 32 × 32 is below the 64-voxel crop).
    test_input = np.load(io.BytesIO(package_file(package, inputs["test_tensor"]["source"])))
    expected = np.load(io.BytesIO(package_file(package, outputs["test_tensor"]["source"])))
    assert test_input.shape == (1, 1, 16, 32, 32) and expected.shape == (1, 7, 16, 32, 32)
    torchscript = package_file(package, description["weights"]["torchscript"]["source"])
    scripted = torch.jit.load(io.BytesIO(torchscript))
    with torch.inference_mode():
        raw = scripted(torch.from_numpy(test_input.astype(np.float32) / 255))
    np.testing.assert_allclose(raw.numpy(), expected, atol=1e-5)
    readme = package_file(package, "README.md").decode()
    assert "3-D microscopy volumes" in readme and "16 rotations/flips" in readme
    assert "δ_z = anisotropy·δ, anisotropy = voxel z / voxel x = 2" in readme
    assert "| voxel size (z, y, x) | 2 × 1 × 1 µm |" in readme


def test_predict_on_the_3d_package_gives_the_checkpoints_labels(run_3d: Path, tmp_path: Path) -> None:
    """16-fold TTA, tiled: the package loads as the 3-D network with the data set's anisotropy."""
    images = run_3d / "data" / "test" / "images"
    clustering = [f"--{key.replace('_', '-')}={value}" for key, value in PREDICT.items()]
    options = ["--images", str(images), "--device", "cpu", "--tile-size", "16", "16", "16", *clustering]
    for name, model in (("package", run_3d / PACKAGE_3D), ("checkpoint", run_3d / "model" / "best.pt")):
        assert cli.main(["predict", str(model), "--out", str(tmp_path / name), *options]) == 0
    for path in sorted(images.iterdir()):
        from_package = read_labels(tmp_path / "package" / path.name)
        assert from_package.shape == (16, 32, 32) and from_package.max() > 1
        np.testing.assert_array_equal(from_package, read_labels(tmp_path / "checkpoint" / path.name))


def test_3d_package_output_clustered_by_its_config_gives_the_labels(run_3d: Path, tmp_path: Path) -> None:
    """docs/export.md's recipe: bioimageio.core runs the network, `cluster` with the config's
    parameters and grid spacing gives the labels of `embedseg predict --no-tta`."""
    from bioimageio.core import load_model_description, predict

    from embedseg.core.cluster import ClusterParams, cluster
    from embedseg.io import read_image

    images = run_3d / "data" / "test" / "images"
    model = load_model_description(run_3d / PACKAGE_3D)
    ours = model.config.embedseg
    params = ClusterParams(**{key: value for key, value in ours["clustering"].items() if key != "preset"})
    clustering = [f"--{key.replace('_', '-')}={value}" for key, value in PREDICT.items()]
    out = tmp_path / "pred"
    predict_args = ["predict", str(run_3d / PACKAGE_3D), "--images", str(images), "--out", str(out)]
    assert cli.main([*predict_args, "--no-tta", "--device", "cpu", *clustering]) == 0
    for path in sorted(images.iterdir()):
        volume = read_image(path)
        sample = predict(model=model, inputs={"image": volume[None, None]})
        raw = sample.members["prediction"].data.to_numpy()[0]
        labels = cluster(torch.from_numpy(raw), params, ours["embedding"]["grid_spacing"])
        expected = read_labels(out / path.name)
        assert expected.max() > 1
        np.testing.assert_array_equal(labels, expected)
