"""`embedseg tables`: Table 1, Table 2 and the comparison with the paper from per-image scores.

Per run (seed), AP_dsb(τ) is the mean over test images of the per-image ap; a table cell is
the mean ± sample standard deviation (ddof = 1) of that over the runs. Table 2 pairs the runs
of each ablation with EmbedSeg's run of the same seed and reports the mean ± sd of the paired
differences, as the paper's ΔAP. Best and second best per τ are marked among our measured rows
only: the literature rows come from other set-ups and report only some thresholds.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError, atomic_write
from ..methods import EMBEDSEG
from ..methods import label as method_label
from ..methods import order as method_order
from .paper import Paper, PaperRow, load_paper
from .render import Cell, Grid, rank_columns, to_latex, to_markdown
from .results import TAUS, Collection, collect, training_memory

log = logging.getLogger(__name__)

ABLATIONS = {
    "embedseg-centroid-tta": "medoid → centroid",
    "embedseg-medoid-notta": "no TTA",
    "embedseg-centroid-notta": "both (= Neven et al.)",
}
# Variants that only answer the ablation; Table 1 shows EmbedSeg and Neven et al. of the four.
TABLE2_ONLY = ("embedseg-centroid-tta", "embedseg-medoid-notta")
MEMORY_KINDS = {"cuda_max_allocated": "CUDA", "cpu_peak_rss": "CPU RSS", "mixed": "mixed"}
TAU_HEADERS = [f"{t:.2f}" for t in TAUS]
# The paper prints three decimals: its number is "within" our interval up to that rounding.
PAPER_ROUNDING = 0.0005


def summarise(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample sd (ddof = 1; NaN for one run) over runs. runs: (n_runs, len(TAUS))."""
    values = runs.to_numpy(dtype=float)
    sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1], np.nan)
    return values.mean(axis=0), sd


def memory_text(memory: tuple[int, str] | None) -> str:
    if memory is None:
        return "–"
    peak, kind = memory
    return f"{peak / 2**30:.2f} ({MEMORY_KINDS[kind]})"


Row = tuple[dict, list[Cell]]  # (CSV record, rendered cells) of one table row


def _measured_row(collection: Collection, results: Path, dataset: str, method: str) -> Row:
    runs = collection.runs(dataset, method)
    mean, sd = summarise(runs)
    memory = training_memory(results, dataset, method, list(runs.index))
    record = dict(status="measured", runs=len(runs), **_per_tau("ap", mean, sd), memory_gib=None if memory is None else memory[0] / 2**30,
                  memory_kind=None if memory is None else memory[1], note="")
    return record, [Cell(text=str(len(runs))), *[Cell(m, s) for m, s in zip(mean, sd)], Cell(text=memory_text(memory)), Cell()]


def _not_run_row(reason: str) -> Row:
    record = dict(status="not run", runs=0, note=reason)
    return record, [Cell(text="0"), *[Cell(text="–") for _ in TAUS], Cell(text="–"), Cell(text=f"not run: {reason}")]


def _reported_row(row: PaperRow) -> Row:
    record = dict(status="reported", runs=None, **_per_tau("ap", row.ap, np.full(len(TAUS), np.nan)), note=row.citation or "")
    return record, [Cell(text="reported"), *[Cell(v) for v in row.ap], Cell(text=row.gpu_memory or "–"), Cell(text=f"reported: {row.citation}")]


def table1(collection: Collection, paper: Paper, results: Path) -> tuple[pd.DataFrame, Grid]:
    """Table 1: per data set our measured methods, the methods that could not run, and the paper's
    reported-only literature rows. Returns the CSV frame and the rendered grid."""
    grid = Grid(columns=["Method", "Runs", *TAU_HEADERS, "Memory (GiB)", "Note"])
    records = []
    for dataset in collection.datasets:
        rows: list[tuple[tuple[int, str], str, str, Row]] = []  # (sort key, method, label, row)
        for method in collection.methods(dataset):
            if method in TABLE2_ONLY:
                continue
            reason = collection.not_run.get((dataset, method))
            row = _not_run_row(reason) if reason is not None else _measured_row(collection, results, dataset, method)
            rows.append((method_order(method), method, method_label(method), row))
        for method, paper_row in paper.table1.get(dataset, {}).items():
            if paper_row.reported:  # grouped with the other non-EmbedSeg methods, before ours
                rows.append(((1, method), method, paper_row.label or method, _reported_row(paper_row)))
        rows.sort(key=lambda r: r[0])
        rank_columns([cells for *_, (record, cells) in rows if record["status"] == "measured"], range(1, 1 + len(TAUS)))
        records += [dict(dataset=dataset, method=method, label=label, **record) for _, method, label, (record, _) in rows]
        grid.sections[dataset] = [[Cell(text=label), *cells] for _, _, label, (_, cells) in rows]
    grid.notes = [
        "AP_dsb per run = mean over test images of TP/(TP+FP+FN) at IoU threshold τ; cells = mean ± "
        "sample standard deviation (ddof = 1) over runs (seeds). Bold = best, underlined = second best "
        "per τ among our measured rows (reported literature rows are not ranked). Memory = largest training "
        "peak over the runs: CUDA = torch max allocated on the GPU, CPU RSS = peak resident memory of the "
        "training process (not comparable with the paper's GPU memory)."
    ]
    columns = ["dataset", "method", "label", "status", "runs", *_tau_columns("ap"), "memory_gib", "memory_kind", "note"]
    return pd.DataFrame.from_records(records, columns=columns), grid


def _per_tau(name: str, mean: np.ndarray, sd: np.ndarray) -> dict[str, float]:
    """CSV fields {name}_{τ} (means) and sd_{τ}."""
    return dict(zip(_tau_columns(name), [*mean, *sd]))


def _tau_columns(name: str) -> list[str]:
    return [*(f"{name}_{h}" for h in TAU_HEADERS), *(f"sd_{h}" for h in TAU_HEADERS)]


def paired_delta(collection: Collection, dataset: str, variant: str) -> pd.DataFrame:
    """ΔAP per seed (rows) and τ (columns): the variant's run minus EmbedSeg's run of the same seed."""
    base, other = collection.runs(dataset, EMBEDSEG), collection.runs(dataset, variant)
    common = base.index.intersection(other.index)
    if common.empty:
        raise DataError(f"{dataset}: {variant} and {EMBEDSEG} share no seed, so Table 2 cannot pair runs; run both with the same --seeds")
    if len(common) < max(len(base), len(other)):
        log.warning("%s: %s paired with %s on seeds %s only", dataset, variant, EMBEDSEG, list(common))
    return other.loc[common] - base.loc[common]


def table2(collection: Collection) -> tuple[pd.DataFrame, Grid]:
    """Table 2 (ablation): EmbedSeg's AP and each variant's paired ΔAP, per data set."""
    grid = Grid(columns=["Variant", "Runs", *TAU_HEADERS])
    records = []
    for dataset in collection.datasets:
        methods = collection.methods(dataset)
        variants = [v for v in ABLATIONS if v in methods and (dataset, v) not in collection.not_run]
        if EMBEDSEG not in methods or not variants:
            continue
        runs = collection.runs(dataset, EMBEDSEG)
        mean, sd = summarise(runs)
        records.append(dict(dataset=dataset, method=EMBEDSEG, label="EmbedSeg", quantity="AP", runs=len(runs), **_per_tau("value", mean, sd)))
        rows = [[Cell(text="EmbedSeg"), Cell(text=str(len(runs))), *[Cell(m, s) for m, s in zip(mean, sd)]]]
        for variant in variants:
            delta = paired_delta(collection, dataset, variant)
            mean, sd = summarise(delta)
            records.append(dict(dataset=dataset, method=variant, label=ABLATIONS[variant], quantity="delta_AP", runs=len(delta), **_per_tau("value", mean, sd)))
            rows.append([Cell(text=ABLATIONS[variant]), Cell(text=str(len(delta))), *[Cell(m, s, signed=True) for m, s in zip(mean, sd)]])
        grid.sections[dataset] = rows
    grid.notes = [
        "EmbedSeg row: AP_dsb, mean ± sd (ddof = 1) over runs. Other rows: ΔAP = AP(variant) − AP(EmbedSeg) "
        "of the same seed, mean ± sd (ddof = 1) of these paired differences; Runs = number of pairs."
    ]
    if not grid.sections:
        grid.notes.insert(0, "No data set has EmbedSeg together with an ablation variant; Table 2 is empty.")
    columns = ["dataset", "method", "label", "quantity", "runs", *_tau_columns("value")]
    return pd.DataFrame.from_records(records, columns=columns), grid


def within_two_sd(ours: np.ndarray, sd: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Per τ: True/False whether the paper's number lies in our mean ± 2 sd; NaN where undefined
    (fewer than two runs, or the paper leaves the cell empty)."""
    inside = (np.abs(ours - theirs) <= 2 * sd + PAPER_ROUNDING).astype(float)
    inside[np.isnan(sd) | np.isnan(theirs) | np.isnan(ours)] = np.nan
    return inside


def _comparison_rows(name: str, n_runs: int, mean: np.ndarray, sd: np.ndarray, theirs: np.ndarray, signed: bool,
                     memory: tuple[str, str] = ("", ""), paper_label: str = "paper") -> tuple[list[list[Cell]], np.ndarray]:
    """Rows ours / paper / difference / within ± 2 sd of one method (columns: name, row kind,
    τ…, memory) and the per-τ verdicts of :func:`within_two_sd`."""
    inside = within_two_sd(mean, sd, theirs)
    rows = [
        [Cell(text=name), Cell(text=f"ours (n = {n_runs})"), *[Cell(m, s, signed=signed) for m, s in zip(mean, sd)], Cell(text=memory[0])],
        [Cell(), Cell(text=paper_label), *[Cell(v, signed=signed) for v in theirs], Cell(text=memory[1])],
        [Cell(), Cell(text="difference"), *[Cell(v, signed=True) for v in mean - theirs], Cell()],
        [Cell(), Cell(text="within ± 2 sd"), *[Cell(text="" if math.isnan(v) else ("yes" if v else "NO")) for v in inside], Cell()],
    ]
    return rows, inside


def _absent_rows(name: str, status: str, theirs: np.ndarray, signed: bool, paper_memory: str = "",
                 paper_label: str = "paper") -> list[list[Cell]]:
    """Rows for a paper method without runs here: its status, then the paper's numbers."""
    return [
        [Cell(text=name), Cell(text=status), *[Cell(text="–") for _ in TAUS], Cell()],
        [Cell(), Cell(text=paper_label), *[Cell(v, signed=signed) for v in theirs], Cell(text=paper_memory)],
    ]


def _paper_label(row: PaperRow) -> str:
    return f"paper ({row.note})" if row.note else "paper"


def compare_dataset(collection: Collection, paper: Paper, results: Path, dataset: str) -> tuple[Grid, list[tuple[str, np.ndarray]]]:
    """Our Table 1 and Table 2 rows of one paper data set beside the paper's; also the per-τ
    verdicts (:func:`within_two_sd`) per compared row."""
    grid = Grid(columns=["Method", "", *TAU_HEADERS, "Train memory"])
    verdicts: list[tuple[str, np.ndarray]] = []
    measured = {m for m in collection.methods(dataset) if (dataset, m) not in collection.not_run}
    paper_rows = paper.table1.get(dataset, {})
    rows1: list[list[Cell]] = []
    for method in sorted(set(paper_rows) | (measured - set(TABLE2_ONLY)), key=method_order):
        row = paper_rows.get(method)
        name = row.label if row is not None and row.label else method_label(method)
        if method not in measured:
            if row.reported:
                status = f"reported: {row.citation}"
            else:
                status = f"not run: {collection.not_run[(dataset, method)]}" if (dataset, method) in collection.not_run else "not in this run"
            rows1 += _absent_rows(name, status, row.ap, signed=False, paper_memory=row.gpu_memory or "–", paper_label=_paper_label(row))
            continue
        runs = collection.runs(dataset, method)
        mean, sd = summarise(runs)
        ours_memory = memory_text(training_memory(results, dataset, method, list(runs.index)))
        if row is None:  # measured here, but the paper has no such row for this data set
            rows1.append([Cell(text=name), Cell(text=f"ours (n = {len(runs)}), not in the paper"),
                          *[Cell(m, s) for m, s in zip(mean, sd)], Cell(text=ours_memory)])
            continue
        rows, inside = _comparison_rows(name, len(runs), mean, sd, row.ap, False, (ours_memory, row.gpu_memory or "–"), _paper_label(row))
        rows1 += rows
        verdicts.append((name, inside))
    grid.sections["Table 1: AP_dsb"] = rows1
    rows2: list[list[Cell]] = []
    for variant, theirs in paper.table2.get(dataset, {}).items():
        if variant not in measured or EMBEDSEG not in measured:
            rows2 += _absent_rows(ABLATIONS[variant], "not in this run", theirs, signed=True)
            continue
        delta = paired_delta(collection, dataset, variant)
        rows, inside = _comparison_rows(ABLATIONS[variant], len(delta), *summarise(delta), theirs, signed=True)
        rows2 += rows
        verdicts.append((f"ΔAP {ABLATIONS[variant]}", inside))
    if rows2:
        grid.sections["Table 2: ΔAP relative to EmbedSeg"] = rows2
    return grid, verdicts


def verdict(verdicts: list[tuple[str, np.ndarray]]) -> str:
    """One line: in how many (row, τ) cells the paper's number lies within our mean ± 2 sd, and
    which rows miss it at how many τ."""
    compared = [(name, inside[~np.isnan(inside)]) for name, inside in verdicts]
    compared = [(name, inside) for name, inside in compared if inside.size]
    if not compared:
        return "Verdict: none — no method has both the paper's number and at least two runs here."
    m = sum(inside.size for _, inside in compared)
    k = int(sum(inside.sum() for _, inside in compared))
    if k == m:
        return f"Verdict: consistent with the paper — its number lies within our mean ± 2 sd in all {m} cells."
    misses = ", ".join(f"{name} ({int(inside.size - inside.sum())}/{inside.size} τ)" for name, inside in compared if inside.sum() < inside.size)
    quality = "mostly consistent with" if k >= 0.75 * m else "not consistent with"
    return f"Verdict: {quality} the paper — within our mean ± 2 sd in {k} of {m} cells; outside at: {misses}."


def comparison_markdown(collection: Collection, paper: Paper, results: Path, not_comparable: str | None) -> str:
    """`comparison_to_paper.md`: ours vs the paper per data set, with a one-line verdict each."""
    out = [
        "# Comparison with the paper",
        "",
        f"Results: `{results}`. Paper: {paper.source} (EmbedSeg and Neven et al. rows: means over {paper.runs} runs).",
        "Ours: mean ± sample sd (ddof = 1) over our runs (n); difference = ours − paper; "
        "\"within ± 2 sd\" = the paper's number lies in our mean ± 2 sd (allowing for the paper's "
        "rounding to three decimals; needs n ≥ 2). Table 2 rows pair runs by seed. Train memory: "
        "ours = largest peak over runs in GiB (CUDA = GPU max allocated, CPU RSS = process peak), "
        "paper = training GPU memory as printed.",
        "",
    ]
    if not_comparable:
        out += [f"**Not comparable to the paper: {not_comparable}** — numbers are listed for reference only, without verdicts.", ""]
    for dataset in collection.datasets:
        out += [f"## {dataset}", ""]
        if dataset not in paper.table1:
            out += [f"Not in the paper: no comparison for {dataset}.", ""]
            continue
        grid, verdicts = compare_dataset(collection, paper, results, dataset)
        out.append(f"Not comparable to the paper ({not_comparable}): no verdict." if not_comparable else verdict(verdicts))
        out += ["", to_markdown(grid).replace("\n### ", "\n#### ").replace("### ", "#### ", 1)]
    return "\n".join(out).rstrip() + "\n"


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_tables(results: Path, paper: Paper, out: Path, collection: Collection, not_comparable: str | None = None) -> None:
    """Write table1/table2 as CSV, Markdown and LaTeX, and comparison_to_paper.md, into `out`."""
    frame1, grid1 = table1(collection, paper, results)
    frame2, grid2 = table2(collection)
    for name, frame, grid, caption, note_column in (
        ("table1", frame1, grid1, "AP_dsb of every method at IoU thresholds τ = 0.50 … 0.90 (Table 1)", len(grid1.columns) - 1),
        ("table2", frame2, grid2, "Ablation: ΔAP relative to EmbedSeg, paired by seed (Table 2)", None),
    ):
        with atomic_write(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        write_text(out / f"{name}.md", f"# {caption}\n\n{to_markdown(grid)}")
        write_text(out / f"{name}.tex", to_latex(grid, caption, label=f"tab:{name}", note_column=note_column))
    write_text(out / "comparison_to_paper.md", comparison_markdown(collection, paper, results, not_comparable))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--paper", type=Path, default=Path("config/paper_results.yaml"), help="the paper's numbers")
    parser.add_argument("--out", type=Path, required=True, metavar="TABLES_DIR", help="output folder")
    parser.add_argument("--datasets", nargs="+", metavar="DS", help="data sets (default: every one with scores)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods; each must have scores or NOT_RUN.txt")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds; every scores file must exist")
    parser.add_argument("--not-comparable", metavar="REASON",
                        help="say in comparison_to_paper.md why these runs cannot be compared (demo data, short training)")


def run(args: argparse.Namespace) -> int:
    paper = load_paper(args.paper)
    collection = collect(args.results, args.datasets, args.methods, args.seeds)
    write_tables(args.results, paper, args.out, collection, args.not_comparable)
    print((args.out / "table1.md").read_text())
    return 0
