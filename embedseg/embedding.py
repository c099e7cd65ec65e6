"""Pixel embeddings and the Gaussian instance score shared by the loss, validation and clustering.

Channel order of the network output (2-D): ``[o_x, o_y, σ_x, σ_y, seed]``; x = column axis.
A pixel (i, j) is embedded at ``e = tanh(o) + (x_j, y_i)`` with grid coordinates
``x_j = j·δ``, ``y_i = i·δ`` and δ = pixel / (grid − 1) = 1/1023 (EmbedSeg's 1024-grid, pixel 1),
the same at training and test time (docs/method.md §3). The bandwidth of object k is
``s = exp(10·σ̄_raw)`` and its score is ``φ(e) = exp(−Σ_d s_d (e_d − C_d)²)``.
"""

from __future__ import annotations

import math

import torch

GRID_SPACING = 1.0 / 1023.0  # δ for EmbedSeg's grid of 1024 with pixel size 1
SIGMA_SCALE = 10.0  # s = exp(SIGMA_SCALE · σ_raw)
N_SIGMA = 2


def coordinate_grid(
    height: int,
    width: int,
    spacing: float = GRID_SPACING,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Grid coordinates of an H×W window starting at 0, shape (2, H, W): channel 0 = x, 1 = y."""
    ys = torch.arange(height, device=device, dtype=dtype) * spacing
    xs = torch.arange(width, device=device, dtype=dtype) * spacing
    return torch.stack((xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)), dim=0)


def spatial_embedding(offsets_raw: torch.Tensor, spacing: float = GRID_SPACING) -> torch.Tensor:
    """Embeddings ``tanh(o) + grid`` for raw offsets of shape (..., 2, H, W)."""
    h, w = offsets_raw.shape[-2:]
    grid = coordinate_grid(h, w, spacing, device=offsets_raw.device, dtype=offsets_raw.dtype)
    return torch.tanh(offsets_raw) + grid


def spatial_embedding_at(
    offsets_raw: torch.Tensor, pixels: torch.Tensor, spacing: float = GRID_SPACING
) -> torch.Tensor:
    """Embeddings (2, K) of the pixels with row-major indices `pixels` (K,) of raw offsets
    (2, H, W): the same values as ``spatial_embedding(offsets_raw).flatten(1)[:, pixels]``,
    computed for those pixels only."""
    width = offsets_raw.shape[-1]
    grid = torch.stack((pixels % width, pixels // width)).to(offsets_raw.dtype) * spacing
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
