"""What a careless or unlucky user does (issue 26), reproduced with real files and processes:
masks that are not instance labels, two runs into one folder, killed runs' leftovers, a full
disk or read-only folder, Ctrl-C while torch loads, progress bars in a log file."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from embedseg.cli import build_parser, main
from embedseg.data import prepare
from embedseg.data.formats import read_source
from embedseg.data.validate import check_image, check_pair
from embedseg.io import DataError, read_image

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO), EMBEDSEG_DEVICE="cpu")


def embedseg(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m embedseg ARGS` in a fresh process; returns it whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "embedseg", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def discs(n: int = 3, size: int = 48) -> np.ndarray:
    """An instance label image (size, size) of `n` separate discs with ids 1..n."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for index in range(n):
        cy, cx = 10 + (index % 3) * 14, 10 + (index // 3) * 14
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = index + 1
    return labels


def folder_data(root: Path, masks: list[np.ndarray], suffix: str = ".tif") -> Path:
    """A `folder` source: images/ + masks/ (masks written as `suffix`: .tif or .png)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, mask in enumerate(masks):
        objects = np.asarray(mask).reshape(*np.shape(mask)[:2], -1).any(axis=-1)
        tifffile.imwrite(root / "images" / f"im{index}.tif", (40 * objects).astype(np.uint8))
        path = root / "masks" / f"im{index}{suffix}"
        tifffile.imwrite(path, mask) if suffix == ".tif" else iio.imwrite(path, mask)
    return root


def run_prepare(source: Path, out: Path) -> int:
    return prepare.run(
        build_parser("prepare").parse_args(["prepare", "folder", "--source", str(source), "--out", str(out)])
    )


# --- masks that cannot be instance labels -------------------------------------------------


def test_binary_png_mask_is_refused_with_the_fix(tmp_path):
    binary = (discs(3) > 0).astype(np.uint8) * 255  # a 0/255 PNG: every object id 255
    source = folder_data(tmp_path / "src", [discs(3), binary, discs(4), discs(2)], ".png")
    with pytest.raises(
        DataError, match=r"im1\.png: a binary mask \(every object has id 255\).*skimage\.measure\.label"
    ):
        run_prepare(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_binary_tiff_mask_is_refused_by_the_command_line(tmp_path):
    source = folder_data(tmp_path / "src", [discs(3), discs(3), (discs(5) > 0).astype(np.uint8), discs(2)])
    result = embedseg("prepare", "folder", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "im2.tif: a binary mask (every object has id 1), not an instance label image: 5 separate" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_id_on_two_objects_warns(tmp_path, caplog):
    shared = discs(4)
    shared[shared == 4] = 1  # objects 1 and 4 share id 1; 2 and 3 are fine
    source = folder_data(tmp_path / "src", [discs(3), shared, discs(3), discs(2)])
    with caplog.at_level(logging.WARNING):
        assert run_prepare(source, tmp_path / "out") == 0
    warnings = [r.getMessage() for r in caplog.records if "separate pieces" in r.getMessage()]
    assert len(warnings) == 1 and "im1.tif: 1 label id(s) cover separate pieces: 1 (69+69 pixels)" in warnings[0]


def test_stray_pixels_of_an_id_do_not_warn(tmp_path, caplog):
    stray = discs(3)
    stray[47, 47] = 2  # one pixel of object 2 far from it: annotation noise, as in Usiigaci
    source = folder_data(tmp_path / "src", [discs(3), stray, discs(3), discs(2)])
    with caplog.at_level(logging.WARNING):
        assert run_prepare(source, tmp_path / "out") == 0
    assert not [r for r in caplog.records if "separate pieces" in r.getMessage()]


def test_the_papers_usiigaci_masks_pass_with_warnings_only(shared_data, caplog):
    """Real annotations cut cells in two and leave stray pixels: that must not be refused."""
    source = read_source(shared_data / "usiigaci-2017")
    with caplog.at_level(logging.WARNING):
        for sample in source.pool:
            check_pair(sample.read_image(), sample.read_labels(), sample.image_path, sample.mask_paths[0])
    assert len([r for r in caplog.records if "separate pieces" in r.getMessage()]) == 9


def test_rgb_mask_is_named_an_rgb_picture(tmp_path):
    colour = np.zeros((48, 48, 3), np.uint8)
    colour[discs(3) == 1] = (255, 0, 0)
    colour[discs(3) == 2] = (0, 255, 0)
    source = folder_data(tmp_path / "src", [discs(3), colour, discs(3)], ".png")
    with pytest.raises(DataError, match=r"im1\.png: mask of shape \(48, 48, 3\) is an RGB\(A\) picture"):
        run_prepare(source, tmp_path / "out")


def test_grey_rgb_and_trailing_axis_masks_are_read_as_labels(tmp_path):
    grey_rgb = np.repeat(discs(3)[..., None].astype(np.uint8), 3, axis=-1)  # ids as grey values
    source = folder_data(tmp_path / "src", [discs(3), grey_rgb, discs(2), discs(2)], ".png")
    (source / "masks" / "im2.png").unlink()
    tifffile.imwrite(source / "masks" / "im2.tif", discs(2)[..., None])  # (H, W, 1)
    assert tifffile.imread(source / "masks" / "im2.tif").shape == (48, 48, 1)
    assert read_image(source / "masks" / "im2.tif").shape == (48, 48)
    assert run_prepare(source, tmp_path / "out") == 0
    masks = sorted((tmp_path / "out").glob("*/masks/*.tif"))
    assert len(masks) == 4 and all(tifffile.imread(p).shape == (48, 48) for p in masks)


def test_volume_into_a_2d_model_says_volume(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((8, 32, 32), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(DataError, match="is a 3-D volume .* but this data set or model is 2-D"):
        check_image(read_image(path), path, ndim=2)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 32, 32), np.uint8))
    with pytest.raises(DataError, match="has 8 channel\\(s\\), the model takes 1.*if the first axis is z"):
        check_image(read_image(plain), plain, ndim=2, channels=1)


# --- two runs into one folder, leftovers of killed runs ---------------------------------------


@pytest.fixture
def data_dir(tmp_path, nuclei_split) -> Path:
    return nuclei_split(tmp_path / "data", size=32, counts={"train": 2, "val": 1, "test": 1})


def start_holder(script: str) -> subprocess.Popen:
    """A python process running `script` (which prints `ready` when it holds what it should)."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_second_run_into_a_locked_folder_is_refused(tmp_path, data_dir):
    out = tmp_path / "crops"
    holder = start_holder(
        "import sys, time; from embedseg.outputs import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('ready', flush=True); time.sleep(60)"
    )
    try:
        result = embedseg("crops", data_dir, "--out", out)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert f"--out {out} is being written by another run: pid {holder.pid} on " in result.stderr
    assert "started 20" in result.stderr and not out.exists()
    # killed by SIGKILL: its lock file stays, holds nobody, and blocks nothing
    assert (tmp_path / ".crops.lock").exists()
    assert embedseg("crops", data_dir, "--out", out).returncode == 0
    assert (out / "crops.json").is_file() and not (tmp_path / ".crops.lock").exists()


TRAIN = ["--train-size", "2", "--val-size", "2", "--batch-size", "1", "--val-batch-size", "2", "--device", "cpu"]


def test_second_train_into_one_new_folder_is_refused(tmp_path, data_dir):
    """Issue 26, case 4: seeds 0 and 1 into one new folder; the second must not start."""
    crops, model = tmp_path / "crops", tmp_path / "model"
    assert embedseg("crops", data_dir, "--out", crops).returncode == 0
    first = subprocess.Popen(
        [sys.executable, "-m", "embedseg", "train", crops, "--out", model, "--seed", "0", "--epochs", "500", *TRAIN],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".model.lock").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        second = embedseg("train", crops, "--out", model, "--seed", "1", "--epochs", "1", *TRAIN)
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 2 and f"is being written by another run: pid {first.pid} on " in second.stderr
    assert "embedseg train" in second.stderr and "--seed 0" in second.stderr


def test_training_in_place_holds_the_lock_for_the_whole_run(tmp_path):
    """`train` into a new folder writes in place after `check_output`: its lock must last."""
    out = tmp_path / "model"
    holder = start_holder(
        "import time; from embedseg.outputs import MODEL, check_output\n"
        f"check_output({str(out)!r}, MODEL, {{}}); print('ready', flush=True); time.sleep(60)"
    )
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from embedseg.outputs import MODEL, check_output; check_output({str(out)!r}, MODEL, {{}})",
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1 and f"pid {holder.pid}" in second.stderr


def test_a_step_run_in_process_leaves_no_lock_behind(tmp_path, data_dir):
    """main() in a longer process (a notebook, these tests) releases the locks of its step."""
    scores = tmp_path / "scores.csv"
    masks = data_dir / "test" / "masks"
    assert main(["evaluate", str(masks), str(masks), "--out", str(scores)]) == 0
    assert not (tmp_path / ".scores.csv.lock").exists()
    assert embedseg("evaluate", masks, masks, "--out", scores).returncode == 0


def test_killed_run_leftovers_are_removed_by_the_next_run(tmp_path, data_dir):
    out = tmp_path / "crops"
    assert embedseg("crops", data_dir, "--out", out).returncode == 0
    before = (out / "crops.json").read_bytes()
    victim = start_holder(
        "import time; from embedseg.outputs import CROPS, replacing\n"
        f"with replacing({str(out)!r}, CROPS, {{}}) as staging:\n"
        "    (staging / 'half.tif').write_bytes(b'x' * 1000); print('ready', flush=True); time.sleep(60)"
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (tmp_path / ".crops.abcd_123.old").mkdir()  # an earlier kill during the swap, after the rename back
    (tmp_path / ".crops.notours").mkdir()  # not our pattern: kept
    (tmp_path / ".other.abcd1234.staging").mkdir()  # another output's: kept
    left = sorted(p.name for p in tmp_path.glob(".crops.*.staging"))
    assert len(left) == 1 and (tmp_path / left[0] / "half.tif").exists()
    assert (out / "crops.json").read_bytes() == before  # the kill changed nothing visible
    assert embedseg("crops", data_dir, "--out", out, "--force").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        ".crops.notours",
        ".other.abcd1234.staging",
    ]


def test_output_moved_aside_by_a_killed_swap_is_restored(tmp_path, data_dir):
    out = tmp_path / "crops"
    assert embedseg("crops", data_dir, "--out", out).returncode == 0
    retired = tmp_path / ".crops.k1ll3d_x.old"
    retired.mkdir()
    out.rename(retired / "crops")  # killed between the two renames of swap_in
    assert embedseg("crops", data_dir, "--out", out).returncode == 0
    assert (out / "crops.json").is_file() and not retired.exists()


def test_scratch_folder_of_a_killed_run_is_removed_by_the_next(tmp_path):
    env = dict(ENV, TMPDIR=str(tmp_path))
    script = (
        "import time; from embedseg.outputs import scratch_folder\n"
        "with scratch_folder('embedseg-export-') as folder:\n"
        "    (folder / 'package.zip').write_bytes(b'x' * 1000); print('ready', flush=True); time.sleep(60)"
    )
    killed, live = (
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)
    )
    assert killed.stdout.readline().strip() == "ready" and live.stdout.readline().strip() == "ready"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert len(list(tmp_path.glob("embedseg-export-*"))) == 2
    (tmp_path / "embedseg-export-notours").mkdir()  # no lock file: not ours to remove
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from embedseg.outputs import scratch_folder\nwith scratch_folder('embedseg-export-'): pass",
        ],
        env=env,
        check=True,
    )
    live.kill()
    live.wait()
    left = sorted(p.name for p in tmp_path.glob("embedseg-export-*"))
    assert len(left) == 2 and "embedseg-export-notours" in left  # the live run's folder was kept


# --- write errors ----------------------------------------------------------------------------


def in_small_filesystem(mount: Path, command: list[str], size: str = "8k", read_only: bool = False):
    """Run `command` with a tmpfs of `size` at `mount`, in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare not available")
    mount.mkdir()
    remount = f" && mount -o remount,ro {mount}" if read_only else ""
    script = f"mount -t tmpfs -o size={size} tmpfs {mount}{remount} && exec " + " ".join(map(str, command))
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs tmpfs {mount}"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mounts here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=ENV, timeout=300)


def test_full_disk_names_out_and_the_cause(tmp_path, data_dir):
    out = tmp_path / "disk" / "crops"
    result = in_small_filesystem(tmp_path / "disk", [sys.executable, "-m", "embedseg", "crops", data_dir, "--out", out])
    assert result.returncode == 2, result.stderr
    assert f"error: cannot write --out {out}: no space left on device; free some space" in result.stderr
    assert "Traceback" not in result.stderr and ".staging" not in result.stderr


def test_read_only_folder_names_out_and_the_cause(tmp_path, data_dir):
    out = tmp_path / "ro" / "crops"
    result = in_small_filesystem(
        tmp_path / "ro", [sys.executable, "-m", "embedseg", "crops", data_dir, "--out", out], read_only=True
    )
    assert result.returncode == 2, result.stderr
    assert f"error: cannot write --out {out}: read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


# --- Ctrl-C while torch is imported, progress in log files -----------------------------------


def test_ctrl_c_while_importing_torch_is_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "embedseg", "train", tmp_path, "--out", tmp_path / "model"],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    # Ctrl-C once libtorch is mapped (inside `import torch`): a fixed sleep hit interpreter
    # start-up instead on a loaded machine
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while "libtorch" not in maps.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].endswith("interrupted")
    assert "Traceback" not in stderr


def test_progress_in_a_log_file_is_plain_lines(tmp_path):
    log_file = tmp_path / "log.txt"
    script = (
        "import time, embedseg.runtime as r; r.LOG_INTERVAL_S = 0.2\n"
        "for _ in r.progress(range(10), desc='epochs'):\n"
        "    for _ in r.progress(range(5), desc='batches', leave=False): time.sleep(0.02)\n"
    )
    with open(log_file, "w") as stream:
        subprocess.run([sys.executable, "-c", script], stderr=stream, env=ENV, check=True)
    text = log_file.read_text()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b[" not in text and "batches" not in text
    assert 2 <= len(lines) <= 10 and all(line.startswith("epochs:") for line in lines)
    assert "10/10" in lines[-1]


def test_train_killed_in_epoch_0_restarts_in_place(tmp_path, data_dir):
    """Issue 26, case 5: kill -9 in epoch 0 leaves only train.json; the same command must restart
    in place (a second kill loses nothing more and leaves no staging folder), then finish."""
    crops, model = tmp_path / "crops", tmp_path / "model"
    assert embedseg("crops", data_dir, "--out", crops).returncode == 0
    command = [sys.executable, "-m", "embedseg", "train", crops, "--out", model, "--epochs", "1", *TRAIN]
    command[command.index("--train-size") + 1] = "40"
    for _ in range(2):
        started = time.time()
        victim = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.monotonic() + 120
        # until this run has written its train.json (in place or in a staging folder)
        while time.monotonic() < deadline and victim.poll() is None:
            written = [*tmp_path.glob("model/train.json"), *tmp_path.glob(".model.*.staging/train.json")]
            if any(path.stat().st_mtime >= started for path in written):
                break
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert (model / "train.json").exists() and not (model / "last.pt").exists()
        assert not list(tmp_path.glob(".model.*.staging")), "the restart trained in a hidden staging folder"
    finished = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (model / "best.pt").exists() and (model / "last.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model")) == []


# --- images a model never saw (case 1) ------------------------------------------------------


@pytest.fixture
def uint8_model(tmp_path) -> Path:
    """An untrained 2-D model whose (recorded) training images were uint8, values 3..250."""
    import torch

    from embedseg.dataset_settings import DatasetSettings
    from embedseg.models import BranchedERFNet, save_checkpoint

    torch.manual_seed(0)
    model = BranchedERFNet(in_channels=1)
    settings = DatasetSettings(name="toy", extra={"intensity": {"dtypes": ["uint8"], "min": 3.0, "max": 250.0}})
    path = tmp_path / "model" / "best.pt"
    path.parent.mkdir()
    state = {"model_state_dict": model.state_dict(), "model_config": model.config, "settings": settings.to_dict()}
    save_checkpoint(path, {**state, "epoch": 0, "best_iou": 0.0})
    return path


def one_image(folder: Path, name: str, image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, image) if name.endswith(".tif") else iio.imwrite(folder / name, image)
    return folder


def test_z_scored_float_image_into_a_uint8_model_is_refused(tmp_path, uint8_model):
    """Issue 26, case 1: z-scored float32 images ran with exit 0 and 0 objects."""
    raw = discs(3).astype(np.float32) * 40 + 10
    images = one_image(tmp_path / "z", "a.tif", (raw - raw.mean()) / raw.std())
    result = embedseg("predict", uint8_model, "--images", images, "--out", tmp_path / "pred", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a.tif: float32 image with values down to -" in result.stderr
    assert "never negative" in result.stderr and "--normalization percentile" in result.stderr
    assert not (tmp_path / "pred").exists()


def test_signed_image_with_negative_values_is_refused(tmp_path, uint8_model, capsys):
    images = one_image(tmp_path / "s", "a.tif", (discs(3).astype(np.int16) * 200) - 60)  # uint8 − 60
    args = ["predict", str(uint8_model), "--images", str(images), "--out", str(tmp_path / "p"), "--device", "cpu"]
    assert main(args) == 2
    assert "a.tif: int16 image with values down to -60 does not fit the model" in capsys.readouterr().err


def test_image_far_below_the_training_range_warns(tmp_path, uint8_model, caplog):
    images = one_image(tmp_path / "dim", "a.tif", (discs(3) > 0).astype(np.uint8) * 9)
    args = ["predict", str(uint8_model), "--images", str(images), "--out", str(tmp_path / "p"), "--device", "cpu"]
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--no-tta"]) == 0
    assert "values 0..9, but the model's training images had 3..250 (uint8)" in caplog.text


def test_predict_reads_png_and_h_w_1_images(tmp_path, uint8_model):
    """`prepare` reads PNG/JPEG, so `predict` does; an (H, W, 1) image is one channel."""
    images = one_image(tmp_path / "png", "a.png", (discs(3) > 0).astype(np.uint8) * 200)
    one_image(images, "b.tif", ((discs(3) > 0).astype(np.uint8) * 200)[..., None])
    args = ["predict", str(uint8_model), "--images", str(images), "--out", str(tmp_path / "p"), "--device", "cpu"]
    assert main([*args, "--no-tta"]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.tif")) == ["a.tif", "b.tif"]
    assert tifffile.imread(tmp_path / "p" / "b.tif").shape == (48, 48)
    facts = json_file(tmp_path / "p" / "predictions.json")  # what made the labels
    assert facts["tta"] is False and facts["clustering"] and "seed_thresh" in facts["params"]


def test_12_bit_data_in_uint16_warns_and_the_value_range_is_recorded(tmp_path, caplog):
    source = folder_data(tmp_path / "src", [discs(3), discs(2), discs(4), discs(3)])
    for path in (source / "images").glob("*.tif"):
        tifffile.imwrite(path, tifffile.imread(path).astype(np.uint16) * 100)  # values 0 … 4000
    with caplog.at_level(logging.WARNING):
        assert run_prepare(source, tmp_path / "out") == 0
    assert "12-bit data?" in caplog.text and "--normalization percentile" in caplog.text
    facts = json_file(tmp_path / "out" / "dataset.json")["extra"]["intensity"]
    assert facts["dtypes"] == ["uint16"] and facts["min"] == 0 and facts["max"] == 4000


def json_file(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_predict_on_a_model_folder_names_its_checkpoint(tmp_path, uint8_model, capsys):
    images = one_image(tmp_path / "i", "a.tif", discs(3).astype(np.uint8))
    args = ["predict", str(uint8_model.parent), "--images", str(images), "--out", str(tmp_path / "p")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"a folder, not a checkpoint; pass its checkpoint file, e.g. {uint8_model}" in err
    assert "train a model first" not in err


def test_export_name_is_checked_before_any_work(tmp_path, capsys):
    """`export --name "Zellkerne ü"` failed with a pydantic traceback after all the work."""
    args = ["export", str(tmp_path / "no-model"), "--out", str(tmp_path / "m.zip"), "--name", "Zellkerne ü"]
    assert main([*args, "--sample", str(tmp_path)]) == 2
    assert "--name 'Zellkerne ü': a bioimage.io model name has 5 to 128 characters" in capsys.readouterr().err


def test_a_bad_local_zip_source_does_not_advise_downloading(tmp_path, capsys):
    (tmp_path / "mine.zip").write_bytes(b"not a zip")
    args = ["prepare", "folder", "--source", str(tmp_path / "mine.zip"), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "mine.zip: not a valid zip file" in err and "check the file given as --source" in err
    assert "download" not in err


@pytest.mark.parametrize(
    ("fraction", "message"),
    [("0.99", "leaves 1 to train and validate on"), ("0.01", "holds out no image, so nothing could be scored")],
)
def test_a_test_fraction_that_leaves_a_split_empty_stops_in_prepare(tmp_path, capsys, fraction, message):
    """`--test-fraction 0.99` gave a traceback; `test: 0.01` 0 test images, then a failing `predict`."""
    source = folder_data(tmp_path / "src", [discs(3)] * 8)
    args = ["prepare", "folder", "--source", str(source), "--test-fraction", fraction, "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"the test split {fraction} of 8 images" in err and message in err and "Traceback" not in err


def test_ndim_3_on_a_2d_data_set_names_the_set_and_the_fix(tmp_path, capsys):
    source = folder_data(tmp_path / "src", [discs(3)] * 4)
    args = ["prepare", "folder", "--source", str(source), "--ndim", "3", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data set 'folder': " in err and "it is a 2-D image: the data set is declared 3-D" in err
