"""Greedy seed clustering of the network output into instances (spec §6.5, "cluster_fast").

Semantics kept from the paper code: foreground = seed > fg_thresh; clustering only starts with
more than `min_mask_sum` foreground pixels and runs while more than `min_unclustered_sum` of them
are unclustered; each step takes the unclustered pixel with the highest seed score (first pixel
in row-major order on ties) and stops once that score is below `seed_thresh`; the proposal is
every foreground pixel whose Gaussian score around the seed's embedding, with the *seed's own*
bandwidth, is > 0.5; it becomes an object if it has more than `min_object_size` pixels and more
than half of them are still unclustered (it then overwrites earlier labels); its pixels count as
clustered whether or not it was accepted.

Speed: instead of taking an argmax and scoring all foreground pixels at every step, seeds are
visited in one precomputed order (descending score, ascending index — the argmax order; clustered
ones are skipped), and each proposal is scored only on the pixels whose embedding lies in the box
where the score can exceed 0.5, found through a bucketing of the embeddings into cells
(:class:`EmbeddingCells`). Those scores use the same float32 formula as the paper code, so the
labels are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .embedding import GRID_SPACING, SIGMA_SCALE, spatial_embedding
from .io import label_dtype

PRESETS = ("paper", "current")
# Pixels whose x or y term alone exceeds this are outside the proposal (φ < 0.5 with margin).
_LOG2_WITH_MARGIN = math.log(2.0) * (1 + 1e-3)


@dataclass(frozen=True)
class ClusterParams:
    """Thresholds of the greedy clustering; defaults = the paper code."""

    seed_thresh: float = 0.9
    fg_thresh: float = 0.5
    min_mask_sum: int = 128
    min_unclustered_sum: int = 128
    min_object_size: int = 36


def preset(name: str, min_object_size: int | None = None, seed_thresh: float = 0.9,
           fg_thresh: float = 0.5) -> ClusterParams:
    """`paper`: 128 / 128 / 36 (v0.1 code); `current`: 0 / 0 / `min_object_size` (EmbedSeg HEAD,
    where it is the smallest training object). An explicit `min_object_size` overrides both."""
    if name == "paper":
        return ClusterParams(seed_thresh, fg_thresh, 128, 128, 36 if min_object_size is None else min_object_size)
    if name == "current":
        return ClusterParams(seed_thresh, fg_thresh, 0, 0, min_object_size or 0)
    raise ValueError(f"unknown clustering preset {name!r}; choose one of {PRESETS}")


def seed_order(seeds: torch.Tensor, seed_thresh: float) -> torch.Tensor:
    """Indices of pixels with seed ≥ seed_thresh in the order argmax(seed·unclustered) visits
    them: descending seed, ascending index on ties. seeds: (K,). Returns (M,) int64."""
    candidates = torch.nonzero(seeds >= seed_thresh).squeeze(1)
    return candidates[torch.argsort(seeds[candidates], descending=True, stable=True)]


class EmbeddingCells:
    """Foreground pixels bucketed by their embedding into square cells, to find the pixels near a
    seed without scanning all of them.

    Cells have side `cell` (grid units); pixels are sorted by cell (row-major over cells), so the
    pixels of one row of cells within an x range are one contiguous run of the sorted order.
    """

    def __init__(self, embeddings: np.ndarray, cell: float) -> None:
        self.origin, self.end = embeddings.min(axis=1), embeddings.max(axis=1)
        self.cell = cell
        cells = self.cell_index(embeddings)
        self.n_x = int(cells[0].max()) + 2  # room for the exclusive upper bound of a range
        keys = cells[1] * self.n_x + cells[0]
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    def cell_index(self, points: np.ndarray) -> np.ndarray:
        """Cell coordinates (2, ...) int64 of points (2, ...) in grid units (x, y)."""
        return np.floor((points - self.origin.reshape((2,) + (1,) * (points.ndim - 1))) / self.cell).astype(np.int64)

    def pixels_in_box(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Indices of every pixel whose cell overlaps the box lo..hi (2,) — a superset of the
        pixels inside it."""
        # Clipping to the occupied extent also tames infinite radii (bandwidth exp(10σ) = 0).
        lo, hi = np.maximum(lo, self.origin), np.minimum(hi, self.end)
        if np.any(lo > hi):
            return np.empty(0, dtype=np.int64)
        (x_lo, y_lo), (x_hi, y_hi) = self.cell_index(lo), self.cell_index(hi)
        rows = np.arange(y_lo, y_hi + 1) * self.n_x
        starts = np.searchsorted(self.sorted_keys, rows + x_lo, side="left")
        ends = np.searchsorted(self.sorted_keys, rows + x_hi + 1, side="left")
        lengths = ends - starts
        # Concatenate the runs starts[i]:ends[i] without a Python loop.
        first = np.cumsum(lengths) - lengths
        positions = np.arange(lengths.sum()) + np.repeat(starts - first, lengths)
        return self.order[positions]


def greedy_cluster(embeddings: torch.Tensor, sigma_raw: torch.Tensor, seeds: torch.Tensor,
                   params: ClusterParams) -> np.ndarray:
    """Labels (K,) int64 (0 = unassigned) of K foreground pixels.

    embeddings: (2, K) grid coordinates (x, y); sigma_raw: (2, K); seeds: (K,) in [0, 1], all on
    one device, pixels in row-major order. The Gaussian scores are computed on that device; the
    per-step bookkeeping (a few small index operations) runs in NumPy, which is much cheaper per
    call than torch on CPU and needs one device→host copy per step on CUDA anyway.
    """
    n_pixels = seeds.numel()
    labels = np.zeros(n_pixels, dtype=np.int64)
    order = seed_order(seeds, params.seed_thresh)
    if order.numel() == 0:
        return labels
    unclustered = np.ones(n_pixels, dtype=bool)
    n_unclustered = n_pixels
    bandwidths = torch.exp(SIGMA_SCALE * sigma_raw)
    embeddings_np, bandwidths_np = embeddings.cpu().numpy(), bandwidths.cpu().numpy()
    order = order.cpu().numpy()
    # φ > 0.5 needs s_d (e_d − c_d)² < ln 2 on each axis: a box of these half-widths per seed.
    radii = np.sqrt(_LOG2_WITH_MARGIN / bandwidths_np) + 1e-6
    # Cells about as large as the typical box (estimated from the strongest seeds).
    cells = EmbeddingCells(embeddings_np, cell=max(float(np.median(radii[:, order[:1000]])), 1e-6))
    count = 1
    position = 0
    while n_unclustered > params.min_unclustered_sum:
        position = _next_unclustered(unclustered, order, position)
        if position is None:  # best remaining seed score < seed_thresh
            break
        seed = int(order[position])
        near = cells.pixels_in_box(embeddings_np[:, seed] - radii[:, seed], embeddings_np[:, seed] + radii[:, seed])
        position += 1
        unclustered[seed] = False
        n_unclustered -= 1
        near_t = torch.from_numpy(near).to(seeds.device)
        center = embeddings[:, seed:seed + 1]
        s = bandwidths[:, seed:seed + 1]
        phi = torch.exp(-torch.sum((embeddings[:, near_t] - center) ** 2 * s, dim=0))
        proposal = near[(phi > 0.5).cpu().numpy()]
        n_free = int(np.count_nonzero(unclustered[proposal]))
        # n_free / |proposal| > 0.5, in integers
        if len(proposal) > params.min_object_size and 2 * n_free > len(proposal):
            labels[proposal] = count
            count += 1
        unclustered[proposal] = False
        n_unclustered -= n_free
    return labels


def _next_unclustered(unclustered: np.ndarray, order: np.ndarray, start: int, chunk: int = 256) -> int | None:
    """First position ≥ start in `order` whose pixel is unclustered, or None."""
    for lo in range(start, len(order), chunk):
        free = np.flatnonzero(unclustered[order[lo:lo + chunk]])
        if len(free):
            return lo + int(free[0])
    return None


def cluster(raw: torch.Tensor, params: ClusterParams = ClusterParams(),
            spacing: float = GRID_SPACING) -> np.ndarray:
    """Instance labels (H, W) (uint16, or uint32 above 65535 objects) from raw outputs.

    raw: (5, H, W) float tensor [o_x, o_y, σ_x, σ_y, seed logit] — averaged raw values (TTA);
    tanh/exp/sigmoid are applied here. Runs on raw's device.
    """
    height, width = raw.shape[-2:]
    seeds = torch.sigmoid(raw[4]).flatten()
    foreground = torch.nonzero(seeds > params.fg_thresh).squeeze(1)
    labels = np.zeros(height * width, dtype=np.int64)
    if foreground.numel() > params.min_mask_sum:
        embeddings = spatial_embedding(raw[0:2], spacing).flatten(1)[:, foreground]
        sigma_raw = raw[2:4].flatten(1)[:, foreground]
        labels[foreground.cpu().numpy()] = greedy_cluster(embeddings, sigma_raw, seeds[foreground], params)
    labels = labels.reshape(height, width)
    return labels.astype(label_dtype(int(labels.max())))
