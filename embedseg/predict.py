"""`embedseg predict`: label images of a folder with a trained model (docs/method.md §7, §8).

The step: its options (:class:`PredictConfig`), the image listing and the loop over images;
the inference itself (normalise, pad, tile, TTA, cluster) is :mod:`embedseg.inference`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .data.formats import IMAGE_FILE_SUFFIXES
from .inference import DEFAULT_TILE, DEFAULT_TILE_3D, ClusteringConfig, default_tile, segment
from .io import IMAGE_SUFFIXES, DataError, list_images, read_image, write_labels, write_tiff
from .models.erfnet import NETWORK_MULTIPLE
from .options import add_options, from_args, nested, option
from .outputs import PREDICTIONS, replacing
from .runtime import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """Options of `embedseg predict` (defaults: the paper's inference)."""

    tta: bool = option(True, "average the raw outputs of the rotations/flips (8 in 2-D, 16 in 3-D)")
    cluster: ClusteringConfig = nested(ClusteringConfig)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    tile_size: tuple[int, ...] | None = option(
        None,
        "images larger than this are predicted in overlapping tiles: one size (pixels, multiple of "
        f"{NETWORK_MULTIPLE}) for every axis or one per axis (Z Y X); default {DEFAULT_TILE} in 2-D, "
        f"{' '.join(map(str, DEFAULT_TILE_3D))} in 3-D",
        type=int,
        nargs="+",
        metavar="N",
    )
    rgb_to_grey: bool = option(
        False,
        "reduce colour RGB(A) images to luminance, as `prepare --rgb-to-grey` (default: refuse them)",
        action="store_true",
    )
    compile: bool = option(False, "run the network through torch.compile (falls back to eager with a warning)")
    amp: bool = option(False, "mixed precision: float16 autocast on CUDA, bfloat16 on CPU (clustering stays float32)")

    def __post_init__(self) -> None:
        if self.tile_size is not None and any(t < 2 * NETWORK_MULTIPLE or t % NETWORK_MULTIPLE for t in self.tile_size):
            raise DataError(
                f"--tile-size {' '.join(map(str, self.tile_size))}: every size must be a multiple of "
                f"{NETWORK_MULTIPLE} of at least {2 * NETWORK_MULTIPLE} (tiles overlap), e.g. {DEFAULT_TILE}"
            )

    def tile(self, ndim: int) -> int | tuple[int, ...]:
        """The tile size for a `ndim`-D model: one length for every axis or one per axis."""
        tile_size = default_tile(ndim) if self.tile_size is None else self.tile_size
        if len(tile_size) not in (1, ndim):
            raise DataError(f"--tile-size: give one size or {ndim} (one per axis) for this {ndim}-D model")
        return tile_size[0] if len(tile_size) == 1 else tuple(tile_size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL_PT",
        help="checkpoint written by `embedseg train` (best.pt) or package of `embedseg export`",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of TIFF images to segment")
    parser.add_argument("--out", required=True, metavar="PRED_DIR", help="output folder for the label TIFFs")
    parser.add_argument("--seeds-out", default=None, metavar="DIR", help="also write the seed maps (float32 TIFF)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace PRED_DIR (and --seeds-out) even if it is a file or a folder not "
        "written by `embedseg predict` (never an input)",
    )
    add_options(parser, PredictConfig)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images of `folder` (TIFF, and PNG/JPEG/BMP as `prepare` reads them); an error when
    there are none, or when two share a name (their label TIFFs would collide)."""
    paths = list_images(folder, IMAGE_FILE_SUFFIXES)
    if not paths:
        raise DataError(f"{folder}: no images to predict ({', '.join(IMAGE_FILE_SUFFIXES)}): it is empty")
    names: dict[str, Path] = {}
    for path in paths:
        other = names.setdefault(label_name(path), path)
        if other != path:
            raise DataError(f"{folder}: {other.name} and {path.name} would both be labelled as {label_name(path)}")
    return paths


def label_name(path: Path) -> str:
    """The label TIFF's file name for the image `path` (a TIFF keeps its name)."""
    return path.name if path.suffix.lower() in IMAGE_SUFFIXES else f"{path.stem}.tif"


def predict(
    model_path: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    config: PredictConfig = PredictConfig(),
    seeds_out: str | os.PathLike | None = None,
    force: bool = False,
) -> None:
    """One label TIFF in `out` (and seed map in `seeds_out`) per image of `images`, with
    the checkpoint or package `model_path`; `out` follows :mod:`embedseg.outputs`."""
    from .acceleration import inference_model
    from .models import load_checkpoint
    from .runtime import resolve_device

    paths = image_files(images)
    model, settings = load_checkpoint(model_path, resolve_device(config.device))
    model = inference_model(model, compile=config.compile, amp=config.amp)
    tile_size = config.tile(settings.ndim)
    params = config.cluster.params(settings)
    log.info("clustering %s: %s", config.cluster.clustering, params)
    inputs = {"MODEL_PT": model_path, "--images": images}
    with contextlib.ExitStack() as stack:
        # predictions.json records what made the labels (their options are not in the file names)
        record = {"tta": config.tta, "clustering": config.cluster.clustering, "params": dataclasses.asdict(params)}
        out_dir = stack.enter_context(replacing(out, PREDICTIONS, inputs, force, record))
        seeds_dir = seeds_out and stack.enter_context(
            replacing(seeds_out, PREDICTIONS, {**inputs, "PRED_DIR": out}, force)
        )
        for path in progress(paths, desc="predict", unit="image"):
            labels, seeds = segment(
                model, read_image(path), settings, config.tta, params, path, config.rgb_to_grey, tile_size=tile_size
            )
            write_labels(out_dir / label_name(path), labels)
            if seeds_dir:
                write_tiff(seeds_dir / label_name(path), seeds)


def run(args: argparse.Namespace) -> int:
    predict(args.model, args.images, args.out, from_args(PredictConfig, args), args.seeds_out, args.force)
    return 0
