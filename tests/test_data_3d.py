"""3D data: the synthetic nuclei volumes, 3D TIFF stacks in the `folder` and EmbedSeg layouts,
the dimension rule, voxel sizes from metadata or the command line, and the 3D registry entries."""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from embedseg.cli import build_parser
from embedseg.data import names, prepare
from embedseg.data.formats import tiff_axes
from embedseg.data.registry import REGISTRY, RELEASE_URL
from embedseg.data.synthetic import VOXEL_SIZE_3D, generate
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError

SHAPE = (16, 32, 32)


def run_prepare(dataset: str, out: Path, *options: str) -> DatasetSettings:
    args = build_parser("prepare").parse_args(["prepare", dataset, "--out", str(out), *options])
    assert prepare.run(args) == 0
    return DatasetSettings.load(out)


def blobs(index: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 volume with two boxes (ids 1 and 4) whose position depends on `index`."""
    labels = np.zeros(shape, np.uint16)
    labels[2:6, 4 + index : 12 + index, 5:13] = 1
    labels[8:14, 18:26, 14 + index : 24 + index] = 4
    image = (1000 + 20000 * (labels > 0)).astype(np.uint16)
    return image, labels


def write_volumes(root: Path, n: int = 5, **imwrite) -> Path:
    """`folder` layout of n volumes (images written with `imwrite` options, e.g. metadata)."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, labels = blobs(i)
        tifffile.imwrite(root / "images" / f"v{i}.tif", image, **imwrite)
        tifffile.imwrite(root / "masks" / f"v{i}.tif", labels)
    return root


# ImageJ hyperstack metadata: 1.5 µm between slices, 4 pixels per µm in y and x
IMAGEJ = {
    "imagej": True,
    "resolution": (1 / 0.25, 1 / 0.25),
    "metadata": {"spacing": 1.5, "unit": "micron", "axes": "ZYX"},
}


def test_synthetic_nuclei_3d_are_touching_anisotropic_ellipsoids_of_a_few_sizes():
    volumes = list(generate("synthetic-nuclei-3d", 3, 64, seed=0, depth=24))
    touching, total, extents, sizes = 0, 0, [], []
    for stem, image, labels in volumes:
        assert stem.startswith("nuclei-3d_")
        assert image.shape == labels.shape == (24, 64, 64) and image.dtype == np.uint8
        ids = np.unique(labels[labels > 0])
        assert ids.tolist() == list(range(1, len(ids) + 1))  # sequential ids
        for label_id in ids:
            others = ndimage.binary_dilation(labels == label_id) & (labels > 0) & (labels != label_id)
            touching += bool(others.any())
        total += len(ids)
        for box, label_id in zip(ndimage.find_objects(labels), range(1, len(ids) + 1)):
            extents.append([s.stop - s.start for s in box])
            sizes.append(int((labels[box] == label_id).sum()))
        # nuclei are bright on a dark background
        assert image[labels > 0].mean() > 3 * image[labels == 0].mean()
    assert total >= 15 and touching / total > 0.3, (touching, total)
    z, y, x = np.median(extents, axis=0)
    # voxels are twice as long in z (VOXEL_SIZE_3D), so nuclei span about half as many slices
    assert VOXEL_SIZE_3D == (2.0, 1.0, 1.0) and 0.35 < z / y < 0.7 and 0.8 < x / y < 1.25
    assert np.percentile(sizes, 90) > 4 * np.percentile(sizes, 10)  # several sizes


def test_prepare_synthetic_3d_writes_volumes_and_voxel_size(tmp_path):
    sizes = ("--n-images", "6", "--image-size", "48", "--image-depth", "16")
    settings = run_prepare("synthetic-nuclei-3d", tmp_path / "data", *sizes)
    assert settings.ndim == 3 and settings.voxel_size == VOXEL_SIZE_3D and settings.anisotropy == 2.0
    # the registry's (16, 64, 64) shrunk per axis to fit 16 × 48 × 48 volumes
    assert settings.crop_size == (16, 48, 48) and settings.crop_shape == (16, 48, 48)
    assert settings.extra["voxel_size_source"] == "registry entry 'synthetic-nuclei-3d'"
    assert settings.extra["image_depth"] == 16 and settings.extra["n_images"] == 6
    volumes = sorted((tmp_path / "data").glob("*/images/*.tif"))
    assert len(volumes) == 6
    for path in volumes:
        assert tifffile.imread(path).shape == (16, 48, 48)
        assert tifffile.imread(path.parent.parent / "masks" / path.name).shape == (16, 48, 48)
    raw = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert raw["ndim"] == 3 and raw["voxel_size"] == [2.0, 1.0, 1.0]


def test_voxel_size_from_imagej_and_ome_metadata(tmp_path):
    image = np.zeros((4, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", image, **IMAGEJ)
    tifffile.imwrite(
        tmp_path / "ome.tif",
        image,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": 2000.0,
            "PhysicalSizeZUnit": "nm",
            "PhysicalSizeY": 0.3,
            "PhysicalSizeX": 0.3,
        },
    )
    tifffile.imwrite(tmp_path / "plain.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "pixels.tif", image, imagej=True, metadata={"axes": "ZYX", "unit": "pixel"})
    # Fiji writes µm escaped in its ASCII description
    fiji = {"axes": "ZYX", "unit": "\\u00B5m", "spacing": 0.8}
    tifffile.imwrite(tmp_path / "fiji.tif", image, imagej=True, resolution=(5.0, 5.0), metadata=fiji)
    assert tiff_axes(tmp_path / "fiji.tif").voxel_size == (0.8, 0.2, 0.2)
    imagej, ome, plain, pixels = (tiff_axes(tmp_path / f"{n}.tif") for n in ("ij", "ome", "plain", "pixels"))
    assert imagej.has_z and imagej.voxel_size == (1.5, 0.25, 0.25)
    assert ome.has_z and ome.voxel_size == pytest.approx((2.0, 0.3, 0.3))
    assert not plain.has_z and plain.voxel_size is None
    assert pixels.has_z and pixels.voxel_size is None  # ImageJ's unit "pixel" is no voxel size


def test_folder_of_3d_stacks_is_detected_from_the_metadata(tmp_path):
    src = write_volumes(tmp_path / "src", **IMAGEJ)
    settings = run_prepare("folder", tmp_path / "out", "--source", str(src))
    assert settings.ndim == 3 and settings.voxel_size == (1.5, 0.25, 0.25) and settings.anisotropy == 6.0
    assert settings.extra["voxel_size_source"] == "TIFF metadata of v0.tif"
    assert not settings.one_hot and settings.in_channels == 1 and settings.normalization_factor == 65535.0
    assert settings.min_object_size == 4 * 8 * 8  # voxels of the smaller box
    # official 3D rule: mean + 5 std of the object extents (max − min), rounded up to 8, y = x
    extents = np.array([[3, 7, 7], [5, 7, 9]] * 4)  # the two boxes of the 4 train+val volumes
    z, y, x = ((extents.mean(0) + 5 * extents.std(0)).astype(int) + 7) // 8 * 8
    assert settings.crop_shape == (z, max(y, x), max(y, x)) == (16, 16, 16)
    for path in (tmp_path / "out").glob("*/masks/*.tif"):
        assert tifffile.imread(path).shape == SHAPE


def test_voxel_size_option_wins_over_metadata(tmp_path):
    src = write_volumes(tmp_path / "src", **IMAGEJ)
    settings = run_prepare("folder", tmp_path / "out", "--source", str(src), "--voxel-size", "3", ".5", ".5")
    assert settings.voxel_size == (3.0, 0.5, 0.5) and settings.extra["voxel_size_source"] == "--voxel-size"


def test_ambiguous_3_axis_files_need_ndim(tmp_path, caplog):
    src = write_volumes(tmp_path / "src")  # no metadata: (16, 32, 32) image and mask
    with pytest.raises(DataError, match=re.escape(str(src / "images"))) as error:
        run_prepare("folder", tmp_path / "out", "--source", str(src))
    assert "--ndim 3" in str(error.value) and not (tmp_path / "out").exists()
    with caplog.at_level(logging.WARNING):
        settings = run_prepare("folder", tmp_path / "out", "--source", str(src), "--ndim", "3")
    assert settings.ndim == 3 and settings.voxel_size == (1.0, 1.0, 1.0)
    assert settings.extra["voxel_size_source"].startswith("default 1 1 1") and "1 1 1 µm" in caplog.text


def test_multichannel_volumes_are_3d(tmp_path):
    src = write_volumes(tmp_path / "src")
    for i in range(5):
        image, _ = blobs(i)
        tifffile.imwrite(src / "images" / f"v{i}.tif", np.stack([image, image // 2]))  # (C, Z, Y, X)
    settings = run_prepare("folder", tmp_path / "out", "--source", str(src))
    assert settings.ndim == 3 and settings.in_channels == 2


def test_imagej_multichannel_hyperstacks_become_channels_first(tmp_path):
    src = write_volumes(tmp_path / "src")
    for i in range(5):
        image, _ = blobs(i)
        hyperstack = np.stack([image, image // 2, image // 4], axis=1)  # ImageJ order (Z, C, Y, X)
        tifffile.imwrite(src / "images" / f"v{i}.tif", hyperstack, imagej=True, metadata={"axes": "ZCYX"})
    settings = run_prepare("folder", tmp_path / "out", "--source", str(src))
    assert settings.ndim == 3 and settings.in_channels == 3
    for path in (tmp_path / "out").glob("*/images/*.tif"):
        stored = tifffile.imread(path)
        assert stored.shape == (3, *SHAPE)
        np.testing.assert_array_equal(stored[1], blobs(int(path.stem[1:]))[0] // 2)


def test_time_series_are_refused(tmp_path):
    src = write_volumes(tmp_path / "src")
    series = np.zeros((2, *SHAPE), np.uint16)
    tifffile.imwrite(src / "images" / "v3.tif", series, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(DataError, match=re.escape(str(src / "images" / "v3.tif")) + ".*time axis"):
        run_prepare("folder", tmp_path / "out", "--source", str(src), "--ndim", "3")


def test_2d_images_with_one_hot_stacks_stay_2d(tmp_path):
    src = tmp_path / "src"
    for folder in ("images", "masks"):
        (src / folder).mkdir(parents=True)
    for i in range(4):
        stack = np.zeros((3, 16, 16), np.uint16)
        stack[0, 2:6, 2:6] = stack[1, 4:9, 4:9] = stack[2, 10:14, 10:14] = 1
        tifffile.imwrite(src / "images" / f"im{i}.tif", np.full((16, 16), i, np.uint8))
        tifffile.imwrite(src / "masks" / f"im{i}.tif", stack, photometric="minisblack")
    settings = run_prepare("folder", tmp_path / "out", "--source", str(src))
    assert settings.ndim == 2 and settings.one_hot and settings.voxel_size is None
    assert "voxel_size_source" not in settings.extra


@pytest.mark.parametrize(
    "culprit, array",
    [
        ("masks/v2.tif", np.zeros((15, 32, 32), np.uint16)),  # one slice short
        ("images/v1.tif", np.zeros((32, 32), np.uint16)),  # a 2D image
        ("masks/v3.tif", np.full(SHAPE, 0.5, np.float32)),  # non-integer labels
    ],
    ids=["mask-shape", "2d-image-in-3d-set", "float-labels"],
)
def test_3d_validation_names_the_file(tmp_path, culprit, array):
    src = write_volumes(tmp_path / "src")
    tifffile.imwrite(src / culprit, array)
    with pytest.raises(DataError, match=re.escape(str(src / culprit))):
        run_prepare("folder", tmp_path / "out", "--source", str(src), "--ndim", "3")
    assert not (tmp_path / "out").exists()


def test_empty_label_volume_warns(tmp_path, caplog):
    src = write_volumes(tmp_path / "src")
    tifffile.imwrite(src / "masks" / "v4.tif", np.zeros(SHAPE, np.uint16))
    with caplog.at_level(logging.WARNING):
        run_prepare("folder", tmp_path / "out", "--source", str(src), "--ndim", "3")
    assert str(src / "masks" / "v4.tif") in caplog.text and "no objects" in caplog.text


def test_voxel_size_and_2d_data_do_not_mix(tmp_path):
    src = tmp_path / "src"
    for folder in ("images", "masks"):
        (src / folder).mkdir(parents=True)
    for i in range(3):
        tifffile.imwrite(src / "images" / f"im{i}.tif", np.zeros((16, 16), np.uint8))
        tifffile.imwrite(src / "masks" / f"im{i}.tif", np.eye(16, dtype=np.uint16))
    with pytest.raises(DataError, match="--voxel-size is for 3D"):
        run_prepare("folder", tmp_path / "out", "--source", str(src), "--voxel-size", "2", "1", "1")


def test_3d_registry_entries():
    """The follow-up paper's defaults (EmbedSeg v0.2.x): split seed 1000, per-channel variance
    term, 0/0/min-object-size clustering, crop size from the objects (issue 30)."""
    expected = {
        "Mouse-Organoid-Cells-CBG": (1.0, 0.1733, 0.1733),
        "Platynereis-Nuclei-CBG": (2.031, 0.406, 0.406),
        "Mouse-Skull-Nuclei-CBG": (0.2, 0.073, 0.073),
        "Platynereis-ISH-Nuclei-CBG": (0.4501, 0.4499, 0.4499),
    }
    for name, voxel_size in expected.items():
        spec = REGISTRY[name]
        settings = spec.dataset_settings()
        assert spec.url == RELEASE_URL.format(name=name) and spec.layout == "embedseg"
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert settings.ndim == 3 and settings.voxel_size == voxel_size
        assert settings.normalization == "percentile"
        assert spec.split_seed == 1000 and spec.settings["crop_size"] == "auto"
        assert (settings.variance_loss, settings.clustering) == ("fixed", "current")
        assert settings.ignore_region == ([[51, 0, 231], [72, 152, 408]] if "Organoid" in name else None)
    for name in (names.BBBC010, names.DSB, names.USIIGACI):
        settings = REGISTRY[name].dataset_settings()
        assert REGISTRY[name].split_seed == 1234 and (settings.variance_loss, settings.clustering) == ("paper", "paper")
    assert REGISTRY["Mouse-Organoid-Cells-CBG"].dataset_settings().anisotropy == pytest.approx(1.0 / 0.1733)


def organoid_zip(folder: Path, n: int = 20, shape: tuple[int, ...] = (16, 48, 48)) -> tuple[Path, list[str]]:
    """A made Mouse-Organoid-Cells-CBG release zip: `n` volumes under train/ only (as the release)."""
    archive, names = folder / "Mouse-Organoid-Cells-CBG.zip", [f"organoid_{i:03d}" for i in range(n)]
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(names):
            image, labels = blobs(i % 5, shape)
            for sub, array in (("images", image), ("masks", labels)):
                path = folder / f"{sub}.tif"
                tifffile.imwrite(path, array)
                zf.write(path, f"Mouse-Organoid-Cells-CBG/train/{sub}/{name}.tif")
    return archive, names


def test_organoid_prepare_records_seed_1000_ignore_region_and_auto_crop(tmp_path):
    archive, names = organoid_zip(tmp_path)
    settings = run_prepare("Mouse-Organoid-Cells-CBG", tmp_path / "out", "--source", str(archive))
    assert settings.extra["split_seed"] == 1000 and settings.extra["counts"]["test"] == 2
    assert settings.ignore_region == [[51, 0, 231], [72, 152, 408]]
    assert (settings.variance_loss, settings.clustering) == ("fixed", "current")
    # blob extents z 3 and 5, y 7, x 7 and 9: mean + 5 sd = 9, 7, 13, rounded up to 8, y = x = max
    assert settings.crop_size == (16, 16, 16) and settings.extra["crop_size_source"].startswith("auto")
    given = run_prepare(
        "Mouse-Organoid-Cells-CBG", tmp_path / "given", "--source", str(archive), "--seed", "1234", "--crop-size", "8"
    )
    assert (
        given.extra["split_seed"] == 1234 and given.crop_size == 8 and given.extra["crop_size_source"] == "--crop-size"
    )


def test_release_zip_layout_with_count_splits(tmp_path):
    """Platynereis-Nuclei-CBG as the notebook splits it: 2 test and 2 validation volumes (counts)."""
    archive = tmp_path / "Platynereis-Nuclei-CBG.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(7):
            image, labels = blobs(i % 5)
            for folder, array in (("images", image), ("masks", labels)):
                path = tmp_path / f"{folder}{i}.tif"
                tifffile.imwrite(path, array)
                zf.write(path, f"Platynereis-Nuclei-CBG/train/{folder}/X{i}.tif")
    options = ("--source", str(archive), "--crop-size", "8", "16", "16")
    settings = run_prepare("Platynereis-Nuclei-CBG", tmp_path / "out", *options)
    assert settings.extra["counts"] == {"train": 3, "val": 2, "test": 2}
    assert settings.ndim == 3 and settings.crop_size == (8, 16, 16)
    assert settings.voxel_size == (2.031, 0.406, 0.406)
    assert settings.normalization == "percentile" and settings.normalization_factor is None


def test_crop_size_must_match_the_dimension(tmp_path):
    src = write_volumes(tmp_path / "src", **IMAGEJ)
    with pytest.raises(DataError, match="one per axis"):
        run_prepare("folder", tmp_path / "out", "--source", str(src), "--crop-size", "8", "16")


def test_prediction_clusters_with_the_data_sets_preset_by_default():
    from embedseg.core.cluster import ClusterParams
    from embedseg.inference import ClusteringConfig

    volumes = REGISTRY[names.PLATYNEREIS_NUCLEI].dataset_settings(min_object_size=5)
    assert ClusteringConfig().params(volumes) == ClusterParams(0.9, 0.5, 0, 0, 5)  # official 3-D test configs
    assert ClusteringConfig().params(REGISTRY[names.DSB].dataset_settings()) == ClusterParams()  # 128/128/36
    assert ClusteringConfig(clustering="paper").params(volumes) == ClusterParams()  # a given preset wins
