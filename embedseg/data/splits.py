"""Train/val/test splits exactly as EmbedSeg's ``split_train_test`` / ``split_train_val``.

The paper code sorts the file names, calls ``np.random.seed(1000)``, shuffles
``np.arange(n)`` with the legacy global generator and holds out the first ⌊subset·n⌋ indices
(or the first `subset` when it is a count). ``RandomState(seed).shuffle`` draws the identical
permutation without touching NumPy's global state. Seed 1000 gives the paper's splits; other
seeds give the re-splits of the independent runs.
"""

from __future__ import annotations

import numpy as np


def held_out_count(n: int, subset: float | int) -> int:
    """Number of held-out items: ⌊subset·n⌋ for a fraction, `subset` itself for a count."""
    if isinstance(subset, float):
        if not 0.0 <= subset < 1.0:
            raise ValueError(f"split fraction {subset} must lie in [0, 1)")
        return int(subset * n)
    if not 0 <= subset < n:
        raise ValueError(f"cannot hold out {subset} of {n} images; at least one must stay for training")
    return int(subset)


def paper_split(n: int, subset: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 of a sorted file list into (kept, held_out) as the paper code does.

    Returns two int arrays in the shuffled order the paper iterates them in; sort them if the
    order matters to you.
    """
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    k = held_out_count(n, subset)
    return indices[k:], indices[:k]
