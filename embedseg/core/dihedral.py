"""The rotations and flips used for test-time augmentation (and 2D training augmentation), and how
to undo one on a network output (docs/method.md §7.3).

A transform is a tuple ``(k, flip_y)`` in 2D and ``(k, flip_y, flip_z)`` in 3D: rotate by k·90°
in the (Y, X) plane — ``np.rot90`` direction, from Y towards X — then flip along Y if `flip_y`,
then along Z if `flip_z` (the flips commute). It acts on the last D axes of NumPy arrays and
torch tensors: (..., Y, X) in 2D, (..., Z, Y, X) in 3D.

2D: the 8 dihedral transforms of the square (:data:`TRANSFORMS`). 3D: the official EmbedSeg 0.2.5
test-time set (``apply_tta_3d``), 16 transforms: the 4 rotations about the z axis, each without
flip, flipped along Y, along Z, and along both — in the official index order (index = k + 4·flip_y
+ 8·flip_z). Z is never swapped with Y or X, so anisotropic volumes keep their voxel size per axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Transform = tuple[int, ...]  # (k, flip_y) in 2D, (k, flip_y, flip_z) in 3D

TRANSFORMS: tuple[Transform, ...] = tuple((k, flip) for k in range(4) for flip in (False, True))
TRANSFORMS_3D: tuple[Transform, ...] = tuple(
    (k, flip_y, flip_z) for flip_z in (False, True) for flip_y in (False, True) for k in range(4)
)


def transforms(ndim: int) -> tuple[Transform, ...]:
    """The test-time augmentation set for D = `ndim`: 8 transforms in 2D, 16 in 3D."""
    if ndim == 2:
        return TRANSFORMS
    if ndim == 3:
        return TRANSFORMS_3D
    raise ValueError(f"transforms exist for 2D and 3D data, not ndim={ndim}")


def _rot90(x: Any, k: int) -> Any:
    if isinstance(x, np.ndarray):
        return np.rot90(x, k, axes=(-2, -1))
    return x.rot90(k, dims=(-2, -1))


def _flip(x: Any, axis: int) -> Any:
    if isinstance(x, np.ndarray):
        return np.flip(x, axis=axis)
    return x.flip(axis)


def _flip_axes(t: Transform) -> list[int]:
    """Axes flipped by `t`: -2 (Y) if flip_y, -3 (Z) if flip_z."""
    return [axis for axis, flip in zip((-2, -3), t[1:]) if flip]


def forward(x: Any, t: Transform) -> Any:
    """Apply transform `t` to the last len(t) axes of `x` (a view where NumPy allows)."""
    x = _rot90(x, t[0])
    for axis in _flip_axes(t):
        x = _flip(x, axis)
    return x


def inverse(x: Any, t: Transform) -> Any:
    """Undo :func:`forward` spatially (channel values are not touched; see :func:`invert_output`)."""
    for axis in _flip_axes(t):
        x = _flip(x, axis)
    return _rot90(x, -t[0])


def invert_components(output: Any, t: Transform, ndim: int) -> Any:
    """Map the channels of a spatially back-transformed network output (..., 2D+1, *spatial)
    [o_x, o_y(, o_z), σ_x, σ_y(, σ_z), seed] of transform `t` back to the original frame.

    A flip negates the offset along its axis; a rotation by k·90° from Y towards X turned the
    original (x, y) components into the ones undone here, and swaps the bandwidths σ_x, σ_y for
    odd k; o_z, σ_z and the seed only move with their voxel. Works on raw values (tanh is odd).
    """
    if len(t) != ndim:
        raise ValueError(f"transform {t} is not a {ndim}D transform")
    axis = -ndim - 1
    channels = [output[(..., c) + (slice(None),) * ndim] for c in range(output.shape[axis])]
    offsets, sigmas = channels[:ndim], channels[ndim : 2 * ndim]
    for d, flip in zip((1, 2), t[1:]):  # flip_y negates o_y, flip_z negates o_z
        if flip:
            offsets[d] = -offsets[d]
    o_x, o_y = offsets[0], offsets[1]
    offsets[0], offsets[1] = {0: (o_x, o_y), 1: (-o_y, o_x), 2: (-o_x, -o_y), 3: (o_y, -o_x)}[t[0] % 4]
    if t[0] % 2:
        sigmas[0], sigmas[1] = sigmas[1], sigmas[0]
    restored = offsets + sigmas + channels[2 * ndim :]
    if isinstance(output, np.ndarray):
        return np.stack(restored, axis=axis)
    import torch  # here: the NumPy users of this module (the StarDist baseline) need no torch

    return torch.stack(restored, dim=axis)


def invert_output(output: Any, t: Transform, ndim: int) -> Any:
    """The network output (..., 2D+1, *spatial) for a transformed input, brought back to the
    frame of the untransformed input: spatially (:func:`inverse`) and per vector component
    (:func:`invert_components`). Averaging this over :func:`transforms` gives the TTA output."""
    return invert_components(inverse(output, t), t, ndim)
