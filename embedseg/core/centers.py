"""Object centres for the centre images of the training crops (docs/method.md §5): medoid, approximate
medoid and centroid, in 2D and 3D.

:func:`medoid`, :func:`approximate_medoid` and :func:`centroid` take one object either as a
boolean mask (H, W) / (Z, Y, X) or as its pixel coordinates, integer (N, D) as (y, x) / (z, y, x)
in row-major order (what ``np.argwhere(mask)`` returns; crops pass coordinates to avoid building
masks), and return the centre as a tuple of D ints in the same axis order. Ties go to the first
pixel in that order, as in the official code (``np.where`` + ``np.argmin``).

The exact medoid is the pixel minimising the sum of Euclidean distances to all pixels of the
object. The official code builds the full N×N distance matrix (3 GB for N = 20,000); here only
the pixels that can still be the medoid are summed exactly, after a screen that depends on the
size: none for tiny objects (all sums, by blocks of columns); for small ones, tangent planes of
the convex function S(p) = Σ_i ‖p − p_i‖ at the 2D axis neighbours of the centroid, whose
maximum is a lower bound of S that rules out every pixel but the few near the minimum (O(N));
for large ones, or where the planes leave too many pixels (non-convex shapes), an FFT
convolution of the object mask with a distance kernel (O(bbox volume · log)), keeping the
pixels whose FFT sum is within rounding of the minimum. Exact sums use the official
summation order of EmbedSeg 0.2.5: float64 distances, accumulated per column sequentially over
the rows (what ``np.sum(D, axis=0)`` does on its C-ordered matrix), so ties broken by rounding
pick the same pixel as the official code.

3D (the official ``generate_center_image_3d``): distances are measured in x-voxel units with z
stretched by the anisotropy factor a = voxel_z / voxel_x, i.e. between points (x, y, a·z); the
approximate medoid weighs z the same way; the centroid is the per-axis mean (a plays no role).
The official `speed_up` option (medoids of an x/y-subsampled object, an approximation) is not
offered: at its default of 1 it is exactly what is computed here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CENTER_TYPES = ("medoid", "approximate-medoid", "centroid")

# Objects up to this many pixels get exact sums for every pixel (N² distances); up to
# TANGENT_MAX_PIXELS they are screened by tangent planes, larger ones by FFT. Medians over 5
# blobs each (benchmarks/bench_core.py, 1 thread, 2026-11-30), exact / tangent / FFT: 33 / 50 /
# 126 µs at 64 px, 45 / 51 / 137 µs at 96 px, 70 / 54 / 137 µs at 128 px, 3,613 / 80 / 197 µs at
# 500 px, — / 310 / 889 µs at 4,000 px.
EXACT_ALL_MAX_PIXELS = 112
TANGENT_MAX_PIXELS = 4096
# More survivors of the tangent screen than this means it was loose (a non-convex object whose
# medoid is far from its centroid): exact sums of them all would then cost about as much as the
# FFT screen (~7 µs per survivor of a 500 px object, ~200 µs for the FFT).
TANGENT_MAX_CANDIDATES = 32
# Relative width of the window above the FFT minimum in which candidates are re-summed exactly;
# FFT rounding is ~1e-12 relative, neighbouring pixels of the medoid differ by ≫ 1e-7.
FFT_CANDIDATE_RTOL = 1e-7
BLOCK_ELEMENTS = 2**22  # distance-matrix entries per block (32 MiB of float64)


def axis_scales(ndim: int, anisotropy: float = 1.0) -> tuple[float, ...]:
    """Length of one voxel step per array axis in x-voxel units: (1, 1) in 2D, (a, 1, 1) in 3D."""
    if ndim == 2:
        if anisotropy != 1.0:
            raise ValueError(f"anisotropy {anisotropy} given for a 2D object; it applies to z only")
        return (1.0, 1.0)
    return (float(anisotropy), 1.0, 1.0)


def _sum_of_squares(differences: list[np.ndarray]) -> np.ndarray:
    """Σ_d differences[d]² for per-axis arrays in array-axis order (z,) y, x, added in the
    official order x, y, z (the inner loop of its ``pairwise_python``; exact for integer
    differences, and it fixes the rounding of a float z term)."""
    total = differences[-1] * differences[-1]
    for difference in reversed(differences[:-1]):
        total += difference * difference
    return total


def distance_sums(
    coords: np.ndarray,
    columns: np.ndarray | None = None,
    block_elements: int = BLOCK_ELEMENTS,
    anisotropy: float = 1.0,
) -> np.ndarray:
    """Exact sums of Euclidean distances from every pixel to the pixels `columns`.

    coords: (N, D) integer (y, x) / (z, y, x); z steps count `anisotropy` x-steps.
    columns: indices into coords (default: all), shape (M,). Returns float64 (M,):
    ``sum_i ||p_i − p_columns[m]||`` accumulated over i in order (the official per-column
    order). Works on blocks of columns holding at most `block_elements` distances, so memory
    stays bounded whatever N is.
    """
    coords = np.asarray(coords, dtype=np.int64)
    scales = axis_scales(coords.shape[1], anisotropy)
    # The official code subtracts scaled coordinates (a·z_i − a·z_j), not a·(z_i − z_j); integer
    # axes (scale 1) stay exact integers in float64.
    points = [np.ascontiguousarray(coords[:, d] * scale) for d, scale in enumerate(scales)]
    if columns is None:
        columns = np.arange(len(coords))
    block = max(1, block_elements // max(1, len(coords)))
    sums = np.empty(len(columns), dtype=np.float64)
    for start in range(0, len(columns), block):
        target = columns[start : start + block]
        distances = np.sqrt(_sum_of_squares([p[:, None] - p[None, target] for p in points]))
        if distances.shape[1] > 1:
            # Reducing axis 0 of a C-ordered (N, M ≥ 2) array adds whole rows one after another
            # (the inner loop runs along the columns): per column, sequential in row order, the
            # official order. With a single column numpy would sum it pairwise instead.
            sums[start : start + block] = distances.sum(axis=0)
        else:
            # A running sum is sequential by definition, whatever the memory layout.
            sums[start : start + block] = np.add.accumulate(distances, axis=0)[-1]
    return sums


def _fft_distance_sums(coords: np.ndarray, anisotropy: float) -> np.ndarray:
    """Approximate distance sums for every pixel (N,) by convolving the object's mask in its
    bounding box with the distance kernel ‖·‖ (FFT), in 2D or 3D."""
    from scipy.signal import fftconvolve

    local = coords - coords.min(axis=0)
    shape = tuple(local.max(axis=0) + 1)
    mask = np.zeros(shape, dtype=np.float64)
    mask[tuple(local.T)] = 1.0
    scales = axis_scales(len(shape), anisotropy)
    axes = (scale * np.arange(-(n - 1), n, dtype=np.float64) for n, scale in zip(shape, scales))
    steps = np.meshgrid(*axes, indexing="ij", sparse=True)
    kernel = np.sqrt(sum(step**2 for step in steps))
    # 'same' keeps the window of the full convolution aligned with the mask (kernel is centred).
    sums = fftconvolve(mask, kernel, mode="same")
    return sums[tuple(local.T)]


# Tangent points of the screen as steps from the centroid (D, K = 2D): +1, then −1 along each axis.
_STAR_STEPS = {ndim: np.hstack([np.eye(ndim), -np.eye(ndim)]) for ndim in (2, 3)}


def _tangent_candidates(coords: np.ndarray, anisotropy: float) -> np.ndarray:
    """Indices (sorted) of the pixels of coords (N, D) that the tangent-plane bound cannot rule
    out as the medoid; always holds the medoid (and every pixel tied with it).

    S(x) = Σ_i ‖x − p_i‖ is convex, so S(x) ≥ S(t) − g_t·(x − t) for any point t, with
    g_t = Σ_{p_i ≠ t} (p_i − t)/‖p_i − t‖ (minus a subgradient). The 2D points t are the centroid
    ± one step along each axis: when the minimum of S is near the centroid they surround it, so
    the largest of their planes, B(x), rises in every direction away from it. The pixel with the
    lowest B gives an upper bound of the minimum, its S; a pixel whose B exceeds that by more than
    the float rounding of these sums (FFT_CANDIDATE_RTOL) is not the medoid. (D, 2D, N) arrays:
    O(N) work, a dozen NumPy calls.
    """
    scales = np.asarray(axis_scales(coords.shape[1], anisotropy))[:, None]
    points = coords.T * scales  # (D, N) float64
    tangent_points = points.sum(axis=1, keepdims=True) / points.shape[1] + scales * _STAR_STEPS[len(points)]
    differences = points[:, None, :] - tangent_points[:, :, None]  # p_i − t (D, K, N)
    distances = np.sqrt(np.einsum("dkn,dkn->kn", differences, differences))
    # A zero distance has zero differences, so any finite inverse gives it the weight 0 it has
    # in the subgradient.
    g = np.einsum("dkn,kn->dk", differences, 1.0 / np.maximum(distances, 1e-12))
    bound = (distances.sum(axis=1)[:, None] - np.einsum("dk,dkn->kn", g, differences)).max(axis=0)  # (N,)
    offsets = points - points[:, int(np.argmin(bound)), None]
    upper = np.sqrt(np.einsum("dn,dn->n", offsets, offsets)).sum()
    return np.flatnonzero(bound <= upper * (1 + FFT_CANDIDATE_RTOL))


def medoid_index(coords: np.ndarray, anisotropy: float = 1.0) -> int:
    """Index of the exact medoid of coords (N, D): minimal sum of L2 distances, first on ties."""
    coords = np.asarray(coords, dtype=np.int64)
    if len(coords) <= EXACT_ALL_MAX_PIXELS:
        return int(np.argmin(distance_sums(coords, anisotropy=anisotropy)))
    candidates = None
    if len(coords) <= TANGENT_MAX_PIXELS:
        candidates = _tangent_candidates(coords, anisotropy)
        if len(candidates) == 1:  # every other pixel's sum is larger by far more than rounding
            return int(candidates[0])
    if candidates is None or len(candidates) > TANGENT_MAX_CANDIDATES:
        approx = _fft_distance_sums(coords, anisotropy)
        candidates = np.flatnonzero(approx <= approx.min() * (1 + FFT_CANDIDATE_RTOL) + 1e-6)
    return int(candidates[np.argmin(distance_sums(coords, candidates, anisotropy=anisotropy))])


def approximate_medoid_index(coords: np.ndarray, anisotropy: float = 1.0) -> int:
    """Index of the pixel nearest (squared L2, z scaled by `anisotropy`) to the per-axis median;
    first on ties. The official 3D code scales the difference, a·(z − median z)."""
    coords = np.asarray(coords, dtype=np.float64)
    median = np.median(coords, axis=0)
    scales = axis_scales(coords.shape[1], anisotropy)
    differences = [scale * (coords[:, d] - median[d]) for d, scale in enumerate(scales)]
    return int(np.argmin(_sum_of_squares(differences)))


def as_coords(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, D) int64 of a boolean mask (H, W) / (Z, Y, X), or `points` if
    already (N, D), D ∈ {2, 3}."""
    points = np.asarray(points)
    if points.dtype == bool:
        points = np.argwhere(points)
    if points.ndim != 2 or points.shape[1] not in (2, 3) or len(points) == 0:
        raise ValueError(
            f"expected a non-empty 2D/3D boolean mask or (N, 2)/(N, 3) coordinates, got shape {points.shape}"
        )
    return points.astype(np.int64, copy=False)


def medoid(points: np.ndarray, anisotropy: float = 1.0) -> tuple[int, ...]:
    """Exact medoid ((z,) y, x) of an object: boolean mask or coordinates (N, D); 3D distances
    count a z step as `anisotropy` x steps."""
    coords = as_coords(points)
    return tuple(int(v) for v in coords[medoid_index(coords, anisotropy)])


def approximate_medoid(points: np.ndarray, anisotropy: float = 1.0) -> tuple[int, ...]:
    """Object pixel ((z,) y, x) nearest to the per-axis median: mask or coordinates (N, D)."""
    coords = as_coords(points)
    return tuple(int(v) for v in coords[approximate_medoid_index(coords, anisotropy)])


def centroid(points: np.ndarray, anisotropy: float = 1.0) -> tuple[int, ...]:
    """Per-axis round(mean), round half to even; may lie outside the object. `anisotropy` is
    accepted for a uniform signature and plays no role (a mean does not depend on scale)."""
    return tuple(int(v) for v in np.round(as_coords(points).mean(axis=0)))


CENTER_FUNCTIONS: dict[str, Callable[..., tuple[int, ...]]] = {
    "medoid": medoid,
    "approximate-medoid": approximate_medoid,
    "centroid": centroid,
}


def object_center(points: np.ndarray, kind: str, anisotropy: float = 1.0) -> tuple[int, ...]:
    """Centre ((z,) y, x) of one object (mask (H, W) / (Z, Y, X) or coordinates (N, D));
    kind ∈ CENTER_TYPES; `anisotropy` = voxel_z / voxel_x (3D only, as the official crops)."""
    if kind not in CENTER_FUNCTIONS:
        raise ValueError(f"unknown centre type {kind!r}; choose one of {CENTER_TYPES}")
    return CENTER_FUNCTIONS[kind](points, anisotropy=anisotropy)
