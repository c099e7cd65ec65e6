"""`embedseg prepare`: from a data set name (and optionally a source) to train/val/test folders.

    embedseg prepare DATASET --out DIR [--source URL|ZIP|FOLDER] [--cache resources] [--seed 1234]
        [--resplit-run K]

or from Python ``prepare(DATASET, DIR, PrepareConfig(...))``, writes
``DIR/{train,val,test}/{images,masks}/*.tif`` (images as stored, label images as uint16/uint32,
one-hot (K, H, W) stacks for overlapping objects; 3D: volumes and label volumes (Z, Y, X)) and
``DIR/dataset.json`` (:class:`embedseg.dataset_settings.DatasetSettings`, with
``min_object_size`` = the smallest object in train + val (voxels in 3D), ``in_channels`` = C of
(C, H, W) / (C, Z, Y, X) images, ``ndim`` and, in 3D, ``voxel_size``).

The dimension: ``--ndim``, else the registry entry's, else (``folder``, paper zips) detected
from the first sample (:func:`embedseg.data.formats.detect_ndim`). The voxel size (z, y, x):
``--voxel-size``, else the registry entry's, else the first image's TIFF metadata, else
(1, 1, 1); ``extra.voxel_size_source`` says which. ``DIR`` follows the output policy of
:mod:`embedseg.outputs`: it is built next to ``DIR`` and renamed into place, so a failed run
leaves an earlier result untouched, and the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.labels import min_object_size, object_extents
from ..crops import check_crop_size, fit_to_network, fitted_crop_size, object_crop_size
from ..dataset_settings import NORMALIZATIONS, DatasetSettings
from ..io import DataError, write_labels, write_tiff
from ..options import add_options, from_args, option
from ..outputs import DATA, replacing
from ..zarr_io import is_zarr
from .download import fetch, is_url, unpack_zip
from .formats import LAYOUTS, Sample, Source, detect_ndim, read_source, tiff_axes
from .registry import AUTO_CROP, REGISTRY, DatasetSpec, get_spec
from .splits import CURRENT_CODE_SPLIT_SEED, PAPER_SPLIT_SEED, held_out_count, paper_split, validation_seed
from .synthetic import DEFAULT_SIZES, SYNTHETIC_SETS, generate
from .validate import check_pair

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PrepareConfig:
    """Options of `embedseg prepare` (defaults: the registry entry's and the paper's split)."""

    source: str | None = option(
        None,
        "URL, zip file or folder to read instead of the registry's download; its layout is auto-detected "
        "(EmbedSeg zip, images/+masks/, DSB stage1, Usiigaci sets, BBBC010). Required for `folder`.",
    )
    sha256: str | None = option(None, "expected sha256 of the file at a --source URL (verified; default: print it)")
    layout: str | None = option(None, "source layout (default: auto-detect)", choices=LAYOUTS)
    cache: Path = option(Path("resources"), "download cache (reused across runs)", type=Path)
    seed: int | None = option(
        None,
        f"split seed (default: the data set's: {PAPER_SPLIT_SEED} = the paper's code, EmbedSeg v0.1.0, "
        f"for the 2D sets; {CURRENT_CODE_SPLIT_SEED} = EmbedSeg v0.2.x for the 3D sets)",
        type=int,
    )
    resplit_run: int | None = option(
        None,
        "run K of re-split runs: the validation split uses seed --seed + K, the test "
        "split --seed (default: both use --seed, as in the paper)",
        type=int,
        metavar="K",
    )
    limit: int | None = option(
        None, "use only the first N images (sorted names) of the source's train and test parts", type=int
    )
    normalization: str | None = option(
        None, "override the data set's normalisation (paper: absolute)", choices=NORMALIZATIONS
    )
    crop_size: tuple[int, ...] | None = option(
        None,
        "override the data set's crop size: one edge length, or one per axis (3D: Z Y X)",
        type=int,
        nargs="+",
        metavar="N",
    )
    ndim: int | None = option(
        None,
        "2: images (H, W) / (C, H, W); 3: volumes (Z, Y, X) / (C, Z, Y, X) with label stacks "
        "(Z, Y, X) (default: the data set's, else detected from the first sample's TIFF metadata and "
        "shapes; ambiguous 3-axis files are an error asking for --ndim)",
        type=int,
        choices=(2, 3),
    )
    voxel_size: tuple[float, float, float] | None = option(
        None,
        "3D: voxel size in µm (default: the data set's, else the TIFF metadata, else 1 1 1)",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
    )
    test_fraction: float | None = option(
        None,
        "fraction of the images held out for testing when the source has no test part (default: the data set's)",
        type=float,
    )
    all_dsb_images: bool = option(
        False,
        "DSB stage1: keep colour images too, reduced to luminance (default: greyscale fluorescence only)",
        action="store_true",
    )
    rgb_to_grey: bool = option(
        False,
        "reduce colour RGB(A) images to luminance (default: refuse them; RGB images "
        "with R = G = B always become one channel)",
        action="store_true",
    )
    n_images: int | None = option(None, "synthetic sets: number of images (default 16; 3D sets: 12 volumes)", type=int)
    image_size: int | None = option(None, "synthetic sets: image height and width (default 128; 3D sets: 96)", type=int)
    image_depth: int | None = option(None, "synthetic 3D sets: number of z slices (default 32)", type=int)
    data_seed: int = option(0, "synthetic sets: generator seed (the split seed is --seed)")

    def __post_init__(self) -> None:
        """Counts and sizes must make sense before anything is read or written."""
        if self.crop_size is not None:
            check_crop_size(self.crop_size)
        for flag, value in (("--limit", self.limit), ("--n-images", self.n_images)):
            if value is not None and value < 1:
                raise DataError(f"{flag} {value}: must be a positive number of images")
        if self.image_size is not None and self.image_size < 32:
            raise DataError(f"--image-size {self.image_size}: synthetic images need at least 32 pixels")
        if self.image_depth is not None and self.image_depth < 8:
            raise DataError(f"--image-depth {self.image_depth}: synthetic volumes need at least 8 slices")
        if self.voxel_size is not None and min(self.voxel_size) <= 0:
            raise DataError(f"--voxel-size {' '.join(map(str, self.voxel_size))}: sizes must be positive (µm)")
        if self.test_fraction is not None and not 0 < self.test_fraction < 1:
            raise DataError(f"--test-fraction {self.test_fraction}: give a fraction between 0 and 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(REGISTRY), help="data set name (see docs/data.md)")
    parser.add_argument("--out", required=True, type=Path, help="output folder DIR (train/, val/, test/, dataset.json)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is a file or a folder not written by `embedseg prepare` (never an input)",
    )
    add_options(parser, PrepareConfig)


def run(args: argparse.Namespace) -> int:
    prepare(args.dataset, args.out, from_args(PrepareConfig, args), args.force)
    return 0


def prepare(
    dataset: str, out: str | os.PathLike, config: PrepareConfig = PrepareConfig(), force: bool = False
) -> DatasetSettings:
    """Write data set `dataset` (a registry name) as ``out/{train,val,test}/{images,masks}`` and
    ``out/dataset.json``; returns the settings written. `out` follows :mod:`embedseg.outputs`."""
    out = Path(out)
    spec = get_spec(dataset)
    if config.test_fraction is not None:
        spec = dataclasses.replace(spec, test_split=config.test_fraction)
    config = with_synthetic_defaults(spec, config)
    if config.seed is None:
        config = dataclasses.replace(config, seed=spec.split_seed)
    local_source = config.source if config.source and not is_url(config.source) else None
    with replacing(out, DATA, {"--source": local_source, "--cache": Path(config.cache) / spec.name}, force) as staging:
        source = resolve_source(spec, config, staging / ".source")
        val_seed = validation_seed(config.seed, config.resplit_run)
        splits = split_samples(source, spec, config.seed, config.limit, val_seed, config.test_fraction is not None)
        settings = spec.dataset_settings(
            normalization=config.normalization, crop_size=crop_size(spec, config), ndim=config.ndim
        )
        settings = write_splits(
            splits,
            staging,
            settings,
            spec,
            config.rgb_to_grey or config.all_dsb_images,
            crop_size_given=config.crop_size is not None,
            ndim=config.ndim or (None if spec.name == "folder" else settings.ndim),
            voxel_size=config.voxel_size,
        )
        settings.extra.update(source_info(spec, config, source, splits))
        shutil.rmtree(staging / ".source", ignore_errors=True)
        settings.save(staging)
    for name, samples in splits.items():
        if not samples and not (name == "val" and settings.val_split == "crop"):
            log.warning("%s: the %s split is empty (too few images for its share); add images", out, name)
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in splits.items())
    log.info(
        "%s: %s %dD images (%s); min object size %d %s",
        out,
        spec.name,
        settings.ndim,
        counts,
        settings.min_object_size,
        "voxels" if settings.ndim == 3 else "px",
    )
    return settings


def with_synthetic_defaults(spec: DatasetSpec, config: PrepareConfig) -> PrepareConfig:
    """`config` with the synthetic size options not given filled in with the set's defaults
    (:data:`embedseg.data.synthetic.DEFAULT_SIZES`; 2D and 3D sets differ)."""
    n_images, image_size, depth = DEFAULT_SIZES[spec.settings.get("ndim", 2)]
    return dataclasses.replace(
        config,
        n_images=config.n_images or n_images,
        image_size=config.image_size or image_size,
        image_depth=config.image_depth or depth,
    )


def crop_size(spec: DatasetSpec, config: PrepareConfig) -> int | tuple[int, ...] | None:
    """--crop-size (one size or one per axis), else for synthetic sets the default shrunk per
    axis to fit the generated image size; None: the registry's."""
    if config.crop_size is not None:
        return check_crop_size(config.crop_size)
    if spec.name not in SYNTHETIC_SETS:
        return None
    default = spec.settings["crop_size"]
    if isinstance(default, int):
        return min(default, fit_to_network(config.image_size))
    extents = (config.image_depth, config.image_size, config.image_size)[-len(default) :]
    return tuple(min(size, fit_to_network(extent)) for size, extent in zip(default, extents))


def resolve_source(spec: DatasetSpec, config: PrepareConfig, scratch: Path) -> Source:
    """Samples of the data set: synthesised, downloaded (cached), unpacked or read from a folder.

    `scratch` holds synthesised images and unpacked local zips; it is deleted after the run.
    """
    if spec.name in SYNTHETIC_SETS:
        write_synthetic(spec.name, config.n_images, config.image_size, config.data_seed, scratch, config.image_depth)
        return read_source(scratch, "folder")
    location = config.source or spec.url
    if location is None:
        raise DataError(f"data set {spec.name!r} needs --source (a folder with images/ and masks/, a zip or a URL)")
    layout = config.layout or (spec.layout if config.source is None else None)
    greyscale_only = not config.all_dsb_images
    if is_url(location):
        download = spec.with_source(location, config.sha256)
        archive = fetch(download.url, download.sha256, Path(config.cache) / spec.name)
        return read_source(unpack_zip(archive, Path(config.cache) / spec.name), layout, greyscale_only)
    path = Path(location)
    if path.is_file():
        return read_source(unpack_zip(path, scratch, downloaded=False), layout, greyscale_only)
    return read_source(path, layout, greyscale_only)


def write_synthetic(
    name: str, n_images: int, image_size: int, seed: int, folder: Path, depth: int | None = None
) -> None:
    """Synthesise a set into ``folder/{images,masks}`` (the `folder` layout)."""
    from ..runtime import progress

    for stem, image, labels in progress(
        generate(name, n_images, image_size, seed, depth), total=n_images, desc=f"synthesise {name}"
    ):
        write_tiff(folder / "images" / f"{stem}.tif", image)
        write_labels(folder / "masks" / f"{stem}.tif", labels)


def split_samples(
    source: Source,
    spec: DatasetSpec,
    seed: int,
    limit: int | None,
    val_seed: int | None = None,
    test_given: bool = False,
) -> dict[str, list[Sample]]:
    """Train/val/test samples: the source's test set if it has one, else the paper's hold-out
    with `seed`; then val = ``val_fraction`` of the sorted remainder, drawn with `val_seed`
    (default: `seed`; none when validation uses crops). A test fraction that leaves fewer than 2
    images or holds out none is refused when it is the user's --test-fraction (`test_given`)."""
    pool, test = source.pool[:limit], source.test[:limit]
    if len(pool) < 2:
        raise DataError(
            f"data set {spec.name!r}: the source has {len(pool)} training image(s); at least 2 "
            "are needed (one to train on, one to validate)" + (f"; raise --limit {limit}" if limit else "")
        )
    if not test:
        # a test *count* (paper: 5 of 50, 50 of 497) cannot exceed a --limit-ed pool; cap it at half
        subset = spec.test_split if isinstance(spec.test_split, float) else min(spec.test_split, len(pool) // 2)
        keep, held = paper_split(len(pool), subset, seed)
        share = f"test split {subset} of {len(pool)} images (--test-fraction, config `test:`)"
        if test_given and len(keep) < 2:
            raise DataError(
                f"data set {spec.name!r}: the {share} leaves {len(keep)} to train and validate on; "
                f"at least 2 are needed: give a smaller --test-fraction"
            )
        if isinstance(subset, float) and subset > 0 and not len(held) and test_given:
            raise DataError(
                f"data set {spec.name!r}: the {share} holds out no image, so nothing could be "
                f"scored; give at least --test-fraction {1 / len(pool):.3g}"
            )
        pool, test = [pool[i] for i in sorted(keep)], [pool[i] for i in sorted(held)]
    settings = spec.dataset_settings()
    if settings.val_split == "crop":
        return {"train": pool, "val": [], "test": test}
    val_subset: float | int = settings.val_fraction
    if held_out_count(len(pool), val_subset) == 0:
        # Too few images for the fraction (never so for the paper's data sets): an empty
        # validation set would only fail later, in training; validate on one image instead.
        val_subset = 1
    keep, held = paper_split(len(pool), val_subset, seed if val_seed is None else val_seed)
    return {"train": [pool[i] for i in sorted(keep)], "val": [pool[i] for i in sorted(held)], "test": test}


def write_splits(
    splits: dict[str, list[Sample]],
    out: Path,
    settings: DatasetSettings,
    spec: DatasetSpec,
    rgb_to_grey: bool = False,
    crop_size_given: bool = False,
    ndim: int | None = None,
    voxel_size: tuple[float, float, float] | None = None,
) -> DatasetSettings:
    """Validate and write every sample; return `settings` completed from the data
    (min_object_size over train + val, in_channels, ndim and voxel size; for `folder`: one_hot,
    the normalisation factor and a crop size that fits the images); see
    :func:`embedseg.crops.fitted_crop_size`.

    `ndim`: the declared dimension (None: detected from the first sample, :func:`detect_ndim`);
    `voxel_size`: given on the command line (see :func:`resolve_voxel_size`).
    """
    from ..runtime import progress

    smallest: list[int] = []
    dtypes: set[str] = set()
    low, high = np.inf, -np.inf  # value range of the train + val images
    channels: dict[int, Path] = {}  # channel count -> first image with it
    shapes: list[tuple[int, ...]] = []  # spatial shape of every train image
    extents: list[list[int]] = []  # 3D: (z, y, x) extent of every train + val object
    one_hot = None if spec.name == "folder" else settings.one_hot  # `folder`: as the first mask is
    first: Sample | None = None
    for split in SPLITS:
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for sample in progress(splits[split], desc=f"{settings.name} {split}", disable=not splits[split]):
            image, labels = sample.read_image(rgb_to_grey), sample.read_labels()
            if ndim is None:
                ndim = detect_ndim(sample, image, labels)
                log.info("%s: %dD data (detected from %s)", settings.name, ndim, sample.image_path)
            first = first or sample
            try:
                check_pair(image, labels, sample.image_path, sample.mask_paths[0], ndim)
            except DataError as error:  # a synthetic set's paths are scratch files: name the set
                raise DataError(f"data set {settings.name!r}: {error}") from None
            channels.setdefault(1 if image.ndim == ndim else image.shape[0], sample.image_path)
            if len(channels) > 1:
                (count, first), (other, path) = channels.items()
                raise DataError(
                    f"{path}: image has {other} channel(s) but {first} has {count}; every "
                    "image of a data set needs the same number of channels ((H, W) or (C, H, W))"
                )
            if ndim == 2:  # a 3D label stack is one label volume, never one-hot
                one_hot = labels.ndim == 3 if one_hot is None else one_hot
                labels = match_mask_kind(labels, one_hot, sample.mask_paths[0])
            dtypes.add(image.dtype.name)
            if image.size and split != "test":
                low, high = min(low, float(image.min())), max(high, float(image.max()))
            if split != "test" and labels.any():
                smallest.append(min_object_size(labels, one_hot=ndim == 2 and bool(one_hot)))
                if ndim == 3:
                    extents.extend(object_extents(labels))
            if split == "train":
                shapes.append(image.shape[-ndim:])
            if split == "test" and is_zarr(sample.image_path):  # predicted out of core: kept as it is
                shutil.copytree(sample.image_path, out / split / "images" / f"{sample.name}.ome.zarr")
            else:
                write_tiff(out / split / "images" / f"{sample.name}.tif", image)
            write_labels(out / split / "masks" / f"{sample.name}.tif", labels)
    if ndim == 3 and one_hot:
        raise DataError(f"data set {spec.name!r}: one-hot masks are 2D only; 3D masks are (Z, Y, X) label stacks")
    if ndim == 2 and voxel_size is not None:
        raise DataError("--voxel-size is for 3D data sets (volumes); this data set is 2D")
    if ndim == 3:
        voxel_size, source = resolve_voxel_size(voxel_size, spec, first.image_path)
        settings.extra["voxel_size_source"] = source
    # replace() re-runs the settings' checks for the (possibly detected) dimension
    settings = dataclasses.replace(settings, ndim=ndim, voxel_size=voxel_size)
    settings.min_object_size = min(smallest, default=0)
    settings.one_hot = bool(one_hot) and ndim == 2
    settings.in_channels = next(iter(channels))
    auto_crop = not crop_size_given and (
        settings.extra.pop("crop_size_rule", None) == AUTO_CROP or (spec.name == "folder" and ndim == 3)
    )
    if auto_crop and ndim == 3:
        settings.crop_size = object_crop_size(np.array(extents).reshape(-1, 3))
        log.info("%s: crop size %s from the object sizes (official 3D rule)", spec.name, settings.crop_size)
    settings.extra["crop_size_source"] = (
        "--crop-size"
        if crop_size_given
        else "auto: mean + 5 sd of the train+val object extents, rounded up to 8 (official 3D notebooks)"
        if auto_crop and ndim == 3
        else "registry"
    )
    settings.crop_size = fitted_crop_size(
        settings.crop_size, shapes, crop_size_given, fit=(spec.name == "folder" or auto_crop) and not crop_size_given
    )
    # What `predict` checks an image against (embedseg.inference.check_value_range).
    settings.extra["intensity"] = {"dtypes": sorted(dtypes), "min": low, "max": high} if high >= low else {}
    if spec.name == "folder" and settings.normalization == "absolute":
        settings.normalization_factor = absolute_factor(dtypes)
        if settings.normalization_factor == 65535.0 and high < 4096:
            log.warning(
                "%s: uint16 images with values up to %g (12-bit data?) are divided by 65535, so the network "
                "sees inputs up to %.3f; --normalization percentile maps each image's range to 0..1",
                spec.name,
                high,
                high / 65535,
            )
    elif spec.dtype != "any" and dtypes - {spec.dtype}:
        log.warning(
            "%s: images are %s, expected %s; check the normalisation in dataset.json",
            spec.name,
            sorted(dtypes),
            spec.dtype,
        )
    return settings


def resolve_voxel_size(
    given: tuple[float, float, float] | None, spec: DatasetSpec, first_image: Path
) -> tuple[tuple[float, float, float], str]:
    """Voxel size (z, y, x) µm of a 3D data set and where it came from: --voxel-size, else the
    registry entry's, else the TIFF metadata of the first image, else (1, 1, 1)."""
    if given is not None:
        return tuple(given), "--voxel-size"
    if spec.settings.get("voxel_size") is not None:
        return tuple(spec.settings["voxel_size"]), f"registry entry {spec.name!r}"
    from_metadata = tiff_axes(first_image).voxel_size
    if from_metadata is not None:
        return from_metadata, f"TIFF metadata of {first_image.name}"
    log.warning(
        "%s: no voxel size given (--voxel-size Z Y X) or found in the TIFF metadata; using 1 1 1 µm, "
        "i.e. isotropic voxels (anisotropy 1)",
        first_image,
    )
    return (1.0, 1.0, 1.0), "default 1 1 1: none given (--voxel-size) or found in the TIFF metadata"


def match_mask_kind(labels: np.ndarray, one_hot: bool, mask_path: Path) -> np.ndarray:
    """A one-hot data set gets (K, H, W) 0/1 stacks (a flat label image is split into one slice
    per id; no objects → one empty slice, as TIFF cannot store K = 0); a stack in a data set of
    flat label images is an error."""
    if labels.ndim == 3 and not one_hot:
        raise DataError(
            f"{mask_path}: mask is a (K, H, W) stack but this data set has flat (H, W) label images; "
            "store one label image per image"
        )
    if labels.ndim == 2 and one_hot:
        ids = np.unique(labels[labels > 0])
        return (labels[None] == ids[:, None, None]).astype(np.uint16) if len(ids) else labels[None].astype(np.uint16)
    return labels


def absolute_factor(dtypes: set[str]) -> float:
    """/255 for 8-bit, /65535 for 16-bit images (the paper's absolute normalisation)."""
    factors = {"uint8": 255.0, "uint16": 65535.0}
    if len(dtypes) != 1 or next(iter(dtypes)) not in factors:
        raise DataError(
            f"images have dtype(s) {sorted(dtypes)}; absolute normalisation needs all uint8 or all uint16 — "
            "pass --normalization percentile"
        )
    return factors[next(iter(dtypes))]


def source_info(spec: DatasetSpec, config: PrepareConfig, source: Source, splits: dict[str, list[Sample]]) -> dict:
    """Provenance stored in dataset.json's `extra`."""
    info = {
        "source": str(config.source or spec.url or "synthetic"),
        "layout": source.layout,
        "split_seed": config.seed,
        "val_split_seed": validation_seed(config.seed, config.resplit_run),
        "counts": {name: len(samples) for name, samples in splits.items()},
    }
    if spec.name in SYNTHETIC_SETS:
        info.update(n_images=config.n_images, image_size=config.image_size, data_seed=config.data_seed)
        if spec.settings.get("ndim") == 3:
            info["image_depth"] = config.image_depth
    return info
