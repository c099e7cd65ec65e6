"""Splits as EmbedSeg's split_train_test / split_train_val (seed 1234 of the paper's code, 1000 of
the current code), seeded re-splits per run, and the workflow's `resplit: true`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedseg.cli import build_parser, main
from embedseg.data.formats import Sample, Source
from embedseg.data.prepare import split_samples
from embedseg.data.registry import get_spec
from embedseg.data.splits import CURRENT_CODE_SPLIT_SEED, PAPER_SPLIT_SEED, paper_split, validation_seed

REPO = Path(__file__).resolve().parents[1]


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
    [
        (100, 0.5, (50, 50)),
        (50, 5, (45, 5)),
        (497, 50, (447, 50)),
        (447, 0.15, (380, 67)),
        (45, 0.15, (39, 6)),
    ],
)
@pytest.mark.parametrize("seed", [1234, 1000])
def test_paper_sizes_and_permutation(n, subset, sizes, seed):
    keep, held = paper_split(n, subset, seed=seed)
    assert (len(keep), len(held)) == sizes
    assert (list(keep), list(held)) == legacy_paper_code(n, sizes[1], seed)
    assert sorted([*keep, *held]) == list(range(n))  # disjoint and complete


def test_paper_seed_is_the_default_and_the_current_code_seed_a_choice():
    # EmbedSeg v0.1.0 (the paper's code): split_train_test(..., seed=1234); 1000 only from e2ec7ef on.
    assert (PAPER_SPLIT_SEED, CURRENT_CODE_SPLIT_SEED) == (1234, 1000)
    # --seed not given: the data set's (2-D paper sets 1234, the v0.2.x 3-D sets 1000; issue 30)
    assert build_parser("prepare").parse_args(["prepare", "dsb-2018", "--out", "x"]).seed is None
    assert get_spec("dsb-2018").split_seed == 1234 and get_spec("Mouse-Organoid-Cells-CBG").split_seed == 1000
    assert build_parser("crops").parse_args(["crops", "data", "--out", "x"]).seed is None  # dataset.json's
    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text())["split_seed"] == "auto"
    # The two seeds really give other DSB validation splits (447 images, 67 held out).
    assert set(paper_split(447, 0.15, 1234)[1]) != set(paper_split(447, 0.15, 1000)[1])


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
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 1, 5]  # ⌊0.15·5⌋ = 0: one val image instead
    assert {s.name for split in splits.values() for s in split} == {f"n{i:03d}" for i in range(10)}


def test_resplit_changes_the_validation_split_only():
    assert (validation_seed(1234, None), validation_seed(1234, 3)) == (1234, 1237)
    pool = samples([f"n{i:03d}" for i in range(60)])
    shared = split_samples(Source("folder", pool), get_spec("dsb-2018"), seed=1234, limit=None)
    run3 = split_samples(Source("folder", pool), get_spec("dsb-2018"), seed=1234, limit=None, val_seed=1237)
    assert [s.name for s in run3["test"]] == [s.name for s in shared["test"]]
    assert {s.name for s in run3["val"]} != {s.name for s in shared["val"]}
    assert len(run3["val"]) == len(shared["val"]) == 4  # test: 50 capped at half the pool; ⌊0.15 · 30⌋ val
    assert {s.name for s in run3["train"] + run3["val"]} == {s.name for s in shared["train"] + shared["val"]}


def test_prepare_resplit_run_on_a_real_synthetic_set(tmp_path):
    def prepare(out: Path, *options: str) -> dict[str, list[str]]:
        assert (
            main(
                [
                    "prepare",
                    "synthetic-nuclei",
                    "--out",
                    str(out),
                    "--n-images",
                    "20",
                    "--image-size",
                    "48",
                    *options,
                ]
            )
            == 0
        )
        return {split: sorted(p.name for p in (out / split / "images").iterdir()) for split in ("train", "val", "test")}

    shared, run2 = prepare(tmp_path / "shared"), prepare(tmp_path / "run2", "--resplit-run", "2")
    assert run2["test"] == shared["test"] and run2["val"] != shared["val"]
    assert sorted(run2["train"] + run2["val"]) == sorted(shared["train"] + shared["val"])
    extra = json.loads((tmp_path / "run2" / "dataset.json").read_text())["extra"]
    assert (extra["split_seed"], extra["val_split_seed"]) == (1234, 1236)


def test_workflow_resplit_prepares_and_crops_every_run(tmp_path):
    (tmp_path / "config").symlink_to(REPO / "config")
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config.update(seeds=[1, 2], resplit=True, split_seed=1234)
    (tmp_path / "resplit.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--workflow-profile",
            "none",
            "-n",
            "-p",
            "--configfile",
            str(tmp_path / "resplit.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in (1, 2):
        assert f"--out results/test/data-resplit/synthetic-nuclei/seed{seed} " in done.stdout
        assert f"--resplit-run {seed} " in done.stdout
        assert (
            f"crops results/test/data-resplit/synthetic-nuclei/seed{seed} --out "
            f"results/test/crops-resplit/synthetic-nuclei/medoid/seed{seed} --center medoid "
            f"--seed {1234 + seed}"
        ) in done.stdout
        assert f"train results/test/crops-resplit/synthetic-nuclei/medoid/seed{seed} " in done.stdout
    # Prediction and scoring stay on the shared data set's test images.
    assert "--images results/test/data/synthetic-nuclei/test/images" in done.stdout
