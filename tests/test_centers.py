"""Centres: exact medoid against a brute-force N×N reference, approximate medoid, centroid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from embedseg.core import centers


def ring(size: int = 61, inner: float = 18, outer: float = 28) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size // 2, xx - size // 2)
    return (r > inner) & (r < outer)


def c_shape() -> np.ndarray:
    mask = ring(71, 20, 33)
    mask[28:43, 35:] = False  # open the ring on the right: a "C"
    return mask


def random_blob(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Union of random disks: irregular, often non-convex, sometimes disconnected."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(2, 6)):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 12)
        mask |= np.hypot(yy - cy, xx - cx) < r
    return mask


def brute_force_medoid(mask: np.ndarray) -> tuple[int, int]:
    """Full distance matrix, column sums, first minimum (the official definition)."""
    ys, xs = np.where(mask)
    points = np.stack([ys, xs], axis=1).astype(np.float64)
    index = int(np.argmin(cdist(points, points).sum(axis=0)))
    return int(ys[index]), int(xs[index])


SHAPES = [ring(), c_shape(), ring(41, 0, 15)]
# Size limits that send every object through one path of `medoid_index`: exact sums of all
# pixels, the tangent-plane screen (no FFT fallback), or the FFT screen.
PATHS = {
    "exact": {"EXACT_ALL_MAX_PIXELS": 10**9},
    "tangent": {"EXACT_ALL_MAX_PIXELS": 0, "TANGENT_MAX_PIXELS": 10**9, "TANGENT_MAX_CANDIDATES": 10**9},
    "fft": {"EXACT_ALL_MAX_PIXELS": 0, "TANGENT_MAX_PIXELS": 0},
}


def use_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    for name, value in PATHS[path].items():
        monkeypatch.setattr(centers, name, value)


@pytest.mark.parametrize("path", [None, *PATHS])
@pytest.mark.parametrize("mask", SHAPES, ids=["ring", "c-shape", "disk"])
def test_medoid_matches_brute_force_on_fixed_shapes(mask, path, monkeypatch):
    if path:
        use_path(monkeypatch, path)
    assert centers.medoid(mask) == brute_force_medoid(mask)


@pytest.mark.parametrize("path", [None, *PATHS])
def test_medoid_matches_brute_force_on_random_shapes(path, monkeypatch):
    rng = np.random.default_rng(3)
    masks = [random_blob(rng) for _ in range(12)]
    expected = [brute_force_medoid(m) for m in masks]
    if path:
        use_path(monkeypatch, path)
    assert [centers.medoid(m) for m in masks] == expected


def test_tangent_screen_keeps_the_medoid_and_ties_and_rules_out_the_rest():
    """The screen keeps the medoid and every pixel within rounding of it, and on compact objects
    rules out all but a handful of pixels (all but one where the medoid is unique)."""
    rng = np.random.default_rng(4)
    for mask in [ring(41, 0, 15), ring(33, 0, 9.5), *(random_blob(rng) for _ in range(8))]:
        coords = np.argwhere(mask)
        candidates = centers._tangent_candidates(coords, 1.0)
        sums = centers.distance_sums(coords)
        assert np.argmin(sums) in candidates
        assert set(np.flatnonzero(sums <= sums.min() * (1 + 1e-9))) <= set(candidates.tolist())
    for disk in (ring(41, -1, 15), ring(33, -1, 9.5), np.ones((11, 21), dtype=bool)):  # unique medoid
        assert len(centers._tangent_candidates(np.argwhere(disk), 1.0)) == 1
    # A disk missing its centre pixel: the minimum of S lies off the object; the 8 pixels around it.
    assert len(centers._tangent_candidates(np.argwhere(ring(41, 0, 15)), 1.0)) == 8
    # The 4 pixels around a rectangle's centre tie up to the rounding of the official summation
    # order, which decides between them: all 4 must reach the exact sums.
    rectangle = np.argwhere(np.ones((12, 20), dtype=bool))
    sums = centers.distance_sums(rectangle)
    tied = np.flatnonzero(sums <= sums.min() * (1 + 1e-12))
    assert len(tied) == 4
    assert set(tied) <= set(centers._tangent_candidates(rectangle, 1.0).tolist())
    assert centers.medoid(rectangle) == tuple(rectangle[np.argmin(sums)])


def test_c_shape_medoid_lies_on_the_object_while_the_centroid_does_not():
    mask = c_shape()
    my, mx = centers.medoid(mask)
    cy, cx = centers.centroid(mask)
    assert mask[my, mx]
    assert not mask[cy, cx]
    assert (my, mx) != (cy, cx)
    ay, ax = centers.approximate_medoid(mask)
    assert mask[ay, ax]


def test_blocked_sums_equal_unblocked_bit_for_bit():
    coords = np.argwhere(ring())
    unblocked = centers.distance_sums(coords, block_elements=len(coords) ** 2)
    blocked = centers.distance_sums(coords, block_elements=len(coords) * 7)
    np.testing.assert_array_equal(blocked, unblocked)
    reference = cdist(coords, coords).sum(axis=0)
    np.testing.assert_allclose(unblocked, reference, rtol=1e-12)
    subset = np.array([5, 0, 17])
    np.testing.assert_array_equal(centers.distance_sums(coords, subset), unblocked[subset])


def test_mask_and_coordinates_give_the_same_centres():
    mask = c_shape()
    coords = np.argwhere(mask)
    for kind in centers.CENTER_TYPES:
        assert centers.object_center(mask, kind) == centers.object_center(coords, kind)


def test_approximate_medoid_is_the_object_pixel_nearest_to_the_median():
    rng = np.random.default_rng(0)
    mask = random_blob(rng)
    ys, xs = np.where(mask)
    my, mx = np.median(ys), np.median(xs)
    index = np.argmin((ys - my) ** 2 + (xs - mx) ** 2)
    assert centers.approximate_medoid(mask) == (ys[index], xs[index])


def test_centroid_rounds_half_to_even():
    assert centers.centroid(np.array([[0, 0], [0, 1]])) == (0, 0)  # x mean 0.5 -> 0
    assert centers.centroid(np.array([[1, 1], [2, 2]])) == (2, 2)  # 1.5 -> 2


def test_ties_go_to_the_first_pixel_in_row_major_order():
    # Two pixels: both have the same distance sum; the first one wins.
    assert centers.medoid(np.array([[0, 0], [0, 3]])) == (0, 0)
    square = np.ones((2, 2), dtype=bool)
    assert centers.medoid(square) == (0, 0)
    assert centers.approximate_medoid(square) == (0, 0)


def test_empty_and_malformed_input_raise():
    with pytest.raises(ValueError):
        centers.medoid(np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError):
        centers.object_center(np.ones((2, 2), dtype=bool), "middle")


def test_medoid_of_real_cells_matches_exact_sums(shared_data, monkeypatch):
    """Usiigaci cells (irregular, with stray specks): both screens pick the exact-sum medoid."""
    from embedseg.io import read_labels

    labels = read_labels(shared_data / "usiigaci-2017" / "train" / "set1" / "instances_ids.png")
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    mid_sized = ids[(sizes > centers.EXACT_ALL_MAX_PIXELS) & (sizes < 2500)]  # screened, cheap checks
    assert len(mid_sized) >= 3
    for label_id in mid_sized[:3]:
        coords = np.argwhere(labels == label_id)
        exact = coords[np.argmin(centers.distance_sums(coords))]
        assert centers.medoid(coords) == tuple(exact)
        monkeypatch.setattr(centers, "TANGENT_MAX_PIXELS", 0)  # the FFT screen as well
        assert centers.medoid(coords) == tuple(exact)
        monkeypatch.undo()


def sequential_column_sums(coords: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per column, float64 distances added one row after another (the official C-order sum)."""
    points = coords.astype(np.float64)
    distances = cdist(points, points[columns])
    sums = np.zeros(len(columns))
    for row in distances:
        sums += row
    return sums


@pytest.mark.parametrize("columns", [None, [7], [3, 11], [0, 5, 9, 2]], ids=["all", "one", "two", "four"])
@pytest.mark.parametrize("block_elements", [None, 1])
def test_distance_sums_are_sequential_column_sums_bit_for_bit(columns, block_elements):
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = rng.random(tuple(rng.integers(5, 30, 2))) < 0.7
        mask[:3, :4] = True
        coords = np.argwhere(mask)
        cols = np.arange(len(coords)) if columns is None else np.asarray(columns)
        options = {} if block_elements is None else {"block_elements": block_elements}
        np.testing.assert_array_equal(
            centers.distance_sums(coords, cols, **options), sequential_column_sums(coords, cols)
        )


def brute_force_medoid_3d(coords: np.ndarray, anisotropy: float) -> tuple[int, ...]:
    """The official 3D definition: distances between (x, y, a·z), summed per column in row order,
    first minimum."""
    points = np.stack([coords[:, 2], coords[:, 1], anisotropy * coords[:, 0]], axis=1).astype(np.float64)
    return tuple(int(v) for v in coords[np.argmin(cdist(points, points).sum(axis=0))])


def ellipsoid(shape: tuple[int, int, int], radii: tuple[float, float, float]) -> np.ndarray:
    zz, yy, xx = np.indices(shape) - (np.array(shape) // 2)[:, None, None, None]
    return (zz / radii[0]) ** 2 + (yy / radii[1]) ** 2 + (xx / radii[2]) ** 2 <= 1


def volume_shapes() -> dict[str, np.ndarray]:
    """3D objects: a nucleus-like ellipsoid, a hollow shell, a C-shaped slab, random blobs."""
    shell = ellipsoid((11, 21, 21), (5, 10, 10)) & ~ellipsoid((11, 21, 21), (3, 7, 7))
    c_slab = np.repeat(c_shape()[None, ::2, ::2], 4, axis=0)
    rng = np.random.default_rng(11)
    blobs = {f"blob{i}": np.stack([random_blob(rng, 24) for _ in range(5)]) for i in range(3)}
    return {"ellipsoid": ellipsoid((9, 17, 15), (4, 8, 6)), "shell": shell, "c-slab": c_slab, **blobs}


@pytest.mark.parametrize("anisotropy", [1.0, 2.0, 1.7, 0.5])
@pytest.mark.parametrize("name", list(volume_shapes()))
def test_3d_medoid_matches_brute_force_on_every_path(name, anisotropy, monkeypatch):
    mask = volume_shapes()[name]
    coords = np.argwhere(mask)
    expected = brute_force_medoid_3d(coords, anisotropy)
    assert centers.medoid(mask, anisotropy) == expected
    assert centers.object_center(coords, "medoid", anisotropy=anisotropy) == expected
    for path in PATHS:
        use_path(monkeypatch, path)
        assert centers.medoid(coords, anisotropy) == expected, path
        monkeypatch.undo()


def test_anisotropy_moves_the_3d_medoid():
    """A 5×5 plate with a 16-voxel post: how far up the post the medoid sits depends on how long
    a z step is against the plate's in-plane extent."""
    mask = np.zeros((17, 5, 5), dtype=bool)
    mask[0] = True
    mask[:, 2, 2] = True
    medoids = {a: centers.medoid(mask, a) for a in (0.5, 1.0, 4.0)}
    assert len(set(medoids.values())) == 3
    for anisotropy, medoid in medoids.items():
        assert medoid == brute_force_medoid_3d(np.argwhere(mask), anisotropy)


@pytest.mark.parametrize("anisotropy", [1.0, 2.5, 0.3])
def test_3d_distance_sums_are_sequential_column_sums_bit_for_bit(anisotropy):
    rng = np.random.default_rng(6)
    mask = rng.random((4, 9, 8)) < 0.6
    coords = np.argwhere(mask)
    points = np.stack([coords[:, 2], coords[:, 1], anisotropy * coords[:, 0]], axis=1).astype(np.float64)
    distances = cdist(points, points)
    sequential = np.zeros(len(coords))
    for row in distances:
        sequential += row
    np.testing.assert_array_equal(centers.distance_sums(coords, anisotropy=anisotropy), sequential)
    columns = np.array([4, 0])
    np.testing.assert_array_equal(
        centers.distance_sums(coords, columns, block_elements=1, anisotropy=anisotropy), sequential[columns]
    )


def test_3d_approximate_medoid_and_centroid_follow_the_official_formulas():
    rng = np.random.default_rng(2)
    mask = np.stack([random_blob(rng, 32) for _ in range(6)])
    z, y, x = np.where(mask)
    zm, ym, xm = np.median(z), np.median(y), np.median(x)
    for anisotropy in (1.0, 3.0):
        index = np.argmin((x - xm) ** 2 + (y - ym) ** 2 + (anisotropy * (z - zm)) ** 2)
        assert centers.approximate_medoid(mask, anisotropy) == (z[index], y[index], x[index])
    expected = tuple(int(v) for v in np.round([z.mean(), y.mean(), x.mean()]))
    assert centers.centroid(mask) == expected == centers.object_center(np.argwhere(mask), "centroid", 3.0)


def test_3d_masks_and_coordinates_agree_and_bad_input_is_named():
    mask = volume_shapes()["shell"]
    for kind in centers.CENTER_TYPES:
        centre = centers.object_center(mask, kind, anisotropy=2.0)
        assert len(centre) == 3 and all(isinstance(v, int) for v in centre)
        assert centre == centers.object_center(np.argwhere(mask), kind, anisotropy=2.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        centers.medoid(np.zeros((5, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="z only"):
        centers.medoid(c_shape(), anisotropy=2.0)
