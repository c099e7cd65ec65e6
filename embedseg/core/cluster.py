"""Greedy seed clustering of the network output into instances (docs/method.md §8, the paper code's
"cluster_fast"; in 3D its ``Cluster_3d.cluster``, the same algorithm on voxels).

Semantics kept from the paper code: foreground = seed > fg_thresh; clustering only starts with
more than `min_mask_sum` foreground pixels and runs while more than `min_unclustered_sum` of them
are unclustered; each step takes the unclustered pixel with the highest seed score (first pixel
in row-major order on ties) and stops once that score is below `seed_thresh`; the proposal is
every foreground pixel whose Gaussian score around the seed's embedding, with the *seed's own*
bandwidth, is > 0.5; it becomes an object if it has more than `min_object_size` pixels and more
than half of them are still unclustered (it then overwrites earlier labels); its pixels count as
clustered whether or not it was accepted. In 3D "pixel" reads "voxel" throughout, sizes included.

Speed: instead of taking an argmax and scoring all foreground pixels at every step, seeds are
visited in the argmax order (descending score, ascending index), sorted lazily in batches of the
strongest still-unclustered candidates (:func:`seed_batches`), and each proposal is scored only
on the pixels whose embedding lies in the box where the score can exceed 0.5, found through a
bucketing of the embeddings into cells (:class:`EmbeddingCells`). There, φ > 0.5 is decided in
float64 NumPy wherever the exponent Σ_d s_d (e_d − c_d)² is clearly below or above ln 2, and with
the paper code's float32 torch formula for the rare pixels within rounding of ln 2
(:func:`proposal_members`), so the labels are the same. One code path for 2D and 3D: the
dimension D comes from the number of output channels (2D+1).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .embedding import GRID_SPACING, SIGMA_SCALE, Spacing, bandwidth, gaussian_score, spatial_embedding_at
from .labels import label_dtype

PRESETS = ("paper", "current")
# Pixels whose term of one axis alone exceeds this are outside the proposal (φ < 0.5 with margin).
_LOG2_WITH_MARGIN = math.log(2.0) * (1 + 1e-3)
# Relative half-width of the band around ln 2 in which the float64 exponent does not decide φ > 0.5:
# the paper code's float32 exponent differs from it by a few float32 roundings (~1e-6 relative).
_UNSURE_RTOL = 1e-4
# Above this σ_raw, s = exp(10 σ_raw) overflows float32 (inf, and inf · 0 = NaN at the seed itself),
# which float64 does not reproduce: such seeds are scored in float32 only.
_SIGMA_FLOAT32_SAFE = 8.0


@dataclass(frozen=True)
class ClusterParams:
    """Thresholds of the greedy clustering; defaults = the paper code."""

    seed_thresh: float = 0.9
    fg_thresh: float = 0.5
    min_mask_sum: int = 128
    min_unclustered_sum: int = 128
    min_object_size: int = 36


def preset(
    name: str,
    min_object_size: int | None = None,
    seed_thresh: float = ClusterParams.seed_thresh,
    fg_thresh: float = ClusterParams.fg_thresh,
) -> ClusterParams:
    """`paper`: 128 / 128 / 36 (v0.1 code); `current`: 0 / 0 / `min_object_size` (EmbedSeg HEAD,
    where it is the smallest training object). An explicit `min_object_size` overrides both."""
    if name == "paper":
        return ClusterParams(seed_thresh, fg_thresh, 128, 128, 36 if min_object_size is None else min_object_size)
    if name == "current":
        return ClusterParams(seed_thresh, fg_thresh, 0, 0, min_object_size or 0)
    raise ValueError(f"unknown clustering preset {name!r}; choose one of {PRESETS}")


def seed_batches(
    seeds: np.ndarray, unclustered: np.ndarray, seed_thresh: float, batch_size: int = 4096
) -> Iterator[np.ndarray]:
    """Seed candidates (seed ≥ seed_thresh) in the order argmax(seed·unclustered) visits them:
    descending seed, ascending index on ties — produced lazily, `batch_size` at a time.

    seeds: (K,); `unclustered` (K,) bool is read at each refill, so candidates clustered in the
    meantime are dropped without ever being sorted. Every candidate left out of a batch has a
    lower seed than all in it, and clustering only removes candidates, so walking the batches in
    turn (skipping clustered pixels) visits seeds exactly as the repeated argmax would.
    """
    candidates = np.flatnonzero(seeds >= seed_thresh)
    while True:
        candidates = candidates[unclustered[candidates]]
        if len(candidates) == 0:
            return
        batch = candidates
        if len(candidates) > batch_size:
            kth_largest = np.partition(seeds[candidates], -batch_size)[-batch_size]
            batch = candidates[seeds[candidates] >= kth_largest]  # keeps every tie of the k-th
        yield batch[np.argsort(-seeds[batch], kind="stable")]


class EmbeddingCells:
    """Foreground pixels bucketed by their embedding into square (2D) or cubic (3D) cells, to find
    the pixels near a seed without scanning all of them.

    Cells have side `cell` (grid units); pixels are sorted by cell, x fastest, then y (then z), so
    the pixels of one row of cells within an x range are one contiguous run of the sorted order.
    """

    def __init__(self, embeddings: np.ndarray, cell: float) -> None:
        """embeddings: (D, K) grid coordinates (x, y[, z]) of K pixels."""
        self.origin, self.end = embeddings.min(axis=1).tolist(), embeddings.max(axis=1).tolist()
        self.cell = cell
        # float64, as the box bounds: a float32 rounding must not push a pixel out of its box.
        offsets = embeddings.astype(np.float64, copy=False) - np.asarray(self.origin)[:, None]
        cells = np.floor(offsets / cell).astype(np.int64)
        extents = (cells.max(axis=1) + 1).tolist()
        extents[0] += 1  # room for the exclusive upper bound of an x range
        self.strides = [math.prod(extents[:d]) for d in range(len(extents))]  # x: 1, y: n_x, z: n_x·n_y
        keys = sum(cells[d] * stride for d, stride in enumerate(self.strides))
        # NumPy's stable sort of 16-bit keys is a radix sort, ~10× faster than of int64 ones; the
        # sorted keys stay int64, since searchsorted would convert a uint16 array at every call.
        narrow = keys.astype(np.uint16) if self.strides[-1] * extents[-1] <= 2**16 else keys
        self.order = np.argsort(narrow, kind="stable")
        self.sorted_keys = keys[self.order]

    def pixels_in_box(self, center: list[float], radii: tuple[float, ...]) -> np.ndarray:
        """Indices of every pixel whose cell overlaps the box center ± radii (x, y[, z]) — a
        superset of the pixels inside it. Scalar Python arithmetic: this runs once per seed."""
        first, last = [], []
        for c, r, o, e in zip(center, radii, self.origin, self.end):
            # Clipping to the occupied extent also tames infinite radii (bandwidth exp(10σ) = 0).
            lo, hi = max(c - r, o), min(c + r, e)
            if lo > hi:
                return np.empty(0, dtype=np.int64)
            first.append(math.floor((lo - o) / self.cell))
            last.append(math.floor((hi - o) / self.cell))
        # Key of the first x cell of every row of cells (y[, z]) in the box.
        rows = np.arange(first[1], last[1] + 1) * self.strides[1]
        for d in range(2, len(first)):
            rows = np.add.outer(np.arange(first[d], last[d] + 1) * self.strides[d], rows).ravel()
        starts = np.searchsorted(self.sorted_keys, rows + first[0], side="left")
        ends = np.searchsorted(self.sorted_keys, rows + last[0] + 1, side="left")
        lengths = ends - starts
        # Concatenate the runs starts[i]:ends[i] without a Python loop.
        offsets = np.cumsum(lengths) - lengths
        positions = np.arange(lengths.sum()) + np.repeat(starts - offsets, lengths)
        return self.order[positions]


def greedy_cluster(
    embeddings: torch.Tensor,
    sigma_raw: torch.Tensor,
    seeds: torch.Tensor,
    params: ClusterParams,
    seed_pixels: list[int] | None = None,
) -> np.ndarray:
    """Labels (K,) int64 (0 = unassigned) of K foreground pixels; the seed (index among the K)
    of label n is appended to `seed_pixels` as its n-th entry, when given.

    embeddings: (D, K) grid coordinates (x, y[, z]); sigma_raw: (D, K); seeds: (K,) in [0, 1], all
    on one device, pixels in row-major order. The Gaussian scores are computed on that device; the
    per-step bookkeeping (a few small index operations) runs in NumPy, which is much cheaper per
    call than torch on CPU and needs one device→host copy per step on CUDA anyway.
    """
    n_pixels = seeds.numel()
    labels = np.zeros(n_pixels, dtype=np.int64)
    unclustered = np.ones(n_pixels, dtype=bool)
    n_unclustered = n_pixels
    embeddings64 = embeddings.cpu().numpy().astype(np.float64)  # exact; the box and score maths in float64
    sigma_np = sigma_raw.cpu().numpy()
    cells = None
    count = 1
    for batch in seed_batches(seeds.cpu().numpy(), unclustered, params.seed_thresh):
        if cells is None:  # cells about as large as the boxes of the strongest seeds
            # (the radius falls with σ, so this is about the median radius; any size is correct)
            typical = _box_radii([float(np.median(sigma_np[:, batch[:1000]]))])[0]
            cells = EmbeddingCells(embeddings64, cell=float(np.clip(typical, 1e-6, 4.0)))
        position = 0
        while n_unclustered > params.min_unclustered_sum:
            position = _next_unclustered(unclustered, batch, position)
            if position is None:
                break
            seed = int(batch[position])
            position += 1
            unclustered[seed] = False
            n_unclustered -= 1
            near = cells.pixels_in_box(embeddings64[:, seed].tolist(), _box_radii(sigma_np[:, seed].tolist()))
            proposal = near[proposal_members(embeddings, sigma_raw, embeddings64, sigma_np, seed, near)]
            n_free = int(np.count_nonzero(unclustered[proposal]))
            # n_free / |proposal| > 0.5, in integers
            if len(proposal) > params.min_object_size and 2 * n_free > len(proposal):
                labels[proposal] = count
                count += 1
                if seed_pixels is not None:
                    seed_pixels.append(seed)
            unclustered[proposal] = False
            n_unclustered -= n_free
        if n_unclustered <= params.min_unclustered_sum:
            break
    return labels


def proposal_members(
    embeddings: torch.Tensor,
    sigma_raw: torch.Tensor,
    embeddings64: np.ndarray,
    sigma_np: np.ndarray,
    seed: int,
    near: np.ndarray,
) -> np.ndarray:
    """φ > 0.5 (bool (n,)) for the pixels `near` (n,) around pixel `seed`, exactly as the paper
    code's float32 torch formula decides it.

    embeddings, sigma_raw: (D, K) float32 tensors; embeddings64 (float64), sigma_np: the same on
    the host. The exponent x = Σ_d s_d (e_d − c_d)² is computed in float64 from the float32 inputs
    (exactly converted); the paper code's float32 x is within ~1e-6 relative of it (a few
    roundings), so where x is outside ln 2 · (1 ± _UNSURE_RTOL) both agree on exp(−x) > 0.5. The
    few pixels inside that band (and seeds whose float32 bandwidth would overflow) are scored with
    :func:`gaussian_score`. One NumPy pass instead of a dozen small torch calls per seed.
    """
    sigma = sigma_np[:, seed]
    if sigma.max() > _SIGMA_FLOAT32_SAFE:
        unsure = np.arange(len(near))
        inside = np.zeros(len(near), dtype=bool)
    else:
        s = np.exp(SIGMA_SCALE * sigma.astype(np.float64))  # (D,)
        differences = np.take(embeddings64, near, axis=1) - embeddings64[:, seed, None]  # (D, n)
        exponent = s @ (differences * differences)
        inside = exponent < math.log(2.0) * (1 - _UNSURE_RTOL)
        unsure = np.flatnonzero(np.abs(exponent - math.log(2.0)) <= math.log(2.0) * _UNSURE_RTOL)
    if len(unsure):
        pixels = torch.from_numpy(near[unsure]).to(embeddings.device)
        phi = gaussian_score(embeddings[:, pixels], embeddings[:, seed], bandwidth(sigma_raw[:, seed]))
        inside[unsure] = (phi > 0.5).cpu().numpy()
    return inside


def _box_radii(sigma_raw: list[float]) -> tuple[float, ...]:
    """Half-widths (float64, a hair wider than the float32 test needs) of the box outside which
    φ ≤ 0.5 for a seed with raw bandwidths `sigma_raw`: s_d (e_d − c_d)² < ln 2 on each axis."""
    return tuple(
        math.sqrt(_LOG2_WITH_MARGIN * math.exp(-SIGMA_SCALE * sigma)) + 1e-6 if sigma > -50 else math.inf
        for sigma in sigma_raw
    )


def _next_unclustered(unclustered: np.ndarray, order: np.ndarray, start: int, chunk: int = 256) -> int | None:
    """First position ≥ start in `order` whose pixel is unclustered, or None."""
    for lo in range(start, len(order), chunk):
        free = np.flatnonzero(unclustered[order[lo : lo + chunk]])
        if len(free):
            return lo + int(free[0])
    return None


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread inside the block, restoring the thread count after.

    The greedy loop issues hundreds of tiny ops; with intra-op threads, the idle OpenMP workers
    spin between them and on a busy machine take the core from the main thread (clustering a
    1024² image was 3-6× slower with 2 threads than with 1 on shared cores; measured again after
    the per-seed work moved to NumPy, at load 1.7 on 2 cores: 26.6 ms with 1 thread, 132.5 ms
    with 2, identical labels — benchmarks/README.md, issue 17)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def foreground_pixels(seed_logits: torch.Tensor, fg_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major indices (K,) of the pixels with sigmoid(seed logit) > `fg_thresh`, and their
    seed scores (K,), from logits (H, W) or (Z, Y, X).

    The sigmoid runs only on pixels whose logit is within 1 of the threshold's logit or above
    (a superset, since the sigmoid is monotone), not on the whole image; the test itself is the
    exact float comparison on the sigmoid.
    """
    logits = seed_logits.flatten()
    bound = math.log(fg_thresh / (1.0 - fg_thresh)) - 1.0 if 0.0 < fg_thresh < 1.0 else -math.inf
    if logits.device.type == "cpu":
        # The same steps with NumPy's comparison, nonzero and indexing (3-9× faster than torch's
        # on one thread); the sigmoid and its comparison stay torch's, as in the paper code.
        values = logits.detach().numpy()
        candidates = np.flatnonzero(values > bound)
        seeds = torch.sigmoid(torch.from_numpy(values[candidates]))
        keep = (seeds > fg_thresh).numpy()
        return torch.from_numpy(candidates[keep]), torch.from_numpy(seeds.numpy()[keep])
    candidates = torch.nonzero(logits > bound).squeeze(1)
    seeds = torch.sigmoid(logits[candidates])
    keep = seeds > fg_thresh
    return candidates[keep], seeds[keep]


@single_torch_thread()
def cluster(
    raw: torch.Tensor,
    params: ClusterParams = ClusterParams(),
    spacing: Spacing = GRID_SPACING,
) -> np.ndarray:
    """Instance labels of the spatial shape (uint16, or uint32 above 65535 objects) from raw outputs.

    raw: (2D+1, *spatial) float tensor — (5, H, W) [o_x, o_y, σ_x, σ_y, seed logit] or
    (7, Z, Y, X) [o_x, o_y, o_z, σ_x, σ_y, σ_z, seed logit] — averaged raw values (TTA);
    tanh/exp/sigmoid are applied here. `spacing`: the grid step δ, one float (isotropic) or
    per embedding axis (δ_x, δ_y[, δ_z]) as ``embedding.grid_spacing``. Runs on raw's device
    (CPU work on one thread, see :func:`single_torch_thread`).
    """
    labels, _ = cluster_with_seeds(raw, params, spacing)
    return labels.astype(label_dtype(int(labels.max())))


@single_torch_thread()
def cluster_with_seeds(
    raw: torch.Tensor,
    params: ClusterParams = ClusterParams(),
    spacing: Spacing = GRID_SPACING,
    origin: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cluster`'s labels (int64, spatial shape) and the row-major index (int64 (N,)) of
    each label's seed pixel (label n: entry n − 1). `origin`: where `raw` sits in a larger image,
    whose pixel coordinates the embeddings use (:func:`~.embedding.spatial_embedding_at`), so that
    a window of the stitched raw outputs clusters with the whole image's float roundings."""
    ndim = (raw.shape[0] - 1) // 2
    if ndim not in (2, 3) or raw.dim() != ndim + 1:
        raise ValueError(f"expected raw outputs of shape (5, H, W) or (7, Z, Y, X), got {tuple(raw.shape)}")
    spatial = raw.shape[1:]
    foreground, seeds = foreground_pixels(raw[2 * ndim], params.fg_thresh)
    labels = np.zeros(math.prod(spatial), dtype=np.int64)
    seed_pixels: list[int] = []
    if foreground.numel() > params.min_mask_sum:
        embeddings = spatial_embedding_at(raw[0:ndim], foreground, spacing, origin)
        sigma_raw = raw[ndim : 2 * ndim].flatten(1)[:, foreground]
        pixels = foreground.cpu().numpy()
        labels[pixels] = greedy_cluster(embeddings, sigma_raw, seeds, params, seed_pixels)
        seed_pixels = pixels[seed_pixels].tolist()
    return labels.reshape(spatial), np.asarray(seed_pixels, dtype=np.int64)
