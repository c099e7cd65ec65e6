"""Small, deterministic, realistic-looking data sets for the embedded demo (no download needed).

- ``synthetic-worms``: BBBC010-like brightfield (16-bit): long, tapered, strongly curved worms
  that cross each other. Masks are one-hot (K, H, W) stacks like BBBC010's, so overlaps are
  kept and the demo exercises the one-hot path of crops, loss and evaluation. C- and S-shaped
  worms put the centroid outside the object for a large share of them: the case where the
  medoid centre matters.
- ``synthetic-cells``: Usiigaci-like phase contrast (16-bit) at Usiigaci's pixel scale:
  irregular cells, half of them touching, barely darker than the background, textured, with a
  bright halo along the border with the background and only a faint seam where cells touch.
- ``synthetic-nuclei``: greyscale-DSB-like fluorescence (8-bit) at DSB's pixel scale: elliptic
  nuclei of varied size and brightness, a third of them touching, blurred, with noise.

Both are held to their real sets' statistics (:mod:`embedseg.data.describe`, docs/data.md).
- ``synthetic-nuclei-3d``: confocal-like fluorescence volumes (8-bit, (Z, Y, X)): touching,
  rotated ellipsoidal nuclei of a few sizes, sampled with voxels twice as long in z as in y and x
  (:data:`VOXEL_SIZE_3D`), blurred with the coarser z sampling, dimmer with depth, with noise.

Image ``i`` of a set depends only on ``(seed, i)`` and the image size, so a set is reproducible
and its first images do not change when more are requested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

SYNTHETIC_SETS = ("synthetic-worms", "synthetic-cells", "synthetic-nuclei", "synthetic-nuclei-3d")
SYNTHETIC_3D = ("synthetic-nuclei-3d",)
VOXEL_SIZE_3D = (2.0, 1.0, 1.0)  # µm (z, y, x): z sampled half as finely, anisotropy 2
# Default (number of images, image height = width, depth) when the command line gives none;
# the 3D default (12 volumes of 32 × 96 × 96) keeps a CPU demo to minutes.
DEFAULT_SIZES = {2: (16, 128, None), 3: (12, 96, 32)}


def generate(
    name: str, n_images: int, image_size: int, seed: int, depth: int | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(file stem, image, labels)`` for the synthetic set `name`.

    2D sets: images (H, W) with H = W = `image_size`; labels (K, H, W) 0/1 stacks for worms and
    (H, W) label images otherwise. 3D sets: volumes and label volumes (Z, Y, X) with
    Z = `depth` (default 32) and Y = X = `image_size`.
    """
    if image_size < 32:
        raise ValueError(f"--image-size {image_size} too small; use at least 32")
    depth = DEFAULT_SIZES[3][2] if depth is None else depth
    if depth < 8:
        raise ValueError(f"--image-depth {depth} too small; use at least 8")
    makers: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
        "synthetic-worms": make_worms,
        "synthetic-cells": make_cells,
        "synthetic-nuclei": make_nuclei,
        "synthetic-nuclei-3d": lambda rng, size: make_nuclei_3d(rng, (depth, size, size)),
    }
    make = makers[name]
    for index in range(n_images):
        image, labels = make(np.random.default_rng([seed, index]), image_size)
        yield f"{name.removeprefix('synthetic-')}_{index:03d}", image, labels


def objects_per_image(rng: np.random.Generator, size: int, low: int, high: int) -> int:
    """Object count for a `size`² image, drawn for a 128² field and scaled with the area."""
    return max(1, int(round(rng.integers(low, high + 1) * (size / 128) ** 2)))


def worm_centerline(rng: np.random.Generator, size: int) -> np.ndarray:
    """(N, 2) points (y, x), 0.5 px apart, of one worm: random start and heading, a steady turn
    of 0.4π–1.4π (C shapes) plus a slow wiggle (S shapes), kept below a full loop."""
    length = rng.uniform(0.45, 0.75) * size
    t = np.arange(0.0, length, 0.5)
    turn = rng.uniform(0.4, 1.4) * np.pi * rng.choice([-1, 1])
    wiggle = (
        rng.uniform(0.0, 0.3)
        * np.pi
        * np.sin(2 * np.pi * t / length * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
    )
    heading = rng.uniform(0, 2 * np.pi) + turn * t / length + wiggle
    steps = 0.5 * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    start = rng.uniform(0.2, 0.8, size=2) * size
    return start + np.cumsum(steps, axis=0)


def worm_mask(centerline: np.ndarray, size: int, max_half_width: float) -> np.ndarray:
    """(H, W) bool body around `centerline`, tapered towards both ends.

    Each pixel takes the half-width of its nearest centre-line point (EDT with indices).
    """
    from scipy import ndimage
    from skimage.draw import line

    position = np.full((size, size), -1, dtype=np.int64)  # index along the worm of centre-line pixels
    points = np.round(centerline).astype(int)
    for i, ((y0, x0), (y1, x1)) in enumerate(zip(points[:-1], points[1:])):
        rr, cc = line(y0, x0, y1, x1)
        inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        position[rr[inside], cc[inside]] = i
    if not (position >= 0).any():
        return np.zeros((size, size), bool)
    distance, (iy, ix) = ndimage.distance_transform_edt(position < 0, return_indices=True)
    along = position[iy, ix] / max(len(points) - 1, 1)
    half_width = np.maximum(max_half_width * np.sqrt(np.sin(np.pi * along)), 1.0)
    return distance <= half_width


def make_worms(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightfield worms: image (H, W) uint16 and one-hot masks (K, H, W) uint16 (0/1)."""
    from scipy import ndimage

    masks: list[np.ndarray] = []
    n_worms = objects_per_image(rng, size, 3, 5)
    for _ in range(4 * n_worms):  # rejection sampling: at least one worm, worms mostly in view
        if len(masks) == n_worms:
            break
        centerline = worm_centerline(rng, size)
        if np.mean(np.all((centerline >= 0) & (centerline < size), axis=1)) < 0.85:
            continue  # mostly outside the field of view
        mask = worm_mask(centerline, size, max_half_width=rng.uniform(3.0, 4.5) * size / 128)
        if mask.sum() >= 30:
            masks.append(mask)
    stack = np.array(masks, dtype=np.uint16).reshape(-1, size, size)
    yy, xx = np.mgrid[:size, :size] / size
    background = 30000 + 4000 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    # worms are darker, most at their spine; crossings are darker still
    body = sum(ndimage.gaussian_filter(m.astype(float), 1.5) for m in stack.astype(bool)) if len(stack) else 0.0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.0)
    image = background - 9000 * np.asarray(body) * (1 + 0.15 * texture) + rng.normal(0, 600, (size, size))
    return np.clip(image, 0, 65535).astype(np.uint16), stack


def cell_territories(
    rng: np.random.Generator, size: int, n_cells: int, radius: tuple[float, float], clustered: float
) -> np.ndarray:
    """(H, W) label image of `n_cells` irregular cells: a disc of random radius around each seed,
    its rim roughened, with a `clustered` share of seeds placed next to an earlier cell so that
    their discs overlap; overlaps are split by a compact watershed, leaving a straight contact."""
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential, watershed

    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(4 * n_cells):
        if len(centres) == n_cells:
            break
        r = rng.uniform(*radius)
        if centres and rng.random() < clustered:
            k = rng.integers(len(centres))
            angle = rng.uniform(0, 2 * np.pi)
            centre = centres[k] + (r + radii[k]) * rng.uniform(0.75, 0.95) * np.array([np.sin(angle), np.cos(angle)])
            apart = 0.7  # a seed never inside another cell's core
        else:
            centre = rng.uniform(0, size, 2)
            apart = 1.1  # placed freely: mostly apart (touches come from the line above)
        if any(np.linalg.norm(centre - c) < apart * (r + q) for c, q in zip(centres, radii)):
            continue
        centres.append(centre)
        radii.append(r)
    yy, xx = np.mgrid[:size, :size]
    rim = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 4.0)
    rim *= 0.25 / max(rim.std(), 1e-9)  # rims ±25 % of the radius, smooth over ~10 px
    markers = np.zeros((size, size), np.int32)
    inside = np.zeros((size, size), bool)
    for i, (centre, r) in enumerate(zip(centres, radii), start=1):
        distance = np.hypot(yy - centre[0], xx - centre[1])
        inside |= distance <= r * (1 + rim)
        cy, cx = np.clip(np.round(centre).astype(int), 0, size - 1)
        markers[cy, cx] = i
    landscape = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2.0)
    labels = watershed(landscape, markers, mask=inside, compactness=0.05)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < 50] = 0
    return relabel_sequential(labels)[0].astype(np.uint16)


def make_cells(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Phase-contrast cells: image (H, W) uint16 and label image (H, W) uint16.

    At Usiigaci's pixel scale (docs/data.md): ~60 cells of ~2700 px per 1024² field, half of
    them touching. As in phase contrast, a cell's mean is barely below the background's (SNR ~0.4);
    what shows a cell is its textured body and the bright halo along its border with the
    background. Where two cells touch, the seam is only faintly brighter (~1 interior sd), as
    in Usiigaci, not a bright line a boundary class could follow.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    n_cells = max(1, int(round(rng.uniform(40, 80) * (size / 1024) ** 2)))
    labels = cell_territories(rng, size, n_cells, radius=(22.0, 40.0), clustered=0.3)
    cells = labels > 0
    outer = find_boundaries(labels, mode="outer") & ~cells  # border with the background only
    halo = ndimage.gaussian_filter(outer.astype(float), 2.0)
    lowest = ndimage.minimum_filter(np.where(cells, labels, labels.max() + 1), size=3)
    contact = cells & ((ndimage.maximum_filter(labels, size=3) > labels) | (lowest < labels))
    seam = ndimage.gaussian_filter(contact.astype(float), 1.0)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.5)
    texture /= max(texture.std(), 1e-9)
    background_texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.0)
    background_texture /= max(background_texture.std(), 1e-9)
    yy, xx = np.mgrid[:size, :size] / size
    image = 20000 + 1500 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    image += 1400 * background_texture * ~cells
    image += cells * (-500 + 1800 * texture)
    image += 6000 * halo / max(halo.max(), 1e-9) + 2500 * seam / max(seam.max(), 1e-9)
    image += rng.normal(0, 700, (size, size))
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def make_nuclei(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fluorescent nuclei: image (H, W) uint8 and label image (H, W) uint16.

    At the pixel scale of the greyscale DSB images (docs/data.md): per image a typical nucleus
    size (median area ~90–1800 px across images) and density (~10–100 per 256² field), nuclei
    of varied brightness, domed (dimmer towards the rim), and a share placed against an earlier
    nucleus so that about a third of them touch: a threshold merges those, as in DSB.
    """
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    scale = np.exp(rng.uniform(np.log(5.5), np.log(16.0)))  # the image's typical radius, px
    density = rng.uniform(10, 60) * (9.0 / scale) ** 2  # bigger nuclei, fewer per field
    n_nuclei = max(1, int(round(density * (size / 256) ** 2)))
    best = np.full((size, size), 1.0)  # smallest scaled ellipse distance so far (< 1: inside)
    labels = np.zeros((size, size), np.uint16)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    yy, xx = np.mgrid[:size, :size]
    for _ in range(4 * n_nuclei):
        if len(centres) == n_nuclei:
            break
        radius = scale * rng.uniform(0.75, 1.25)
        if centres and rng.random() < 0.15:  # against an earlier nucleus: touching
            k = rng.integers(len(centres))
            angle = rng.uniform(0, 2 * np.pi)
            centre = centres[k] + 0.95 * (radius + radii[k]) * np.array([np.sin(angle), np.cos(angle)])
            apart = 0.8  # centres not inside each other
        else:
            centre = rng.uniform(0, size, 2)
            apart = 1.2  # placed freely: mostly not touching (touches come from the line above)
        if any(np.linalg.norm(centre - c) < apart * (radius + r) for c, r in zip(centres, radii)):
            continue
        a, b = radius * rng.uniform(0.75, 1.3, 2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - centre[0], xx - centre[1]
        u, v = dy * np.cos(theta) + dx * np.sin(theta), -dy * np.sin(theta) + dx * np.cos(theta)
        distance = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        closer = distance < best
        if closer.sum() < 8:
            continue
        best[closer] = distance[closer]
        labels[closer] = len(centres) + 1
        centres.append(centre)
        radii.append(radius)
    labels = relabel_sequential(labels)[0].astype(np.uint16)
    brightness = rng.uniform(50, 220, size=int(labels.max()) + 1)
    brightness[0] = 0.0
    dome = np.where(labels > 0, 1 - 0.1 * best**2, 0.0)  # dimmer towards each nucleus' rim
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.0)
    signal = brightness[labels] * dome * (1 + 0.2 * texture)
    yy_, xx_ = np.mgrid[:size, :size] / size
    background = 8 + 6 * (rng.uniform(0, 1) * yy_ + rng.uniform(0, 1) * xx_)  # uneven illumination
    image = background + ndimage.gaussian_filter(signal, 1.0) + rng.normal(0, 3, (size, size))
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3 × 3 rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def make_nuclei_3d(
    rng: np.random.Generator, shape: tuple[int, int, int], voxel_size: tuple[float, ...] = VOXEL_SIZE_3D
) -> tuple[np.ndarray, np.ndarray]:
    """Fluorescent nuclei in a volume: image (Z, Y, X) uint8 and label volume (Z, Y, X) uint16.

    Nuclei are rotated ellipsoids (semi-axes 0.75–1.3 × a radius from one of three size classes)
    in physical units (µm), so with the default voxel size they are half as many slices deep as
    pixels wide. Half of them are placed against an earlier nucleus, so many touch; where two
    ellipsoids overlap, each voxel goes to the nucleus whose (scaled) ellipsoid distance is
    smallest, which leaves a flat contact face as between real touching nuclei.
    """
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    shape = tuple(shape)
    scale = np.asarray(voxel_size, dtype=float)
    extent = np.asarray(shape) * scale  # µm
    field = extent[1] * extent[2] * extent[0] / (96.0 * 96.0 * 64.0)  # in units of the default field
    n_nuclei = max(1, int(round(rng.integers(28, 40) * field)))
    best = np.full(shape, 1.0)  # smallest scaled ellipsoid distance so far (< 1: inside)
    labels = np.zeros(shape, np.uint16)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(4 * n_nuclei):  # rejection sampling: centres not inside another nucleus
        if len(centres) == n_nuclei:
            break
        radius = rng.choice([5.0, 7.0, 9.5]) * rng.uniform(0.85, 1.15)  # three size classes, µm
        if centres and rng.random() < 0.5:  # against an earlier nucleus: touching
            k = rng.integers(len(centres))
            direction = rng.normal(size=3)
            centre = centres[k] + direction / np.linalg.norm(direction) * 0.95 * (radius + radii[k])
        else:
            centre = rng.uniform(0, 1, size=3) * extent
        if any(np.linalg.norm(centre - c) < 0.8 * (radius + r) for c, r in zip(centres, radii)):
            continue
        semi_axes = radius * rng.uniform(0.75, 1.3, size=3)
        rotation = random_rotation(rng)
        lo = np.maximum(np.floor((centre - semi_axes.max()) / scale).astype(int), 0)
        hi = np.minimum(np.ceil((centre + semi_axes.max()) / scale).astype(int) + 1, shape)
        if np.any(lo >= hi):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), axis=-1)
        local = (grid * scale - centre) @ rotation  # µm, in the ellipsoid's own axes
        distance = np.sqrt(((local / semi_axes) ** 2).sum(axis=-1))
        closer = distance < best[box]
        if closer.sum() < 20:
            continue
        best[box][closer] = distance[closer]
        labels[box][closer] = len(centres) + 1
        centres.append(centre)
        radii.append(radius)
    labels = relabel_sequential(labels)[0].astype(np.uint16)  # ids of nuclei fully taken over vanish
    brightness = rng.uniform(80, 220, size=int(labels.max()) + 1)
    brightness[0] = 0.0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    depth_fade = 1 - 0.3 * np.arange(shape[0])[:, None, None] / shape[0]  # deeper slices are dimmer
    signal = brightness[labels] * (1 + 0.2 * texture) * depth_fade
    sigma = 1.0 / scale * scale[-1]  # 1 px in y and x, the same µm in z
    image = 10 + ndimage.gaussian_filter(signal, sigma) + rng.normal(0, 5, shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels


# --- discs: the simplest instance images, shared by the tests and the benchmarks ----------------

Disc = tuple[float, float, float]  # (centre y, centre x, radius), pixels


def random_discs(
    rng: np.random.Generator, size: int, n_discs: int, radius: tuple[float, float] = (5, 12), integer: bool = True
) -> list[Disc]:
    """`n_discs` discs in a `size`² image, radius drawn from [radius[0], radius[1]) and centre at
    least one radius inside the image; whole pixels with `integer`, else any real value.

    Per disc one draw for the radius, then one for both centre coordinates: callers' data sets
    depend on this order of the random stream.
    """
    draw = rng.integers if integer else rng.uniform
    discs = []
    for _ in range(n_discs):
        r = draw(*radius)
        cy, cx = draw(r, size - r, 2)
        discs.append((cy.item(), cx.item(), r.item() if isinstance(r, np.generic) else r))
    return discs


def disc_labels(shape: tuple[int, int], discs: list[Disc], first_on_top: bool = False) -> np.ndarray:
    """(H, W) uint16 label image, disc i has id i + 1 and holds the pixels within its radius
    (boundary included). Where discs overlap the later one covers the earlier, or the earlier
    stays with `first_on_top` (so every id keeps its centre region, as touching nuclei)."""
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    order = reversed(list(enumerate(discs))) if first_on_top else enumerate(discs)
    for i, (cy, cx, r) in order:
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
    return labels


def disc_stack(shape: tuple[int, int], discs: list[Disc]) -> np.ndarray:
    """(K, H, W) uint8 one-hot stack of possibly overlapping discs (BBBC010's mask layout)."""
    return np.stack([disc_labels(shape, [disc]) > 0 for disc in discs]).astype(np.uint8)


def disc_centers(shape: tuple[int, int], discs: list[Disc]) -> np.ndarray:
    """(H, W) uint8 centre image with a 1 at every disc's (rounded) centre."""
    centers = np.zeros(shape, np.uint8)
    for cy, cx, _ in discs:
        centers[int(round(cy)), int(round(cx))] = 1
    return centers


def disc_image(
    labels: np.ndarray, rng: np.random.Generator, background: float = 40, contrast: float = 150, noise: float = 8
) -> np.ndarray:
    """(H, W) uint8 image of bright objects on a noisy background, from (H, W) labels or a
    (K, H, W) one-hot stack: `background` + `contrast` on objects + Gaussian noise of sd `noise`."""
    foreground = labels.max(axis=0) if labels.ndim == 3 else labels
    image = background + contrast * (foreground > 0) + rng.normal(0, noise, foreground.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
