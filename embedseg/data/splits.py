"""Train/val/test splits exactly as EmbedSeg's ``split_train_test`` / ``split_train_val``.

The paper code sorts the file names, calls ``np.random.seed(seed)``, shuffles ``np.arange(n)``
with the legacy global generator and holds out the first ⌊subset·n⌋ indices (or the first
`subset` when it is a count). ``RandomState(seed).shuffle`` draws the identical permutation
without touching NumPy's global state.

The seed: the paper's code (EmbedSeg v0.1.0, the version of the paper's experiments) uses 1234,
the default of its ``split_train_test`` / ``split_train_val`` / ``split_train_crops`` (its
notebooks pass none); EmbedSeg's code since commit e2ec7ef (2021-04-11, after the paper) uses
1000. :data:`PAPER_SPLIT_SEED` is the default here; :data:`CURRENT_CODE_SPLIT_SEED` gives the
splits of today's EmbedSeg.

Re-splits: the paper's nine runs share one split. With re-splits (:func:`validation_seed`),
run *k* draws its validation split with seed base + k (the test split keeps the base seed, so
every run is scored on the same images), and the spread over runs then includes the variance
due to the choice of validation images.
"""

from __future__ import annotations

import numpy as np

PAPER_SPLIT_SEED = 1234  # EmbedSeg v0.1.0 (the paper's code)
CURRENT_CODE_SPLIT_SEED = 1000  # EmbedSeg from e2ec7ef (2021-04-11) on


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


def validation_seed(base: int, resplit_run: int | None) -> int:
    """Seed of a run's validation split: `base` (the paper: all runs share one split), or
    base + k for run k of re-split runs."""
    return base if resplit_run is None else base + resplit_run
