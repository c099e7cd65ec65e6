"""`embedseg prepare`: from a data set name (and optionally a source) to train/val/test folders.

    embedseg prepare DATASET --out DIR [--source URL|ZIP|FOLDER] [--cache resources] [--seed 1234]
        [--resplit-run K]

writes ``DIR/{train,val,test}/{images,masks}/*.tif`` (images as stored, label images as
uint16/uint32, one-hot (K, H, W) stacks for overlapping objects; 3D: volumes and label volumes
(Z, Y, X)) and ``DIR/dataset.json`` (:class:`embedseg.dataset_settings.DatasetSettings`, with
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
import shutil
from pathlib import Path

import numpy as np

from ..dataset_settings import NORMALIZATIONS, DatasetSettings
from ..io import DataError, write_labels, write_tiff
from ..outputs import DATA, replacing
from .download import fetch, is_url, unpack_zip
from .formats import LAYOUTS, Sample, Source, detect_ndim, read_source, tiff_axes
from .registry import REGISTRY, DatasetSpec, get_spec
from .splits import CURRENT_CODE_SPLIT_SEED, PAPER_SPLIT_SEED, held_out_count, paper_split, validation_seed
from .synthetic import DEFAULT_SIZES, SYNTHETIC_SETS, generate
from .validate import check_pair

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(REGISTRY), help="data set name (see docs/data.md)")
    parser.add_argument("--out", required=True, type=Path, help="output folder DIR (train/, val/, test/, dataset.json)")
    parser.add_argument(
        "--source",
        help="URL, zip file or folder to read instead of the registry's download; its layout is auto-detected "
        "(EmbedSeg zip, images/+masks/, DSB stage1, Usiigaci sets, BBBC010). Required for `folder`.",
    )
    parser.add_argument("--sha256", help="expected sha256 of the file at a --source URL (verified; default: print it)")
    parser.add_argument("--layout", choices=LAYOUTS, help="source layout (default: auto-detect)")
    parser.add_argument("--cache", type=Path, default=Path("resources"), help="download cache (reused across runs)")
    parser.add_argument(
        "--seed",
        type=int,
        default=PAPER_SPLIT_SEED,
        help=f"split seed ({PAPER_SPLIT_SEED} = the paper's code, EmbedSeg v0.1.0; "
        f"{CURRENT_CODE_SPLIT_SEED} = EmbedSeg's current code)",
    )
    parser.add_argument(
        "--resplit-run",
        type=int,
        metavar="K",
        help="run K of re-split runs: the validation split uses seed --seed + K, the test "
        "split --seed (default: both use --seed, as in the paper)",
    )
    parser.add_argument(
        "--limit", type=int, help="use only the first N images (sorted names) of the source's train and test parts"
    )
    parser.add_argument(
        "--normalization", choices=NORMALIZATIONS, help="override the data set's normalisation (paper: absolute)"
    )
    parser.add_argument(
        "--crop-size",
        type=int,
        nargs="+",
        metavar="N",
        help="override the data set's crop size: one edge length, or one per axis (3D: Z Y X)",
    )
    parser.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        help="2: images (H, W) / (C, H, W); 3: volumes (Z, Y, X) / (C, Z, Y, X) with label stacks "
        "(Z, Y, X) (default: the data set's, else detected from the first sample's TIFF metadata and "
        "shapes; ambiguous 3-axis files are an error asking for --ndim)",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="3D: voxel size in µm (default: the data set's, else the TIFF metadata, else 1 1 1)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        help="fraction of the images held out for testing when the source has no test part (default: the data set's)",
    )
    parser.add_argument(
        "--all-dsb-images",
        action="store_true",
        help="DSB stage1: keep colour images too, reduced to luminance (default: greyscale fluorescence only)",
    )
    parser.add_argument(
        "--rgb-to-grey",
        action="store_true",
        help="reduce colour RGB(A) images to luminance (default: refuse them; RGB images "
        "with R = G = B always become one channel)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is a file or a folder not written by `embedseg prepare` (never an input)",
    )
    parser.add_argument(
        "--n-images", type=int, help="synthetic sets: number of images (default 16; 3D sets: 12 volumes)"
    )
    parser.add_argument(
        "--image-size", type=int, help="synthetic sets: image height and width (default 128; 3D sets: 96)"
    )
    parser.add_argument("--image-depth", type=int, help="synthetic 3D sets: number of z slices (default 32)")
    parser.add_argument(
        "--data-seed", type=int, default=0, help="synthetic sets: generator seed (the split seed is --seed)"
    )


def run(args: argparse.Namespace) -> int:
    spec = get_spec(args.dataset)
    if args.test_fraction is not None:
        if not 0 < args.test_fraction < 1:
            raise DataError(f"--test-fraction {args.test_fraction}: give a fraction between 0 and 1")
        spec = dataclasses.replace(spec, test_split=args.test_fraction)
    check_options(args)
    args = with_synthetic_defaults(spec, args)
    local_source = args.source if args.source and not is_url(args.source) else None
    with replacing(
        args.out, DATA, {"--source": local_source, "--cache": Path(args.cache) / spec.name}, args.force
    ) as staging:
        source = resolve_source(spec, args, staging / ".source")
        val_seed = validation_seed(args.seed, args.resplit_run)
        splits = split_samples(source, spec, args.seed, args.limit, val_seed)
        settings = spec.dataset_settings(
            normalization=args.normalization, crop_size=crop_size(spec, args), ndim=args.ndim
        )
        settings = write_splits(
            splits,
            staging,
            settings,
            spec,
            args.rgb_to_grey or args.all_dsb_images,
            crop_size_given=args.crop_size is not None,
            ndim=args.ndim or (None if spec.name == "folder" else settings.ndim),
            voxel_size=args.voxel_size,
        )
        settings.extra.update(source_info(spec, args, source, splits))
        shutil.rmtree(staging / ".source", ignore_errors=True)
        settings.save(staging)
    for name, samples in splits.items():
        if not samples and not (name == "val" and settings.val_split == "crop"):
            log.warning("%s: the %s split is empty (too few images for its share); add images", args.out, name)
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in splits.items())
    log.info(
        "%s: %s %dD images (%s); min object size %d %s",
        args.out,
        spec.name,
        settings.ndim,
        counts,
        settings.min_object_size,
        "voxels" if settings.ndim == 3 else "px",
    )
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Counts and sizes must make sense before anything is read or written."""
    for size in args.crop_size or ():
        if size <= 0 or size % 8:
            raise DataError(
                f"--crop-size {' '.join(map(str, args.crop_size))}: every size must be a positive "
                "multiple of 8 (the network halves the crops three times), "
                f"e.g. {max(8, size // 8 * 8)} instead of {size}"
            )
    if args.crop_size is not None and len(args.crop_size) not in (1, 2, 3):
        raise DataError(f"--crop-size: give one size or one per axis (Y X, or Z Y X), not {len(args.crop_size)}")
    for option, value in (("--limit", args.limit), ("--n-images", args.n_images)):
        if value is not None and value < 1:
            raise DataError(f"{option} {value}: must be a positive number of images")
    if args.image_size is not None and args.image_size < 32:
        raise DataError(f"--image-size {args.image_size}: synthetic images need at least 32 pixels")
    if args.image_depth is not None and args.image_depth < 8:
        raise DataError(f"--image-depth {args.image_depth}: synthetic volumes need at least 8 slices")
    if args.voxel_size is not None and min(args.voxel_size) <= 0:
        raise DataError(f"--voxel-size {' '.join(map(str, args.voxel_size))}: sizes must be positive (µm)")


def with_synthetic_defaults(spec: DatasetSpec, args: argparse.Namespace) -> argparse.Namespace:
    """`args` with the synthetic size options not given filled in with the set's defaults
    (:data:`embedseg.data.synthetic.DEFAULT_SIZES`; 2D and 3D sets differ)."""
    ndim = spec.settings.get("ndim", 2)
    n_images, image_size, depth = DEFAULT_SIZES[ndim]
    return argparse.Namespace(
        **{
            **vars(args),
            "n_images": args.n_images or n_images,
            "image_size": args.image_size or image_size,
            "image_depth": args.image_depth or depth,
        }
    )


def crop_size(spec: DatasetSpec, args: argparse.Namespace) -> int | tuple[int, ...] | None:
    """--crop-size (one size or one per axis), else for synthetic sets the default shrunk per
    axis to fit the generated image size (multiple of 8); None: the registry's."""
    if args.crop_size is not None:
        return args.crop_size[0] if len(args.crop_size) == 1 else tuple(args.crop_size)
    if spec.name not in SYNTHETIC_SETS:
        return None
    default = spec.settings["crop_size"]
    if isinstance(default, int):
        return min(default, args.image_size // 8 * 8)
    extents = (args.image_depth, args.image_size, args.image_size)[-len(default) :]
    return tuple(min(size, extent // 8 * 8) for size, extent in zip(default, extents))


def resolve_source(spec: DatasetSpec, args: argparse.Namespace, scratch: Path) -> Source:
    """Samples of the data set: synthesised, downloaded (cached), unpacked or read from a folder.

    `scratch` holds synthesised images and unpacked local zips; it is deleted after the run.
    """
    if spec.name in SYNTHETIC_SETS:
        write_synthetic(spec.name, args.n_images, args.image_size, args.data_seed, scratch, args.image_depth)
        return read_source(scratch, "folder")
    location = args.source or spec.url
    if location is None:
        raise DataError(f"data set {spec.name!r} needs --source (a folder with images/ and masks/, a zip or a URL)")
    layout = args.layout or (spec.layout if args.source is None else None)
    if is_url(location):
        download = spec.with_source(location, args.sha256)
        archive = fetch(download.url, download.sha256, Path(args.cache) / spec.name)
        return read_source(unpack_zip(archive, Path(args.cache) / spec.name), layout, not args.all_dsb_images)
    path = Path(location)
    if path.is_file():
        return read_source(unpack_zip(path, scratch), layout, not args.all_dsb_images)
    return read_source(path, layout, not args.all_dsb_images)


def write_synthetic(
    name: str, n_images: int, image_size: int, seed: int, folder: Path, depth: int | None = None
) -> None:
    """Synthesise a set into ``folder/{images,masks}`` (the `folder` layout)."""
    from tqdm import tqdm

    for stem, image, labels in tqdm(
        generate(name, n_images, image_size, seed, depth), total=n_images, desc=f"synthesise {name}"
    ):
        write_tiff(folder / "images" / f"{stem}.tif", image)
        write_labels(folder / "masks" / f"{stem}.tif", labels)


def split_samples(
    source: Source, spec: DatasetSpec, seed: int, limit: int | None, val_seed: int | None = None
) -> dict[str, list[Sample]]:
    """Train/val/test samples: the source's test set if it has one, else the paper's hold-out
    with `seed`; then val = ``val_fraction`` of the sorted remainder, drawn with `val_seed`
    (default: `seed`; none when validation uses crops)."""
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
    the normalisation factor and a crop size that fits the images); see :func:`fitted_crop_size`.

    `ndim`: the declared dimension (None: detected from the first sample, :func:`detect_ndim`);
    `voxel_size`: given on the command line (see :func:`resolve_voxel_size`).
    """
    from tqdm import tqdm

    smallest: list[int] = []
    dtypes: set[str] = set()
    channels: dict[int, Path] = {}  # channel count -> first image with it
    shapes: list[tuple[int, ...]] = []  # spatial shape of every train image
    extents: list[list[int]] = []  # 3D: (z, y, x) extent of every train + val object
    one_hot = None if spec.name == "folder" else settings.one_hot  # `folder`: as the first mask is
    first: Sample | None = None
    for split in SPLITS:
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for sample in tqdm(splits[split], desc=f"{settings.name} {split}", disable=not splits[split]):
            image, labels = sample.read_image(rgb_to_grey), sample.read_labels()
            if ndim is None:
                ndim = detect_ndim(sample, image, labels)
                log.info("%s: %dD data (detected from %s)", settings.name, ndim, sample.image_path)
            first = first or sample
            check_pair(image, labels, sample.image_path, sample.mask_paths[0], ndim)
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
            if split != "test" and labels.any():
                smallest.append(min_object_size(labels, one_hot=ndim == 2 and bool(one_hot)))
                if ndim == 3:
                    extents.extend(object_extents(labels))
            if split == "train":
                shapes.append(image.shape[-ndim:])
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
    if spec.name == "folder" and ndim == 3 and not crop_size_given:
        settings.crop_size = object_crop_size(np.array(extents).reshape(-1, 3))
        log.info("%s: crop size %s from the object sizes (official 3D rule)", spec.name, settings.crop_size)
    settings.crop_size = fitted_crop_size(
        settings.crop_size, shapes, crop_size_given, fit=spec.name == "folder" and not crop_size_given
    )
    if spec.name == "folder" and settings.normalization == "absolute":
        settings.normalization_factor = absolute_factor(dtypes)
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


def fitted_crop_size(
    crop_size: int | tuple[int, ...], shapes: list[tuple[int, ...]], given: bool, fit: bool
) -> int | tuple[int, ...]:
    """`crop_size` (one size, or one per axis) checked against the spatial shapes of the
    training images (crops skip images smaller than the crop in any axis). `fit` (the default
    of user data, a guess) shrinks every axis to the smallest image; a `given` --crop-size
    larger than every image is an error; otherwise (a paper data set's own crop size) images
    too small only get a warning."""
    crop = np.broadcast_to(crop_size, len(shapes[0]))
    smallest = np.min(shapes, axis=0)
    if fit and np.any(crop > smallest):
        fitted = np.minimum(crop, np.maximum(8, smallest // 8 * 8))
        log.info(
            "crop size %s shrunk to %s to fit the smallest training image %s",
            crop_size,
            fitted.tolist(),
            smallest.tolist(),
        )
        if isinstance(crop_size, int) and np.all(fitted == fitted[0]):
            return int(fitted[0])
        return tuple(fitted.tolist())
    too_small = sum(bool(np.any(np.asarray(shape) < crop)) for shape in shapes)
    if given and too_small == len(shapes):
        if isinstance(crop_size, int):
            largest = f"the largest has {max(min(shape) for shape in shapes)} px on its shorter side"
            fits = str(max(8, max(min(shape) for shape in shapes) // 8 * 8))
        else:
            extents = np.max(shapes, axis=0)
            largest = f"largest extents {' x '.join(map(str, extents.tolist()))}"
            fits = " ".join(str(max(8, int(e) // 8 * 8)) for e in np.minimum(extents, crop))
        given_text = " ".join(map(str, np.atleast_1d(crop_size).tolist()))
        raise DataError(
            f"--crop-size {given_text} is larger than every training image ({largest}); "
            f"pass --crop-size {fits} or smaller"
        )
    if too_small:
        log.warning(
            "%d of %d training images are smaller than the crop size %s and give no crops; "
            "pass a smaller --crop-size to use them",
            too_small,
            len(shapes),
            crop_size,
        )
    return crop_size


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


def object_extents(labels: np.ndarray) -> list[list[int]]:
    """Extent (max − min coordinate, per axis) of every object of a label image or volume."""
    from scipy.ndimage import find_objects

    return [[s.stop - s.start - 1 for s in box] for box in find_objects(labels) if box is not None]


def object_crop_size(extents: np.ndarray, n_sigma: float = 5.0) -> tuple[int, int, int]:
    """The official 3D notebooks' crop size from object extents (N, 3) (z, y, x): per axis the
    mean + `n_sigma` standard deviations, truncated and rounded up to a multiple of 8, with y and
    x both set to the larger of the two (at least 8; (8, 8, 8) without objects)."""
    if not len(extents):
        return (8, 8, 8)
    size = (extents.mean(axis=0) + n_sigma * extents.std(axis=0)).astype(int)
    z, y, x = np.maximum(8, (size + 7) // 8 * 8).tolist()
    return (z, max(y, x), max(y, x))


def min_object_size(labels: np.ndarray, one_hot: bool) -> int:
    """Pixel (voxel) count of the smallest object in a label image (H, W) or volume (Z, Y, X),
    or in a one-hot stack (K, H, W)."""
    if one_hot:
        sizes = labels.reshape(len(labels), -1).astype(bool).sum(axis=1)
    else:
        sizes = np.bincount(labels.ravel())[1:]
    return int(sizes[sizes > 0].min())


def absolute_factor(dtypes: set[str]) -> float:
    """/255 for 8-bit, /65535 for 16-bit images (the paper's absolute normalisation)."""
    factors = {"uint8": 255.0, "uint16": 65535.0}
    if len(dtypes) != 1 or next(iter(dtypes)) not in factors:
        raise DataError(
            f"images have dtype(s) {sorted(dtypes)}; absolute normalisation needs all uint8 or all uint16 — "
            "pass --normalization percentile"
        )
    return factors[next(iter(dtypes))]


def source_info(spec: DatasetSpec, args: argparse.Namespace, source: Source, splits: dict[str, list[Sample]]) -> dict:
    """Provenance stored in dataset.json's `extra`."""
    info = {
        "source": str(args.source or spec.url or "synthetic"),
        "layout": source.layout,
        "split_seed": args.seed,
        "val_split_seed": validation_seed(args.seed, args.resplit_run),
        "counts": {name: len(samples) for name, samples in splits.items()},
    }
    if spec.name in SYNTHETIC_SETS:
        info.update(n_images=args.n_images, image_size=args.image_size, data_seed=args.data_seed)
        if spec.settings.get("ndim") == 3:
            info["image_depth"] = args.image_depth
    return info
