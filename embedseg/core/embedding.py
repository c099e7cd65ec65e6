"""Pixel/voxel embeddings and the Gaussian instance score shared by the loss, validation and clustering.

Channel order of the network output: 2-D ``[o_x, o_y, σ_x, σ_y, seed]``, 3-D
``[o_x, o_y, o_z, σ_x, σ_y, σ_z, seed]``; x = last (column) axis, z = first spatial axis. A pixel
at index (z,) y, x is embedded at ``e = tanh(o) + (x·δ_x, y·δ_y(, z·δ_z))``, the same at
training and test time (docs/method.md §3). The grid spacings δ come from :func:`grid_spacing`:
EmbedSeg's grid of 1024 with pixel size 1, δ = 1/1023, and in 3-D δ_z = anisotropy·δ_x. The
bandwidth of object k is ``s = exp(10·σ̄_raw)`` and its score is ``φ(e) = exp(−Σ_d s_d (e_d − C_d)²)``.

Spacing arguments take either a tuple of per-axis δ in channel order (x, y[, z]) or one float,
the same δ on every axis. Where the array cannot tell the dimension (:func:`spatial_embedding`
allows leading batch axes), the tuple's length gives it and a float means 2-D, so 2-D callers
keep passing :data:`GRID_SPACING`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

GRID_SPACING = 1.0 / 1023.0  # δ for EmbedSeg's grid of 1024 with pixel size 1
SIGMA_SCALE = 10.0  # s = exp(SIGMA_SCALE · σ_raw)
N_SIGMA = 2

Spacing = float | Sequence[float]


def grid_spacing(ndim: int, anisotropy: float = 1.0) -> tuple[float, ...]:
    """Grid spacing per embedding channel (δ_x, δ_y[, δ_z]) of a D-dimensional image.

    The official losses build the grid with ``linspace(0, pixel_a, grid_a)`` per axis, i.e.
    δ_a = pixel_a / (grid_a − 1), with grid_x = grid_y = 1024, pixel_x = pixel_y = 1. In 3-D
    (``my_loss_3d.py`` with ``create_dicts``) grid_z = n_z is free and pixel_z =
    (n_z − 1)/(n_x − 1)·anisotropy, so δ_z = anisotropy/(n_x − 1) = anisotropy·δ_x whatever n_z.
    anisotropy = voxel_z / voxel_x (> 1 for coarse z sampling); 2-D images have none (1).
    """
    if ndim == 2:
        if anisotropy != 1.0:
            raise ValueError(f"a 2-D image has no anisotropy factor, got {anisotropy}")
        return (GRID_SPACING, GRID_SPACING)
    if ndim == 3:
        if not anisotropy > 0:
            raise ValueError(f"anisotropy must be positive, got {anisotropy}")
        return (GRID_SPACING, GRID_SPACING, anisotropy * GRID_SPACING)
    raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")


def axis_spacing(spacing: Spacing, ndim: int | None = None) -> tuple[float, ...]:
    """`spacing` as a tuple (δ_x, δ_y[, δ_z]). A float is isotropic, over `ndim` axes (default 2)."""
    if isinstance(spacing, (int, float)):
        return (float(spacing),) * (ndim or 2)
    spacing = tuple(float(s) for s in spacing)
    if ndim is not None and len(spacing) != ndim:
        raise ValueError(f"{len(spacing)} grid spacings given for {ndim}-D data: {spacing}")
    return spacing


def coordinate_grid(
    *shape: int,
    spacing: Spacing = GRID_SPACING,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Grid coordinates of a window of `shape` ((H, W) or (Z, Y, X)) starting at 0, shape (D, *shape):
    channel 0 = x (last axis), 1 = y, 2 = z, each ``index·δ`` of its axis."""
    ndim = len(shape)
    deltas = axis_spacing(spacing, ndim)
    channels = []
    for channel, delta in enumerate(deltas):
        axis = ndim - 1 - channel
        view = [1] * ndim
        view[axis] = -1
        coordinates = torch.arange(shape[axis], device=device, dtype=dtype) * delta
        channels.append(coordinates.view(view).expand(shape))
    return torch.stack(channels, dim=0)


def spatial_embedding(offsets_raw: torch.Tensor, spacing: Spacing = GRID_SPACING) -> torch.Tensor:
    """Embeddings ``tanh(o) + grid`` for raw offsets of shape (..., D, *spatial); D = number of
    spacings (2 for a float)."""
    deltas = axis_spacing(spacing)
    spatial = offsets_raw.shape[offsets_raw.dim() - len(deltas) :]
    grid = coordinate_grid(*spatial, spacing=deltas, device=offsets_raw.device, dtype=offsets_raw.dtype)
    return torch.tanh(offsets_raw) + grid


def spatial_embedding_at(
    offsets_raw: torch.Tensor,
    pixels: torch.Tensor,
    spacing: Spacing = GRID_SPACING,
    origin: Sequence[int] | None = None,
) -> torch.Tensor:
    """Embeddings (D, K) of the pixels with row-major indices `pixels` (K,) of raw offsets
    (D, *spatial): the same values as ``spatial_embedding(offsets_raw).flatten(1)[:, pixels]``,
    computed for those pixels only. `origin` ((Z,) Y, X): where `offsets_raw` sits in a larger
    image, whose pixel coordinates (and so float roundings) the embeddings then use."""
    deltas = axis_spacing(spacing, offsets_raw.dim() - 1)
    coords, rest = [], pixels
    for size in reversed(offsets_raw.shape[2:]):  # x, then y, …; the first axis takes the rest
        coords.append(rest % size)
        rest = rest // size
    coords.append(rest)
    if origin is not None:
        coords = [c + start for c, start in zip(coords, reversed(origin))]
    grid = torch.stack([c.to(offsets_raw.dtype) * delta for c, delta in zip(coords, deltas)])
    return torch.tanh(offsets_raw.flatten(1)[:, pixels]) + grid


def bandwidth(sigma_raw: torch.Tensor) -> torch.Tensor:
    """``s = exp(10·σ_raw)`` — plays the role of 1/(2σ²) (Neven et al., issue #4)."""
    return torch.exp(SIGMA_SCALE * sigma_raw)


def gaussian_score(embeddings: torch.Tensor, center: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """φ = exp(−Σ_d s_d (e_d − C_d)²).

    embeddings: (D, ...); center, s: (D,) or (D, K, ...) — padded with trailing axes and broadcast,
    so embeddings (D, 1, P) with centres (D, K) give all K objects' scores (K, P) at once.
    Returns the broadcast shape without the leading D. Scores are floored at e times the dtype's
    smallest normal number (3e-38 in float32) instead of becoming subnormal or 0.
    """

    def padded(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape + (1,) * (embeddings.dim() - t.dim()))

    exponent = torch.sum(padded(s) * (embeddings - padded(center)) ** 2, dim=0)
    # exp() whose result is subnormal or underflows takes a slow path on x86 CPUs (about 20x),
    # and most pixels of a crop are that far from any one object; the margin of 1 keeps the
    # floor itself off that path.
    limit = -math.log(torch.finfo(exponent.dtype).tiny) - 1.0
    return torch.exp(-exponent.clamp(max=limit))
