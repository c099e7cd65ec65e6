"""Object-centred crops: window clipping, visible-part centres, naming, one-hot, crop-level val."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from embedseg import cli, crops
from embedseg.core import centers
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


def irregular_volume(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> np.ndarray:
    """Label volume of n objects, each a union of three random balls (asymmetric: no tied medoids)."""
    labels = np.zeros(shape, np.uint16)
    grid = np.indices(shape)
    for label_id in range(1, n + 1):
        centre = rng.uniform(0, 1, 3) * shape
        for _ in range(3):
            offset = centre + rng.normal(0, 2.0, 3) * (0.5, 1, 1)
            radius = rng.uniform(1.5, 4.0)
            scaled = (grid - offset[:, None, None, None]) * np.array([2.0, 1, 1])[:, None, None, None]
            labels[((scaled**2).sum(0) < radius**2) & (labels == 0)] = label_id
    return labels


def brute_force_medoid(coords: np.ndarray, scales: tuple[float, ...]) -> tuple[int, ...]:
    """Voxel with the smallest sum of distances (z stretched by scales[0]); full distance matrix."""
    points = coords * np.asarray(scales)
    sums = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).sum(0)
    return tuple(int(v) for v in coords[np.argmin(sums)])


def test_3d_crops_windows_anisotropic_medoids_and_foreground_weight(tmp_path):
    rng = np.random.default_rng(5)
    shape, crop = (20, 36, 40), (8, 16, 16)
    volumes = {}
    for subset, name in (("train", "a"), ("train", "b"), ("val", "c")):
        labels = irregular_volume(rng, shape, 6)
        labels[0:3, 0:4, 0:5] = 50  # in the corner: its window is clipped, not padded
        image = rng.integers(0, 255, shape).astype(np.uint8)
        volumes[subset, name] = (image, labels)
    root = tmp_path / "data"
    DatasetSettings(name="toy3d", ndim=3, voxel_size=(2.0, 0.5, 0.5), crop_size=crop).save(root)
    for (subset, name), (image, labels) in volumes.items():
        for folder, array in (("images", image), ("masks", labels)):
            (root / subset / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / subset / folder / f"{name}.tif", array)
    out = tmp_path / "crops"
    assert cli.main(["crops", str(root), "--out", str(out), "--center", "medoid"]) == 0

    settings = DatasetSettings.load(out)
    assert settings.ndim == 3 and settings.anisotropy == 4.0 and settings.crop_shape == crop
    n_checked = sensitive = 0
    for (subset, name), (image, labels) in volumes.items():
        labels = crops.fill_label_holes(labels)
        ids = np.unique(labels[labels > 0])
        written = sorted(p.name for p in (out / subset / "images").glob(f"{name}_*.tif"))
        assert written == [f"{name}_{j:03d}.tif" for j in range(len(ids))]  # one crop per object, id order
        for j, label_id in enumerate(ids):
            centroid = np.argwhere(labels == label_id).mean(axis=0)
            origin = [int(np.clip(c - s / 2, 0, n - s)) for c, s, n in zip(centroid, crop, shape)]
            window = tuple(slice(o, o + s) for o, s in zip(origin, crop))
            crop_name = f"{name}_{j:03d}.tif"
            np.testing.assert_array_equal(read(out / subset / "images" / crop_name), image[window])
            mask_crop = read(out / subset / "masks" / crop_name)
            np.testing.assert_array_equal(mask_crop, labels[window])
            expected = set()
            for visible_id in np.unique(mask_crop[mask_crop > 0]):
                coords = np.argwhere(mask_crop == visible_id)
                anisotropic = brute_force_medoid(coords, (4.0, 1.0, 1.0))
                expected.add(anisotropic)
                sensitive += brute_force_medoid(coords, (1.0, 1.0, 1.0)) != anisotropic
            center_image = read(out / subset / "centers" / crop_name)
            assert center_image.shape == crop and center_image.dtype == np.uint8
            assert set(map(tuple, np.argwhere(center_image).tolist())) == expected
            n_checked += 1
    assert n_checked >= 18 and sensitive > 0  # the anisotropy changed some medoids: the test sees it

    # Foreground weight: mean over the cropped volumes' masks (train and val) of #bg / #fg.
    ratios = [(labels == 0).sum() / (labels > 0).sum() for _, labels in volumes.values()]
    record = json.loads((out / "crops.json").read_text())
    assert record["foreground_weight"] == pytest.approx(np.mean(ratios)) == settings.foreground_weight
    assert record["ndim"] == 3 and record["anisotropy"] == 4.0 and record["crop_size"] == list(crop)


def test_2d_crops_json_records_dimension_and_the_fixed_foreground_weight(tmp_path):
    image, mask = three_objects()
    data = write_dataset(tmp_path / "data", {"img": (image, mask)}, crop_size=16)
    settings = crops.make_crops(data, tmp_path / "crops", "medoid")
    record = json.loads((tmp_path / "crops" / "crops.json").read_text())
    assert (record["ndim"], record["anisotropy"], record["crop_size"]) == (2, 1.0, [16, 16])
    assert record["foreground_weight"] == settings.foreground_weight == 10.0


def test_volumes_shallower_than_the_crop_are_skipped(tmp_path):
    labels = np.zeros((6, 16, 16), np.uint16)
    labels[1:4, 4:9, 4:9] = 1
    root = tmp_path / "data"
    DatasetSettings(name="thin", ndim=3, crop_size=(8, 16, 16)).save(root)
    for folder, array in (("images", labels.astype(np.uint8)), ("masks", labels)):
        (root / "train" / folder).mkdir(parents=True)
        tifffile.imwrite(root / "train" / folder / "t.tif", array)
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "masks").mkdir(parents=True)
    with pytest.raises(DataError, match="1 smaller than the crop size 8x16x16"):
        crops.make_crops(root, tmp_path / "crops", "medoid")
    assert not (tmp_path / "crops").exists()


OFFICIAL_CROPS_3D = """
import sys
import numpy as np
from EmbedSeg.utils.generate_crops import process_3d
from EmbedSeg.utils.preprocess_data import calculate_foreground_weight

root, out = sys.argv[1:3]
np.random.seed(0)
for subset in ("train", "val"):
    process_3d(f"{root}/data/{subset}/images/v.tif", f"{root}/data/{subset}/masks/v.tif", out, subset,
               crop_size_x=16, crop_size_y=16, crop_size_z=8, center="medoid", norm="absolute",
               anisotropy_factor=4.0, speed_up=1, data_type="8-bit")
print(calculate_foreground_weight(root, "data", ["train", "val"], "3d"))
"""


def test_3d_crops_match_the_official_process_3d(tmp_path):
    """Every crop (image, mask, centre image) equals one of the official 0.2.5 `process_3d` crops
    (absolute normalisation, medoid centres, anisotropy 4; the official names follow a random id
    order, so crops are matched by their masks), and the foreground weight is the official
    `calculate_foreground_weight` of the train and val masks."""
    from benchmarks.compare_official import OFFICIAL_PYTHON

    if not OFFICIAL_PYTHON.exists():
        pytest.skip(f"{OFFICIAL_PYTHON} absent: build it with `make venv-official`")
    import subprocess

    rng = np.random.default_rng(11)
    root = tmp_path / "data"
    DatasetSettings(name="toy3d", ndim=3, voxel_size=(2.0, 0.5, 0.5), crop_size=(8, 16, 16)).save(root)
    n_objects = {}
    for subset, count in (("train", 7), ("val", 4)):
        labels = irregular_volume(rng, (20, 36, 40), count)
        n_objects[subset] = len(np.unique(labels)) - 1
        image = rng.integers(0, 255, labels.shape).astype(np.uint8)
        for folder, array in (("images", image), ("masks", labels)):
            (root / subset / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / subset / folder / "v.tif", array)
    settings = crops.make_crops(root, tmp_path / "ours", "medoid")
    official_run = subprocess.run(
        [str(OFFICIAL_PYTHON), "-c", OFFICIAL_CROPS_3D, str(tmp_path), str(tmp_path / "official")],
        check=True,
        capture_output=True,
        text=True,
    )
    assert settings.foreground_weight == pytest.approx(float(official_run.stdout.split()[-1]), rel=1e-12)
    for subset in ("train", "val"):
        official = {}
        for path in (tmp_path / "official" / subset / "masks").glob("*.tif"):
            official[read(path).tobytes()] = (
                read(tmp_path / "official" / subset / "images" / path.name),
                read(tmp_path / "official" / subset / "center-medoid" / path.name),
            )
        ours = sorted((tmp_path / "ours" / subset / "masks").glob("*.tif"))
        assert len(ours) == len(official) == n_objects[subset]
        for path in ours:
            official_image, official_centers = official[read(path).astype(np.uint16).tobytes()]
            ours_subset = tmp_path / "ours" / subset
            np.testing.assert_array_equal(read(ours_subset / "images" / path.name) / 255, official_image)
            np.testing.assert_array_equal(read(ours_subset / "centers" / path.name), official_centers)
