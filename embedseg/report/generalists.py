"""Table 1's and the comparison page's view of the generalists: published zero-shot mSA beside
ours, the training-data (contamination) column and the cost per image.

- :func:`load_reported` reads ``config/generalist_results.yaml`` (the published values, with
  their citation; rows marked "reported (their split)").
- :func:`mark_table1` adds to Table 1's CSV the columns ``training_data``,
  ``training_data_source`` and the cost (:mod:`.cost`), and to its grid the marker
  (:data:`~.contamination.MARKER`) after a pretrained model's name where its training data
  contain the test set, and "not run: no weights" where the weights were missing.
- :func:`generalists_markdown` is the comparison page's section: per data set, every method's
  measured mSA (or why it did not run), the reported mSA, the training data and the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..baselines.weights import fix_command
from ..io import DataError
from ..methods import label as method_label
from ..methods import order as method_order
from . import contamination, cost
from .render import Cell, Grid, to_markdown
from .results import Collection
from .stats import summarise


@dataclass(frozen=True)
class Reported:
    """One published value: `label` (their name), `value` (mSA), `method` (ours, or None)."""

    label: str
    value: float
    method: str | None


@dataclass
class ReportedResults:
    source: str
    split: str
    msa: dict[str, dict[str, Reported]]


def load_reported(path: str | Path) -> ReportedResults:
    """Read the reported-results file; a malformed entry is an error naming it."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: reported results not found; pass --reported config/generalist_results.yaml") from None
    if not isinstance(data, dict) or not {"source", "msa"} <= set(data):
        raise DataError(f"{path}: expected keys source, split, msa (see the file's header comment)")
    msa = {}
    for ds, rows in data["msa"].items():
        msa[ds] = {}
        for key, row in rows.items():
            value = row.get("value") if isinstance(row, dict) else None
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise DataError(f"{path}: msa.{ds}.{key}.value must be a number in [0, 1], got {value!r}")
            msa[ds][key] = Reported(label=str(row.get("label", key)), value=float(value), method=row.get("method"))
    return ReportedResults(source=str(data["source"]), split=str(data.get("split", "their split")), msa=msa)


def not_run_text(reason: str) -> str:
    """ "not run: no weights" for a missing-weights record (its fix is in NOT_RUN.txt), else the reason."""
    return "no weights" if reason.startswith("no weights") else reason


def mark_table1(frame: pd.DataFrame, grid: Grid, collection: Collection, results: Path) -> None:
    """Table 1's hook: training-data and cost columns in the CSV; the contamination marker and
    "not run: no weights" in the grid; a note explaining both."""
    statuses = [contamination.status(m, d) for d, m in zip(frame["dataset"], frame["method"])]
    frame["training_data"] = [s for s, _ in statuses]
    frame["training_data_source"] = [src for _, src in statuses]
    costs = [
        cost.method_cost(results, d, m, list(collection.runs(d, m).index))
        if (d, m) not in collection.not_run and status == "measured"
        else dict.fromkeys(cost.COLUMNS, math.nan)
        for d, m, status in zip(frame["dataset"], frame["method"], frame["status"])
    ]
    for column in cost.COLUMNS:
        frame[column] = [c[column] for c in costs]
    for dataset, method in zip(frame["dataset"], frame["method"]):
        kind, _ = contamination.status(method, dataset)
        for row in grid.sections.get(dataset, []):
            if row[0].text != method_label(method):
                continue
            if kind:
                row[0].text += (
                    f" {contamination.MARKER}" if kind == contamination.CONTAINS else " (training data: unknown)"
                )
            reason = collection.not_run.get((dataset, method))
            if reason is not None and reason.startswith("no weights"):
                row[-1].text = f"not run: no weights (fix: `{fix_command(method)}`)"
    grid.notes.append(
        contamination.NOTE + " Cost per image (inference seconds per megapixel, peak RSS of the prediction job) "
        "of every method: table1.csv and the Generalists section of comparison_to_paper.md."
    )


def _rows(collection: Collection, results: Path, reported: ReportedResults, dataset: str) -> list[list[Cell]]:
    published = reported.msa.get(dataset, {})
    by_method = {r.method: r for r in published.values() if r.method}
    rows = []
    for method in sorted(collection.methods(dataset), key=method_order):
        reason = collection.not_run.get((dataset, method))
        runs = list(collection.runs(dataset, method).index) if reason is None else []
        if reason is None:
            ours = summarise(collection.extras.loc[(dataset, method)][["msa"]]).cells()[0]
            costs = cost.method_cost(results, dataset, method, runs)
        else:
            ours = Cell(text=f"not run: {not_run_text(reason)}")
            costs = dict.fromkeys(cost.COLUMNS, math.nan)
        theirs = by_method.get(method)
        rows.append(
            [
                Cell(text=method_label(method)),
                Cell(text=str(len(runs))),
                ours,
                Cell(text="–") if theirs is None else Cell(theirs.value),
                Cell(text=contamination.text(method, dataset)),
                *[Cell(text=cost.cell_text(costs[c])) for c in cost.COLUMNS],
            ]
        )
    for entry in published.values():
        if entry.method not in collection.methods(dataset):
            rows.append(
                [
                    Cell(text=entry.label),
                    Cell(text=f"reported ({reported.split})"),
                    Cell(text="–"),
                    Cell(entry.value),
                    Cell(text="–"),
                    Cell(text="–"),
                    Cell(text="–"),
                ]
            )
    return rows


def generalists_markdown(collection: Collection, results: Path, reported: ReportedResults) -> str:
    """The comparison page's section: measured vs reported mSA, training data, cost."""
    grid = Grid(
        columns=["Method", "Runs", "mSA (ours)", f"mSA reported ({reported.split})", "Training data", *cost.HEADERS]
    )
    for dataset in collection.datasets:
        grid.sections[dataset] = _rows(collection, results, reported, dataset)
    grid.notes = [
        "mSA = mean of AP_dsb over τ = 0.50, 0.55, … 0.95 per image, averaged over the test images (ours: "
        f"mean ± sd over runs). Reported: {reported.source}; zero-shot, on their split of the data set, which "
        'may differ from ours ("reported (their split)": no test of the difference). ' + contamination.NOTE,
        "Cost: wall time of the prediction job (model loading included) per megapixel of test image, mean over "
        "runs, and its largest peak RSS (Snakemake benchmark max_rss); GPU memory is not in the benchmark files.",
    ]
    return "## Generalists: zero-shot mSA, training data and cost\n\n" + to_markdown(grid).replace("### ", "#### ")
