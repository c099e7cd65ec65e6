"""`embedseg predict`: label images of a folder with a trained model (docs/method.md §7, §8).

The step: its options, the image listing and the loop over images; the inference itself
(normalise, pad, tile, TTA, cluster) is :mod:`embedseg.inference`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from tqdm import tqdm

from .core.cluster import PRESETS, preset
from .data.formats import IMAGE_FILE_SUFFIXES
from .inference import DEFAULT_TILE, DEFAULT_TILE_3D, NETWORK_MULTIPLE, default_tile, segment
from .io import DataError, list_images, read_image, write_labels, write_tiff
from .outputs import PREDICTIONS, replacing

log = logging.getLogger(__name__)


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
        help="average the raw outputs of the rotations/flips (8 in 2-D, 16 in 3-D)",
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
        nargs="+",
        default=None,
        metavar="N",
        help="images larger than this are predicted in overlapping tiles: one size (pixels, multiple of "
        f"8) for every axis or one per axis (Z Y X); default {DEFAULT_TILE} in 2-D, "
        f"{' '.join(map(str, DEFAULT_TILE_3D))} in 3-D",
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
    if args.tile_size is not None and any(t < 2 * NETWORK_MULTIPLE or t % NETWORK_MULTIPLE for t in args.tile_size):
        raise DataError(
            f"--tile-size {' '.join(map(str, args.tile_size))}: every size must be a multiple of "
            f"{NETWORK_MULTIPLE} of at least {2 * NETWORK_MULTIPLE} (tiles overlap), e.g. {DEFAULT_TILE}"
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
    tile_size = default_tile(settings.ndim) if args.tile_size is None else args.tile_size
    if len(tile_size) not in (1, settings.ndim):
        raise DataError(
            f"--tile-size: give one size or {settings.ndim} (one per axis) for this {settings.ndim}-D model"
        )
    tile_size = tile_size[0] if len(tile_size) == 1 else tuple(tile_size)
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
                model, read_image(path), settings, args.tta, params, path, args.rgb_to_grey, tile_size=tile_size
            )
            write_labels(out / path.name, labels)
            if seeds_out:
                write_tiff(seeds_out / path.name, seeds)
    return 0
