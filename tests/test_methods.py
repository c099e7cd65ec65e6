"""Methods of one's own: registry entries from the config's `methods:` (names, placeholders) and
`embedseg command`, which runs their templates under the output policy, run as real subprocesses
on real TIFF folders, with the Otsu + watershed example as the method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from embedseg import methods
from embedseg.examples.otsu_watershed import segment
from embedseg.io import read_labels

EXAMPLE = "python -m embedseg.examples.otsu_watershed {images} {out}"


def embedseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedseg", *args], capture_output=True, text=True, timeout=120)


def two_discs(height: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:height, :height]
    return ((yy - 14) ** 2 + (xx - 14) ** 2 < 64) | ((yy - 32) ** 2 + (xx - 32) ** 2 < 81)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder (with a space in its name) of two images of two bright discs on noise."""
    folder = tmp_path / "my images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(folder / name, (two_discs() * 150 + rng.integers(0, 40, (48, 48))).astype(np.uint8))
    return folder


def test_config_entries_become_command_methods() -> None:
    found = methods.command_methods(
        {
            "otsu-watershed": {"predict": EXAMPLE},
            "mine": {"train": "t {data} {model}", "predict": "p {model} {out}", "gpu": True},
        }
    )
    assert list(found) == ["otsu-watershed", "mine"]
    otsu = found["otsu-watershed"]
    assert (otsu.kind, otsu.label, otsu.train_command, otsu.predict_command, otsu.gpu) == (
        "command",
        "otsu-watershed",
        None,
        EXAMPLE,
        False,
    )
    assert found["mine"].gpu and not methods.built_in("mine") and methods.built_in("stardist")
    # after the baselines, before our network
    assert methods.order("3class-unet") < methods.order("mine") < methods.order(methods.EMBEDSEG)


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        (
            "mine",
            {"predict": "p {images} {output}"},
            r"config methods\.mine\.predict: unknown placeholder\(s\) \{output\}",
        ),
        (
            "mine",
            {"train": "t {images}", "predict": "p {out}"},
            r"config methods\.mine\.train: unknown placeholder\(s\) \{images\}",
        ),
        ("mine", {"predict": "p {model} {out}"}, r"config methods\.mine\.predict uses \{model\} but .* no `train`"),
        ("mine", {"predict": "p {out!r}"}, r"config methods\.mine\.predict: placeholder \{out\} is not a plain"),
        ("mine", {"predict": "p {out"}, r"config methods\.mine\.predict: .*literal brace"),
        ("stardist", {"predict": "p {out}"}, r"config methods\.stardist: 'stardist' is taken by a built-in method"),
        ("embedseg-medoid-tta", {"predict": "p {out}"}, r"config methods\.embedseg-medoid-tta: .* built-in"),
    ],
)
def test_bad_entries_name_their_config_key(name: str, entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        methods.command_methods({name: entry}, "config methods")


def test_values_are_shell_quoted() -> None:
    command = methods.fill("cp {images}/x {{literal}} {out}", {"images": "a b", "out": "$(rm -rf ~); 'q'"})
    assert command == "cp 'a b'/x {literal} '$(rm -rf ~); '\"'\"'q'\"'\"''"


@pytest.mark.parametrize("center", ["medoid", "approximate-medoid", "centroid"])
@pytest.mark.parametrize("tta", [True, False])
def test_variant_names_round_trip(center: str, tta: bool) -> None:
    variant = methods.Variant(center, tta)
    assert methods.Variant.parse(variant.name) == variant
    assert variant.model == f"embedseg-{center}" and variant.name.startswith(variant.model + "-")
    assert variant.flag == ("--tta" if tta else "--no-tta")


@pytest.mark.parametrize("name", ["stardist", "embedseg-medoid", "embedseg-medoid-TTA", "xembedseg-medoid-tta"])
def test_other_names_are_no_variant(name: str) -> None:
    assert methods.Variant.parse(name) is None and methods.embedseg_variant(name) is None


def test_paper_variants_and_ablations() -> None:
    assert (methods.label(methods.EMBEDSEG), methods.label(methods.NEVEN)) == ("EmbedSeg", "Neven et al.")
    assert set(methods.TABLE2_ONLY) == set(methods.ABLATIONS) - {methods.NEVEN}
    assert all(methods.Variant.parse(name) for name in methods.ABLATIONS)


def test_example_separates_touching_objects() -> None:
    """Two overlapping discs: one connected component above Otsu's threshold, two objects after
    the distance-transform watershed, each holding its disc's centre."""
    yy, xx = np.mgrid[:48, :48]
    discs = ((yy - 24) ** 2 + (xx - 15) ** 2 < 81) | ((yy - 24) ** 2 + (xx - 32) ** 2 < 81)
    image = discs * 100.0 + np.random.default_rng(1).normal(0, 5, discs.shape)
    labels = segment(image)
    assert labels.max() == 2 and labels[24, 15] != labels[24, 32] and labels[24, 15] and labels[24, 32]
    assert ((labels > 0) & discs).sum() / ((labels > 0) | discs).sum() > 0.9


def test_command_predict_writes_one_label_image_per_image(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "predictions"
    done = embedseg("command", "predict", EXAMPLE, "--images", str(images), "--out", str(out), "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.tif")) == ["a.tif", "b.tif"]
    assert read_labels(out / "a.tif").max() == 2
    assert json.loads((out / "predictions.json").read_text())["command"] == "embedseg predict"
    # the same command again replaces its own output
    assert embedseg("command", "predict", EXAMPLE, "--images", str(images), "--out", str(out)).returncode == 0


def test_failing_command_fails_the_step_and_keeps_the_output(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "predictions"
    assert embedseg("command", "predict", EXAMPLE, "--images", str(images), "--out", str(out)).returncode == 0
    before = sorted(p.name for p in out.iterdir())
    failed = embedseg("command", "predict", "echo broken >&2; exit 7", "--images", str(images), "--out", str(out))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "broken" in failed.stderr and "exited with status 7" in failed.stderr
    lazy = embedseg("command", "predict", "touch {out}/a.tif", "--images", str(images), "--out", str(out))
    assert lazy.returncode == 2 and "no label TIFF for 1 of 2 images (e.g. b.tif)" in lazy.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_command_train_writes_a_model_folder_read_by_predict(images: Path, tmp_path: Path) -> None:
    model, out = tmp_path / "model", tmp_path / "out"
    train = embedseg("command", "train", "echo {seed} {device} > {model}/seed.txt", "--out", str(model), "--seed", "5")
    assert train.returncode == 0, train.stderr
    assert (model / "seed.txt").read_text() == "5 cpu\n" and (model / "command.json").is_file()
    predict = "test -f {model}/seed.txt && " + EXAMPLE
    done = embedseg("command", "predict", predict, "--model", str(model), "--images", str(images), "--out", str(out))
    assert done.returncode == 0, done.stderr
    missing = embedseg("command", "predict", predict, "--images", str(images), "--out", str(tmp_path / "o2"))
    assert missing.returncode == 2 and "TEMPLATE uses {model}: pass --model" in missing.stderr


def test_command_never_writes_into_its_input(images: Path) -> None:
    done = embedseg("command", "predict", EXAMPLE, "--images", str(images), "--out", str(images / "labels"))
    assert done.returncode == 2 and "lies inside the input --images" in done.stderr
    assert sorted(p.name for p in images.iterdir()) == ["a.tif", "b.tif"]
