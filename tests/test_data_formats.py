"""Readers of every source layout: real DSB and Usiigaci files, and small files made here."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from embedseg.data.formats import detect_layout, read_source
from embedseg.io import DataError, read_image


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)


def write_tif(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)


def test_dsb_reader_paints_one_object_per_png(shared_data, tmp_path):
    stage1 = shared_data / "dsb2018-stage1" / "stage1_train"
    ids = sorted(p.name for p in stage1.iterdir())[:3]
    for image_id in ids:  # a small stage1 tree of links, so the test reads 3 images, not 570
        (tmp_path / image_id).symlink_to(stage1 / image_id)
    source = read_source(tmp_path, dsb_grey_only=False)
    assert source.layout == "dsb-stage1" and [s.name for s in source.pool] == ids
    for sample in source.pool:
        labels = sample.read_labels()
        pngs = [read_image(p) > 0 for p in sample.mask_paths]
        assert labels.shape == sample.read_image(rgb_to_grey=True).shape == pngs[0].shape  # colour ones too
        assert sorted(np.unique(labels[labels > 0])) == list(range(1, len(pngs) + 1))
        for k, png in enumerate(pngs, start=1):
            obj = labels == k
            assert obj[png].all()  # every annotated pixel kept, under its own id
            assert (obj & ~png).sum() <= 0.02 * png.sum()  # only filled holes added


def test_dsb_grey_only_drops_colour_images(tmp_path):
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 255, (16, 16, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 255
    for image_id, image in (("aaa", grey), ("bbb", colour)):
        write_png(
            tmp_path / image_id / "images" / f"{image_id}.png", np.dstack([image, np.full((16, 16), 255, np.uint8)])
        )
        write_png(tmp_path / image_id / "masks" / "m1.png", mask)
    assert [s.name for s in read_source(tmp_path).pool] == ["aaa"]
    both = read_source(tmp_path, dsb_grey_only=False).pool
    assert [s.name for s in both] == ["aaa", "bbb"]
    assert [s.read_image(rgb_to_grey=True).shape for s in both] == [(16, 16), (16, 16)]
    np.testing.assert_array_equal(both[0].read_image(), grey[..., 0])  # R = G = B: always one channel
    with pytest.raises(DataError, match="--rgb-to-grey"):
        both[1].read_image()  # colour: only with the option


def test_dsb_reader_fills_holes(tmp_path):
    mask = np.zeros((12, 12), np.uint8)
    mask[2:9, 2:9] = 255
    mask[5, 5] = 0
    write_png(tmp_path / "x" / "images" / "x.png", np.zeros((12, 12), np.uint8))
    write_png(tmp_path / "x" / "masks" / "m.png", mask)
    labels = read_source(tmp_path, "dsb-stage1").pool[0].read_labels()
    assert labels[5, 5] == 1 and (labels == 1).sum() == 49


def test_usiigaci_reader_real_sets(shared_data):
    source = read_source(shared_data / "usiigaci-2017")
    assert source.layout == "usiigaci" and len(source.pool) == 45 and not source.test
    counts = []
    for sample in source.pool:
        labels = sample.read_labels()
        assert labels.shape == (1022, 1024)
        counts.append(len(np.unique(labels)) - 1)
    assert min(counts) >= 38 and max(counts) <= 114
    assert tifffile.TiffFile(source.pool[0].image_path).pages[0].shape == (1022, 1024)


def make_bbbc010(root: Path) -> np.ndarray:
    """Two wells in the Broad naming; well A01 has two crossing worms. Returns A01's w2 image."""
    rng = np.random.default_rng(1)
    brightfield = None
    for well in ("A01", "B12"):
        for channel in (1, 2):
            image = rng.integers(0, 60000, (20, 24), dtype=np.uint16)
            name = f"1649_1109_0003_Amp5-1_B_20070424_{well}_w{channel}_9E84F49F-1B25-4E7E-8040-D1BB2D7E73EA.tif"
            write_tif(root / "BBBC010_v2_images" / name, image)
            if (well, channel) == ("A01", 2):
                brightfield = image
        horizontal, vertical = np.zeros((20, 24), np.uint8), np.zeros((20, 24), np.uint8)
        horizontal[9:12, 2:22] = 255
        vertical[2:18, 10:13] = 255
        masks = (horizontal, vertical) if well == "A01" else (horizontal,)
        for k, mask in enumerate(masks, start=1):
            write_png(root / "BBBC010_v1_foreground_eachworm" / f"{well}_{k:02d}_ground_truth.png", mask)
    return brightfield


def test_bbbc010_reader_stacks_overlapping_worms(tmp_path):
    brightfield = make_bbbc010(tmp_path)
    source = read_source(tmp_path)
    assert source.layout == "bbbc010" and [s.name for s in source.pool] == ["A01", "B12"]
    a01 = source.pool[0]
    np.testing.assert_array_equal(a01.read_image(), brightfield)
    stack = a01.read_labels()
    assert stack.shape == (2, 20, 24) and set(np.unique(stack)) == {0, 1}
    assert (stack.sum(axis=0) == 2).sum() == 9  # the 3x3 crossing belongs to both worms
    assert source.pool[1].read_labels().shape == (1, 20, 24)


def test_bbbc010_image_without_worms_is_an_error(tmp_path):
    make_bbbc010(tmp_path)
    for path in (tmp_path / "BBBC010_v1_foreground_eachworm").glob("B12_*"):
        path.unlink()
    with pytest.raises(DataError, match="B12_w2"):
        read_source(tmp_path)


def test_embedseg_layout_keeps_its_test_split(tmp_path):
    for split, names in (("train", ["b", "a"]), ("test", ["c"])):
        for name in names:
            write_tif(tmp_path / "demo-2020" / split / "images" / f"{name}.tif", np.zeros((8, 8), np.uint16))
            write_tif(tmp_path / "demo-2020" / split / "masks" / f"{name}.tif", np.ones((8, 8), np.uint16))
    source = read_source(tmp_path)
    assert source.layout == "embedseg"
    assert [s.name for s in source.pool] == ["a", "b"] and [s.name for s in source.test] == ["c"]


def test_folder_layout_and_unknown_layout(tmp_path):
    write_tif(tmp_path / "own" / "images" / "x.tif", np.zeros((8, 8), np.uint8))
    write_png(tmp_path / "own" / "masks" / "x.png", np.ones((8, 8), np.uint8))
    assert detect_layout(tmp_path / "own") == "folder"
    assert read_source(tmp_path / "own").pool[0].read_labels().dtype == np.uint16
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="layout not recognised"):
        read_source(tmp_path / "empty")


def test_per_object_masks_of_different_shape_are_an_error(tmp_path):
    make_bbbc010(tmp_path)
    odd = tmp_path / "BBBC010_v1_foreground_eachworm" / "A01_02_ground_truth.png"
    write_png(odd, np.zeros((20, 23), np.uint8))
    with pytest.raises(DataError, match=str(odd)):
        read_source(tmp_path).pool[0].read_labels()


def test_prepare_bbbc010_from_broad_files(tmp_path):
    from embedseg.cli import main
    from embedseg.dataset_settings import DatasetSettings

    make_bbbc010(tmp_path / "broad")
    out = tmp_path / "out"
    assert main(["prepare", "bbbc010-2012", "--source", str(tmp_path / "broad"), "--out", str(out)]) == 0
    settings = DatasetSettings.load(out)
    assert settings.one_hot and settings.val_split == "crop" and settings.normalization_factor == 65535.0
    written = {split: sorted(p.name for p in (out / split / "masks").iterdir()) for split in ("train", "val", "test")}
    assert written["val"] == [] and sorted(written["train"] + written["test"]) == ["A01.tif", "B12.tif"]
    stacks = {
        name: tifffile.imread(out / split / "masks" / name) for split in ("train", "test") for name in written[split]
    }
    assert stacks["A01.tif"].shape == (2, 20, 24) and stacks["B12.tif"].shape == (1, 20, 24)
    train_stack = stacks[written["train"][0]]
    assert settings.min_object_size == int(train_stack.reshape(len(train_stack), -1).sum(axis=1).min())
