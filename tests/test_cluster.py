"""Greedy seed clustering: separation of synthetic objects, equality with a plain reference
implementation of the paper algorithm, presets, and label dtypes for many objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embedseg import cluster
from embedseg.embedding import GRID_SPACING

SEED_LOGIT = 6.0


def synthetic_raw(label_image: np.ndarray, radius_px: float = 12.0, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Raw outputs (5, H, W) whose offsets point every object pixel to its object's centroid,
    with a bandwidth whose φ = 0.5 radius is `radius_px`, seeds high inside objects."""
    rng = np.random.default_rng(seed)
    h, w = label_image.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    ids = label_image.ravel().astype(np.int64)
    sizes = np.maximum(np.bincount(ids), 1)
    centroid_x = np.bincount(ids, xx.ravel()) / sizes
    centroid_y = np.bincount(ids, yy.ravel()) / sizes
    offset = np.stack([(centroid_x[ids] - xx.ravel()), (centroid_y[ids] - yy.ravel())]).reshape(2, h, w)
    offset *= (label_image > 0) * GRID_SPACING
    sigma = math.log(math.log(2) / (radius_px * GRID_SPACING) ** 2) / 10
    raw = np.empty((5, h, w))
    raw[0:2] = np.arctanh(offset) + noise * rng.normal(size=(2, h, w)) * 1e-3
    raw[2:4] = sigma + noise * rng.normal(size=(2, h, w)) * 0.05
    raw[4] = np.where(label_image > 0, SEED_LOGIT, -SEED_LOGIT) + noise * rng.normal(size=(h, w)) * 3
    return torch.from_numpy(raw.astype(np.float32))


def reference_cluster(raw: torch.Tensor, params: cluster.ClusterParams) -> np.ndarray:
    """The paper algorithm written plainly: argmax and Gaussian over all foreground pixels."""
    h, w = raw.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32) * GRID_SPACING
    xs = torch.arange(w, dtype=torch.float32) * GRID_SPACING
    grid = torch.stack((xs.view(1, -1).expand(h, w), ys.view(-1, 1).expand(h, w)))
    emb = torch.tanh(raw[0:2]) + grid
    seed_map = torch.sigmoid(raw[4])
    mask = seed_map > params.fg_thresh
    out = torch.zeros(h, w, dtype=torch.int64)
    if mask.sum() <= params.min_mask_sum:
        return out.numpy()
    e, sig, sd = emb[:, mask], raw[2:4][:, mask], seed_map[mask]
    unclustered = torch.ones(sd.numel())
    labels = torch.zeros(sd.numel(), dtype=torch.int64)
    count = 1
    while unclustered.sum() > params.min_unclustered_sum:
        j = int(torch.argmax(sd * unclustered))
        if float((sd * unclustered).max()) < params.seed_thresh:
            break
        unclustered[j] = 0
        s = torch.exp(sig[:, j : j + 1] * 10)
        phi = torch.exp(-torch.sum((e - e[:, j : j + 1]) ** 2 * s, 0))
        proposal = phi > 0.5
        if proposal.sum() > params.min_object_size:
            if unclustered[proposal].sum() / proposal.sum() > 0.5:
                labels[proposal] = count
                count += 1
        unclustered[proposal] = 0
    out[mask] = labels
    return out.numpy()


def disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[np.hypot(yy - cy, xx - cx) <= radius] = i
    return labels


def test_two_objects_are_separated():
    truth = disks((64, 96), [(30, 25), (34, 70)], 10)
    labels = cluster.cluster(synthetic_raw(truth), cluster.preset("paper"))
    assert labels.dtype == np.uint16
    assert len(np.unique(labels)) == 3
    for label_id in (1, 2):
        values = np.unique(labels[truth == label_id])
        assert len(values) == 1 and values[0] > 0
    assert not labels[truth == 0].any()


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_plain_reference_on_noisy_outputs(seed):
    rng = np.random.default_rng(seed)
    centres = [tuple(rng.integers(8, 56, size=2)) for _ in range(6)]
    truth = disks((64, 64), centres, rng.uniform(5, 9))
    raw = synthetic_raw(truth, radius_px=rng.uniform(4, 12), noise=1.0, seed=seed)
    for params in (cluster.preset("paper"), cluster.preset("current", 5), cluster.ClusterParams(0.8, 0.5, 0, 0, 0)):
        np.testing.assert_array_equal(cluster.cluster(raw, params), reference_cluster(raw, params))


@pytest.mark.parametrize("seed", range(3))
def test_matches_the_plain_reference_on_unstructured_outputs(seed):
    """Random outputs: overlapping proposals, rejections, overwrites, wide and narrow bandwidths."""
    rng = np.random.default_rng(seed)
    raw = np.empty((5, 48, 40), dtype=np.float32)
    raw[0:2] = rng.normal(scale=0.005, size=(2, 48, 40))
    raw[2:4] = rng.uniform(0.7, 1.3, size=(2, 48, 40))  # φ = 0.5 radii of ~2 to 15 px
    raw[4] = rng.normal(1.5, 2.0, size=(48, 40))
    raw = torch.from_numpy(raw)
    for params in (cluster.ClusterParams(0.9, 0.5, 0, 0, 2), cluster.preset("paper", 5)):
        labels = cluster.cluster(raw, params)
        np.testing.assert_array_equal(labels, reference_cluster(raw, params))
    assert len(np.unique(labels)) > 3


def test_paper_preset_thresholds():
    params = cluster.preset("paper")
    assert (params.min_mask_sum, params.min_unclustered_sum, params.min_object_size) == (128, 128, 36)
    # A 37-px object is kept only when the image has more than 128 foreground pixels.
    small = np.zeros((40, 40), dtype=np.uint16)
    small[2:39, 2] = 1  # 37 px
    assert not cluster.cluster(synthetic_raw(small, radius_px=5), params).any()
    big = small.copy()
    big[10:30, 10:30] = 2  # 400 px more foreground
    labels = cluster.cluster(synthetic_raw(big, radius_px=5), params)
    assert len(np.unique(labels[small == 1])) == 1 and labels[5, 2] > 0
    # 36 px is not more than 36: rejected by the paper preset, kept by `current` with 0.
    big[2, 2] = 0
    labels = cluster.cluster(synthetic_raw(big, radius_px=5), params)
    assert not labels[big == 1].any() and labels[20, 20] > 0
    current = cluster.preset("current", min_object_size=0)
    assert (current.min_mask_sum, current.min_unclustered_sum) == (0, 0)
    assert cluster.cluster(synthetic_raw(big, radius_px=5), current)[5, 2] > 0


def test_preset_rejects_unknown_names():
    with pytest.raises(ValueError, match="preset"):
        cluster.preset("fast")


def bars(n_rows: int, n_cols: int) -> np.ndarray:
    """n_rows × n_cols objects of 3 px (horizontal bars), centres ≥ 2 px apart.

    A proposal needs more than half of its pixels unclustered *after* its seed pixel was taken,
    so 3 px is the smallest object the algorithm can ever accept.
    """
    labels = np.zeros((2 * n_rows, 4 * n_cols), dtype=np.uint32)
    ids = np.arange(1, n_rows * n_cols + 1).reshape(n_rows, n_cols)
    for dx in range(3):
        labels[::2, dx::4] = ids
    return labels


def test_more_than_255_objects_keep_distinct_labels():
    labels = cluster.cluster(synthetic_raw(bars(20, 20), radius_px=1.5), cluster.preset("current", 0))
    assert labels.dtype == np.uint16
    assert labels.max() == 400 and len(np.unique(labels)) == 401


def test_more_than_32767_objects_do_not_overflow():
    truth = bars(128, 257)
    labels = cluster.cluster(synthetic_raw(truth, radius_px=1.5), cluster.preset("current", 0))
    assert labels.dtype == np.uint16
    assert labels.max() == 128 * 257 > 32767
    # One label per object, and the same partition as the truth.
    pairs = np.unique(np.stack([truth.ravel(), labels.ravel()]), axis=1)
    assert pairs.shape[1] == 128 * 257 + 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_labels():
    truth = disks((64, 64), [(20, 20), (44, 40)], 9)
    raw = synthetic_raw(truth, noise=1.0)
    params = cluster.preset("current", 5)
    np.testing.assert_array_equal(cluster.cluster(raw.cuda(), params), cluster.cluster(raw, params))


def test_embedding_of_selected_pixels_equals_the_full_embedding() -> None:
    """Clustering embeds only foreground pixels; the values must be those of the whole image."""
    from embedseg.embedding import spatial_embedding, spatial_embedding_at

    offsets = torch.randn(2, 37, 53, generator=torch.Generator().manual_seed(0))
    pixels = torch.randperm(37 * 53, generator=torch.Generator().manual_seed(1))[:500]
    assert torch.equal(spatial_embedding_at(offsets, pixels), spatial_embedding(offsets).flatten(1)[:, pixels])
