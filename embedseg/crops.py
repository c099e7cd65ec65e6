"""Object-centred training crops with centre images (docs/method.md §5; `embedseg crops`).

For every object of a training image (ascending id order; index j names the files
``<base>_<jjj>.tif``) a window of the crop shape (crop_size × crop_size in 2D, Z × Y × X per axis
in 3D) is centred on the object's centroid and clipped into the image; images smaller than the
crop in any axis are skipped (no padding), as in the paper code (3D: its ``process_3d``, which
visits the ids in a random order; the order only changes the file names). The crop's centre
image marks one pixel per object that has pixels inside the crop, computed from the object's
*visible* pixels only, so objects cut by the crop border get the centre of their visible part.
An object's medoid depends only on which of its pixels are visible, so it is computed once per
distinct visible part and reused across the crops of an image. In 3D the medoid measures
distances with z stretched by the anisotropy (voxel z / voxel x), as the official
``generate_center_image_3d``.

Output (CROPS_DIR/{train,val}/{images,masks,centers}/<base>_<jjj>.tif): images in their stored
dtype for `absolute` normalisation, else normalised over the whole image first (float32;
``prenormalized`` in the settings), masks uint16 (one-hot data: (K, H, W) stacks of the objects visible in the crop), centre
images uint8 0/1; CROPS_DIR/dataset.json = the data set's settings plus "center" (and, in 3D,
the data-derived "foreground_weight", :func:`foreground_weight`); CROPS_DIR/crops.json = "ndim",
"anisotropy", "crop_size" (per axis), "foreground_weight" and the sha256 of every crop file and
of dataset.json (:func:`crops_digest`), which `train` records to resume only on the same crops.
CROPS_DIR follows the output policy of :mod:`embedseg.outputs`: built next to it and swapped in
when complete.

The crop-size rules live here, for `prepare` too: a given size (:func:`check_crop_size`, multiples
of the network's :data:`~embedseg.models.erfnet.NETWORK_MULTIPLE`), the fit to the images
(:func:`fitted_crop_size`, :func:`fit_to_network`) and the official 3D rule from the object sizes
(:func:`object_crop_size`); that the count fits the dimension is :class:`DatasetSettings`' check.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .core.centers import CENTER_TYPES, object_center
from .core.labels import fill_label_holes
from .data.splits import PAPER_SPLIT_SEED
from .dataset_settings import DATASET_JSON, DatasetSettings, normalize
from .io import DataError, list_images, read_image, read_labels, write_json, write_labels, write_tiff
from .models.erfnet import NETWORK_MULTIPLE
from .outputs import CROPS, replacing
from .runtime import progress

log = logging.getLogger(__name__)

CROP_FOLDERS = ("images", "masks", "centers")


@dataclass(frozen=True)
class LabelledObject:
    """One object of a full image: pixel coordinates (N, D) as (y, x) / (z, y, x), row-major order."""

    index: int  # position in ascending id order (one-hot: slice index); names the crop
    coords: np.ndarray

    @property
    def centroid(self) -> np.ndarray:
        return self.coords.mean(axis=0)

    @cached_property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box: coordinates of the first pixel and one past the last, per axis."""
        return self.coords.min(axis=0), self.coords.max(axis=0) + 1


def labelled_objects(masks: np.ndarray, one_hot: bool) -> list[LabelledObject]:
    """Objects of a label image (H, W) or volume (Z, Y, X) (ascending ids), or of a one-hot
    stack (K, H, W) (slice order).

    Empty slices of a one-hot stack are skipped but keep their index in the numbering.
    """
    if one_hot:
        return [LabelledObject(k, np.argwhere(masks[k])) for k in range(len(masks)) if masks[k].any()]
    flat = masks.ravel()
    pixels = np.flatnonzero(flat)
    if not len(pixels):  # np.split would make one empty "object" of an empty mask
        return []
    # One stable sort groups pixels by id and keeps each group in row-major order.
    pixels = pixels[np.argsort(flat[pixels], kind="stable")]
    ids, starts = np.unique(flat[pixels], return_index=True)
    groups = np.split(pixels, starts[1:])
    return [LabelledObject(j, np.stack(np.unravel_index(group, masks.shape), axis=1)) for j, group in enumerate(groups)]


def check_crop_size(sizes: Sequence[int]) -> int | tuple[int, ...]:
    """--crop-size values as a crop size (one edge length for every axis, or one per axis: (Y, X)
    or (Z, Y, X)), each a positive multiple of :data:`NETWORK_MULTIPLE`; else a DataError. Whether
    the count fits the data's dimension is :class:`DatasetSettings`' check."""
    given = " ".join(map(str, sizes))
    for size in sizes:
        if size <= 0 or size % NETWORK_MULTIPLE:
            raise DataError(
                f"--crop-size {given}: every size must be a positive multiple of {NETWORK_MULTIPLE} "
                f"(the network halves the crops three times), e.g. {fit_to_network(size)} instead of {size}"
            )
    if len(sizes) not in (1, 2, 3):
        raise DataError(f"--crop-size: give one size or one per axis (Y X, or Z Y X), not {len(sizes)}")
    return int(sizes[0]) if len(sizes) == 1 else tuple(int(size) for size in sizes)


def fit_to_network(extent: int) -> int:
    """The largest crop length the network takes that fits in `extent` (at least one multiple)."""
    return max(NETWORK_MULTIPLE, extent // NETWORK_MULTIPLE * NETWORK_MULTIPLE)


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
        fitted = np.minimum(crop, [fit_to_network(int(size)) for size in smallest])
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
            fits = str(fit_to_network(max(min(shape) for shape in shapes)))
        else:
            extents = np.max(shapes, axis=0)
            largest = f"largest extents {' x '.join(map(str, extents.tolist()))}"
            fits = " ".join(str(fit_to_network(int(e))) for e in np.minimum(extents, crop))
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


def object_crop_size(extents: np.ndarray, n_sigma: float = 5.0) -> tuple[int, int, int]:
    """The official 3D notebooks' crop size from object extents (N, 3) (z, y, x): per axis the
    mean + `n_sigma` standard deviations, truncated and rounded up to a multiple of 8, with y and
    x both set to the larger of the two (at least 8; (8, 8, 8) without objects)."""
    m = NETWORK_MULTIPLE
    if not len(extents):
        return (m, m, m)
    size = (extents.mean(axis=0) + n_sigma * extents.std(axis=0)).astype(int)
    z, y, x = np.maximum(m, -(-size // m) * m).tolist()
    return (z, max(y, x), max(y, x))


def crop_origin(centroid: np.ndarray, crop_size: int | tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """First corner ((z0,) y0, x0) of the window centred on `centroid`, clipped into an image of
    `shape`; `crop_size` is one edge length or one per axis."""
    sizes = np.broadcast_to(crop_size, len(shape))
    return tuple(int(np.clip(c - s / 2, 0, n - s)) for c, s, n in zip(centroid, sizes, shape))


def center_image(
    objects: list[LabelledObject],
    origin: tuple[int, ...],
    crop_size: int | tuple[int, ...],
    kind: str,
    cache: dict[tuple, tuple[int, ...] | None],
    anisotropy: float = 1.0,
) -> np.ndarray:
    """Centre image of the crop's shape ((Z,) Y, X), uint8, for the window at `origin`.

    Each object with pixels in the window gets one centre from its visible pixels. The visible
    pixels are fixed by the part of the object's bounding box inside the window, and a medoid
    does not change when its pixels are shifted, so `cache` keeps medoids (image coordinates)
    by (object, visible box) across the crops of one image. `anisotropy` (3D: voxel z / voxel x)
    weighs z in the medoid's distances.
    """
    shape = tuple(np.broadcast_to(crop_size, len(origin)).tolist())
    image = np.zeros(shape, dtype=np.uint8)
    lo = np.asarray(origin)
    hi = lo + shape
    for obj in objects:
        visible_lo, visible_hi = np.maximum(obj.box[0], lo), np.minimum(obj.box[1], hi)
        if np.any(visible_lo >= visible_hi):
            continue
        key = (obj.index, *visible_lo, *visible_hi)
        # Rounding half to even is not shift invariant: centroids (cheap) are computed in crop
        # coordinates every time, as in the paper code.
        if kind == "centroid" or key not in cache:
            inside = np.all((obj.coords >= lo) & (obj.coords < hi), axis=1)
            visible = obj.coords[inside] - lo
            center = object_center(visible, kind, anisotropy=anisotropy) if inside.any() else None
            cache[key] = None if center is None else tuple(np.add(center, lo))
        if cache[key] is not None:
            image[tuple(np.subtract(cache[key], lo))] = 1
    return image


def check_pair(
    image: np.ndarray, masks: np.ndarray, one_hot: bool, image_path: Path, mask_path: Path, ndim: int = 2
) -> None:
    """Raise DataError unless image and masks fit together: 2D (H, W)/(C, H, W) with (H, W)/(K, H, W),
    3D (Z, Y, X)/(C, Z, Y, X) with (Z, Y, X)."""
    if ndim == 3:
        if image.ndim not in (3, 4) or masks.shape != image.shape[-3:]:
            raise DataError(
                f"{mask_path}: 3D mask of shape {masks.shape} does not fit image {image_path} of shape "
                f"{image.shape}; expected a (Z, Y, X) label stack and a (Z, Y, X) or (C, Z, Y, X) image"
            )
        return
    if image.ndim not in (2, 3):
        raise DataError(f"{image_path}: image must be (H, W) or (C, H, W), got shape {image.shape}")
    expected_ndim = 3 if one_hot else 2
    if masks.ndim != expected_ndim:
        raise DataError(
            f"{mask_path}: mask has shape {masks.shape} but dataset.json says one_hot={one_hot} "
            f"(expected a {'(K, H, W) stack' if one_hot else '(H, W) label image'}); fix one_hot or the mask"
        )
    if image.shape[-2:] != masks.shape[-2:]:
        raise DataError(f"{mask_path}: mask size {masks.shape[-2:]} differs from image {image_path} {image.shape[-2:]}")


def crop_pair(
    image_path: Path, mask_path: Path, out_dir: Path, settings: DatasetSettings
) -> tuple[int | None, float | None]:
    """Write the crops of one image into out_dir/{images,masks,centers}.

    Returns their number (None when the image is smaller than the crop) and, in 3D, the mask's
    #background / #foreground voxels for :func:`foreground_weight` (None in 2D or without
    foreground).
    """
    kind, one_hot, ndim = settings.center, settings.one_hot, settings.ndim
    crop_shape = settings.crop_shape
    image = read_image(image_path)
    if settings.prenormalized:
        image = normalize(image, settings)
    masks = read_labels(mask_path)
    check_pair(image, masks, one_hot, image_path, mask_path, ndim)
    shape = masks.shape[-ndim:]
    n_foreground = np.count_nonzero(masks) if ndim == 3 else 0  # the 2D weight is fixed
    ratio = (masks.size - n_foreground) / n_foreground if n_foreground else None
    if any(n < s for n, s in zip(shape, crop_shape)):
        log.warning(
            "%s: %s is smaller than the crop size %s; no crops (as in the paper code)",
            image_path.name,
            "x".join(map(str, shape)),
            "x".join(map(str, crop_shape)),
        )
        return None, ratio
    if not one_hot:
        # A one-hot stack would be filled in 3-D by the official code, a no-op; filling a curled
        # worm's slice in 2-D would also swallow the background it encloses. Label volumes are
        # filled in 3-D, as the official process_3d does.
        masks = fill_label_holes(masks)
    objects = labelled_objects(masks, one_hot)
    center_cache: dict[tuple, tuple[int, ...] | None] = {}
    n_written = 0
    for obj in objects:
        origin = crop_origin(obj.centroid, crop_shape, shape)
        window = tuple(slice(o, o + s) for o, s in zip(origin, crop_shape))
        mask_crop = masks[(Ellipsis, *window)]
        if one_hot:
            if not mask_crop[obj.index].any():
                continue
            mask_crop = mask_crop[mask_crop.any(axis=(1, 2))]
        name = f"{image_path.stem}_{obj.index:03d}.tif"
        centers = center_image(objects, origin, crop_shape, kind, center_cache, settings.anisotropy)
        write_tiff(out_dir / "images" / name, image[(Ellipsis, *window)])
        write_labels(out_dir / "masks" / name, mask_crop)
        write_tiff(out_dir / "centers" / name, centers)
        n_written += 1
    return n_written, ratio


def crop_subset(data_dir: Path, subset: str, out_dir: Path, settings: DatasetSettings) -> tuple[int, list[float]]:
    """Crop every image of data_dir/subset/images (masks of the same name in masks/).

    `settings` gives the crop size, centre type (``center``), one-hot layout and normalisation.
    Returns the number of crops and the #background / #foreground ratio of every mask with
    foreground.
    """
    image_paths = list_images(data_dir / subset / "images")
    if subset == "train" and not image_paths:
        raise DataError(f"{data_dir / subset / 'images'}: no training images; run `embedseg prepare` to write them")
    mask_dir = data_dir / subset / "masks"
    for folder in CROP_FOLDERS:
        (out_dir / subset / folder).mkdir(parents=True, exist_ok=True)
    counts, ratios = [], []
    for image_path in progress(image_paths, desc=f"crops {subset}", unit="image"):
        mask_path = mask_dir / image_path.name
        if not mask_path.exists():
            raise DataError(f"{mask_path}: mask missing for image {image_path}; every image needs a same-named mask")
        count, ratio = crop_pair(image_path, mask_path, out_dir / subset, settings)
        counts.append(count)
        if ratio is not None:
            ratios.append(ratio)
    n_crops = sum(count or 0 for count in counts)
    if counts and not n_crops:
        small = counts.count(None)
        reasons = []
        if small:
            size = "x".join(map(str, settings.crop_shape)) if settings.ndim == 3 else settings.crop_shape[0]
            reasons.append(f"{small} smaller than the crop size {size} (pass a smaller --crop-size, a multiple of 8)")
        if small < len(counts):
            reasons.append(f"{len(counts) - small} with no objects in their masks (annotate them)")
        raise DataError(
            f"{data_dir / subset / 'images'}: no crops from its {len(counts)} image(s): " + "; ".join(reasons)
        )
    return n_crops, ratios


def foreground_weight(settings: DatasetSettings, ratios: list[float]) -> float:
    """Seed-loss weight of foreground pixels: 10 in 2D; in 3D the mean over the cropped images'
    masks (train, and val when validation uses whole images) of #background / #foreground, as the
    official ``calculate_foreground_weight`` (masks without foreground are left out; the
    official code would divide by zero)."""
    if settings.ndim == 2 or not ratios:
        return 10.0
    return float(np.mean(ratios))


def hold_out_val_crops(crops_dir: Path, fraction: float, seed: int) -> list[str]:
    """Move ⌊fraction·#crops⌋ train crops to val (official `split_train_crops`); returns their names.

    The crops are taken from the name-sorted list at the first indices of a NumPy legacy
    ``seed``-seeded shuffle, so the split matches the paper code.
    """
    names = sorted(p.name for p in list_images(crops_dir / "train" / "images"))
    order = np.arange(len(names))
    np.random.RandomState(seed).shuffle(order)
    held_out = [names[i] for i in order[: int(fraction * len(names))]]
    for folder in CROP_FOLDERS:
        (crops_dir / "val" / folder).mkdir(parents=True, exist_ok=True)
        for name in held_out:
            os.replace(crops_dir / "train" / folder / name, crops_dir / "val" / folder / name)
    return held_out


def crops_digest(crops_dir: str | os.PathLike) -> dict[str, str]:
    """sha256 of dataset.json and of every crop TIFF, by path relative to `crops_dir`."""
    crops_dir = Path(crops_dir)
    paths = [crops_dir / DATASET_JSON] + [
        path
        for subset in ("train", "val")
        for folder in CROP_FOLDERS
        if (crops_dir / subset / folder).is_dir()
        for path in list_images(crops_dir / subset / folder)
    ]
    return {str(path.relative_to(crops_dir)): hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def digest_sha256(digest: dict[str, str]) -> str:
    """One sha256 for a :func:`crops_digest` (of its canonical JSON)."""
    return hashlib.sha256(json.dumps(digest, sort_keys=True).encode()).hexdigest()


def make_crops(
    data_dir: str | os.PathLike,
    crops_dir: str | os.PathLike,
    center: str,
    crop_size: int | tuple[int, ...] | None = None,
    seed: int | None = None,
    force: bool = False,
) -> DatasetSettings:
    """Write the crops of DATA_DIR's train (and val) split to CROPS_DIR; returns the saved settings.

    `crop_size`: one edge length, or one per axis ((Y, X); 3D (Z, Y, X)); None: dataset.json's.
    `seed`: of the crop-level validation split; None: the validation split seed `prepare` recorded
    (dataset.json ``extra.val_split_seed``; the data set's split seed), else the paper's 1234.

    CROPS_DIR is replaced only when complete, and only if it is empty, missing or an earlier
    crops folder (else `force`); it must not overlap DATA_DIR (:mod:`embedseg.outputs`).
    """
    data_dir, crops_dir = Path(data_dir), Path(crops_dir)
    if center not in CENTER_TYPES:
        raise DataError(f"unknown centre type {center!r}; choose one of {CENTER_TYPES}")
    if crop_size is not None:
        crop_size = check_crop_size(np.atleast_1d(crop_size).tolist())
    with replacing(crops_dir, CROPS, {"DATA_DIR": data_dir}, force) as staging:
        settings = DatasetSettings.load(data_dir)
        settings = dataclasses.replace(
            settings,
            center=center,
            prenormalized=settings.normalization != "absolute",
            **({} if crop_size is None else {"crop_size": crop_size}),
        )
        subsets = ["train"] if settings.val_split == "crop" else ["train", "val"]
        ratios = [r for subset in subsets for r in crop_subset(data_dir, subset, staging, settings)[1]]
        settings.foreground_weight = foreground_weight(settings, ratios)
        if settings.val_split == "crop":
            seed = settings.extra.get("val_split_seed", PAPER_SPLIT_SEED) if seed is None else seed
            held_out = hold_out_val_crops(staging, settings.val_fraction, seed)
            if not held_out:
                raise DataError(
                    f"{data_dir / 'train'}: too few crops to hold {settings.val_fraction:.0%} "
                    "out for validation; add images or objects"
                )
        settings.save(staging)
        digest = crops_digest(staging)
        write_json(
            staging / CROPS.markers[0],
            {
                "data_dir": str(data_dir.resolve()),
                "ndim": settings.ndim,
                "anisotropy": settings.anisotropy,
                "crop_size": list(settings.crop_shape),
                "foreground_weight": settings.foreground_weight,
                "sha256": digest_sha256(digest),
                "files": digest,
            },
        )
    return settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", help="prepared data set (dataset.json, train/, val/)")
    parser.add_argument("--out", required=True, metavar="CROPS_DIR", help="output folder for the crops")
    parser.add_argument("--center", choices=CENTER_TYPES, default="medoid", help="centre marked in the centre images")
    parser.add_argument(
        "--crop-size",
        type=int,
        nargs="+",
        metavar="N",
        default=None,
        help="crop edge length in pixels, one for every axis or one per axis (3D: Z Y X; default: crop_size "
        "of dataset.json)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="NumPy legacy seed of the crop-level validation split (val_split 'crop'); default: the "
        "validation split seed in dataset.json (the data set's split seed), else 1234",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace CROPS_DIR even if it is a file or a folder not written by `embedseg crops` (never an input)",
    )


def run(args: argparse.Namespace) -> int:
    make_crops(args.data_dir, args.out, args.center, args.crop_size, args.seed, args.force)
    return 0
