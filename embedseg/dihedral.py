"""The 8 dihedral transforms used for training augmentation and test-time augmentation.

Transform ``(k, flip)``: rotate by k·90° in the (Y, X) plane — ``np.rot90`` direction, from Y
towards X — then, if `flip`, flip along Y. Works on NumPy arrays and torch tensors whose last
two axes are (Y, X).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, flip) for k in range(4) for flip in (False, True))


def _rot90(x: Any, k: int) -> Any:
    if isinstance(x, np.ndarray):
        return np.rot90(x, k, axes=(-2, -1))
    return x.rot90(k, dims=(-2, -1))


def _flip_y(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.flip(x, axis=-2)
    return x.flip(-2)


def forward(x: Any, k: int, flip: bool) -> Any:
    """Apply transform (k, flip) to the last two axes of `x`."""
    x = _rot90(x, k)
    return _flip_y(x) if flip else x


def inverse(x: Any, k: int, flip: bool) -> Any:
    """Undo :func:`forward` spatially (the vector components are not touched)."""
    if flip:
        x = _flip_y(x)
    return _rot90(x, -k)


def all_transforms() -> Iterator[tuple[int, bool]]:
    return iter(TRANSFORMS)
