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
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .acceleration import PRECISION_HELP, PRECISIONS
from .blocks import CLUSTER_HALO
from .data.formats import IMAGE_FILE_SUFFIXES
from .inference import DEFAULT_MEMORY_GB, DEFAULT_TILE, DEFAULT_TILE_3D, ClusteringConfig, segment
from .io import IMAGE_SUFFIXES, DataError, read_image, write_labels, write_tiff
from .large import in_blocks, predict_large, work_folder
from .models.erfnet import NETWORK_MULTIPLE
from .options import add_options, from_args, nested, option
from .outputs import PREDICTIONS, replacing
from .runtime import progress
from .zarr_io import is_zarr, list_images_and_zarr

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
        f"{NETWORK_MULTIPLE}) for every axis or one per axis (Z Y X); default: the whole image when "
        "its forward pass fits --memory-gb, else the largest tile that does (e.g. "
        f"{DEFAULT_TILE} in 2-D, {' '.join(map(str, DEFAULT_TILE_3D))} in 3-D)",
        type=int,
        nargs="+",
        metavar="N",
    )
    rgb_to_grey: bool = option(
        False,
        "reduce colour RGB(A) images to luminance, as `prepare --rgb-to-grey` (default: refuse them)",
        action="store_true",
    )
    memory_gb: float = option(
        DEFAULT_MEMORY_GB,
        "memory (GB) the prediction may use: images that fit are predicted whole, larger ones in "
        "tiles; OME-Zarr images, and TIFFs too large to hold, in blocks read and written out of core",
    )
    level: int = option(0, "resolution level of an OME-Zarr or pyramidal TIFF image to segment (0 = full)")
    labels_format: str = option(
        "auto",
        "auto: OME-Zarr labels for OME-Zarr images, TIFF for TIFF images; ome-zarr or tiff to choose",
        choices=("auto", "ome-zarr", "tiff"),
    )
    cluster_halo: int = option(
        CLUSTER_HALO, "block prediction: pixels around a block its clustering sees (objects up to this size)"
    )
    compile: bool = option(False, "run the network through torch.compile (falls back to eager with a warning)")
    precision: str = option("fp32", PRECISION_HELP, choices=PRECISIONS)

    def __post_init__(self) -> None:
        if self.tile_size is not None and any(t < 2 * NETWORK_MULTIPLE or t % NETWORK_MULTIPLE for t in self.tile_size):
            raise DataError(
                f"--tile-size {' '.join(map(str, self.tile_size))}: every size must be a multiple of "
                f"{NETWORK_MULTIPLE} of at least {2 * NETWORK_MULTIPLE} (tiles overlap), e.g. {DEFAULT_TILE}"
            )

    def tile(self, ndim: int) -> int | tuple[int, ...] | None:
        """The tile size for a `ndim`-D model: one length for every axis or one per axis; None:
        planned from --memory-gb (:func:`~embedseg.inference.plan_tile`)."""
        tile_size = self.tile_size
        if tile_size is None:
            return None
        if len(tile_size) not in (1, ndim):
            raise DataError(f"--tile-size: give one size or {ndim} (one per axis) for this {ndim}-D model")
        return tile_size[0] if len(tile_size) == 1 else tuple(tile_size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL_PT",
        help="checkpoint written by `embedseg train` (best.pt) or package of `embedseg export`",
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="DIR",
        help="folder of TIFF images or .ome.zarr images to segment, or one .ome.zarr",
    )
    parser.add_argument(
        "--out", required=True, metavar="PRED_DIR", help="output folder for the label TIFFs or OME-Zarr label groups"
    )
    parser.add_argument("--seeds-out", default=None, metavar="DIR", help="also write the seed maps (float32 TIFF)")
    parser.add_argument(
        "--raw-out",
        default=None,
        metavar="DIR",
        help="images predicted in blocks: also write the raw outputs (float32 Zarr, chunked as the blocks)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace PRED_DIR (and --seeds-out) even if it is a file or a folder not "
        "written by `embedseg predict` (never an input)",
    )
    add_options(parser, PredictConfig)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images of `folder` (TIFF, PNG/JPEG/BMP as `prepare` reads them, and OME-Zarr), or
    `folder` itself when it is one OME-Zarr; an error when there are none, or when two share a
    name (their label TIFFs would collide)."""
    if is_zarr(folder):
        return [Path(folder)]
    paths = list_images_and_zarr(folder, IMAGE_FILE_SUFFIXES)
    names: dict[str, Path] = {}
    for path in paths:
        other = names.setdefault(label_name(path), path)
        if other != path:
            raise DataError(f"{folder}: {other.name} and {path.name} would both be labelled as {label_name(path)}")
    if not paths:
        raise DataError(f"{folder}: no images to predict ({', '.join(IMAGE_FILE_SUFFIXES)}, .ome.zarr): it is empty")
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
    raw_out: str | os.PathLike | None = None,
) -> dict[str, int | None]:
    """One label TIFF or OME-Zarr in `out` (and seed map in `seeds_out`) per image of `images`,
    with the checkpoint or package `model_path`; `out` follows :mod:`embedseg.outputs`. Images
    predicted in blocks (:func:`embedseg.large.in_blocks`) are resumed from the blocks a killed
    run wrote (kept in :func:`embedseg.large.work_folder` until the step succeeds).

    Returns the number of objects found per image file name (None for images predicted in
    blocks: counting them would read the whole label image again)."""
    from .acceleration import inference_model
    from .models import load_checkpoint
    from .runtime import resolve_device

    paths = image_files(images)
    model, settings = load_checkpoint(model_path, resolve_device(config.device))
    model = inference_model(model, compile=config.compile, precision=config.precision)
    tile_size = config.tile(settings.ndim)
    params = config.cluster.params(settings)
    log.info("clustering %s: %s", config.cluster.preset_name(settings), params)
    inputs = {"MODEL_PT": model_path, "--images": images}
    with contextlib.ExitStack() as stack:
        # predictions.json records what made the labels (their options are not in the file names)
        record = {"tta": config.tta, "clustering": config.cluster.clustering, "params": dataclasses.asdict(params)}
        out_dir = stack.enter_context(replacing(out, PREDICTIONS, inputs, force, record))
        seeds_dir = seeds_out and stack.enter_context(
            replacing(seeds_out, PREDICTIONS, {**inputs, "PRED_DIR": out}, force)
        )
        raw_dir = raw_out and stack.enter_context(replacing(raw_out, PREDICTIONS, {**inputs, "PRED_DIR": out}, force))
        counts: dict[str, int | None] = {}
        for path in progress(paths, desc="predict", unit="image"):
            if in_blocks(path, settings, config):
                predict_large(model, path, settings, params, config, out, out_dir, raw_dir, model_path)
                counts[path.name] = None
                continue
            labels, seeds = segment(
                model,
                read_image(path),
                settings,
                config.tta,
                params,
                path,
                config.rgb_to_grey,
                tile_size=tile_size,
                memory_gb=config.memory_gb,
            )
            write_labels(out_dir / label_name(path), labels)
            counts[path.name] = object_count(labels)
            if seeds_dir:
                write_tiff(seeds_dir / label_name(path), seeds)
    shutil.rmtree(work_folder(out), ignore_errors=True)
    return counts


def object_count(labels: np.ndarray) -> int:
    """Objects in a label image (H, W), (D, H, W) or one-hot (N, ...): non-zero ids or channels."""
    if labels.ndim > 2 and labels.dtype == bool:
        return int(labels.reshape(len(labels), -1).any(axis=1).sum())
    return int(np.count_nonzero(np.unique(labels)))


def summary_text(counts: dict[str, int | None], out: str | os.PathLike) -> str:
    """The step's stdout summary: images, objects found, the images with none (the usual sign of
    images unlike the training data) and where the labels are."""
    counted = {name: n for name, n in counts.items() if n is not None}
    text = f"{len(counts)} image(s) segmented"
    if counted:
        values = sorted(counted.values())
        text += f"; objects per image: median {values[len(values) // 2]}, range {values[0]}-{values[-1]}"
    if len(counted) < len(counts):
        text += f"; {len(counts) - len(counted)} predicted in blocks (not counted)"
    empty = [name for name, n in counted.items() if n == 0]
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        text += (
            f"\nno object found in {len(empty)} image(s): {shown}; if objects are visible there, the images "
            "may differ from the training data (intensity range, normalisation, object size)"
        )
    return f"{text}\nlabels in {out}"


def run(args: argparse.Namespace) -> int:
    config = from_args(PredictConfig, args)
    counts = predict(args.model, args.images, args.out, config, args.seeds_out, args.force, args.raw_out)
    print(summary_text(counts, args.out))
    return 0
