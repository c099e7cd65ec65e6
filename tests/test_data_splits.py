"""Splits as EmbedSeg's split_train_test / split_train_val (seed 1000) and seeded re-splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedseg.data.formats import Sample, Source
from embedseg.data.prepare import split_samples
from embedseg.data.registry import get_spec
from embedseg.data.splits import paper_split


def legacy_paper_code(n: int, subset_len: int, seed: int = 1000) -> tuple[list[int], list[int]]:
    """What the paper code does, with NumPy's global legacy generator (state restored afterwards)."""
    state = np.random.get_state()
    try:
        indices = np.arange(n)
        np.random.seed(seed)
        np.random.shuffle(indices)
    finally:
        np.random.set_state(state)
    return list(indices[subset_len:]), list(indices[:subset_len])


@pytest.mark.parametrize(
    "n, subset, sizes",
    [(100, 0.5, (50, 50)), (50, 5, (45, 5)), (497, 50, (447, 50)), (447, 0.15, (380, 67)), (45, 0.15, (39, 6))],
)
def test_paper_sizes_and_permutation(n, subset, sizes):
    keep, held = paper_split(n, subset, seed=1000)
    assert (len(keep), len(held)) == sizes
    assert (list(keep), list(held)) == legacy_paper_code(n, sizes[1])
    assert sorted([*keep, *held]) == list(range(n))  # disjoint and complete


def test_deterministic_and_seed_dependent():
    first, again, other = (paper_split(50, 0.15, seed) for seed in (1000, 1000, 1001))
    np.testing.assert_array_equal(first[1], again[1])
    assert set(first[1]) != set(other[1]) and len(other[1]) == 7


def test_bad_subsets_are_refused():
    with pytest.raises(ValueError):
        paper_split(10, 1.5, 1000)
    with pytest.raises(ValueError):
        paper_split(10, 10, 1000)


def samples(names: list[str]) -> list[Sample]:
    return [Sample(name, Path(f"{name}.tif"), (Path(f"m/{name}.tif"),)) for name in names]


def test_split_samples_keeps_a_source_test_set():
    pool = samples([f"t{i:02d}" for i in range(45)])
    test = samples(["x1", "x2", "x3", "x4", "x5"])
    splits = split_samples(Source("embedseg", pool, test), get_spec("usiigaci-2017"), seed=1000, limit=None)
    assert [s.name for s in splits["test"]] == ["x1", "x2", "x3", "x4", "x5"]
    assert (len(splits["train"]), len(splits["val"])) == (39, 6)
    _, held = paper_split(45, 0.15, 1000)
    assert [s.name for s in splits["val"]] == [f"t{i:02d}" for i in sorted(held)]


def test_split_samples_bbbc010_holds_out_half_and_validates_on_crops():
    pool = samples([f"w{i:03d}" for i in range(100)])
    splits = split_samples(Source("embedseg", pool), get_spec("bbbc010-2012"), seed=1000, limit=None)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [50, 0, 50]
    assert not {s.name for s in splits["train"]} & {s.name for s in splits["test"]}
    resplit = split_samples(Source("embedseg", pool), get_spec("bbbc010-2012"), seed=7, limit=None)
    assert {s.name for s in resplit["test"]} != {s.name for s in splits["test"]}


def test_limit_caps_a_test_count_at_half():
    pool = samples([f"n{i:03d}" for i in range(30)])
    splits = split_samples(Source("dsb-stage1", pool), get_spec("dsb-2018"), seed=1000, limit=10)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 0, 5]  # ⌊0.15·5⌋ = 0 val
    assert {s.name for split in splits.values() for s in split} == {f"n{i:03d}" for i in range(10)}
