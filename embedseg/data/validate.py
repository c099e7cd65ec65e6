"""Checks on an (image, label image) pair before it enters the pipeline.

Problems that would silently corrupt training (NaN pixels, shapes that do not match, masks
that are not instance label images) are errors naming the file and the fix; an image without
any object is legal (DSB has one) but suspicious, so it only warns. `ndim` is the data set's
spatial dimension (2: images, 3: volumes).

Masks whose ids do not each mark one object (docs/interfaces.md, "What each step checks"):

- a binary or class mask, where *every* id covers several separate objects (all objects id 1
  in a 0/1 TIFF, 255 in a 0/255 PNG), is refused. It is not relabelled by connected
  components because objects that touch would silently become one; the message says how to
  relabel when none touch.
- an instance mask where *some* ids cover several separate pieces only warns: an object cut in
  two by another one is legal, and the paper's Usiigaci annotations have such ids in 9 of 45
  images (and stray pixels of an id in all 45), so refusing them would refuse the benchmark.
  Pieces smaller than :data:`PIECE_FRACTION` of the id's largest piece count as stray pixels
  and are only logged at debug level.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..io import DataError
from .formats import tiff_axes

log = logging.getLogger(__name__)

IMAGE_SHAPES = {2: "(H, W) or (C, H, W)", 3: "(Z, Y, X) or (C, Z, Y, X)"}
# A second piece of an id at least this fraction of its largest piece is a separate object, not stray pixels.
PIECE_FRACTION = 0.1


def check_image(image: np.ndarray, path: Path, ndim: int = 2, channels: int | None = None) -> None:
    """An image must be (H, W) / (C, H, W), in 3D (Z, Y, X) / (C, Z, Y, X), with finite pixel
    values, and (when `channels` is given, e.g. a model's input channels) that many channels.

    A TIFF whose metadata names a z axis is a volume, refused for a 2-D data set or model.
    """
    if image.ndim not in (ndim, ndim + 1):
        raise DataError(
            f"{path}: image has shape {image.shape}; expected {IMAGE_SHAPES[ndim]} for this {ndim}D data set"
            + (
                " (pass --ndim 3 for volumes)"
                if ndim == 2 and image.ndim == 4
                else "; it is a 2-D image: the data set is declared 3-D (--ndim 3, config `ndim: 3`), "
                "use --ndim 2 (or leave it unset) for images"
                if ndim == 3 and image.ndim == 2
                else ""
            )
        )
    volume_hint = "a 3-D volume needs a 3-D data set and model (`embedseg prepare --ndim 3`)"
    if ndim == 2 and image.ndim == 3 and Path(path).is_file() and tiff_axes(Path(path)).has_z:
        raise DataError(
            f"{path}: image of shape {image.shape} is a 3-D volume (its TIFF metadata names the axes "
            f"{tiff_axes(Path(path)).axes}), but this data set or model is 2-D; {volume_hint}, or give 2-D images"
        )
    found = 1 if image.ndim == ndim else image.shape[0]
    if channels is not None and found != channels:
        raise DataError(
            f"{path}: image of shape {image.shape} has {found} channel(s), the model takes {channels}; "
            f"store images as {IMAGE_SHAPES[ndim]} with channels first"
            + (f" (if the first axis is z, {volume_hint})" if ndim == 2 and image.ndim == 3 else "")
        )
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise DataError(f"{path}: image contains NaN or infinite pixels; replace them (e.g. by 0)")


def check_pair(image: np.ndarray, labels: np.ndarray, image_path: Path, mask_path: Path, ndim: int = 2) -> None:
    """The mask must cover the image: 2D a label image (H, W) or one-hot stack (K, H, W) with the
    image's (H, W); 3D a label volume (Z, Y, X) with the image's (Z, Y, X). A label image or
    volume must hold instance ids (:func:`check_instances`).

    Warns (not an error) when the mask has no object at all.
    """
    check_image(image, image_path, ndim)
    if ndim == 3:
        spatial = image.shape[-3:]
        if labels.shape != spatial:
            raise DataError(
                f"{mask_path}: mask shape {labels.shape} does not match image {image_path} of shape "
                f"{image.shape}; a 3D mask must be one (Z, Y, X) label stack with the image's Z, Y and X"
            )
    elif labels.ndim == 3 and labels.shape[-1] in (3, 4) and labels.shape[:2] == image.shape[-2:]:
        raise DataError(
            f"{mask_path}: mask of shape {labels.shape} is an RGB(A) picture, not an instance label image; "
            "save it with one channel holding one integer id per object (0 = background), e.g. as a 16-bit "
            "TIFF: colours of a rendered label image cannot be read back as ids"
        )
    elif labels.ndim not in (2, 3) or labels.shape[-2:] != image.shape[-2:]:
        raise DataError(
            f"{mask_path}: mask shape {labels.shape} does not match image {image_path} of shape {image.shape}; "
            "the mask must be (H, W) or (K, H, W) with the image's H and W"
        )
    if not labels.any():
        log.warning(
            "%s: mask has no objects (all background); the image %s only teaches background", mask_path, image_path
        )
    elif labels.ndim == ndim:  # a one-hot stack holds one object per slice by construction
        check_instances(labels, mask_path)


def split_ids(labels: np.ndarray) -> dict[int, list[int]]:
    """Ids of the label image or volume `labels` whose pixels form several separate pieces
    (touching at a corner counts as connected), with their piece sizes in pixels, largest first."""
    from skimage.measure import label

    pieces = label(labels, background=0, connectivity=labels.ndim)
    owner = np.zeros(int(pieces.max()) + 1, np.int64)  # piece -> its id
    owner[pieces.ravel()] = labels.ravel()
    per_id = np.bincount(owner[1:])
    split = np.flatnonzero(per_id > 1)
    if not split.size:
        return {}
    sizes = np.bincount(pieces.ravel())[1:]
    return {int(i): sorted(sizes[owner[1:] == i].tolist(), reverse=True) for i in split}


def check_instances(labels: np.ndarray, path: Path) -> None:
    """Refuse a binary or class mask (every id covers several separate objects), warn about ids
    of an instance mask that cover several pieces (see the module docstring); `path` for messages."""
    split = split_ids(labels)
    if not split:
        return
    objects = {i: sizes for i, sizes in split.items() if sizes[1] >= PIECE_FRACTION * sizes[0]}
    ids = np.unique(labels[labels > 0])
    if len(objects) == len(ids):
        n_objects = sum(sum(s >= PIECE_FRACTION * sizes[0] for s in sizes) for sizes in objects.values())
        what = (
            f"a binary mask (every object has id {ids[0]})" if len(ids) == 1 else f"a class mask (ids {ids.tolist()})"
        )
        raise DataError(
            f"{path}: {what}, not an instance label image: {n_objects} separate objects share "
            f"{len(ids)} id(s), and each object needs its own id (0 = background). If no two objects "
            "touch, relabel it by connected components (e.g. skimage.measure.label(mask > 0)); objects "
            "that touch must be annotated with different ids"
        )
    if objects:
        shown = ", ".join(f"{i} ({'+'.join(map(str, sizes[:4]))} pixels)" for i, sizes in list(objects.items())[:5])
        log.warning(
            "%s: %d label id(s) cover separate pieces: %s%s. Fine for an object cut in two by another; "
            "if the pieces are different objects, give each its own id",
            path,
            len(objects),
            shown,
            ", …" if len(objects) > 5 else "",
        )
    stray = len(split) - len(objects)
    if stray:
        log.debug("%s: %d label id(s) have stray pixels apart from the object", path, stray)
