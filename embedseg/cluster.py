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
ones are skipped), and each proposal is scored only on the pixels whose x-embedding can pass the
threshold, found by binary search in the x-sorted embeddings. The scores of those pixels are computed with the same float32
formula as the paper code, so the labels are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .embedding import GRID_SPACING, SIGMA_SCALE, spatial_embedding
from .io import label_dtype

PRESETS = ("paper", "current")
# Pixels whose x term alone exceeds this are outside the proposal (φ < 0.5 with margin to spare).
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
    unclustered = np.ones(n_pixels, dtype=bool)
    n_unclustered = n_pixels
    order = seed_order(seeds, params.seed_thresh)
    x_order = torch.argsort(embeddings[0])
    x_sorted = embeddings[0, x_order].contiguous()
    bandwidths = torch.exp(SIGMA_SCALE * sigma_raw)
    # Search window along x of every seed candidate, found once for all by binary search.
    radius = torch.sqrt(_LOG2_WITH_MARGIN / bandwidths[0, order]) + 1e-6
    windows = torch.stack((torch.searchsorted(x_sorted, embeddings[0, order] - radius, side="left"),
                           torch.searchsorted(x_sorted, embeddings[0, order] + radius, side="right")), dim=1)
    windows = windows.cpu().numpy()
    order = order.cpu().numpy()
    count = 1
    position = 0
    while n_unclustered > params.min_unclustered_sum:
        position = _next_unclustered(unclustered, order, position)
        if position is None:  # best remaining seed score < seed_thresh
            break
        seed = int(order[position])
        lo, hi = windows[position]
        position += 1
        unclustered[seed] = False
        n_unclustered -= 1
        near = x_order[lo:hi]
        center = embeddings[:, seed:seed + 1]
        s = bandwidths[:, seed:seed + 1]
        phi = torch.exp(-torch.sum((embeddings[:, near] - center) ** 2 * s, dim=0))
        proposal = near[phi > 0.5].cpu().numpy()
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
