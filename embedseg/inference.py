"""Inference (docs/method.md §7; `embedseg predict`): normalise, pad, tile, TTA, cluster — 2-D or 3-D.

Raw network outputs (5, H, W) = [o_x, o_y, σ_x, σ_y, seed logit], in 3-D (7, Z, Y, X) =
[o_x, o_y, o_z, σ_x, σ_y, σ_z, seed logit], are what gets padded away, stitched and averaged;
tanh/exp/sigmoid are applied only in clustering. An offset is relative to its own pixel, so a
tile's raw output does not depend on where the tile sits (for shifts by multiples of the
network's stride 8, along every axis); a pixel at least the receptive-field radius away from every
cut tile border (:func:`~embedseg.models.erfnet.receptive_radius`, 629 px for the paper's
ERF-Net, so 632 px of overlap by default) gets the whole image's raw output up to float rounding.
Images whose forward pass fits `memory_gb` are predicted whole (the official code's behaviour);
larger ones in tiles as large as fits (:func:`plan_tile`).

TTA (docs/method.md §7.3): the network sees every transform of ``dihedral.transforms(D)`` of a
tile (8 in 2-D, 16 in 3-D; batched by shape) and each output is mapped back, spatially and in its
vector components (``dihedral.invert_output``); the back-mapped raw maps are averaged per tile.

Memory: a tile's TTA outputs are summed as they come, so at most one batch of transforms of one
tile is held besides the stitched output. The stitched raw output stays float32, (2D + 1) × the
padded image: float16 would round tanh(o) near ±1 to steps of 1e-3, a whole pixel of the grid
(δ = 1/1023), and move embeddings across pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import dihedral
from .core.cluster import PRESETS, ClusterParams, cluster, preset
from .core.embedding import grid_spacing
from .data.formats import reduce_rgb
from .data.validate import check_image
from .dataset_settings import DatasetSettings, normalize
from .io import DataError
from .models.erfnet import NETWORK_MULTIPLE, BranchedERFNet, receptive_radius
from .options import option

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024
# 3-D: 128 × 256 × 256 voxels per tile. Measured on CPU (benchmarks/predict3d_memory.py): one
# such tile adds ~0.5 GiB of activations (~1.3 GiB with TTA), so a 256 × 512 × 512 volume peaked
# at 3.2 GiB RSS, 1.75 GiB of it the stitched float32 output.
DEFAULT_TILE_3D = (128, 256, 256)
# Overlap of a network that is not an ERF-Net (test models) and has no `receptive_radius` of its own.
DEFAULT_OVERLAP = 64
# Memory a prediction may use for the forward pass (GB); images that fit are predicted whole. With
# the interpreter, torch and zarr (~0.4 GB) an 8k² block prediction then peaks below 2 GB.
DEFAULT_MEMORY_GB = 1.5
# Bytes of activations per input pixel (voxel) and transform of the ERF-Net forward pass in
# inference mode, measured on CPU: 90 B/px at 2048² (benchmarks/README.md), 64 B/voxel in 3-D.
FORWARD_BYTES_PER_PIXEL = 100
MIN_TILE = 256  # smallest tile the out-of-memory fallback tries
# On CPU, big batches thrash the caches: a 1024² forward of batch 2 took 2.3× longer per image
# than batch 1 (1 thread, busy 2-core machine); small tiles still gain from batching.
CPU_BATCH_PIXELS = 512 * 512


@dataclass(frozen=True)
class ClusteringConfig:
    """How raw outputs become labels: the clustering options of `embedseg predict`, which
    `embedseg export` records in a package. Defaults: :class:`~embedseg.core.cluster.ClusterParams`."""

    clustering: str = option(
        "auto",
        "paper: min mask/unclustered sum 128, objects > 36 px; current: 0/0/min-object-size; "
        "auto: the data set's (dataset.json clustering: paper in 2-D, current for the 3-D sets)",
        choices=("auto", *PRESETS),
    )
    min_object_size: int | None = option(
        None,
        "proposals need more pixels than this (default: 36 for paper, the data set's "
        "smallest training object for current)",
        type=int,
    )
    seed_thresh: float = option(ClusterParams.seed_thresh, "stop when the best seed score is below")
    fg_thresh: float = option(ClusterParams.fg_thresh, "foreground = seed score above")

    def __post_init__(self) -> None:
        for flag, value in (("--seed-thresh", self.seed_thresh), ("--fg-thresh", self.fg_thresh)):
            if not 0.0 <= value <= 1.0:
                raise DataError(f"{flag} {value}: must lie in [0, 1] (it thresholds the seed score, a probability)")
        if self.min_object_size is not None and self.min_object_size < 0:
            raise DataError(f"--min-object-size {self.min_object_size}: must be at least 0")

    def params(self, settings: DatasetSettings) -> ClusterParams:
        """The preset's thresholds; `current` without --min-object-size takes the data set's
        smallest training object (``settings.min_object_size``)."""
        name = self.preset_name(settings)
        min_object_size = self.min_object_size
        if min_object_size is None and name == "current":
            min_object_size = settings.min_object_size
        return preset(name, min_object_size, self.seed_thresh, self.fg_thresh)

    def preset_name(self, settings: DatasetSettings) -> str:
        """The preset used: the option's, or for `auto` the data set's."""
        return settings.clustering if self.clustering == "auto" else self.clustering

    def record(self, settings: DatasetSettings) -> dict[str, Any]:
        """The preset's name and thresholds used with `settings` (as train.json records them)."""
        return {"preset": self.preset_name(settings), **dataclasses.asdict(self.params(settings))}


def default_batch_size(tile_shape: Sequence[int], device: torch.device) -> int:
    """Transforms per forward pass: 8 on CUDA, up to CPU_BATCH_PIXELS pixels (voxels) on CPU."""
    if device.type == "cuda":
        return 8
    return max(1, min(8, CPU_BATCH_PIXELS // math.prod(tile_shape)))


def padding(size: int, multiple: int = NETWORK_MULTIPLE) -> tuple[int, int]:
    """(before, after) padding that brings `size` to the next multiple: Δ//2 before, rest after."""
    total = -size % multiple
    return total // 2, total - total // 2


def pad_image(image: np.ndarray, multiple: int = NETWORK_MULTIPLE) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Reflect-pad every spatial axis of (C, *S) to multiples of `multiple`; returns the padded
    image and the slices (one per spatial axis) that crop a prediction back to the original size."""
    pads = [padding(size, multiple) for size in image.shape[1:]]
    padded = np.pad(image, [(0, 0), *pads], mode="reflect")
    return padded, tuple(slice(before, before + size) for (before, _), size in zip(pads, image.shape[1:]))


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """(tile start, keep start, keep end) along one axis of length `size` (a multiple of 8).

    Tiles of length `tile` start at multiples of 8 (the network is shift-equivariant only for
    those) and overlap by at least 2·`overlap`; each keeps the part up to the middle of its
    overlaps, so every kept pixel is ≥ `overlap` away from a cut tile border.
    """
    if size <= tile:
        return [(0, 0, size)]
    step = max(NETWORK_MULTIPLE, (tile - 2 * overlap) // NETWORK_MULTIPLE * NETWORK_MULTIPLE)
    starts = list(range(0, size - tile, step)) + [size - tile]
    bounds = [0] + [(nxt + cur + tile) // 2 for cur, nxt in zip(starts, starts[1:])] + [size]
    return [(start, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def network_overlap(model: torch.nn.Module) -> int:
    """Default overlap of `model`'s tiles: its receptive-field radius rounded up to a multiple of 8
    (the ERF-Net's, found inside any wrapper; or the model's `receptive_radius` attribute), else
    :data:`DEFAULT_OVERLAP`."""
    radius = getattr(model, "receptive_radius", None)
    for module in model.modules():
        if isinstance(module, BranchedERFNet):
            radius = receptive_radius(module)
            break
    if radius is None:
        return DEFAULT_OVERLAP
    return -(-int(radius) // NETWORK_MULTIPLE) * NETWORK_MULTIPLE


def plan_tile(
    spatial: Sequence[int], overlap: int, memory_gb: float = DEFAULT_MEMORY_GB, batch: int = 1
) -> tuple[int, ...]:
    """Tile shape for a padded input of shape `spatial` (multiples of 8): the whole input when its
    forward pass (`batch` transforms at a time, :data:`FORWARD_BYTES_PER_PIXEL`) and the stitched
    float32 output fit `memory_gb`; else the largest cube (square) that does, at least 4 ×
    `overlap` per side so that tiles keep half their length."""
    ndim = len(spatial)
    per_pixel = FORWARD_BYTES_PER_PIXEL * batch + 4 * (2 * ndim + 1)
    budget = memory_gb * 1e9 / per_pixel
    if math.prod(spatial) <= budget:
        return tuple(spatial)
    side = int(budget ** (1 / ndim)) // NETWORK_MULTIPLE * NETWORK_MULTIPLE
    side = max(side, 4 * overlap, 2 * NETWORK_MULTIPLE)
    return tuple(min(side, size) for size in spatial)


def default_tile(ndim: int) -> list[int]:
    """`--tile-size` when not given: :data:`DEFAULT_TILE` (2-D) or :data:`DEFAULT_TILE_3D`."""
    return [DEFAULT_TILE] if ndim == 2 else list(DEFAULT_TILE_3D)


def tile_shape(tile_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Tile length per spatial axis: one number for every axis, or one per axis ((Z,) Y, X)."""
    tile = (tile_size,) * ndim if isinstance(tile_size, int) else tuple(tile_size)
    if len(tile) != ndim or any(t <= 0 or t % NETWORK_MULTIPLE for t in tile):
        raise ValueError(f"tile size {tile_size}: need 1 or {ndim} positive multiples of {NETWORK_MULTIPLE}")
    return tile


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_tile(
    model: torch.nn.Module, tile: torch.Tensor, tta: bool = True, batch_size: int | None = None
) -> torch.Tensor:
    """Raw output (2D + 1, *S) of one input (C, *S) (every side a multiple of 8; D = 2 or 3 spatial
    axes), TTA-averaged over ``dihedral.transforms(D)`` if `tta`; `batch_size` transforms per
    forward pass (default: :func:`default_batch_size`). The back-mapped outputs are summed as they
    come, so one batch of transformed outputs is held at a time.

    A 2-D batch goes in as channels_last, which is fastest with a model in channels_last
    (see :func:`channels_last`; :func:`predict_raw` does that); the values are the same."""
    ndim = tile.dim() - 1

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs.contiguous(memory_format=torch.channels_last) if ndim == 2 else inputs)

    if not tta:
        return forward(tile[None])[0]
    batch_size = batch_size or default_batch_size(tile.shape[1:], tile.device)
    transforms = dihedral.transforms(ndim)
    groups: dict[torch.Size, list] = {}  # rotations of a non-square tile change its shape
    for transform in transforms:
        groups.setdefault(dihedral.forward(tile, transform).shape, []).append(transform)
    total = None
    for group in groups.values():
        for batch in _batches(group, batch_size):
            inputs = torch.stack([dihedral.forward(tile, t) for t in batch])
            for output, transform in zip(forward(inputs), batch):
                restored = dihedral.invert_output(output, transform, ndim)
                total = restored if total is None else total.add_(restored)
    return total / len(transforms)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's parameters (CPU for a parameter-free module)."""
    return next(model.parameters(), torch.empty(0)).device


@contextlib.contextmanager
def channels_last(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model with its 4-D weights in channels_last memory format for the duration, then
    restored to contiguous format (unless they were channels_last already).

    On CPU the batch-8 TTA forward of the 2-D ERF-Net runs 1.3–1.5× faster in channels_last;
    outputs differ by float rounding only (≤ 1.5e-7). The parameter objects stay the same (only
    their storage is replaced, outside inference mode), so optimisers and training are
    unaffected. A 3-D network (5-D weights) is left as it is: channels_last_3d is not measured.
    """
    weights = [p for p in model.parameters() if p.dim() == 4]
    if not weights or all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def predict_raw(
    model: torch.nn.Module,
    image: np.ndarray,
    tta: bool = True,
    tile_size: int | Sequence[int] | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    memory_gb: float = DEFAULT_MEMORY_GB,
) -> torch.Tensor:
    """Raw output (2D + 1, *S) float32 on the model's device for a normalised image (C, *S) with
    D = 2 or 3 spatial axes S, or (H, W); `model` maps (B, C, *s) to (B, 2D + 1, *s) and is
    expected in eval mode.

    The image is reflect-padded to multiples of 8 along every axis, cut into tiles of at most
    `tile_size` (per axis; multiples of 8; default :func:`plan_tile` for `memory_gb`: the whole
    image when it fits) overlapping by 2·`overlap` (default :func:`network_overlap`, the receptive
    field, which makes tiles exact to float rounding; a tile is enlarged to 4·`overlap` if
    smaller) when larger, predicted (TTA: ``dihedral.transforms(D)`` in batches of
    `batch_size`, default :func:`default_batch_size`), stitched and cropped back. When the GPU
    runs out of memory, it retries one transform at a time, then with halved tiles. The model
    runs in channels_last during the call (:func:`channels_last`) and is given back as it came.
    """
    with channels_last(model), torch.inference_mode():
        return _predict_raw(model, image, tta, tile_size, overlap, batch_size, memory_gb)


def _predict_raw(
    model: torch.nn.Module,
    image: np.ndarray,
    tta: bool,
    tile_size: int | Sequence[int] | None,
    overlap: int | None,
    batch_size: int | None,
    memory_gb: float,
) -> torch.Tensor:
    image = np.asarray(image, dtype=np.float32)
    image = image[None] if image.ndim == 2 else image
    padded, crop = pad_image(image)
    overlap = network_overlap(model) if overlap is None else overlap
    if tile_size is None:
        tile = plan_tile(padded.shape[1:], overlap, memory_gb, batch_size or 1)
    else:
        tile = tile_shape(tile_size, image.ndim - 1)
        if any(t < 4 * overlap < size for t, size in zip(tile, padded.shape[1:])):
            tile = tuple(max(t, 4 * overlap) for t in tile)
            log.info("tiles enlarged to %s px: they overlap by the receptive field, 2 × %d px", tile, overlap)
    padded = torch.from_numpy(padded).to(model_device(model))
    while True:
        try:
            return predict_tiles(model, padded, tta, tile, overlap, batch_size)[(slice(None), *crop)]
        except torch.cuda.OutOfMemoryError:
            halved = tuple(max(NETWORK_MULTIPLE, t // 2 // NETWORK_MULTIPLE * NETWORK_MULTIPLE) for t in tile)
            if batch_size != 1:
                batch_size = 1
            elif math.prod(halved) >= MIN_TILE**2:
                tile = halved
            else:
                raise
            log.warning("out of GPU memory; retrying with TTA batch 1 and tiles of %s px", tile)
            torch.cuda.empty_cache()


def predict_tiles(
    model: torch.nn.Module,
    padded: torch.Tensor,
    tta: bool,
    tile: Sequence[int],
    overlap: int,
    batch_size: int | None,
) -> torch.Tensor:
    """Raw output (2D + 1, *S) float32 of a padded input (C, *S), stitched from overlapping tiles
    of shape `tile` (one length per spatial axis); the overlap per axis is at most a quarter of
    the tile, so tiles advance by at least half their length."""
    spatial = padded.shape[1:]
    if any(t < min(size, 2 * NETWORK_MULTIPLE) for size, t in zip(spatial, tile)):
        # tiles start at multiples of 8, so a tile of 8 along a cut axis cannot overlap its neighbour
        raise ValueError(f"tiles {tuple(tile)} of a {tuple(spatial)} input: cut axes need tiles of at least 16")
    spans = [tile_spans(size, t, min(overlap, t // 4)) for size, t in zip(spatial, tile)]
    raw = torch.empty((2 * len(spatial) + 1, *spatial), device=padded.device)
    for axes in itertools.product(*spans):
        source = tuple(slice(start, start + min(t, size)) for (start, _, _), t, size in zip(axes, tile, spatial))
        out = predict_tile(model, padded[(slice(None), *source)], tta, batch_size)
        keep = tuple(slice(lo - start, hi - start) for start, lo, hi in axes)
        raw[(slice(None), *(slice(lo, hi) for _, lo, hi in axes))] = out[(slice(None), *keep)]
    return raw


def network_input(
    image: np.ndarray, settings: DatasetSettings, path: str | os.PathLike = "image", rgb_to_grey: bool = False
) -> np.ndarray:
    """Normalised float32 (C, *S) network input from a stored image (H, W) or (C, H, W), or for a
    3-D model (``settings.ndim`` 3) a volume (Z, Y, X) or (C, Z, Y, X).

    RGB(A) pictures (2-D only) are treated as `prepare` treats them
    (:func:`embedseg.data.formats.reduce_rgb`); the channels, finite values and the value range
    must fit what the model was trained on (:func:`check_value_range`), else a DataError naming `path`.
    """
    ndim = settings.ndim
    if ndim == 2:
        image = reduce_rgb(image, path, rgb_to_grey)
    check_image(image, Path(path), ndim)
    if image.ndim == ndim:
        image = image[None]
    if image.shape[0] != settings.in_channels:
        axes = "(H, W) or (C, H, W)" if ndim == 2 else "(Z, Y, X) or (C, Z, Y, X)"
        raise DataError(
            f"{path}: image shape {image.shape} does not fit the model's {settings.in_channels} input "
            f"channel(s); store images as {axes} with channels first"
        )
    check_value_range(image, settings, path)
    return normalize(image, settings)


def check_value_range(image: np.ndarray, settings: DatasetSettings, path: str | os.PathLike) -> None:
    """The image's values must be of the kind the model was trained on, else a DataError naming
    `path` and the fix (a warning where the labels may still be right).

    For `absolute` normalisation the image must be of the training data's bit depth: values
    above the factor (a 16-bit image into an 8-bit model), negative values (a z-scored float or
    a signed image: the training images were unsigned), an integer type far below the factor
    (8-bit into 16-bit) or a float image already scaled to [0, 1] would give the network inputs
    it never saw and silently wrong labels; values far outside the training images' range
    (``dataset.json``'s ``extra.intensity``, written by `prepare`) warn. `percentile` and
    `mean-std` models map any value range to the one they saw.
    """
    if not image.size:
        return
    lowest, highest = float(image.min()), float(image.max())
    trained = settings.extra.get("intensity") or {}
    if settings.normalization == "absolute":
        factor = float(settings.normalization_factor)
        bits = {255.0: "8-bit (uint8)", 65535.0: "16-bit (uint16)"}.get(factor, f"values up to {factor:g}")
        if lowest < 0:
            raise DataError(
                f"{path}: {image.dtype} image with values down to {image.min()} does not fit the model, trained "
                f"on {bits} images (never negative) divided by {factor:g}; give the raw, unnormalised image, or "
                "train a model with --normalization percentile (or mean-std) on images like it"
            )
        if np.issubdtype(image.dtype, np.integer):
            mismatch = highest > factor or np.iinfo(image.dtype).max < factor / 2
        else:
            mismatch = highest > factor or (factor > 1 and highest <= 1)
        if mismatch:
            raise DataError(
                f"{path}: {image.dtype} image (values up to {image.max()}) does not fit the model, trained on "
                f"{bits} images divided by {factor:g}; convert the image to that bit depth, or train a model "
                "on images like it"
            )
    if settings.normalization == "absolute" and trained.get("max", 0) > 0:
        span = trained["max"] - trained["min"]
        if highest < trained["min"] + span / 16 or highest > trained["max"] + 4 * span:
            log.warning(
                "%s: values %g..%g, but the model's training images had %g..%g (%s); its labels may be "
                "wrong. Use images like the training ones, or a model trained with --normalization percentile",
                path,
                lowest,
                highest,
                trained["min"],
                trained["max"],
                ", ".join(trained.get("dtypes", [])),
            )


def segment(
    model: torch.nn.Module,
    image: np.ndarray,
    settings: DatasetSettings,
    tta: bool = True,
    params: ClusterParams = ClusterParams(),
    path: str | os.PathLike = "image",
    rgb_to_grey: bool = False,
    **predict_options,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels (uint16/uint32) and seed map (float32) of the spatial shape (H, W) or
    (Z, Y, X) of the stored image read from `path` (named in errors; see :func:`network_input`);
    3-D clustering uses the grid spacing of the data set's anisotropy."""
    raw = predict_raw(model, network_input(image, settings, path, rgb_to_grey), tta, **predict_options)
    spacing = grid_spacing(settings.ndim, settings.anisotropy)
    return cluster(raw, params, spacing), torch.sigmoid(raw[-1]).cpu().numpy()
