"""Never lose or corrupt a user's data (issue 11): outputs never overwrite inputs or foreign
files, failed runs leave earlier results as they were, resumes continue only the same run, and
bad input or a user mistake gives one clear line naming the file and the fix, never a traceback.

Every command runs through `embedseg.cli.main` in this process, on small synthetic files, with
its stdout, stderr and log records captured as a terminal would show them; the contracts that
need a real process (the exit status a shell sees, Ctrl-C) run `python -m embedseg` as a
subprocess. Every check hashes every file under the test's folder before and after, so
"nothing touched" means byte-identical. tests/test_outputs.py tests the policy's functions.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tifffile

from embedseg.cli import main
from embedseg.data.synthetic import generate

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EMBEDSEG_DEVICE": "cpu"}
TRAIN = [
    "--epochs",
    "1",
    "--train-size",
    "2",
    "--val-size",
    "2",
    "--batch-size",
    "1",
    "--virtual-batch",
    "1",
    "--val-batch-size",
    "2",
    "--device",
    "cpu",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Run:
    """What a terminal shows of one command: its exit status, stdout and stderr (log lines included)."""

    returncode: int
    stdout: str
    stderr: str


def embedseg(*args: str | Path, cwd: Path | None = None) -> Run:
    """`embedseg …` through `cli.main` in this process, from the folder `cwd`.

    stderr holds what the command prints there (errors, tracebacks with -v, progress bars) and
    its INFO log records, which the command line's logging setup would print there too.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    root = logging.getLogger()
    level, here = root.level, os.getcwd()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        os.chdir(cwd or here)
        with redirect_stdout(stdout), redirect_stderr(stderr), mock.patch.dict(os.environ, EMBEDSEG_DEVICE="cpu"):
            try:
                status = main([str(arg) for arg in args])
            except SystemExit as exit:  # argparse's usage errors
                status = exit.code if isinstance(exit.code, int) else 1
    finally:
        os.chdir(here)
        root.removeHandler(handler)
        root.setLevel(level)
    return Run(status, stdout.getvalue(), stderr.getvalue())


def embedseg_process(*args: str | Path) -> subprocess.CompletedProcess:
    """`python -m embedseg …` as a real process, for what only a process shows."""
    return subprocess.run(
        [sys.executable, "-m", "embedseg", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300
    )


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (and the names of empty folders), by relative path."""
    digests = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_file():
            digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() and not any(path.iterdir()):
            digests[key] = "<empty folder>"
    return digests


def refused(result: Run | subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one error line mentioning every word, and no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]


def write_source(root: Path, n: int = 12, size: int = 64) -> Path:
    """A user's folder: images/ + masks/ of synthetic nuclei (8-bit), the `folder` layout."""
    for stem, image, labels in generate("synthetic-nuclei", n, size, seed=0):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"{stem}.tif", image)
        tifffile.imwrite(root / "masks" / f"{stem}.tif", labels)
    return root


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """source/ → data/ (prepare) → crops/ (crops) → model/ (train, one tiny epoch)."""
    root = tmp_path_factory.mktemp("pipeline")
    write_source(root / "source")
    for args in (
        ["prepare", "folder", "--source", root / "source", "--out", root / "data", "--crop-size", "32"],
        ["crops", root / "data", "--out", root / "crops", "--center", "centroid"],
        ["train", root / "crops", "--out", root / "model", *TRAIN],
    ):
        result = embedseg(*args)
        assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture
def work(pipeline, tmp_path) -> Path:
    """A private copy of the pipeline's folders for a test that may (wrongly) change them."""
    for name in ("source", "data", "crops", "model"):
        shutil.copytree(pipeline / name, tmp_path / name, symlinks=True)
    return tmp_path


# --- the reproductions of issue 11 ------------------------------------------------------------


def test_prepare_into_its_own_source_is_refused(work) -> None:
    before = snapshot(work)
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "source"), "source")
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "source", "--force"))
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "source" / "prepared"))
    refused(embedseg("prepare", "folder", "--source", work / "source" / "images" / "..", "--out", work / "source"))
    assert snapshot(work) == before


def test_prepare_into_a_symlink_of_its_source_is_refused(work) -> None:
    (work / "link").symlink_to(work / "source")
    before = snapshot(work)
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "link"), "source")
    refused(embedseg("prepare", "folder", "--source", work / "link", "--out", work / "source", "--force"))
    assert snapshot(work) == before and (work / "link").is_symlink()


def test_prepare_never_replaces_a_folder_of_unrelated_files(work) -> None:
    (work / "precious" / "thesis").mkdir(parents=True)
    (work / "precious" / "thesis" / "chapter1.txt").write_text("years of work")
    before = snapshot(work)
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "precious"), "--force")
    assert snapshot(work) == before


def test_prepare_never_replaces_a_regular_file(work) -> None:
    (work / "notes.txt").write_text("keep me")
    before = snapshot(work)
    refused(embedseg("prepare", "folder", "--source", work / "source", "--out", work / "notes.txt"))
    assert snapshot(work) == before


def test_prepare_out_dot_is_a_clean_error(work) -> None:
    before = snapshot(work)
    for _ in range(2):
        refused(embedseg("prepare", "folder", "--source", "source", "--out", ".", cwd=work))
        refused(embedseg("prepare", "folder", "--source", "source", "--out", ".", "--force", cwd=work))
    assert snapshot(work) == before  # no `..old.*` or staging folders left behind


def test_prepare_replaces_its_own_output(work) -> None:
    """The marker makes an earlier `prepare` output replaceable without --force."""
    result = embedseg("prepare", "folder", "--source", work / "source", "--out", work / "data", "--crop-size", "48")
    assert result.returncode == 0, result.stderr
    assert '"crop_size": 48' in (work / "data" / "dataset.json").read_text()
    assert sorted(p.name for p in work.iterdir()) == ["crops", "data", "model", "source"]


def test_crops_into_the_data_set_is_refused(work) -> None:
    before = snapshot(work)
    refused(embedseg("crops", work / "data", "--out", work / "data"), "data")
    refused(embedseg("crops", work / "data", "--out", work / "data", "--force"))
    refused(embedseg("crops", work / "data", "--out", work, "--force"))  # contains the input
    assert snapshot(work) == before


def test_crops_never_replace_another_kind_of_output(work) -> None:
    before = snapshot(work)
    refused(embedseg("crops", work / "data", "--out", work / "model"), "model")
    assert snapshot(work) == before


def test_failing_crops_leave_the_earlier_crops_exactly_as_they_were(work) -> None:
    broken = work / "data" / "train" / "masks" / sorted(os.listdir(work / "data" / "train" / "masks"))[-1]
    broken.write_bytes(b"not a tiff")
    before = snapshot(work / "crops")
    refused(embedseg("crops", work / "data", "--out", work / "crops", "--center", "medoid"), broken.name)
    assert snapshot(work / "crops") == before
    assert sorted(p.name for p in work.iterdir()) == ["crops", "data", "model", "source"]


def test_predict_into_its_image_folder_is_refused(work) -> None:
    images = work / "data" / "test" / "images"
    before = snapshot(work)
    refused(
        embedseg("predict", work / "model" / "best.pt", "--images", images, "--out", images, "--device", "cpu"),
        "--images",
    )
    refused(
        embedseg(
            "predict",
            work / "model" / "best.pt",
            "--images",
            images,
            "--out",
            work / "model",
            "--device",
            "cpu",
            "--force",
        )
    )
    assert snapshot(work) == before


def test_predict_replaces_its_own_predictions_only_when_done(work) -> None:
    images = work / "data" / "test" / "images"
    shutil.copy(images / os.listdir(images)[0], images / "extra.tif")
    args = [
        "predict",
        work / "model" / "best.pt",
        "--images",
        images,
        "--device",
        "cpu",
        "--out",
        work / "pred",
        "--seeds-out",
        work / "seeds",
    ]
    assert embedseg(*args, "--no-tta").returncode == 0
    assert embedseg(*args, "--no-tta").returncode == 0  # its own earlier output: replaced
    before = snapshot(work)
    (images / "zz_broken.tif").write_bytes(b"garbage")  # predicted last, after the others
    refused(embedseg(*args, "--tta"), "zz_broken.tif")
    (images / "zz_broken.tif").unlink()
    assert snapshot(work) == before


def train_own_model(work: Path) -> Path:
    """A model trained on work/crops (the copied model/ names the pipeline's crops folder)."""
    result = embedseg("train", work / "crops", "--out", work / "own-model", *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "own-model"


def test_resume_with_other_inputs_is_refused_and_the_model_kept(work) -> None:
    model = train_own_model(work)
    before = snapshot(model)
    shutil.copytree(work / "crops", work / "crops2")
    refused(embedseg("train", work / "crops2", "--out", model, *TRAIN), "crops_dir", "--no-resume")
    other = ["--batch-size", "2", "--variance-loss", "fixed", "--seed", "3"]
    refused(
        embedseg("train", work / "crops", "--out", model, *TRAIN, *other),
        "batch_size",
        "variance_loss",
        "seed",
        "--no-resume",
    )
    assert snapshot(model) == before
    # the same folder with other content
    (work / "crops" / "train" / "images" / sorted(os.listdir(work / "crops" / "train" / "images"))[0]).unlink()
    refused(embedseg("train", work / "crops", "--out", model, *TRAIN), "crops_sha256")
    assert snapshot(model) == before


def test_the_same_command_resumes_and_no_resume_starts_over(work) -> None:
    """What a preempted Snakemake job does: the identical command (with more epochs) resumes."""
    model = train_own_model(work)
    (model / "train.json").unlink()  # Snakemake deletes the declared output of a killed job
    more = [*TRAIN[:1], "2", *TRAIN[2:]]
    result = embedseg("train", work / "crops", "--out", model, *more, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr and len((model / "log.csv").read_text().splitlines()) == 3
    result = embedseg("train", work / "crops", "--out", model, *TRAIN, "--batch-size", "2", "--no-resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" not in result.stderr and len((model / "log.csv").read_text().splitlines()) == 2
    assert sorted(p.name for p in work.iterdir()) == ["crops", "data", "model", "own-model", "source"]


def test_train_never_writes_into_a_foreign_folder(work) -> None:
    (work / "precious").mkdir()
    (work / "precious" / "notes.txt").write_text("mine")
    before = snapshot(work)
    refused(embedseg("train", work / "crops", "--out", work / "precious", *TRAIN), "--force")
    refused(embedseg("train", work / "crops", "--out", work / "crops" / "model", *TRAIN, "--force"), "crops")
    assert snapshot(work) == before


def results_folder(work: Path) -> Path:
    """A workflow run folder as `tables` and `figures` read it (contents do not matter here)."""
    for name in ("data", "scores", "predictions", "models"):
        (work / "results" / name).mkdir(parents=True)
        (work / "results" / name / "keep.txt").write_text(name)
    return work / "results"


# every command, pointed at (or around) one of its inputs: (argv with {work} placeholders, input named)
OVER_INPUT = {
    "prepare": (["prepare", "folder", "--source", "{w}/source", "--out", "{w}/source/images"], "--source"),
    "crops": (["crops", "{w}/data", "--out", "{w}/data/train"], "DATA_DIR"),
    "train": (["train", "{w}/crops", "--out", "{w}", "--device", "cpu"], "CROPS_DIR"),
    "predict": (
        ["predict", "{w}/model/best.pt", "--images", "{w}/data/test/images", "--out", "{w}/model"],
        "MODEL_PT",
    ),
    "evaluate": (
        ["evaluate", "{w}/data/test/masks", "{w}/data/test/masks", "--out", "{w}/data/test/masks"],
        "GT_DIR",
    ),
    "baseline train": (["baseline", "3class-unet", "train", "{w}/data", "--out", "{w}/data"], "DATA_DIR"),
    "baseline predict": (
        [
            "baseline",
            "3class-unet",
            "predict",
            "{w}/model",
            "--images",
            "{w}/data/test/images",
            "--out",
            "{w}/data/test",
        ],
        "--images",
    ),
    "tables": (["tables", "{w}/results", "--out", "{w}/results/scores"], "RESULTS_DIR/scores"),
    "figures": (["figures", "{w}/results", "--out", "{w}/results"], "RESULTS_DIR"),
}


@pytest.mark.parametrize("command", OVER_INPUT)
def test_no_command_writes_over_its_inputs_even_with_force(work, command) -> None:
    results_folder(work)
    argv, named = OVER_INPUT[command]
    before = snapshot(work)
    refused(embedseg(*[arg.format(w=work) for arg in argv], "--force"), named)
    assert snapshot(work) == before


# --- user mistakes: one line, no traceback ----------------------------------------------------


@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:7"])
def test_unusable_device_is_a_clean_error(work, device) -> None:
    import torch

    usable = {"gpu": False, "cuda": torch.cuda.is_available(), "cuda:7": torch.cuda.device_count() > 7}
    if usable[device]:
        pytest.skip(f"{device} is usable here")
    before = snapshot(work)
    refused(embedseg("train", work / "crops", "--out", work / "new-model", *TRAIN, "--device", device), "--device")
    assert snapshot(work) == before


def test_verbose_shows_the_traceback_of_a_user_error(work) -> None:
    result = embedseg("-v", "train", work / "crops", "--out", work / "new-model", *TRAIN[:-2], "--device", "gpu")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_evaluate_into_an_existing_folder_is_a_clean_error(work) -> None:
    masks = work / "data" / "test" / "masks"
    before = snapshot(work)
    refused(embedseg("evaluate", masks, masks, "--out", work / "source"), "folder")
    refused(embedseg("evaluate", masks, masks, "--out", masks / "scores.csv"), "masks")
    (work / "notes.txt").write_text("keep me")
    before = snapshot(work)
    refused(embedseg("evaluate", masks, masks, "--out", work / "notes.txt"), "--force")
    assert snapshot(work) == before
    assert embedseg("evaluate", masks, masks, "--out", work / "scores.csv").returncode == 0
    assert embedseg("evaluate", masks, masks, "--out", work / "scores.csv").returncode == 0  # ours: replaced


def test_the_shell_sees_exit_status_2_for_a_refusal_and_0_for_success(work) -> None:
    """`python -m embedseg` hands main's status to the shell, with the one error line on stderr."""
    masks = work / "data" / "test" / "masks"
    before = snapshot(work)
    refused(embedseg_process("prepare", "folder", "--source", work / "source", "--out", work / "source"), "source")
    refused(embedseg_process("evaluate", masks, masks, "--out", masks / "scores.csv"), "masks")
    assert snapshot(work) == before
    assert embedseg_process("evaluate", masks, masks, "--out", work / "scores.csv").returncode == 0


def test_ctrl_c_during_training_says_where_it_stopped_and_how_to_resume(work) -> None:
    model = work / "fresh-model"
    args = [*TRAIN[2:], "--epochs", "500"]
    process = subprocess.Popen(
        [sys.executable, "-m", "embedseg", "train", str(work / "crops"), "--out", str(model), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while not (model / "log.csv").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "resume" in stderr and "last.pt" in stderr
    result = embedseg("train", work / "crops", "--out", model, *args[:-1], "1")  # same run, fewer epochs
    assert result.returncode == 0 and "resuming" in result.stderr, result.stderr[-3000:]


# --- bad input: one clear error naming the file and the fix -----------------------------------


def rgb_source(root: Path) -> None:
    write_source(root)
    first = sorted((root / "images").iterdir())[0]
    grey = tifffile.imread(first)
    tifffile.imwrite(first, np.stack([grey, grey // 2, grey // 3], axis=-1), photometric="rgb")


def duplicate_stem(root: Path) -> None:
    write_source(root)
    import imageio.v3 as iio

    first = sorted((root / "images").iterdir())[0]
    iio.imwrite(first.with_suffix(".png"), tifffile.imread(first))


def mixed_channels(root: Path) -> None:
    write_source(root)
    first = sorted((root / "images").iterdir())[0]
    tifffile.imwrite(first, np.stack([tifffile.imread(first)] * 2), photometric="minisblack")


def empty_masks(root: Path) -> None:
    write_source(root)
    for mask in (root / "masks").iterdir():
        tifffile.imwrite(mask, np.zeros((64, 64), np.uint16))


PREPARE_CASES: dict[str, tuple[Callable[[Path], None], list[str], list[str]]] = {
    "crop size not a multiple of 8": (write_source, ["--crop-size", "30"], ["--crop-size", "8"]),
    "crop size zero": (write_source, ["--crop-size", "0"], ["--crop-size"]),
    "crop size larger than the images": (write_source, ["--crop-size", "128"], ["--crop-size", "64"]),
    "limit zero": (write_source, ["--limit", "0"], ["--limit"]),
    "limit negative": (write_source, ["--limit", "-3"], ["--limit"]),
    "colour image": (rgb_source, [], ["nuclei_000.tif", "RGB"]),
    "duplicate stems": (duplicate_stem, [], ["nuclei_000", "png"]),
    "channel counts differ": (mixed_channels, [], ["nuclei_000.tif", "channel"]),
}


@pytest.mark.parametrize("case", PREPARE_CASES)
def test_prepare_bad_input(tmp_path, case) -> None:
    make, options, words = PREPARE_CASES[case]
    make(tmp_path / "source")
    before = snapshot(tmp_path)
    refused(
        embedseg("prepare", "folder", "--source", tmp_path / "source", "--out", tmp_path / "out", *options),
        *words,
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "options, words",
    [
        (["--n-images", "0"], ["--n-images"]),
        (["--image-size", "8"], ["--image-size"]),
    ],
)
def test_prepare_synthetic_bad_sizes(tmp_path, options, words) -> None:
    refused(embedseg("prepare", "synthetic-nuclei", "--out", tmp_path / "out", *options), *words)
    assert not any(tmp_path.iterdir())


def test_multi_channel_images_are_supported_end_to_end(tmp_path) -> None:
    """(2, H, W) stacks: in_channels = 2 from prepare through crops and training to predict."""
    write_source(tmp_path / "source")
    for path in (tmp_path / "source" / "images").iterdir():
        grey = tifffile.imread(path)
        tifffile.imwrite(path, np.stack([grey, 255 - grey]), photometric="minisblack")
    data, crops, model = tmp_path / "data", tmp_path / "crops", tmp_path / "model"
    for args in (
        ["prepare", "folder", "--source", tmp_path / "source", "--out", data, "--crop-size", "32"],
        ["crops", data, "--out", crops],
        ["train", crops, "--out", model, *TRAIN],
        [
            "predict",
            model / "best.pt",
            "--images",
            data / "test" / "images",
            "--out",
            tmp_path / "pred",
            "--device",
            "cpu",
            "--no-tta",
        ],
    ):
        result = embedseg(*args)
        assert result.returncode == 0, result.stderr[-3000:]
    assert '"in_channels": 2' in (data / "dataset.json").read_text()
    assert tifffile.imread(sorted((crops / "train" / "images").iterdir())[0]).shape == (2, 32, 32)
    test_image = sorted((data / "test" / "images").iterdir())[0]
    assert tifffile.imread(tmp_path / "pred" / test_image.name).shape == (64, 64)


CROPS_CASES: dict[str, tuple[Callable[[Path], None], list[str], list[str]]] = {
    "every mask empty": (empty_masks, [], ["no objects"]),
    "images smaller than the crop": (write_source, ["--crop-size", "128"], ["smaller", "--crop-size"]),
    "crop size not a multiple of 8": (write_source, ["--crop-size", "20"], ["--crop-size", "8"]),
}


@pytest.mark.parametrize("case", CROPS_CASES)
def test_crops_bad_input(tmp_path, case) -> None:
    make, options, words = CROPS_CASES[case]
    make(tmp_path / "source")  # prepare accepts empty masks (with a warning); crops cannot cut anything
    assert (
        embedseg(
            "prepare",
            "folder",
            "--source",
            tmp_path / "source",
            "--out",
            tmp_path / "data",
            "--crop-size",
            "32",
        ).returncode
        == 0
    )
    before = snapshot(tmp_path)
    refused(embedseg("crops", tmp_path / "data", "--out", tmp_path / "crops", *options), *words)
    assert snapshot(tmp_path) == before


def write_images(folder: Path, **arrays: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if name.endswith("_png"):
            import imageio.v3 as iio

            iio.imwrite(folder / f"{name[:-4]}.png", array)
        else:
            tifffile.imwrite(folder / f"{name}.tif", array, photometric="minisblack")


GREY8 = np.full((40, 40), 100, np.uint8)
PREDICT_CASES: dict[str, tuple[dict[str, np.ndarray], list[str], list[str]]] = {
    "empty folder": ({}, [], ["no", "images"]),
    "a PNG and a TIFF of one name": ({"a_png": GREY8, "a": GREY8}, [], ["a.png", "a.tif", "both"]),
    "uint16 into an 8-bit model": ({"a": np.full((40, 40), 3000, np.uint16)}, [], ["a.tif", "uint16"]),
    "NaN pixels": ({"a": np.full((40, 40), np.nan, np.float32)}, [], ["a.tif", "NaN"]),
    "float already in [0, 1]": ({"a": np.full((40, 40), 0.4, np.float32)}, [], ["a.tif", "float32"]),
    "colour image": ({"a": np.stack([GREY8, GREY8 // 2, GREY8 // 3], axis=-1)}, [], ["a.tif", "RGB"]),
    "seed threshold above 1": ({"a": GREY8}, ["--seed-thresh", "1.5"], ["--seed-thresh"]),
    "foreground threshold below 0": ({"a": GREY8}, ["--fg-thresh", "-0.1"], ["--fg-thresh"]),
    "tile size zero": ({"a": GREY8}, ["--tile-size", "0"], ["--tile-size"]),
    "tile size not a multiple of 8": ({"a": GREY8}, ["--tile-size", "100"], ["--tile-size"]),
}


def test_bit_depth_must_fit_the_models_absolute_normalisation() -> None:
    from embedseg.dataset_settings import DatasetSettings
    from embedseg.inference import network_input
    from embedseg.io import DataError

    sixteen = DatasetSettings(name="x", normalization_factor=65535.0)
    with pytest.raises(DataError, match="b.tif: uint8 image .* 16-bit"):
        network_input(GREY8, sixteen, "b.tif")
    assert network_input(np.full((8, 8), 65535, np.uint16), sixteen, "c.tif").max() == 1.0
    percentile = DatasetSettings(name="x", normalization="percentile", normalization_factor=None)
    assert network_input(GREY8, percentile, "d.tif").shape == (1, 40, 40)  # any bit depth


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_bad_input(pipeline, tmp_path, case) -> None:
    arrays, options, words = PREDICT_CASES[case]
    images = tmp_path / "images"
    images.mkdir()
    write_images(images, **arrays)
    before = snapshot(tmp_path)
    refused(
        embedseg(
            "predict",
            pipeline / "model" / "best.pt",
            "--images",
            images,
            "--out",
            tmp_path / "pred",
            "--device",
            "cpu",
            *options,
        ),
        *words,
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "options, words",
    [
        (["--epochs", "0"], ["at least 1"]),
        (["--batch-size", "0"], ["at least 1"]),
    ],
)
def test_train_bad_options(pipeline, tmp_path, options, words) -> None:
    refused(embedseg("train", pipeline / "crops", "--out", tmp_path / "model", *TRAIN, *options), *words)
    assert not any(tmp_path.iterdir())
