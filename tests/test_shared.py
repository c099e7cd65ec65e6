"""Tests of the shared modules: I/O, settings and normalisation, CLI dispatch, dihedral transforms."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from embedseg.core import dihedral, embedding
from embedseg.dataset_settings import DatasetSettings, normalize
from embedseg.io import DataError, atomic_write, check_labels, read_labels, write_labels


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_atomic_write_gives_umask_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "table.md") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o644


def test_labels_roundtrip_uses_wide_dtype(tmp_path):
    labels = np.zeros((4, 5), dtype=np.int64)
    labels[0, 0] = 70000  # beyond uint16: must not wrap
    labels[1, 1] = 300
    write_labels(tmp_path / "a.tif", labels)
    back = read_labels(tmp_path / "a.tif")
    assert back.dtype == np.uint32 and back[0, 0] == 70000 and back[1, 1] == 300


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[0.5, 1.0]]), "non-integer"),
        (np.array([[-1, 2]]), "negative"),
        (np.array([[np.nan, 1.0]]), "non-integer"),
    ],
)
def test_bad_labels_name_the_file(bad, message):
    with pytest.raises(DataError, match=rf"masks/x\.tif.*{message}"):
        check_labels(bad, "masks/x.tif")


def test_corrupt_tiff_names_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match="broken.tif"):
        read_labels(path)


def test_settings_roundtrip_and_typo(tmp_path):
    settings = DatasetSettings(name="dsb-2018", normalization_factor=255.0, crop_size=256)
    settings.save(tmp_path)
    assert DatasetSettings.load(tmp_path) == settings
    with pytest.raises(DataError, match="crop_sise"):
        DatasetSettings.from_dict({"name": "x", "crop_sise": 3})
    with pytest.raises(DataError, match="normalization"):
        DatasetSettings(name="x", normalization="minmax")


def test_normalize_variants():
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    absolute = normalize(image, DatasetSettings(name="x", normalization_factor=65535.0))
    assert absolute.dtype == np.float32 and np.isclose(absolute.max(), 99 / 65535)
    pct = normalize(image, DatasetSettings(name="x", normalization="percentile", percentiles=(0.0, 100.0)))
    assert np.isclose(pct.min(), 0) and np.isclose(pct.max(), 1)
    # Per channel for (C, H, W): the second channel is scaled on its own range.
    stack = np.stack([image, image * 2]).astype(np.float32)
    pct = normalize(stack, DatasetSettings(name="x", normalization="percentile", percentiles=(0.0, 100.0)))
    assert np.allclose(pct[0], pct[1])
    std = normalize(image, DatasetSettings(name="x", normalization="mean-std"))
    assert abs(std.mean()) < 1e-6 and np.isclose(std.std(), 1, atol=1e-5)


def test_dihedral_transforms_are_distinct_and_invertible():
    x = np.arange(12).reshape(3, 4)
    seen = set()
    for k, flip in dihedral.TRANSFORMS:
        y = dihedral.forward(x, (k, flip))
        seen.add(y.tobytes() + bytes(y.shape))
        assert np.array_equal(dihedral.inverse(y, (k, flip)), x)
        t = dihedral.forward(torch.from_numpy(x), (k, flip))
        assert np.array_equal(t.numpy(), y)
    assert len(seen) == 8


def test_embedding_grid_spacing():
    grid = embedding.coordinate_grid(3, 5)
    assert grid.shape == (2, 3, 5)
    assert torch.isclose(grid[0, 0, 4], torch.tensor(4 / 1023))  # x along columns
    assert torch.isclose(grid[1, 2, 0], torch.tensor(2 / 1023))  # y along rows
    center = torch.tensor([0.0, 0.0])
    s = embedding.bandwidth(torch.zeros(2))
    phi = embedding.gaussian_score(grid, center, s)
    assert phi[0, 0] == 1 and torch.all(phi <= 1)


def test_cli_lists_every_step_quickly():
    out = subprocess.run([sys.executable, "-m", "embedseg", "--help"], capture_output=True, text=True, check=True)
    for step in ("prepare", "crops", "train", "predict", "evaluate", "baseline", "tables", "figures"):
        assert step in out.stdout
