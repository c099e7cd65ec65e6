"""The large-image part of `embedseg predict`: which images go through block prediction
(:mod:`embedseg.blocks`), where their resumable work lies, and how their labels land in PRED_DIR.

An OME-Zarr image always goes in blocks (one block, the whole image, when it fits
``--memory-gb``: then the labels are the whole image's); a TIFF only when the image with its raw
outputs (:data:`IN_MEMORY_BYTES_PER_PIXEL`) would not fit ``--memory-gb`` (the in-memory path
tiles the forward pass, not those), read lazily through tifffile's zarr store. The labels of
``NAME.ome.zarr`` are ``PRED_DIR/NAME.ome.zarr`` (label group ``labels/embedseg``, see
:mod:`embedseg.zarr_io`), of a TIFF ``PRED_DIR/<same name>`` (``--labels-format`` overrides both).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .blocks import predict_blocks
from .dataset_settings import DatasetSettings
from .io import IMAGE_SUFFIXES, write_labels
from .zarr_io import image_stem, is_zarr, open_image, read_labels_any

# In-memory prediction holds the image (float32 and normalised), the stitched raw outputs (5 or 7
# float32) and the labels: at most 40 bytes per pixel besides one tile's activations.
IN_MEMORY_BYTES_PER_PIXEL = 40

if TYPE_CHECKING:
    import torch

    from .core.cluster import ClusterParams


def work_folder(out: str | os.PathLike) -> Path:
    """``.PRED_DIR.blocks`` beside PRED_DIR: the blocks of images in progress, kept when a run
    is killed (outputs.py's clean-up leaves it) and removed when the step succeeds."""
    out = Path(out)
    return out.parent / f".{out.name}.blocks"


def in_blocks(path: Path, settings: DatasetSettings, config: Any) -> bool:
    """(`config`: predict's PredictConfig, which imports this module.) True for an OME-Zarr image,
    for any image at ``--level`` > 0, and for a TIFF too large to hold in ``--memory-gb``."""
    if is_zarr(path):
        return True
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    if config.level > 0:
        return True
    import tifffile

    try:  # the header only (no zarr needed): a TIFF that cannot be read fails in read_image
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            pixels = math.prod(n for a, n in zip(series.axes, series.shape) if a in "ZYXIQ")  # I, Q: planes
    except Exception:
        return False
    return pixels * IN_MEMORY_BYTES_PER_PIXEL > config.memory_gb * 1e9


def predict_large(
    model: torch.nn.Module,
    path: Path,
    settings: DatasetSettings,
    params: ClusterParams,
    config: Any,
    out: str | os.PathLike,
    out_dir: Path,
    raw_dir: Path | None,
    model_path: str | os.PathLike,
) -> None:
    """Predict `path` in blocks into the work folder, then move its labels into `out_dir`."""
    image = open_image(path, config.level)
    stem = image_stem(path)
    work = work_folder(out) / stem
    key = (Path(model_path).resolve(), os.stat(model_path).st_mtime_ns, config)
    labels = predict_blocks(
        model,
        image,
        settings,
        work,
        params,
        config.tta,
        config.memory_gb,
        cluster_halo=config.cluster_halo,
        raw_out=raw_dir / f"{stem}.zarr" if raw_dir else None,
        key=repr(key),
    )
    labels_format = config.labels_format
    if labels_format == "auto":
        labels_format = "ome-zarr" if is_zarr(path) else "tiff"
    if labels_format == "tiff":
        write_labels(out_dir / (f"{stem}.tif" if is_zarr(path) else path.name), read_labels_any(labels))
        shutil.rmtree(work)
        return
    # The block markers go first: a run killed after the move must not resume from labels it lost.
    shutil.rmtree(work / "done")
    os.replace(labels, out_dir / f"{stem}.ome.zarr")
    shutil.rmtree(work)
