"""Readers that turn each source layout into (image, label image) samples.

Layouts (auto-detected by :func:`detect_layout`):

- ``embedseg``: EmbedSeg release zips, ``[<name>/]{train,test}/{images,masks}/*.tif``.
- ``folder``: users' own data, ``images/*`` and ``masks/*`` with the same file stems.
- ``dsb-stage1``: Kaggle DSB 2018, ``<id>/images/<id>.png`` and ``<id>/masks/*.png``, one binary
  PNG per nucleus (painted into one label image, holes filled).
- ``usiigaci``: github.com/oist/Usiigaci, ``setN/raw.tif`` and ``setN/instances_ids.png``.
- ``bbbc010``: Broad BBBC010, images ``…_<well>_w<channel>_<uuid>.tif`` and one binary PNG per
  worm ``<well>_<nn>_ground_truth.png``, stacked into a (K, H, W) one-hot mask (overlaps kept).

A reader returns a :class:`Source`: lazily read samples in sorted-name order (the order the
paper's splits are defined on), split into a training pool and, when the source has one, a
fixed test set.

3D data (``embedseg`` and ``folder`` layouts): images are TIFF stacks (Z, Y, X) or (C, Z, Y, X)
and masks label stacks (Z, Y, X). Whether a 3-axis file is a volume or a 2D (C, H, W) image /
(K, H, W) one-hot stack is decided per data set by :func:`detect_ndim`, never per file.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..core.labels import (
    fill_label_holes,  # StarDist's hole filling, as the crop step uses it
    label_dtype,
)
from ..io import DataError, check_labels, read_image
from ..zarr_io import image_stem, is_zarr, open_image, read_labels_any

LAYOUTS = ("embedseg", "folder", "dsb-stage1", "usiigaci", "bbbc010")
IMAGE_FILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
BBBC010_IMAGE = re.compile(r"_(?P<well>[A-P]\d{2})_w(?P<channel>\d)_")
BBBC010_MASK = re.compile(r"^(?P<well>[A-P]\d{2})_\d+_ground_truth\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One image and where its objects are stored.

    `mask_kind` says how `mask_paths` make a label image: ``label`` (one label image, (H, W) or
    a (K, H, W) stack), ``objects`` (one binary image per object → (H, W) label image, holes
    filled) or ``stack`` (one binary image per object → (K, H, W) 0/1 stack, overlaps kept).
    """

    name: str  # output file stem
    image_path: Path
    mask_paths: tuple[Path, ...]
    mask_kind: str = "label"

    def read_image(self, rgb_to_grey: bool = False) -> np.ndarray:
        """The image as stored: (H, W) or (C, H, W), volumes (Z, Y, X) or (C, Z, Y, X); RGB(A)
        pictures as :func:`reduce_rgb` says; channels first (see :func:`channels_first`)."""
        if is_zarr(self.image_path):  # channels first already (its axes say which is which)
            return open_image(self.image_path).read()
        image = channels_first(read_image(self.image_path), self.image_path)
        return reduce_rgb(image, self.image_path, rgb_to_grey)

    def read_labels(self) -> np.ndarray:
        """The label image (H, W) or one-hot stack (K, H, W), validated (integer, non-negative);
        a label image saved as an RGB(A) picture with R = G = B (ids as grey values) is (H, W)."""
        if self.mask_kind == "label":
            labels = read_labels_any(self.mask_paths[0])
            if labels.ndim == 3 and labels.shape[-1] in (3, 4) and np.all(labels[..., :3] == labels[..., :1]):
                return labels[..., 0]  # any other RGB mask is refused by validate.check_pair
            return labels
        if self.mask_kind == "stack":
            return np.stack(list(read_object_masks(self.mask_paths))).astype(np.uint16)
        return fill_label_holes(paint_objects(self.mask_paths))


@dataclass
class Source:
    """Samples of one source: `pool` is split into train/val (and test unless `test` is given)."""

    layout: str
    pool: list[Sample]
    test: list[Sample] = field(default_factory=list)


def reduce_rgb(image: np.ndarray, path: str | os.PathLike, rgb_to_grey: bool = False) -> np.ndarray:
    """An RGB(A) picture (H, W, 3|4) as one channel (H, W); other images unchanged.

    R = G = B (greyscale saved as RGB, e.g. DSB's fluorescence PNGs) loses nothing and is always
    reduced; a colour picture is reduced to luminance only with `rgb_to_grey`, else refused,
    since its channels are not the (C, H, W) stack of a multi-channel microscope image.
    """
    if image.ndim != 3 or image.shape[-1] not in (3, 4):  # (C, H, W) has W > 4
        return image
    if not rgb_to_grey and not np.all(image[..., :3] == image[..., :1]):
        raise DataError(
            f"{path}: colour RGB(A) image of shape {image.shape}; pass --rgb-to-grey to reduce "
            "it to luminance, or store the channels as a (C, H, W) stack"
        )
    return to_grey(image)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) → (H, W): the first channel when R = G = B (DSB fluorescence), else luminance."""
    rgb = rgb[..., :3]
    if np.all(rgb == rgb[..., :1]):
        return rgb[..., 0]
    from skimage.color import rgb2gray

    return np.round(rgb2gray(rgb) * np.iinfo(rgb.dtype).max).astype(rgb.dtype)


def is_grey(path: Path) -> bool:
    """True when an (RGB(A)) image has R = G = B, i.e. is a greyscale (fluorescence) image."""
    image = read_image(path)
    return image.ndim == 2 or bool(np.all(image[..., :3] == image[..., :1]))


def read_binary(path: Path) -> np.ndarray:
    """A per-object mask (H, W) as bool: any non-zero pixel belongs to the object."""
    mask = read_image(path)
    if mask.ndim == 3:  # PNGs saved as RGB(A)
        mask = mask[..., 0]
    return check_labels(mask, path) > 0


def read_object_masks(mask_paths: tuple[Path, ...]) -> Iterator[np.ndarray]:
    """Yield the (H, W) bool masks of one image's objects; all must have the same shape."""
    shape = None
    for path in mask_paths:
        mask = read_binary(path)
        if shape is not None and mask.shape != shape:
            raise DataError(
                f"{path}: mask shape {mask.shape} differs from {mask_paths[0]} {shape}; all masks of an image must match it"
            )
        shape = mask.shape
        yield mask


def paint_objects(mask_paths: tuple[Path, ...]) -> np.ndarray:
    """One binary image per object → (H, W) label image; the k-th mask (from 1) gets id k, later ones on top.

    Painted one at a time: stacking DSB's hundreds of full-size masks would need gigabytes.
    """
    labels = None
    for index, mask in enumerate(read_object_masks(mask_paths), start=1):
        if labels is None:
            labels = np.zeros(mask.shape, label_dtype(len(mask_paths)))
        labels[mask] = index
    return labels


def walk(root: Path, pattern: str) -> list[Path]:
    """Sorted files under `root` whose name matches `pattern`, following symbolic links
    (unlike pathlib's rglob before Python 3.13), so linked data folders work."""
    return sorted(
        Path(folder) / name
        for folder, _, names in os.walk(root, followlinks=True)
        for name in fnmatch.filter(names, pattern)
    )


def find_image_files(directory: Path) -> list[Path]:
    """Image files of `directory` and its OME-Zarr images (``NAME.ome.zarr`` folders)."""
    return sorted(
        p
        for p in directory.iterdir()
        if (p.suffix.lower() in IMAGE_FILE_SUFFIXES or is_zarr(p)) and not p.name.startswith(".")
    )


def by_stem(paths: list[Path]) -> dict[str, Path]:
    """Files by stem, the name of their output; two files differing only in suffix are an error."""
    found: dict[str, Path] = {}
    for path in paths:
        stem = image_stem(path) if is_zarr(path) else path.stem
        if stem in found:
            raise DataError(
                f"{path}: same name as {found[stem].name} up to the suffix; both would be "
                f"written as {stem}.tif — rename or remove one"
            )
        found[stem] = path
    return found


def pair_folder(images_dir: Path, masks_dir: Path) -> list[Sample]:
    """Samples of an ``images/`` + ``masks/`` folder pair, matched by file stem.

    An image without a mask (or a mask without an image) is an error naming the file.
    """
    images = by_stem(find_image_files(images_dir))
    masks = by_stem(find_image_files(masks_dir)) if masks_dir.is_dir() else {}
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(f"{path}: no mask {masks_dir / stem}.tif for this image; add it or remove the image")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(f"{path}: mask without an image {images_dir / stem}.tif; add the image or remove the mask")
    if not images:
        raise DataError(f"{images_dir}: no images found (expected .tif or .png files)")
    return [Sample(stem, images[stem], (masks[stem],)) for stem in sorted(images)]


def read_folder(root: Path) -> Source:
    """Users' own data: ``images/`` + ``masks/``, no test split of its own."""
    return Source("folder", pair_folder(root / "images", root / "masks"))


def read_embedseg(root: Path) -> Source:
    """EmbedSeg zip layout; a ``val/`` folder, if any, joins the pool (we draw val ourselves)."""
    if not (root / "train" / "images").is_dir():
        raise DataError(f"{root}: no train/images folder found (EmbedSeg layout <name>/train/images)")
    pool = [
        s
        for split in ("train", "val")
        if (root / split).is_dir()
        for s in pair_folder(root / split / "images", root / split / "masks")
    ]
    test = pair_folder(root / "test" / "images", root / "test" / "masks") if (root / "test").is_dir() else []
    return Source("embedseg", sorted(pool, key=lambda s: s.name), test)


def unwrap(root: Path) -> Path:
    """Descend through folders that hold nothing but one sub-folder (zips wrap data in ``<name>/``)."""
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) != 1 or not entries[0].is_dir():
            return root
        root = entries[0]


def read_dsb_stage1(root: Path, grey_only: bool = True) -> Source:
    """Kaggle DSB 2018 stage1: one sample per ``<id>/`` folder; `grey_only` keeps fluorescence images."""
    samples = []
    for image_path in walk(root, "*.png"):
        sample_dir = image_path.parent.parent
        if image_path.parent.name != "images" or image_path.stem != sample_dir.name:
            continue
        masks = sorted((sample_dir / "masks").glob("*.png")) if (sample_dir / "masks").is_dir() else []
        if not masks:
            raise DataError(
                f"{image_path}: no masks in {sample_dir / 'masks'}; add the per-nucleus PNGs or remove the folder"
            )
        samples.append(Sample(sample_dir.name, image_path, tuple(masks), "objects"))
    if grey_only:
        samples = [s for s in samples if is_grey(s.image_path)]
    return Source("dsb-stage1", sorted(samples, key=lambda s: s.name))


def read_usiigaci(root: Path) -> Source:
    """Usiigaci repository: ``setN/raw.tif`` + ``instances_ids.png``; sets under a ``test/`` folder are the test set."""
    pool, test = [], []
    for raw in walk(root, "raw.tif"):
        labels = raw.with_name("instances_ids.png")
        if not labels.is_file():
            raise DataError(f"{raw}: no {labels.name} next to it; add the label image or remove the set")
        sample = Sample(raw.parent.name, raw, (labels,))
        (test if raw.parent.parent.name == "test" else pool).append(sample)
    return Source("usiigaci", sorted(pool, key=lambda s: s.name), sorted(test, key=lambda s: s.name))


def read_bbbc010(root: Path, channel: str = "2") -> Source:
    """Broad BBBC010: one sample per well; channel w2 = brightfield (w1 = GFP), masks stacked (K, H, W)."""
    images: dict[str, Path] = {}
    for path in walk(root, "*.tif"):
        match = BBBC010_IMAGE.search(path.name)
        if match and match["channel"] == channel:
            images[match["well"]] = path
    masks: dict[str, list[Path]] = {}
    for path in walk(root, "*.png"):
        match = BBBC010_MASK.match(path.name)
        if match:
            masks.setdefault(match["well"], []).append(path)
    if not images:
        raise DataError(f"{root}: no BBBC010 images (*_<well>_w{channel}_*.tif) found")
    for well, path in images.items():
        if well not in masks:
            raise DataError(
                f"{path}: no worm masks {well}_NN_ground_truth.png for well {well}; add them or remove the image"
            )
    return Source("bbbc010", [Sample(well, images[well], tuple(masks[well]), "stack") for well in sorted(images)])


@dataclass(frozen=True)
class TiffAxes:
    """What a TIFF file's metadata says about its axes: their names (tifffile's series axes, e.g.
    ``ZCYX`` for an ImageJ hyperstack; ``Q``/``S`` = unnamed), and the voxel size (z, y, x) in µm
    when the metadata gives it in a length unit."""

    axes: str = ""
    voxel_size: tuple[float, float, float] | None = None

    @property
    def has_z(self) -> bool:
        return "Z" in self.axes


# Length units of ImageJ's `unit` and OME's PhysicalSize*Unit, in µm.
UNITS_IN_MICRONS = {
    **dict.fromkeys(("micron", "microns", "um", "µm", "\\u00B5m"), 1.0),
    "nm": 1e-3,
    "mm": 1e3,
}


def tiff_axes(path: Path) -> TiffAxes:
    """Axes and voxel size from ImageJ metadata (``spacing`` = z, the resolution tags = pixels
    per unit in y and x, ``unit``) or OME-XML (``PhysicalSizeZ/Y/X`` and their units).

    A file without such metadata (or not a TIFF) gives ``TiffAxes()``; sizes in no length unit
    (ImageJ's default ``pixel``) are not voxel sizes and are ignored. An OME-Zarr image gives its
    NGFF axes and, for a volume, the scale of its full resolution.
    """
    if is_zarr(path):
        image = open_image(path)
        return TiffAxes(image.axes.upper(), image.scale if len(image.scale) == 3 else None)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return TiffAxes()
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
            if tif.is_ome:
                return TiffAxes(axes, ome_voxel_size(tif.ome_metadata))
            meta = tif.imagej_metadata or {}
            unit = UNITS_IN_MICRONS.get(str(meta.get("unit", "")).strip())
            tags = tif.pages[0].tags
            if not tif.is_imagej or unit is None or "XResolution" not in tags or "YResolution" not in tags:
                return TiffAxes(axes)
            (x_num, x_den), (y_num, y_den) = tags["XResolution"].value, tags["YResolution"].value
            z = float(meta.get("spacing", 1.0))
            return TiffAxes(axes, (z * unit, y_den / y_num * unit, x_den / x_num * unit))
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(f"{path}: cannot read the TIFF metadata ({exc}); the file is corrupt or not a TIFF") from exc


def channels_first(image: np.ndarray, path: Path) -> np.ndarray:
    """`image` with a channel axis that the TIFF metadata names moved to the front: ImageJ
    hyperstacks store multi-channel volumes as (Z, C, Y, X), the pipeline wants (C, Z, Y, X).
    A time axis is refused: one file must hold one image or volume."""
    axes = tiff_axes(path).axes
    if "T" in axes:
        raise DataError(f"{path}: TIFF with a time axis ({axes}); save one image or volume per file")
    if "C" in axes and len(axes) == image.ndim and axes.index("C") != 0:
        return np.moveaxis(image, axes.index("C"), 0)
    return image


def ome_voxel_size(xml: str) -> tuple[float, float, float] | None:
    """(z, y, x) µm from the first Pixels element of OME-XML; None unless all three are given."""
    from xml.etree import ElementTree

    pixels = next((e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if value is None or unit not in UNITS_IN_MICRONS:
            return None
        sizes.append(float(value) * UNITS_IN_MICRONS[unit])
    return tuple(sizes)


def detect_ndim(sample: Sample, image: np.ndarray, labels: np.ndarray) -> int:
    """Spatial dimension of a data set whose ndim was not declared, from its first sample.

    - the image's TIFF metadata (ImageJ or OME) names a z axis → 3;
    - a (C, Z, Y, X) image with a (Z, Y, X) label stack → 3;
    - a 2-axis label image, or a 2-axis image with a 3-axis mask (a one-hot stack) → 2;
    - a 3-axis image with a 3-axis mask of the same shape could be a volume or a (C, H, W)
      image with a (K, H, W) one-hot stack: DataError asking for ``--ndim``;
    - otherwise → 2 (the checks of the 2D path then name any mismatch).
    """
    if tiff_axes(sample.image_path).has_z or (image.ndim == 4 and labels.shape == image.shape[1:]):
        return 3
    if labels.ndim == 3 and image.shape == labels.shape:
        raise DataError(
            f"{sample.image_path}: image and mask {sample.mask_paths[0].name} are both 3-axis arrays "
            f"{image.shape} and the TIFF metadata names no z axis, so this could be a 3D volume or a 2D "
            "(C, H, W) image with a (K, H, W) one-hot stack; pass --ndim 3 (volumes) or --ndim 2"
        )
    return 2


def detect_layout(root: Path) -> str:
    """Name of the layout of the folder `root` (see the module docstring); DataError if none fits."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    if (root / "train" / "images").is_dir():
        return "embedseg"
    if any(BBBC010_MASK.match(p.name) for p in walk(root, "*_ground_truth.png")):
        return "bbbc010"
    if walk(root, "instances_ids.png"):
        return "usiigaci"
    if any(p.parent.name == "images" and (p.parent.parent / "masks").is_dir() for p in walk(root, "*.png")):
        return "dsb-stage1"
    raise DataError(
        f"{root}: layout not recognised; expected images/ + masks/, an EmbedSeg <name>/train/images tree, "
        "DSB stage1 <id>/images + <id>/masks, Usiigaci setN/raw.tif + instances_ids.png, or BBBC010 files"
    )


def read_source(root: str | Path, layout: str | None = None, dsb_grey_only: bool = True) -> Source:
    """Read the samples of folder `root` in `layout` (auto-detected when None).

    `dsb_grey_only` keeps only the greyscale (fluorescence) DSB stage1 images, like the paper's
    StarDist subset; otherwise colour images are included, reduced to luminance.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: source folder not found")
    readers = {
        "folder": read_folder,
        "embedseg": read_embedseg,
        "dsb-stage1": partial(read_dsb_stage1, grey_only=dsb_grey_only),
        "usiigaci": read_usiigaci,
        "bbbc010": read_bbbc010,
    }
    root = unwrap(root)
    layout = layout or detect_layout(root)
    if layout not in readers:
        raise DataError(f"{root}: layout {layout!r} unknown; choose one of {sorted(readers)}")
    return readers[layout](root)
