"""Object-centred crops: window clipping, visible-part centres, naming, one-hot, crop-level val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from embedseg import centers, cli, crops
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError


def write_dataset(root: Path, images: dict[str, tuple[np.ndarray, np.ndarray]], **settings) -> Path:
    DatasetSettings(name="toy", **settings).save(root)
    for subset in ("train", "val"):
        for folder in ("images", "masks"):
            (root / subset / folder).mkdir(parents=True, exist_ok=True)
    for name, (image, mask) in images.items():
        tifffile.imwrite(root / "train" / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "train" / "masks" / f"{name}.tif", mask, photometric="minisblack")
    return root


def read(path: Path) -> np.ndarray:
    return tifffile.imread(path)


def three_objects() -> tuple[np.ndarray, np.ndarray]:
    """40×48 uint16 image; ids 3 (corner square), 7 (long bar), 20 (small square)."""
    mask = np.zeros((40, 48), dtype=np.uint16)
    mask[0:4, 0:4] = 3  # touches the top-left corner: its window must be clipped to (0, 0)
    mask[20:24, 2:46] = 7  # long bar: cut by the windows of the other objects
    mask[28:32, 10:14] = 20
    image = np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 7
    return image, mask


def test_crop_origin_is_centred_and_clipped():
    assert crops.crop_origin(np.array([20.0, 30.0]), 16, (40, 48)) == (12, 22)
    assert crops.crop_origin(np.array([1.5, 1.5]), 16, (40, 48)) == (0, 0)
    assert crops.crop_origin(np.array([39.0, 47.0]), 16, (40, 48)) == (24, 32)


def test_crops_names_windows_and_visible_part_centres(tmp_path):
    image, mask = three_objects()
    data = write_dataset(tmp_path / "data", {"img": (image, mask)}, crop_size=16)
    out = tmp_path / "crops"
    assert cli.main(["crops", str(data), "--out", str(out), "--center", "centroid"]) == 0

    names = sorted(p.name for p in (out / "train" / "images").iterdir())
    assert names == ["img_000.tif", "img_001.tif", "img_002.tif"]  # ascending id order
    assert not any((out / "val" / "images").iterdir())
    settings = DatasetSettings.load(out)
    assert settings.center == "centroid" and settings.crop_size == 16

    # id 3 sits in the corner: the window is clipped to the image, not padded.
    crop = read(out / "train" / "images" / "img_000.tif")
    assert crop.dtype == np.uint16
    np.testing.assert_array_equal(crop, image[0:16, 0:16])
    np.testing.assert_array_equal(read(out / "train" / "masks" / "img_000.tif"), mask[0:16, 0:16])

    # id 20 (centroid (29.5, 11.5)) -> window top-left (21, 3); the bar (id 7) is cut by it:
    # its centre must come from its visible pixels (rows 21..23, columns 3..18).
    top, left = 21, 3
    np.testing.assert_array_equal(read(out / "train" / "masks" / "img_002.tif"), mask[top : top + 16, left : left + 16])
    center_img = read(out / "train" / "centers" / "img_002.tif")
    assert center_img.dtype == np.uint8
    visible_bar = mask[top : top + 16, left : left + 16] == 7
    square = mask[top : top + 16, left : left + 16] == 20
    expected = {centers.centroid(visible_bar), centers.centroid(square)}
    assert set(map(tuple, np.argwhere(center_img))) == expected
    assert centers.centroid(visible_bar) != tuple(np.array(centers.centroid(mask == 7)) - (top, left))
    # Centroids are rounded in crop coordinates: (29.5, 11.5) - (21, 3) -> (8, 8), not (30, 12) - (21, 3).
    assert centers.centroid(square) == (8, 8)


@pytest.mark.parametrize("kind", centers.CENTER_TYPES)
def test_cached_centres_equal_centres_computed_per_crop(kind):
    _, mask = three_objects()
    objects = crops.labelled_objects(mask, one_hot=False)
    cache = {}
    # Overlapping windows share visible parts of the bar; the cache must not change any centre.
    for origin in [(21, 3), (21, 4), (13, 15), (21, 3), (0, 0), (24, 32)]:
        cached = crops.center_image(objects, origin, 16, kind, cache)
        window = mask[origin[0] : origin[0] + 16, origin[1] : origin[1] + 16]
        expected = np.zeros((16, 16), dtype=np.uint8)
        for label_id in np.unique(window)[1:]:
            expected[centers.object_center(window == label_id, kind)] = 1
        np.testing.assert_array_equal(cached, expected)


def test_images_smaller_than_the_crop_are_skipped(tmp_path):
    image, mask = three_objects()
    pairs = {"big": (image, mask), "small": (image[:10], mask[:10])}
    data = write_dataset(tmp_path / "data", pairs, crop_size=16)
    crops.make_crops(data, tmp_path / "crops", "medoid")
    assert {p.name.split("_")[0] for p in (tmp_path / "crops" / "train" / "images").iterdir()} == {"big"}
    (data / "train" / "images" / "big.tif").unlink()
    (data / "train" / "masks" / "big.tif").unlink()
    with pytest.raises(DataError, match="1 smaller than the crop size 16"):  # no crops at all: an error
        crops.make_crops(data, tmp_path / "crops", "medoid")


def test_label_holes_are_filled_per_object():
    mask = np.zeros((9, 9), dtype=np.uint16)
    mask[1:8, 1:8] = 5
    mask[4, 4] = 0  # a hole
    mask[0, 0] = 2
    filled = crops.fill_label_holes(mask)
    assert filled[4, 4] == 5
    assert filled[0, 0] == 2
    assert (filled[1:8, 1:8] == 5).all()


def test_one_hot_crops_keep_overlaps_and_drop_empty_slices(tmp_path):
    stack = np.zeros((3, 32, 32), dtype=np.uint16)
    stack[0, 14:18, 2:30] = 1  # horizontal worm
    stack[1, 2:30, 4:8] = 1  # vertical worm crossing it
    stack[2, 26:30, 26:30] = 1  # far away: absent from the first worm's crop
    image = np.full((32, 32), 1000, dtype=np.uint16)
    data = write_dataset(tmp_path / "data", {"w": (image, stack)}, crop_size=12, one_hot=True)
    crops.make_crops(data, tmp_path / "crops", "medoid")
    masks = read(tmp_path / "crops" / "train" / "masks" / "w_000.tif")
    # Worm 0's centroid (15.5, 15.5) -> window rows 9..20, columns 9..20: only worm 0 is visible.
    assert masks.shape == (1, 12, 12)
    # Worm 1's window (rows 9..20, columns 0..11) shows both worms crossing, not worm 2.
    masks = read(tmp_path / "crops" / "train" / "masks" / "w_001.tif")
    assert masks.ndim == 3 and masks.shape[0] == 2  # both worms, overlap kept
    assert (masks.sum(axis=0) == 2).any()
    center_img = read(tmp_path / "crops" / "train" / "centers" / "w_001.tif")
    assert center_img.sum() == 2


def test_crop_level_validation_split_matches_the_seeded_shuffle(tmp_path):
    rng = np.random.default_rng(1)
    images = {}
    for i in range(3):
        mask = np.zeros((40, 40), dtype=np.uint16)
        for j in range(6):
            y, x = rng.integers(0, 36, size=2)
            mask[y : y + 4, x : x + 4] = j + 1
        images[f"im{i}"] = (rng.integers(0, 255, (40, 40)).astype(np.uint8), mask)
    data = write_dataset(tmp_path / "data", images, crop_size=16, val_split="crop", val_fraction=0.15)
    out = tmp_path / "crops"
    crops.make_crops(data, out, "centroid", seed=1000)
    train = sorted(p.name for p in (out / "train" / "images").iterdir())
    val = sorted(p.name for p in (out / "val" / "images").iterdir())
    every = sorted(train + val)
    order = np.arange(len(every))
    np.random.seed(1000)
    np.random.shuffle(order)
    assert val == sorted(every[i] for i in order[: int(0.15 * len(every))])
    assert len(val) == int(0.15 * len(every)) > 0
    for folder in ("masks", "centers"):
        assert sorted(p.name for p in (out / "val" / folder).iterdir()) == val


def test_mismatched_mask_is_reported_with_its_file(tmp_path):
    image, mask = three_objects()
    data = write_dataset(tmp_path / "data", {"img": (image, mask[:, :40])}, crop_size=16)
    with pytest.raises(DataError, match="img.tif"):
        crops.make_crops(data, tmp_path / "crops", "medoid")


def test_rerun_replaces_the_crops_of_an_earlier_run(tmp_path):
    image, mask = three_objects()
    data = write_dataset(tmp_path / "data", {"img": (image, mask)}, crop_size=16)
    out = tmp_path / "crops"
    crops.make_crops(data, out, "medoid")
    (out / "val" / "images" / "stale_000.tif").write_bytes(b"old")
    mask[mask == 20] = 0  # one object fewer
    tifffile.imwrite(data / "train" / "masks" / "img.tif", mask)
    crops.make_crops(data, out, "medoid")
    assert sorted(p.name for p in (out / "train" / "masks").iterdir()) == ["img_000.tif", "img_001.tif"]
    assert not any((out / "val" / "images").iterdir())


@pytest.mark.parametrize("normalization", ["absolute", "percentile"])
def test_crop_images_follow_whole_image_normalisation(tmp_path, normalization):
    """`absolute` crops keep the stored dtype; `percentile` crops use the whole image's percentiles."""
    from embedseg.crop_dataset import CropDataset
    from embedseg.dataset_settings import normalize

    image, mask = three_objects()
    image = image + np.arange(image.size, dtype=np.uint16).reshape(image.shape)  # a spread of values
    data = write_dataset(
        tmp_path / "data", {"a": (image, mask)}, crop_size=16, normalization=normalization, normalization_factor=65535.0
    )
    settings = crops.make_crops(data, tmp_path / "crops", "centroid")
    assert settings.prenormalized == (normalization != "absolute")
    stored = read(tmp_path / "crops" / "train" / "images" / "a_000.tif")
    assert stored.dtype == (np.uint16 if normalization == "absolute" else np.float32)
    # What training sees equals the whole image normalised, then cropped (EmbedSeg HEAD's order).
    whole = normalize(image, settings)
    loaded = CropDataset(tmp_path / "crops" / "train", settings)[(0, 0)]["image"].numpy()[0]
    window_found = any(
        np.array_equal(loaded, whole[top : top + 16, left : left + 16])
        for top in range(image.shape[0] - 15)
        for left in range(image.shape[1] - 15)
    )
    assert window_found
