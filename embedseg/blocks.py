"""Out-of-core prediction of an image of any size (docs/interfaces.md "Large images").

The image is cut into core blocks (the chunks of the label array). For each block, a window —
the core, a clustering halo around it, and around that the network's receptive field
(:func:`~embedseg.inference.network_overlap`) — is read from the lazy image, normalised,
predicted (whole or tiled, with TTA if asked) and its raw outputs cropped to core + clustering
halo, where they equal the whole image's to float rounding. That window is clustered in the
whole image's pixel coordinates (:func:`~embedseg.core.cluster.cluster_with_seeds`), and only the
core's labels are written. Ownership by seed: an object's label is the row-major index + 1 of
its seed pixel in the whole image, so an object crossing a core border gets the same label from
every block that sees its seed — one label, with no merging step — as long as it is at most the
clustering halo across (default :data:`CLUSTER_HALO`). Labels are therefore unique but not
consecutive.

Differences from clustering the whole image at once: the paper preset's global counts (start
with > 128 foreground pixels, stop at ≤ 128 unclustered) have no meaning for one window, so a
window of a multi-block image clusters without them (the whole image reaches them only in its
last few pixels, if at all); percentile and mean-std statistics come from a strided sample of
at most :data:`STATS_PIXELS` pixels.

Memory: each worker holds one window (input, activations, raw outputs, clustering); the core is
chosen so that all workers' windows fit `memory_gb`. Blocks run on a thread pool (the torch
threads the step was given; torch and the clustering release the GIL). Each finished block
leaves a marker file, so a killed run continues with the blocks not yet written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .core.cluster import ClusterParams, cluster_with_seeds
from .core.embedding import grid_spacing
from .dataset_settings import DatasetSettings
from .inference import (
    DEFAULT_MEMORY_GB,
    FORWARD_BYTES_PER_PIXEL,
    channels_last,
    check_value_range,
    network_overlap,
    padding,
    predict_raw,
)
from .io import DataError
from .models.erfnet import NETWORK_MULTIPLE
from .runtime import progress
from .zarr_io import LazyImage, create_labels, finish_labels

log = logging.getLogger(__name__)

CLUSTER_HALO = 128  # px around a core that its clustering sees: objects up to this size are whole
STATS_PIXELS = 2**24
# Bytes per window pixel besides the forward pass: input and normalised copies, the raw outputs
# (2D + 1 float32), the clustering's per-pixel arrays on foreground; with TTA, the transformed
# input, the back-mapped output and their running sum on top.
WINDOW_BYTES_PER_PIXEL = 80
TTA_BYTES_PER_PIXEL = 100


@dataclass(frozen=True)
class Blocks:
    """The block grid of an image of spatial shape `shape`: cores of `core` pixels per axis (the
    last ones smaller), each clustered within `cluster_halo` and predicted within `net_halo` more."""

    shape: tuple[int, ...]
    core: tuple[int, ...]
    cluster_halo: int
    net_halo: int

    def indices(self) -> list[tuple[int, ...]]:
        return list(np.ndindex(*(math.ceil(n / c) for n, c in zip(self.shape, self.core))))

    def core_region(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.core, self.shape))

    def cluster_region(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(max(r.start - self.cluster_halo, 0), min(r.stop + self.cluster_halo, n))
            for r, n in zip(self.core_region(index), self.shape)
        )

    def window(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        """The network's input around the clustering region, in the frame of the whole image
        reflect-padded to multiples of 8 (as whole-image prediction pads it), starting at a
        multiple of 8 so that the network sees the same pixels at the same phase."""
        regions = []
        for r, n in zip(self.cluster_region(index), self.shape):
            before, after = padding(n)
            start = max(r.start + before - self.net_halo, 0) // NETWORK_MULTIPLE * NETWORK_MULTIPLE
            stop = min(-(-(r.stop + before + self.net_halo) // NETWORK_MULTIPLE) * NETWORK_MULTIPLE, n + before + after)
            regions.append(slice(start, stop))
        return tuple(regions)


def plan_blocks(
    shape: Sequence[int],
    net_halo: int,
    cluster_halo: int = CLUSTER_HALO,
    memory_gb: float = DEFAULT_MEMORY_GB,
    workers: int = 1,
    core: Sequence[int] | None = None,
    tta: bool = False,
) -> Blocks:
    """The block grid: one block (the whole image) when its window fits `memory_gb`, else cores
    of the largest multiple-of-64 side whose windows, one per worker, fit (at least 64)."""
    shape = tuple(int(n) for n in shape)
    if core is None:
        per_pixel = FORWARD_BYTES_PER_PIXEL + WINDOW_BYTES_PER_PIXEL + TTA_BYTES_PER_PIXEL * tta
        budget = memory_gb * 1e9 / per_pixel
        padded = [n + 2 * NETWORK_MULTIPLE for n in shape]
        if math.prod(padded) <= budget:
            return Blocks(shape, shape, cluster_halo, net_halo)
        side = int((budget / workers) ** (1 / len(shape))) - 2 * (net_halo + cluster_halo + NETWORK_MULTIPLE)
        core = [max(64, side // 64 * 64)] * len(shape)
    return Blocks(shape, tuple(min(int(c), n) for c, n in zip(core, shape)), cluster_halo, net_halo)


def statistics(image: LazyImage, settings: DatasetSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """(shift, divisor) per channel, shaped for (C, *S), of the data set's normalisation: exact
    for `absolute`, from a strided sample of ≤ :data:`STATS_PIXELS` pixels otherwise."""
    ndim = len(image.shape)
    if settings.normalization == "absolute":
        return np.zeros(1), np.full(1, float(settings.normalization_factor))
    step = max(1, math.ceil((math.prod(image.shape) / STATS_PIXELS) ** (1 / ndim)))
    sample = image.read(tuple(slice(None, None, step) for _ in image.shape)).astype(np.float64)
    sample = sample if image.channels is not None else sample[None]
    axes = tuple(range(1, ndim + 1))
    if settings.normalization == "percentile":
        lo, hi = np.percentile(sample, settings.percentiles, axis=axes, keepdims=True)
        return lo, hi - lo + 1e-20
    return sample.mean(axis=axes, keepdims=True), sample.std(axis=axes, keepdims=True) + 1e-20


def read_window(image: LazyImage, blocks: Blocks, index: tuple[int, ...]) -> np.ndarray:
    """The stored pixels (C, *window) of a block's window, reflect-padded where it reaches
    beyond the image exactly as the whole padded image is."""
    window = blocks.window(index)
    region, pads = [], []
    for w, n in zip(window, blocks.shape):
        before = padding(n)[0]
        lo, hi = max(w.start - before, 0), min(w.stop - before, n)
        region.append(slice(lo, hi))
        pads.append((lo - (w.start - before), (w.stop - before) - hi))
    stored = image.read(tuple(region))
    stored = stored if image.channels is not None else stored[None]
    return np.pad(stored, [(0, 0), *pads], mode="reflect") if any(p != (0, 0) for p in pads) else stored


def global_ids(seeds: np.ndarray, region: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Label of each object (its seed's row-major index + 1 in the whole image) from its seed's
    row-major index within `region`; entry 0 is the background's 0."""
    local = np.unravel_index(seeds, tuple(r.stop - r.start for r in region))
    flat = np.ravel_multi_index(tuple(c + r.start for c, r in zip(local, region)), shape)
    return np.concatenate([[0], flat + 1]).astype(np.uint64)


def run_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def predict_blocks(
    model: torch.nn.Module,
    image: LazyImage,
    settings: DatasetSettings,
    work: Path,
    params: ClusterParams = ClusterParams(),
    tta: bool = True,
    memory_gb: float = DEFAULT_MEMORY_GB,
    workers: int | None = None,
    cluster_halo: int = CLUSTER_HALO,
    core: Sequence[int] | None = None,
    raw_out: Path | None = None,
    key: str = "",
) -> Path:
    """Labels of `image` as the OME-Zarr ``work/labels.ome.zarr`` (label group
    :data:`~embedseg.zarr_io.LABEL_NAME`, the input's NGFF version, 0.4 for a TIFF), block by
    block; `raw_out`: also the raw outputs (2D + 1, *S) float32 there, chunked as the blocks.
    Blocks finished by an earlier run with the same `key` (model, options, image) are kept."""
    import zarr

    ndim = settings.ndim
    if len(image.shape) != ndim:
        raise DataError(f"{image.path}: {len(image.shape)} spatial axes ({image.axes}), the model is {ndim}-D")
    if image.channels not in (None, settings.in_channels) or (image.channels is None and settings.in_channels != 1):
        raise DataError(f"{image.path}: {image.channels or 1} channel(s), the model takes {settings.in_channels}")
    net_halo = network_overlap(model)
    workers = workers or (1 if next(model.parameters()).device.type == "cuda" else torch.get_num_threads())
    blocks = plan_blocks(image.shape, net_halo, cluster_halo, memory_gb, workers, core, tta)
    indices = blocks.indices()
    workers = max(1, min(workers, len(indices)))
    if len(indices) > 1:  # no block-local meaning for the paper preset's global counts
        params = dataclasses.replace(params, min_mask_sum=0, min_unclustered_sum=0)
    key = run_key(key, image.path, image.shape, blocks, params, tta)
    done = work / "done"
    if (work / "key").is_file() and (work / "key").read_text() != key:
        shutil.rmtree(work)
    done.mkdir(parents=True, exist_ok=True)
    (work / "key").write_text(key)
    version = image.version or "0.4"
    dtype = np.dtype(np.uint32 if math.prod(image.shape) < 2**32 - 1 else np.uint64)
    out = work / "labels.ome.zarr"
    labels = create_labels(out, blocks.shape, blocks.core, dtype, version)
    raw = None
    if raw_out is not None:
        raw = zarr.open_array(
            raw_out, mode="a", shape=(2 * ndim + 1, *blocks.shape), chunks=(2 * ndim + 1, *blocks.core), dtype="f4"
        )
    shift, divisor = statistics(image, settings)
    spacing = grid_spacing(ndim, settings.anisotropy)
    log.info(
        "%s: %d block(s) of %s px, halo %d + %d px, %d worker(s)",
        image.path,
        len(indices),
        blocks.core,
        cluster_halo,
        net_halo,
        workers,
    )

    def one_block(index: tuple[int, ...]) -> None:
        stored = read_window(image, blocks, index)
        check_value_range(stored, settings, image.path)
        window_raw = predict_raw(
            model, ((stored - shift) / divisor).astype(np.float32), tta, memory_gb=memory_gb / workers
        )
        region = blocks.cluster_region(index)
        window = blocks.window(index)
        crop = tuple(
            slice(r.start + padding(n)[0] - w.start, r.stop + padding(n)[0] - w.start)
            for r, w, n in zip(region, window, blocks.shape)
        )
        window_raw = window_raw[(slice(None), *crop)]
        local, seeds = cluster_with_seeds(window_raw, params, spacing, tuple(r.start for r in region))
        core = blocks.core_region(index)
        inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region))
        labels[core] = global_ids(seeds, region, blocks.shape)[local[inner]].astype(dtype)
        if raw is not None:
            raw[(slice(None), *core)] = window_raw[(slice(None), *inner)].cpu().numpy()
        (done / "_".join(map(str, index))).touch()

    pending = [index for index in indices if not (done / "_".join(map(str, index))).exists()]
    if len(pending) < len(indices):
        log.info("%s: resuming, %d of %d blocks already written", image.path, len(indices) - len(pending), len(indices))
    threads = contextlib.nullcontext() if workers == 1 else _torch_threads(1)
    with threads, channels_last(model), ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(one_block, index) for index in pending]
        try:
            for future in progress(as_completed(futures), total=len(futures), desc=image.path.name, unit="block"):
                future.result()
        except BaseException:  # a failed block (or Ctrl-C) stops the run; the written blocks stay
            pool.shutdown(cancel_futures=True)
            raise
    finish_labels(out, image.spatial_axes, image.scale, version)
    return out


@contextlib.contextmanager
def _torch_threads(count: int):
    """Torch's intra-op threads set to `count` for the block: the workers are the parallelism."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
