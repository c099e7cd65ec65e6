"""Inference (docs/method.md §7; `embedseg predict`): normalise, pad, tile, 8-fold TTA, cluster.

Raw network outputs (5, H, W) = [o_x, o_y, σ_x, σ_y, seed logit] are what gets padded away,
stitched and averaged; tanh/exp/sigmoid are applied only in clustering. That makes tiling exact up
to the network's receptive field: an offset is relative to its own pixel, so a tile's raw
output does not depend on where the tile sits (for shifts by multiples of the network's stride 8).

TTA (docs/method.md §7.3): the network sees the 8 dihedral transforms of the image (batched by shape) and
each output is mapped back — spatially, then its vector components: a Y flip negates o_y, a
rotation by k·90° rotates (o_x, o_y) back and, for odd k, swaps σ_x and σ_y. The 8 back-mapped raw
maps are averaged.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import dihedral
from .cluster import PRESETS, ClusterParams, cluster, preset
from .data.formats import IMAGE_FILE_SUFFIXES, reduce_rgb
from .data.validate import check_image
from .dataset_settings import DatasetSettings, normalize
from .io import DataError, list_images, read_image, write_labels, write_tiff
from .outputs import PREDICTIONS, replacing

log = logging.getLogger(__name__)

NETWORK_MULTIPLE = 8  # the ERF-Net downsamples 3× by 2
DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 64
MIN_TILE = 256  # smallest tile the out-of-memory fallback tries
# On CPU, big batches thrash the caches: a 1024² forward of batch 2 took 2.3× longer per image
# than batch 1 (1 thread, busy 2-core machine); small tiles still gain from batching.
CPU_BATCH_PIXELS = 512 * 512


def default_batch_size(tile_shape: tuple[int, int], device: torch.device) -> int:
    """Transforms per forward pass: all 8 on CUDA, up to CPU_BATCH_PIXELS pixels on CPU."""
    if device.type == "cuda":
        return 8
    return max(1, min(8, CPU_BATCH_PIXELS // (tile_shape[0] * tile_shape[1])))


def padding(size: int, multiple: int = NETWORK_MULTIPLE) -> tuple[int, int]:
    """(before, after) padding that brings `size` to the next multiple: Δ//2 before, rest after."""
    total = -size % multiple
    return total // 2, total - total // 2


def pad_image(image: np.ndarray, multiple: int = NETWORK_MULTIPLE) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Reflect-pad (C, H, W) to multiples of `multiple`; returns the padded image and the (Y, X)
    slices that crop a prediction back to the original size."""
    (top, bottom), (left, right) = padding(image.shape[-2], multiple), padding(image.shape[-1], multiple)
    padded = np.pad(image, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    return padded, (slice(top, top + image.shape[-2]), slice(left, left + image.shape[-1]))


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


def invert_components(output: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """2D channel mapping of transform (k, flip); kept for callers until they use
    :func:`dihedral.invert_output`, which now holds the maths (2D and 3D)."""
    return dihedral.invert_components(output, (k, flip), 2)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_tile(
    model: torch.nn.Module, tile: torch.Tensor, tta: bool = True, batch_size: int | None = None
) -> torch.Tensor:
    """Raw output (5, h, w) of one input (C, h, w) (h, w multiples of 8), TTA-averaged if `tta`;
    `batch_size` transforms per forward pass (default: :func:`default_batch_size`).

    The batch goes in as channels_last, which is fastest with a model in channels_last
    (see :func:`channels_last`; :func:`predict_raw` does that); the values are the same."""
    batch_size = batch_size or default_batch_size(tile.shape[-2:], tile.device)
    transforms = dihedral.TRANSFORMS if tta else ((0, False),)
    if tile.shape[-1] == tile.shape[-2]:
        groups = [list(transforms)]
    else:  # odd rotations of a non-square tile change its shape; batch same-shaped inputs only
        groups = [[t for t in transforms if t[0] % 2 == parity] for parity in (0, 1)]
    total = None
    for group in groups:
        for batch in _batches(group, batch_size):
            inputs = torch.stack([dihedral.forward(tile, t) for t in batch])
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            outputs = model(inputs)
            for output, t in zip(outputs, batch):
                restored = dihedral.invert_output(output, t, 2)
                total = restored if total is None else total + restored
    return total / len(transforms)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's parameters (CPU for a parameter-free module)."""
    return next(model.parameters(), torch.empty(0)).device


@contextlib.contextmanager
def channels_last(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model with its 4-D weights in channels_last memory format for the duration, then
    restored to contiguous format (unless they were channels_last already).

    On CPU the batch-8 TTA forward of the ERF-Net runs 1.3–1.5× faster in channels_last; outputs
    differ by float rounding only (≤ 1.5e-7). The parameter objects stay the same (only their
    storage is replaced, outside inference mode), so optimisers and training are unaffected.
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
    tile_size: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Raw output (5, H, W) on the model's device for a normalised image (C, H, W) or (H, W);
    `model` maps (B, C, h, w) to (B, 5, h, w) and is expected in eval mode.

    The image is reflect-padded to multiples of 8, cut into tiles of at most `tile_size`
    (a multiple of 8) overlapping by 2·`overlap` when larger, predicted (TTA: 8 transforms in
    batches of `batch_size`, default :func:`default_batch_size`), stitched and cropped back.
    When the GPU runs out of memory, it retries one transform at a time, then with halved tiles.
    The model runs in channels_last during the call (:func:`channels_last`) and is given back as
    it came.
    """
    with channels_last(model), torch.inference_mode():
        return _predict_raw(model, image, tta, tile_size, overlap, batch_size)


def _predict_raw(
    model: torch.nn.Module, image: np.ndarray, tta: bool, tile_size: int, overlap: int, batch_size: int | None
) -> torch.Tensor:
    if tile_size % NETWORK_MULTIPLE:
        raise ValueError(f"tile_size must be a multiple of {NETWORK_MULTIPLE}, got {tile_size}")
    image = np.asarray(image, dtype=np.float32)
    padded, crop = pad_image(image[None] if image.ndim == 2 else image)
    padded = torch.from_numpy(padded).to(model_device(model))
    while True:
        try:
            return predict_tiles(model, padded, tta, tile_size, overlap, batch_size)[:, crop[0], crop[1]]
        except torch.cuda.OutOfMemoryError:
            if batch_size != 1:
                batch_size = 1
            elif tile_size // 2 >= MIN_TILE:
                tile_size = tile_size // 2 // NETWORK_MULTIPLE * NETWORK_MULTIPLE
            else:
                raise
            log.warning("out of GPU memory; retrying with TTA batch 1 and tiles of %d px", tile_size)
            torch.cuda.empty_cache()


def predict_tiles(
    model: torch.nn.Module, padded: torch.Tensor, tta: bool, tile_size: int, overlap: int, batch_size: int | None
) -> torch.Tensor:
    """Raw output (5, H, W) of a padded input (C, H, W), stitched from overlapping tiles."""
    height, width = padded.shape[-2:]
    raw = torch.empty((5, height, width), device=padded.device)
    for y0, y_lo, y_hi in tile_spans(height, tile_size, overlap):
        for x0, x_lo, x_hi in tile_spans(width, tile_size, overlap):
            tile = padded[:, y0 : y0 + min(tile_size, height), x0 : x0 + min(tile_size, width)]
            out = predict_tile(model, tile, tta, batch_size)
            raw[:, y_lo:y_hi, x_lo:x_hi] = out[:, y_lo - y0 : y_hi - y0, x_lo - x0 : x_hi - x0]
    return raw


def network_input(
    image: np.ndarray, settings: DatasetSettings, path: str | os.PathLike = "image", rgb_to_grey: bool = False
) -> np.ndarray:
    """Normalised float32 (C, H, W) network input from a stored image (H, W) or (C, H, W).

    RGB(A) pictures are treated as `prepare` treats them (:func:`embedseg.data.formats.reduce_rgb`);
    the channels, finite values and the value range must fit what the model was trained on
    (:func:`check_value_range`), else a DataError naming `path`.
    """
    image = reduce_rgb(image, path, rgb_to_grey)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != settings.in_channels:
        raise DataError(
            f"{path}: image shape {image.shape} does not fit the model's {settings.in_channels} input "
            "channel(s); store images as (H, W) or (C, H, W) with channels first"
        )
    check_image(image, Path(path))
    check_value_range(image, settings, path)
    return normalize(image, settings)


def check_value_range(image: np.ndarray, settings: DatasetSettings, path: str | os.PathLike) -> None:
    """For `absolute` normalisation the image must be of the training data's bit depth: values
    above the factor (a 16-bit image into an 8-bit model), an integer type far below it (8-bit
    into 16-bit) or a float image already scaled to [0, 1] would give the network inputs it
    never saw and silently wrong labels."""
    if settings.normalization != "absolute" or not image.size:
        return
    factor = float(settings.normalization_factor)
    trained = {255.0: "8-bit (uint8)", 65535.0: "16-bit (uint16)"}.get(factor, f"values up to {factor:g}")
    highest = float(image.max())
    if np.issubdtype(image.dtype, np.integer):
        mismatch = highest > factor or np.iinfo(image.dtype).max < factor / 2
    else:
        mismatch = highest > factor or (factor > 1 and highest <= 1)
    if mismatch:
        found = f"values up to {image.max()}"
        raise DataError(
            f"{path}: {image.dtype} image ({found}) does not fit the model, trained on {trained} images "
            f"divided by {factor:g}; convert the image to that bit depth, or train a model on images like it"
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
    """Instance labels (H, W) (uint16/uint32) and seed map (H, W) float32 of the stored image
    read from `path` (named in errors; see :func:`network_input`)."""
    raw = predict_raw(model, network_input(image, settings, path, rgb_to_grey), tta, **predict_options)
    return cluster(raw, params), torch.sigmoid(raw[4]).cpu().numpy()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL_PT",
        help="checkpoint written by `embedseg train` (best.pt) or package of `embedseg export`",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of TIFF images to segment")
    parser.add_argument("--out", required=True, metavar="PRED_DIR", help="output folder for the label TIFFs")
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average the raw outputs of the 8 rotations/flips",
    )
    parser.add_argument(
        "--clustering",
        choices=PRESETS,
        default="paper",
        help="paper: min mask/unclustered sum 128, objects > 36 px; current: 0/0/min-object-size",
    )
    parser.add_argument(
        "--min-object-size",
        type=int,
        default=None,
        help="proposals need more pixels than this (default: 36 for paper, the data set's "
        "smallest training object for current)",
    )
    parser.add_argument("--seed-thresh", type=float, default=0.9, help="stop when the best seed score is below")
    parser.add_argument("--fg-thresh", type=float, default=0.5, help="foreground = seed score above")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=DEFAULT_TILE,
        help="images larger than this (pixels, multiple of 8) are predicted in overlapping tiles",
    )
    parser.add_argument("--seeds-out", default=None, metavar="DIR", help="also write the seed maps (float32 TIFF)")
    parser.add_argument(
        "--rgb-to-grey",
        action="store_true",
        help="reduce colour RGB(A) images to luminance, as `prepare --rgb-to-grey` (default: refuse them)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace PRED_DIR (and --seeds-out) even if it is a file or a folder not "
        "written by `embedseg predict` (never an input)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the network through torch.compile (falls back to eager with a warning)",
    )
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="mixed precision: float16 autocast on CUDA, bfloat16 on CPU (clustering stays float32)",
    )


def check_options(args: argparse.Namespace) -> None:
    """Thresholds are probabilities, tiles positive multiples of 8, sizes non-negative."""
    for option, value in (("--seed-thresh", args.seed_thresh), ("--fg-thresh", args.fg_thresh)):
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{option} {value}: must lie in [0, 1] (it thresholds the seed score, a probability)")
    if args.tile_size <= 0 or args.tile_size % NETWORK_MULTIPLE:
        raise DataError(
            f"--tile-size {args.tile_size}: must be a positive multiple of {NETWORK_MULTIPLE}, e.g. {DEFAULT_TILE}"
        )
    if args.min_object_size is not None and args.min_object_size < 0:
        raise DataError(f"--min-object-size {args.min_object_size}: must be at least 0")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The TIFF images of `folder`; an error naming what is there instead when there are none."""
    paths = list_images(folder)
    if not paths:
        others = [p.name for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_FILE_SUFFIXES]
        more = " …" if len(others) > 3 else ""
        found = f"only {', '.join(others[:3])}{more}; convert them to TIFF" if others else "it is empty"
        raise DataError(f"{folder}: no images to predict (.tif/.tiff): {found}")
    return paths


def run(args: argparse.Namespace) -> int:
    from .acceleration import inference_model
    from .models import load_checkpoint
    from .runtime import resolve_device

    check_options(args)
    paths = image_files(args.images)
    model, settings = load_checkpoint(args.model, resolve_device(args.device))
    model = inference_model(model, compile=args.compile, amp=args.amp)
    min_object_size = args.min_object_size
    if min_object_size is None and args.clustering == "current":
        min_object_size = settings.min_object_size
    params = preset(args.clustering, min_object_size, args.seed_thresh, args.fg_thresh)
    log.info("clustering %s: %s", args.clustering, params)
    inputs = {"MODEL_PT": args.model, "--images": args.images}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(replacing(args.out, PREDICTIONS, inputs, args.force))
        seeds_out = args.seeds_out and stack.enter_context(
            replacing(args.seeds_out, PREDICTIONS, {**inputs, "PRED_DIR": args.out}, args.force)
        )
        for path in tqdm(paths, desc="predict", unit="image"):
            labels, seeds = segment(
                model, read_image(path), settings, args.tta, params, path, args.rgb_to_grey, tile_size=args.tile_size
            )
            write_labels(out / path.name, labels)
            if seeds_out:
                write_tiff(seeds_out / path.name, seeds)
    return 0
