"""Greedy seed clustering: separation of synthetic objects, equality with a plain reference
implementation of the paper algorithm (2D and 3D), presets, and label dtypes for many objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embedseg.core import cluster
from embedseg.core.embedding import GRID_SPACING
from embedseg.data.synthetic import disc_labels

SEED_LOGIT = 6.0
ANISOTROPIC = (GRID_SPACING, GRID_SPACING, 2 * GRID_SPACING)  # (δ_x, δ_y, δ_z) of z steps twice as long


def per_axis(spacing: float | tuple[float, ...], ndim: int) -> tuple[float, ...]:
    """Grid step per embedding axis (x, y[, z])."""
    return (spacing,) * ndim if isinstance(spacing, float) else tuple(spacing)


def synthetic_raw(
    label_image: np.ndarray,
    radius_px: float = 12.0,
    noise: float = 0.0,
    seed: int = 0,
    spacing: float | tuple[float, ...] = GRID_SPACING,
) -> torch.Tensor:
    """Raw outputs (2D+1, *spatial) of a label image (H, W) or (Z, Y, X) whose offsets point every
    object pixel to its object's centroid, with a bandwidth whose φ = 0.5 radius is `radius_px`
    x-pixels on every axis (fewer z voxels when δ_z > δ_x), seeds high inside objects."""
    rng = np.random.default_rng(seed)
    ndim, shape = label_image.ndim, label_image.shape
    steps = per_axis(spacing, ndim)
    coords = np.indices(shape).reshape(ndim, -1)[::-1].astype(np.float64)  # (x, y[, z])
    ids = label_image.ravel().astype(np.int64)
    sizes = np.maximum(np.bincount(ids), 1)
    raw = np.empty((2 * ndim + 1, *shape))
    inside = (label_image > 0).ravel()
    for d, (axis, step) in enumerate(zip(coords, steps)):
        centroid = np.bincount(ids, axis) / sizes
        offset = (centroid[ids] - axis) * inside * step
        raw[d] = (np.arctanh(offset) + noise * rng.normal(size=offset.shape) * 1e-3).reshape(shape)
    sigma = math.log(math.log(2) / (radius_px * steps[0]) ** 2) / 10
    raw[ndim : 2 * ndim] = sigma + noise * rng.normal(size=(ndim, *shape)) * 0.05
    raw[2 * ndim] = np.where(label_image > 0, SEED_LOGIT, -SEED_LOGIT) + noise * rng.normal(size=shape) * 3
    return torch.from_numpy(raw.astype(np.float32))


def reference_cluster(
    raw: torch.Tensor, params: cluster.ClusterParams, spacing: float | tuple[float, ...] = GRID_SPACING
) -> np.ndarray:
    """The paper algorithm written plainly (2D or 3D): argmax and Gaussian over all foreground
    pixels."""
    ndim, shape = (raw.shape[0] - 1) // 2, raw.shape[1:]
    coords = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")[::-1]
    grid = torch.stack([c * step for c, step in zip(coords, per_axis(spacing, ndim))])  # x, y[, z]
    emb = torch.tanh(raw[0:ndim]) + grid
    seed_map = torch.sigmoid(raw[2 * ndim])
    mask = seed_map > params.fg_thresh
    out = torch.zeros(shape, dtype=torch.int64)
    if mask.sum() <= params.min_mask_sum:
        return out.numpy()
    e, sig, sd = emb[:, mask], raw[ndim : 2 * ndim][:, mask], seed_map[mask]
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


def test_two_objects_are_separated():
    truth = disc_labels((64, 96), [(30, 25, 10), (34, 70, 10)])
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
    radius = rng.uniform(5, 9)
    truth = disc_labels((64, 64), [(cy, cx, radius) for cy, cx in centres])
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
@pytest.mark.parametrize("ndim", [2, 3])
def test_cuda_gives_the_cpu_labels(ndim):
    if ndim == 2:
        raw, spacing = synthetic_raw(disc_labels((64, 64), [(20, 20, 9), (44, 40, 9)]), noise=1.0), GRID_SPACING
    else:
        raw, spacing = synthetic_raw(SIX_NUCLEI, radius_px=6, noise=1.0, spacing=ANISOTROPIC), ANISOTROPIC
    params = cluster.preset("current", 5)
    labels = cluster.cluster(raw, params, spacing)
    assert len(np.unique(labels)) > 2
    np.testing.assert_array_equal(cluster.cluster(raw.cuda(), params, spacing), labels)


def test_embedding_of_selected_pixels_equals_the_full_embedding() -> None:
    """Clustering embeds only foreground pixels; the values must be those of the whole image."""
    from embedseg.core.embedding import spatial_embedding, spatial_embedding_at

    offsets = torch.randn(2, 37, 53, generator=torch.Generator().manual_seed(0))
    pixels = torch.randperm(37 * 53, generator=torch.Generator().manual_seed(1))[:500]
    assert torch.equal(spatial_embedding_at(offsets, pixels), spatial_embedding(offsets).flatten(1)[:, pixels])


def ellipsoids(shape: tuple[int, ...], centres: list[tuple[int, ...]], radii: tuple[float, ...]) -> np.ndarray:
    """(Z, Y, X) labels of axis-aligned ellipsoids with semi-axes `radii` (z, y, x) in voxels."""
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for i, (cz, cy, cx) in enumerate(centres, start=1):
        inside = ((zz - cz) / radii[0]) ** 2 + ((yy - cy) / radii[1]) ** 2 + ((xx - cx) / radii[2]) ** 2 <= 1
        labels[inside] = i
    return labels


SIX_NUCLEI = ellipsoids(
    (16, 64, 64),
    [(4, 12, 12), (8, 14, 44), (11, 40, 16), (6, 44, 46), (12, 24, 30), (4, 52, 28)],
    (3.5, 7, 7),
)


def test_3d_ellipsoids_are_separated_on_an_anisotropic_grid():
    """z steps twice as long as x/y steps: nuclei 7 voxels deep, 14 wide, each one object."""
    raw = synthetic_raw(SIX_NUCLEI, radius_px=2, spacing=ANISOTROPIC)
    labels = cluster.cluster(raw, cluster.preset("current", 10), ANISOTROPIC)
    assert labels.shape == SIX_NUCLEI.shape and labels.dtype == np.uint16
    for label_id in range(1, 7):
        values = np.unique(labels[SIX_NUCLEI == label_id])
        assert len(values) == 1 and values[0] > 0
    assert len(np.unique(labels)) == 7 and not labels[SIX_NUCLEI == 0].any()
    # Read on an isotropic grid, the z offsets are twice too long: the embeddings of a nucleus
    # spread over ±3.5 voxels in z instead of meeting at its centre, and it splits.
    assert len(np.unique(cluster.cluster(raw, cluster.preset("current", 10), GRID_SPACING))) > 7


@pytest.mark.parametrize("seed", range(3))
def test_3d_matches_the_plain_reference_on_noisy_outputs(seed):
    rng = np.random.default_rng(seed)
    centres = [tuple(rng.integers((2, 6, 6), (10, 26, 26))) for _ in range(5)]
    truth = ellipsoids((12, 32, 32), centres, (rng.uniform(2, 3), *[rng.uniform(4, 6)] * 2))
    raw = synthetic_raw(truth, radius_px=rng.uniform(3, 8), noise=1.0, seed=seed, spacing=ANISOTROPIC)
    presets = (cluster.preset("paper"), cluster.preset("current", 5), cluster.ClusterParams(0.8, 0.5, 0, 0, 0))
    for params in presets:
        labels = cluster.cluster(raw, params, ANISOTROPIC)
        np.testing.assert_array_equal(labels, reference_cluster(raw, params, ANISOTROPIC))
    assert len(np.unique(labels)) > 3


def test_3d_matches_the_plain_reference_on_unstructured_outputs():
    """Random 3D outputs: overlapping proposals, rejections, overwrites, wide and narrow bandwidths."""
    rng = np.random.default_rng(7)
    raw = np.empty((7, 10, 20, 18), dtype=np.float32)
    raw[0:3] = rng.normal(scale=0.005, size=(3, 10, 20, 18))
    raw[3:6] = rng.uniform(0.7, 1.3, size=(3, 10, 20, 18))
    raw[6] = rng.normal(1.5, 2.0, size=(10, 20, 18))
    raw = torch.from_numpy(raw)
    for params in (cluster.ClusterParams(0.9, 0.5, 0, 0, 2), cluster.preset("paper", 5)):
        labels = cluster.cluster(raw, params, ANISOTROPIC)
        np.testing.assert_array_equal(labels, reference_cluster(raw, params, ANISOTROPIC))
        assert len(np.unique(labels)) > 3


def test_3d_min_object_size_counts_voxels():
    """A 3×3×3 cube (27 voxels) is kept with min_object_size 26 and dropped with 27."""
    truth = np.zeros((8, 12, 12), dtype=np.uint16)
    truth[2:5, 4:7, 4:7] = 1
    raw = synthetic_raw(truth, radius_px=4, spacing=ANISOTROPIC)
    kept = cluster.cluster(raw, cluster.preset("current", 26), ANISOTROPIC)
    assert np.array_equal(kept > 0, truth > 0)
    assert not cluster.cluster(raw, cluster.preset("current", 27), ANISOTROPIC).any()


@pytest.mark.parametrize("cell", [0.004, 0.0001], ids=["16-bit keys", "64-bit keys"])  # 13^D vs 500^D cells
@pytest.mark.parametrize("ndim", [2, 3])
def test_cells_find_every_pixel_inside_a_box(ndim, cell):
    rng = np.random.default_rng(ndim)
    embeddings = rng.uniform(0, 0.05, size=(ndim, 3000))
    cells = cluster.EmbeddingCells(embeddings, cell=cell)
    assert np.all(np.diff(cells.sorted_keys) >= 0)
    for _ in range(50):
        centre = rng.uniform(-0.01, 0.06, size=ndim)
        radii = rng.uniform(0, 0.02, size=ndim)
        found = cells.pixels_in_box(centre.tolist(), tuple(radii.tolist()))
        inside = np.flatnonzero(np.all(np.abs(embeddings - centre[:, None]) <= radii[:, None], axis=0))
        assert set(inside) <= set(found.tolist())
        assert len(found) == len(set(found.tolist()))  # no pixel twice
        # a lookup, not a scan: only pixels of cells that overlap the box
        assert np.all(np.abs(embeddings[:, found] - centre[:, None]) <= radii[:, None] + cell)
    assert len(cells.pixels_in_box([0.025] * ndim, (math.inf,) * ndim)) == 3000


def test_raw_outputs_of_other_shapes_are_rejected():
    with pytest.raises(ValueError, match="7, Z, Y, X"):
        cluster.cluster(torch.zeros(7, 16, 16))
    with pytest.raises(ValueError, match="5, H, W"):
        cluster.cluster(torch.zeros(6, 4, 16, 16))


@pytest.mark.parametrize("ndim", [2, 3])
def test_proposal_members_decide_as_the_float32_formula_at_the_threshold(ndim, monkeypatch):
    """Pixels placed on the φ = 0.5 boundary, up to ±1e-6 relative in the exponent: the float64
    screen plus the float32 re-check of its unsure band give exactly the paper formula's verdict
    (without the band, float64 alone disagrees on some); so do seeds whose float32 bandwidth
    overflows (σ_raw = 9: s = inf)."""
    from embedseg.core.embedding import bandwidth, gaussian_score

    rng = np.random.default_rng(ndim)
    n = 20000
    sigma = rng.uniform(-1.0, 1.0, size=(ndim, n)).astype(np.float32)
    sigma[:, 1] = 9.0
    s = np.exp(10.0 * sigma[:, 0].astype(np.float64))
    direction = rng.normal(size=(ndim, n))
    exponent = math.log(2.0) * (1 + rng.uniform(-1e-6, 1e-6, size=n))
    centre = rng.uniform(0.2, 0.8, size=(ndim, 1))
    embeddings = (centre + direction * np.sqrt(exponent / (s[:, None] * direction**2).sum(axis=0))).astype(np.float32)
    embeddings[:, 0] = centre[:, 0]
    embeddings_t, sigma_t = torch.from_numpy(embeddings), torch.from_numpy(sigma)

    def members(seed: int) -> np.ndarray:
        return cluster.proposal_members(embeddings_t, sigma_t, embeddings.astype(np.float64), sigma, seed, np.arange(n))

    def paper_formula(seed: int) -> np.ndarray:
        return (gaussian_score(embeddings_t, embeddings_t[:, seed], bandwidth(sigma_t[:, seed])) > 0.5).numpy()

    expected = paper_formula(0)
    assert 1000 < np.count_nonzero(expected) < n - 1000
    np.testing.assert_array_equal(members(0), expected)
    np.testing.assert_array_equal(members(1), paper_formula(1))
    monkeypatch.setattr(cluster, "_UNSURE_RTOL", 0.0)
    assert np.count_nonzero(members(0) != expected) > 0
