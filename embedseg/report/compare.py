"""`embedseg compare A B --results DIR`: per-image paired comparison of two methods.

Per data set where both methods have scores, A − B per (seed, test image, τ) from the scores
files (:func:`embedseg.report.stats.paired_images`): the mean and median difference over the
images with their 95 % two-level bootstrap intervals, the Wilcoxon signed-rank p of the
per-image differences (only where the number of images can reach p < 0.05), P(A > B), the
number of seeds and of images, and the win/tie/loss verdict per τ (win: the interval of the
mean difference lies above 0). Runs of the same trained model (TTA on/off) are paired by seed;
separately trained models are resampled run by run, so that the variance of training stays in.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout
from ..io import DataError, atomic_write
from ..outputs import check_output_file
from .comparison import paired_note, paired_rows
from .render import Cell, Grid, to_markdown
from .results import collect, paired_scores
from .stats import Paired, paired_images, tau_headers
from .tables import METRICS

VERDICT = {1: "win", 0: "tie", -1: "loss"}  # NaN: "no verdict" (no interval)
PARTS = ("mean", "mean_low", "mean_high", "median", "median_low", "median_high", "p", "prob")


def compare(
    results: Path, a: str, b: str, datasets: Sequence[str] | None = None, metric: str = "ap"
) -> dict[str, Paired]:
    """{data set: A − B per image} for every data set (of `datasets`, default all) where both
    methods have scores; a :class:`DataError` if there is none."""
    if not datasets:  # those with scores of both (collect would refuse a method without scores)
        datasets = [
            d.name
            for d in sorted((Path(results) / "scores").glob("*"))
            if all(layout.scores_dir(results, d.name, m).is_dir() for m in (a, b))
        ]
    if not datasets:
        raise DataError(f"{results}: no data set has scores of both {a} and {b}")
    collection = collect(results, datasets, [a, b], metric=metric)
    found = {
        dataset: paired_images(*paired_scores(collection, dataset, a, b), taus=collection.taus_of(dataset))
        for dataset in collection.datasets
        if not {(dataset, a), (dataset, b)} & set(collection.not_run)
    }
    if not found:
        raise DataError(f"{results}: {a} or {b} did not run on {', '.join(datasets)}")
    return found


def compare_frame(found: dict[str, Paired], a: str, b: str) -> pd.DataFrame:
    """One row per (data set, τ): the fields of :class:`Paired` and the verdict."""
    rows = []
    for dataset, paired in found.items():
        for i, tau in enumerate(tau_headers(paired.taus)):
            rows.append(
                dict(
                    dataset=dataset,
                    a=a,
                    b=b,
                    tau=tau,
                    n_seeds_a=paired.n_seeds,
                    n_seeds_b=paired.n_seeds_b,
                    n_images=paired.n_images,
                    pairing="by seed (same model)" if paired.same_model else "two-level bootstrap",
                    **{part: getattr(paired, part)[i] for part in PARTS},
                    verdict=_verdict(paired.verdicts()[i]),
                )
            )
    return pd.DataFrame(rows)


def _verdict(value: float) -> str:
    return "no verdict" if np.isnan(value) else VERDICT[int(value)]


def compare_markdown(found: dict[str, Paired], a: str, b: str, metric: str = "ap") -> str:
    """The comparison as Markdown: per data set the rows of :func:`paired_rows` and the verdicts."""
    name = METRICS[metric][0]
    first = next(iter(found.values()))
    grid = Grid(columns=["", "n", *tau_headers(first.taus)])
    for dataset, paired in found.items():
        if paired.taus != first.taus:
            grid.section_columns[dataset] = ["", "n", *tau_headers(paired.taus)]
        verdicts = [Cell(text=_verdict(v)) for v in paired.verdicts()]
        grid.sections[dataset] = [*paired_rows(paired, a, b), [Cell(text="  verdict"), Cell(), *verdicts]]
    grid.notes = [
        f"Δ{name} = {name}({a}) − {name}({b}). {paired_note(name)} Verdict per τ: win = the interval of "
        "the mean Δ lies above 0, loss = below 0, tie = it contains 0, no verdict = no interval."
    ]
    return f"# {a} vs {b}: per-image paired comparison of {name}\n\n{to_markdown(grid)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="method A (e.g. embedseg-medoid-tta)")
    parser.add_argument("b", metavar="B", help="method B, compared with A as A − B")
    parser.add_argument("--results", type=Path, required=True, metavar="RESULTS_DIR", help="one workflow run")
    parser.add_argument("--datasets", nargs="+", metavar="DS", help="data sets (default: every one with both)")
    parser.add_argument("--metric", choices=list(METRICS), default="ap", help="score compared (default: AP_dsb)")
    parser.add_argument("--out", type=Path, metavar="CSV", help="also write one row per data set and τ")
    parser.add_argument("--force", action="store_true", help="replace CSV even if `embedseg compare` did not write it")


def is_compare_file(path: Path) -> bool:
    """True for a CSV that `embedseg compare` wrote (its header starts with dataset,a,b,)."""
    with open(path, "rb") as handle:
        return handle.readline().startswith(b"dataset,a,b,")


def run(args: argparse.Namespace) -> int:
    if args.out:
        inputs = {f"RESULTS_DIR/{name}": args.results / name for name in ("scores", "predictions", "data")}
        check_output_file(args.out, inputs, is_compare_file, "embedseg compare", args.force)
    found = compare(args.results, args.a, args.b, args.datasets, args.metric)
    if args.out:
        with atomic_write(args.out) as tmp:
            compare_frame(found, args.a, args.b).to_csv(tmp, index=False, float_format="%.6g")
    print(compare_markdown(found, args.a, args.b, args.metric))
    return 0
