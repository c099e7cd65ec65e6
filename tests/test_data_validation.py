"""Bad input: one test per kind, each asserting that the error names the offending file."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from embedseg.cli import build_parser
from embedseg.data import prepare
from embedseg.io import DataError


def own_data(root: Path, n: int = 4) -> Path:
    """A valid images/ + masks/ folder of n small images."""
    for i in range(n):
        labels = np.zeros((16, 16), np.uint16)
        labels[3:9, 3:9] = 1
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"im{i}.tif", np.full((16, 16), 10 * i, np.uint16))
        tifffile.imwrite(root / "masks" / f"im{i}.tif", labels)
    return root


def run_prepare(source: Path, out: Path, dataset: str = "folder") -> int:
    args = build_parser("prepare").parse_args(["prepare", dataset, "--source", str(source), "--out", str(out)])
    return prepare.run(args)


def expect_error_naming(path: Path, tmp_path: Path, dataset: str = "folder") -> None:
    with pytest.raises(DataError, match=re.escape(str(path))):
        run_prepare(tmp_path / "src", tmp_path / "out", dataset)
    assert not (tmp_path / "out").exists()


def test_valid_folder_prepares(tmp_path):
    assert run_prepare(own_data(tmp_path / "src"), tmp_path / "out") == 0
    assert (tmp_path / "out" / "dataset.json").is_file()


def test_missing_mask(tmp_path):
    src = own_data(tmp_path / "src")
    (src / "masks" / "im2.tif").unlink()
    expect_error_naming(src / "images" / "im2.tif", tmp_path)


def test_mask_without_image(tmp_path):
    src = own_data(tmp_path / "src")
    (src / "images" / "im1.tif").unlink()
    expect_error_naming(src / "masks" / "im1.tif", tmp_path)


def test_shape_mismatch(tmp_path):
    src = own_data(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "im0.tif", np.ones((16, 15), np.uint16))
    expect_error_naming(src / "masks" / "im0.tif", tmp_path)


def test_non_integer_labels(tmp_path):
    src = own_data(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "im3.tif", np.full((16, 16), 0.5, np.float32))
    expect_error_naming(src / "masks" / "im3.tif", tmp_path)


def test_negative_labels(tmp_path):
    src = own_data(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "im1.tif", np.full((16, 16), -1, np.int16))
    expect_error_naming(src / "masks" / "im1.tif", tmp_path)


def test_nan_pixels(tmp_path):
    src = own_data(tmp_path / "src")
    image = np.ones((16, 16), np.float32)
    image[4, 4] = np.nan
    tifffile.imwrite(src / "images" / "im2.tif", image)
    expect_error_naming(src / "images" / "im2.tif", tmp_path)


def test_corrupt_file(tmp_path):
    src = own_data(tmp_path / "src")
    (src / "images" / "im0.tif").write_bytes(b"II*\x00 this is not a tiff")
    expect_error_naming(src / "images" / "im0.tif", tmp_path)


def test_stack_in_a_flat_label_data_set(tmp_path):
    src = own_data(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "im3.tif", np.ones((2, 16, 16), np.uint16))
    expect_error_naming(src / "masks" / "im3.tif", tmp_path, dataset="dsb-2018")


def test_all_background_mask_warns(tmp_path, caplog):
    src = own_data(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "im1.tif", np.zeros((16, 16), np.uint16))
    with caplog.at_level(logging.WARNING):
        assert run_prepare(src, tmp_path / "out") == 0
    assert str(src / "masks" / "im1.tif") in caplog.text and "no objects" in caplog.text


def test_one_hot_data_set_from_flat_labels(tmp_path):
    src = own_data(tmp_path / "src")
    labels = np.zeros((16, 16), np.uint16)
    labels[1:4, 1:4], labels[10:15, 10:15] = 5, 9
    tifffile.imwrite(src / "masks" / "im0.tif", labels)
    tifffile.imwrite(src / "masks" / "im1.tif", np.zeros((16, 16), np.uint16))
    assert run_prepare(src, tmp_path / "out", dataset="bbbc010-2012") == 0
    stacks = {p.name: tifffile.imread(p) for p in (tmp_path / "out").glob("*/masks/*.tif")}
    assert stacks["im0.tif"].shape == (2, 16, 16) and stacks["im0.tif"].sum(axis=(1, 2)).tolist() == [9, 25]
    assert stacks["im1.tif"].shape == (1, 16, 16) and not stacks["im1.tif"].any()  # no objects: one empty slice
