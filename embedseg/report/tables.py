"""`embedseg tables`: Table 1, Table 2 and the comparison with the paper from per-image scores.

Per run (seed), a score at τ (AP_dsb unless ``--metric`` names another column of the scores
files) is the mean over test images of the per-image score; a table cell is the mean ± sample
standard deviation (ddof = 1) of that over the runs, with a 95 % bootstrap confidence interval
of the mean (percentile method, 9999 resamples, seeded: the same numbers on every run). Table 2
pairs the runs of each ablation with EmbedSeg's run of the same seed: per ablation the per-seed
differences (in the CSV), their mean ± sd and bootstrap interval, and the two-sided sign-flip
permutation p-value of their mean (exact: all 2^n sign patterns, up to MAX_EXACT_PAIRS pairs).
The comparison with the paper calls a cell consistent when our mean and the paper's mean of its
runs differ by at most 1.96 standard errors of that difference, sd · √(1/n_ours + 1/n_paper),
our sd standing in for the paper's unpublished one. Best and second best per τ are marked among
our measured rows only: the literature rows come from other set-ups and report only some
thresholds.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError, atomic_write
from ..methods import ABLATIONS, EMBEDSEG, TABLE2_ONLY
from ..methods import label as method_label
from ..methods import order as method_order
from ..outputs import TABLES, replacing
from .budget import mark_table1, write_budget
from .paper import Paper, PaperRow, load_paper
from .render import Cell, Grid, rank_columns, to_latex, to_markdown
from .results import TAUS, Collection, collect, training_memory

log = logging.getLogger(__name__)

MEMORY_KINDS = {"cuda_max_allocated": "CUDA", "cpu_peak_rss": "CPU RSS", "mixed": "mixed"}


def tau_headers(taus: tuple[float, ...] = TAUS) -> list[str]:
    return [f"{t:.2f}" for t in taus]


TAU_HEADERS = tau_headers(TAUS)
# The paper prints three decimals: its number is "within" our interval up to that rounding.
PAPER_ROUNDING = 0.0005
# Score column of `embedseg evaluate` -> (short name, what it is), for every per-τ score.
METRICS = {
    "ap": ("AP", "AP_dsb = TP/(TP+FP+FN)"),
    "precision": ("Precision", "precision = TP/(TP+FP)"),
    "recall": ("Recall", "recall = TP/(TP+FN)"),
    "f1": ("F1", "F1 = 2TP/(2TP+FP+FN)"),
    "mean_matched_iou": ("mIoU", "mean IoU of the matched pairs"),
    "sq": ("SQ", "segmentation quality SQ = mean IoU of the matched pairs"),
    "rq": ("RQ", "recognition quality RQ = F1"),
    "pq": ("PQ", "panoptic quality PQ = SQ·RQ"),
    "seg": ("SEG", "Cell Tracking Challenge SEG (independent of τ)"),
}
BOOTSTRAP_RESAMPLES = 9999
STATISTICS_SEED = 0  # of the bootstrap resamples (and of random sign flips above MAX_EXACT_PAIRS)
MAX_EXACT_PAIRS = 16
Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal distribution


@dataclass
class Summary:
    """Per τ (`taus`) over n runs (or paired differences): mean, sample sd, 95 % bootstrap interval."""

    n: int
    mean: np.ndarray
    sd: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    taus: tuple[float, ...] = TAUS

    def cells(self, signed: bool = False, p: np.ndarray | None = None) -> list[Cell]:
        p = np.full(len(self.mean), np.nan) if p is None else p
        return [
            Cell(m, s, signed=signed, ci=(lo, hi), p=pv)
            for m, s, lo, hi, pv in zip(self.mean, self.sd, self.ci_low, self.ci_high, p)
        ]

    def record(self, name: str) -> dict[str, float]:
        """CSV fields {name}_{τ} (means), sd_{τ}, ci_low_{τ} and ci_high_{τ}."""
        parts = {name: self.mean, "sd": self.sd, "ci_low": self.ci_low, "ci_high": self.ci_high}
        return {f"{part}_{h}": v for part, values in parts.items() for h, v in zip(tau_headers(self.taus), values)}


def _tau_columns(*parts: str, taus: tuple[float, ...] = TAUS) -> list[str]:
    return [f"{part}_{h}" for part in parts for h in tau_headers(taus)]


def summarise(runs: pd.DataFrame) -> Summary:
    """Mean, sample sd (ddof = 1) and the seeded 95 % percentile bootstrap interval of the mean
    over runs; sd and interval are NaN for one run. runs: (n_runs, n_taus), columns = the τ."""
    from scipy.stats import bootstrap

    values = runs.to_numpy(dtype=float)
    taus = tuple(runs.columns)
    nan = np.full(values.shape[1], np.nan)
    if len(values) < 2:
        return Summary(len(values), values.mean(axis=0) if len(values) else nan, nan, nan, nan, taus)
    interval = bootstrap(
        (values,),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        axis=0,
        rng=np.random.default_rng(STATISTICS_SEED),
    ).confidence_interval
    return Summary(len(values), values.mean(axis=0), values.std(axis=0, ddof=1), interval.low, interval.high, taus)


def sign_flip_p(differences: pd.DataFrame) -> np.ndarray:
    """Two-sided p-value per τ of the mean paired difference under the null hypothesis of
    differences symmetric around 0: over all 2^n sign flips (exact) up to MAX_EXACT_PAIRS pairs,
    over 2^MAX_EXACT_PAIRS seeded random ones above; NaN for fewer than two pairs.
    differences: (n_pairs, len(TAUS))."""
    from scipy.stats import permutation_test

    values = differences.to_numpy(dtype=float)
    if len(values) < 2:
        return np.full(values.shape[1], np.nan)
    return permutation_test(
        (values,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        axis=0,
        n_resamples=2**MAX_EXACT_PAIRS,
        rng=np.random.default_rng(STATISTICS_SEED),
    ).pvalue


def memory_text(memory: tuple[int, str] | None) -> str:
    if memory is None:
        return "–"
    peak, kind = memory
    return f"{peak / 2**30:.2f} ({MEMORY_KINDS[kind]})"


Row = tuple[dict, list[Cell]]  # (CSV record, rendered cells) of one table row


def _measured_row(collection: Collection, results: Path, dataset: str, method: str, metric: str) -> Row:
    runs = collection.runs(dataset, method)
    summary = summarise(runs)
    memory = training_memory(results, dataset, method, list(runs.index))
    record = dict(
        status="measured",
        runs=len(runs),
        **summary.record(metric),
        memory_gib=None if memory is None else memory[0] / 2**30,
        memory_kind=None if memory is None else memory[1],
        note="",
    )
    return record, [Cell(text=str(len(runs))), *summary.cells(), Cell(text=memory_text(memory)), Cell()]


def _not_run_row(reason: str, n_taus: int) -> Row:
    record = dict(status="not run", runs=0, note=reason)
    return record, [
        Cell(text="0"),
        *[Cell(text="–") for _ in range(n_taus)],
        Cell(text="–"),
        Cell(text=f"not run: {reason}"),
    ]


def _reported_row(row: PaperRow) -> Row:
    record = dict(status="reported", runs=None, **dict(zip(_tau_columns("ap"), row.ap)), note=row.citation or "")
    return record, [
        Cell(text="reported"),
        *[Cell(v) for v in row.ap],
        Cell(text=row.gpu_memory or "–"),
        Cell(text=f"reported: {row.citation}"),
    ]


def section_columns(grid: Grid, collection: Collection, dataset: str, title: str | None = None) -> None:
    """Give the section of a data set reported at other thresholds (3-D) its own τ headers."""
    taus = collection.taus_of(dataset)
    if taus != TAUS:
        n = len(TAU_HEADERS)
        grid.section_columns[title or dataset] = [*grid.columns[:2], *tau_headers(taus), *grid.columns[2 + n :]]


def table1(collection: Collection, paper: Paper, results: Path, metric: str = "ap") -> tuple[pd.DataFrame, Grid]:
    """Table 1: per data set our measured methods, the methods that could not run, and (for
    AP_dsb, the paper's score) its reported-only literature rows. Returns the CSV frame and the
    rendered grid; a 3-D data set's section has its own τ columns (0.1 … 0.9, as the paper's
    3-D tables)."""
    grid = Grid(columns=["Method", "Runs", *TAU_HEADERS, "Memory (GiB)", "Note"])
    records = []
    for dataset in collection.datasets:
        section_columns(grid, collection, dataset)
        rows: list[tuple[tuple[int, str], str, str, Row]] = []  # (sort key, method, label, row)
        for method in collection.methods(dataset):
            if method in TABLE2_ONLY:
                continue
            reason = collection.not_run.get((dataset, method))
            row = (
                _not_run_row(reason, len(collection.taus_of(dataset)))
                if reason is not None
                else _measured_row(collection, results, dataset, method, metric)
            )
            rows.append((method_order(method), method, method_label(method), row))
        for method, paper_row in paper.table1.get(dataset, {}).items() if metric == "ap" else ():
            if paper_row.reported:  # grouped with the other non-EmbedSeg methods, before ours
                rows.append(((1, method), method, paper_row.label or method, _reported_row(paper_row)))
        rows.sort(key=lambda r: r[0])
        rank_columns([cells for *_, (record, cells) in rows if record["status"] == "measured"], range(1, 1 + len(TAUS)))
        records += [
            dict(dataset=dataset, method=method, label=label, **record) for _, method, label, (record, _) in rows
        ]
        grid.sections[dataset] = [[Cell(text=label), *cells] for _, _, label, (_, cells) in rows]
    grid.notes = [
        f"{METRICS[metric][1]} per test image at IoU threshold τ, averaged over the test images of a "
        "run; cells = mean ± sample standard deviation (ddof = 1) over runs (seeds) [95 % bootstrap "
        "confidence interval of the mean: percentile, 9999 resamples, seeded]. Bold = best, underlined = "
        "second best per τ among our measured rows (reported literature rows are not ranked). Memory = "
        "largest training peak over the runs: CUDA = torch max allocated on the GPU, CPU RSS = peak "
        "resident memory of the training process (not comparable with the paper's GPU memory)."
    ]
    columns = [
        "dataset",
        "method",
        "label",
        "status",
        "runs",
        *_tau_columns(metric, "sd", "ci_low", "ci_high", taus=collection.all_taus),
        "memory_gib",
        "memory_kind",
        "note",
    ]
    return pd.DataFrame.from_records(records, columns=columns), grid


def paired_delta(collection: Collection, dataset: str, variant: str) -> pd.DataFrame:
    """Δ per seed (rows) and τ (columns): the variant's run minus EmbedSeg's run of the same seed."""
    base, other = collection.runs(dataset, EMBEDSEG), collection.runs(dataset, variant)
    common = base.index.intersection(other.index)
    if common.empty:
        raise DataError(
            f"{dataset}: {variant} and {EMBEDSEG} share no seed, so Table 2 cannot pair runs; "
            "run both with the same --seeds"
        )
    if len(common) < max(len(base), len(other)):
        log.warning("%s: %s paired with %s on seeds %s only", dataset, variant, EMBEDSEG, list(common))
    return other.loc[common] - base.loc[common]


def table2(collection: Collection, metric: str = "ap") -> tuple[pd.DataFrame, Grid]:
    """Table 2 (ablation): EmbedSeg's score and, per variant, the paired per-seed differences,
    their summary and sign-flip p-value, per data set."""
    name = METRICS[metric][0]
    grid = Grid(columns=["Variant", "Runs", *TAU_HEADERS])
    records = []
    for dataset in collection.datasets:
        methods = collection.methods(dataset)
        variants = [v for v in ABLATIONS if v in methods and (dataset, v) not in collection.not_run]
        if EMBEDSEG not in methods or not variants:
            continue
        section_columns(grid, collection, dataset)
        taus = collection.taus_of(dataset)
        runs = collection.runs(dataset, EMBEDSEG)
        summary = summarise(runs)
        records.append(
            dict(
                dataset=dataset,
                method=EMBEDSEG,
                label="EmbedSeg",
                quantity=name,
                runs=len(runs),
                **summary.record("value"),
            )
        )
        rows = [[Cell(text="EmbedSeg"), Cell(text=str(len(runs))), *summary.cells()]]
        for variant in variants:
            delta = paired_delta(collection, dataset, variant)
            summary, p = summarise(delta), sign_flip_p(delta)
            label = ABLATIONS[variant]
            records.append(
                dict(
                    dataset=dataset,
                    method=variant,
                    label=label,
                    quantity=f"delta_{name}",
                    runs=len(delta),
                    **summary.record("value"),
                    **dict(zip(_tau_columns("p", taus=taus), p)),
                )
            )
            records += [
                dict(
                    dataset=dataset,
                    method=variant,
                    label=label,
                    quantity=f"delta_{name}_seed",
                    runs=1,
                    seed=seed,
                    **dict(zip(_tau_columns("value", taus=taus), values)),
                )
                for seed, values in zip(delta.index, delta.to_numpy(dtype=float))
            ]
            rows.append([Cell(text=label), Cell(text=str(len(delta))), *summary.cells(signed=True, p=p)])
        grid.sections[dataset] = rows
    grid.notes = [
        f"EmbedSeg row: {name}, mean ± sd (ddof = 1) over runs [95 % bootstrap interval of the mean]. "
        f"Other rows: Δ{name} = {name}(variant) − {name}(EmbedSeg) of the same seed, mean ± sd of these "
        "paired differences [95 % bootstrap interval] and p = two-sided sign-flip permutation test of "
        "their mean (exact: all 2^n sign patterns); Runs = number of pairs. table2.csv also lists each "
        "seed's difference."
    ]
    if not grid.sections:
        grid.notes.insert(0, "No data set has EmbedSeg together with an ablation variant; Table 2 is empty.")
    columns = [
        "dataset",
        "method",
        "label",
        "quantity",
        "runs",
        "seed",
        *_tau_columns("value", "sd", "ci_low", "ci_high", "p", taus=collection.all_taus),
    ]
    return pd.DataFrame.from_records(records, columns=columns), grid


def consistent(ours: Summary, theirs: np.ndarray, paper_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per τ: the standard error of the difference between our mean (n runs) and the paper's
    mean of `paper_runs` runs, sd · √(1/n + 1/paper_runs) with our sd for both, and whether the
    paper's number lies within 1.96 of these (plus its rounding) of ours: 1.0/0.0, NaN where
    undefined (fewer than two runs here, or the paper leaves the cell empty)."""
    se = ours.sd * math.sqrt(1 / max(ours.n, 1) + 1 / paper_runs)
    inside = (np.abs(ours.mean - theirs) <= Z_95 * se + PAPER_ROUNDING).astype(float)
    inside[np.isnan(se) | np.isnan(theirs) | np.isnan(ours.mean)] = np.nan
    return se, inside


def _comparison_rows(
    name: str,
    ours: Summary,
    theirs: np.ndarray,
    paper_runs: int,
    signed: bool,
    memory: tuple[str, str] = ("", ""),
    paper_label: str = "paper",
    ours_label: str = "ours",
) -> tuple[list[list[Cell]], np.ndarray]:
    """Rows ours / paper / difference / its standard error / consistent of one method (columns:
    name, row kind, τ…, memory) and the per-τ verdicts of :func:`consistent`."""
    se, inside = consistent(ours, theirs, paper_runs)
    rows = [
        [
            Cell(text=name),
            Cell(text=f"{ours_label} (n = {ours.n})"),
            *ours.cells(signed=signed),
            Cell(text=memory[0]),
        ],
        [Cell(), Cell(text=paper_label), *[Cell(v, signed=signed) for v in theirs], Cell(text=memory[1])],
        [Cell(), Cell(text="difference"), *[Cell(v, signed=True) for v in ours.mean - theirs], Cell()],
        [Cell(), Cell(text="SE of difference"), *[Cell(v) for v in se], Cell()],
        [
            Cell(),
            Cell(text="consistent (≤ 1.96 SE)"),
            *[Cell(text="" if math.isnan(v) else ("yes" if v else "NO")) for v in inside],
            Cell(),
        ],
    ]
    return rows, inside


def _absent_rows(
    name: str,
    status: str,
    theirs: np.ndarray,
    signed: bool,
    paper_memory: str = "",
    paper_label: str = "paper",
) -> list[list[Cell]]:
    """Rows for a paper method without runs here: its status, then the paper's numbers."""
    return [
        [Cell(text=name), Cell(text=status), *[Cell(text="–") for _ in TAUS], Cell()],
        [Cell(), Cell(text=paper_label), *[Cell(v, signed=signed) for v in theirs], Cell(text=paper_memory)],
    ]


def _paper_label(row: PaperRow) -> str:
    return f"paper ({row.note})" if row.note else "paper"


def compare_dataset(
    collection: Collection, paper: Paper, results: Path, dataset: str
) -> tuple[Grid, list[tuple[str, np.ndarray]]]:
    """Our Table 1 and Table 2 rows of one paper data set beside the paper's; also the per-τ
    verdicts (:func:`consistent`) per compared row."""
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
                status = (
                    f"not run: {collection.not_run[(dataset, method)]}"
                    if (dataset, method) in collection.not_run
                    else "not in this run"
                )
            rows1 += _absent_rows(
                name,
                status,
                row.ap,
                signed=False,
                paper_memory=row.gpu_memory or "–",
                paper_label=_paper_label(row),
            )
            continue
        runs = collection.runs(dataset, method)
        summary = summarise(runs)
        ours_memory = memory_text(training_memory(results, dataset, method, list(runs.index)))
        if row is None:  # measured here, but the paper has no such row for this data set
            rows1.append(
                [
                    Cell(text=name),
                    Cell(text=f"ours (n = {len(runs)}), not in the paper"),
                    *summary.cells(),
                    Cell(text=ours_memory),
                ]
            )
            continue
        rows, inside = _comparison_rows(
            name,
            summary,
            row.ap,
            paper.runs,
            False,
            (ours_memory, row.gpu_memory or "–"),
            _paper_label(row),
            "ours, trained here" if row.trained_here else "ours",
        )
        rows1 += rows
        verdicts.append((name, inside))
    grid.sections["Table 1: AP_dsb"] = rows1
    rows2: list[list[Cell]] = []
    for variant, theirs in paper.table2.get(dataset, {}).items():
        if variant not in measured or EMBEDSEG not in measured:
            rows2 += _absent_rows(ABLATIONS[variant], "not in this run", theirs, signed=True)
            continue
        delta = paired_delta(collection, dataset, variant)
        rows, inside = _comparison_rows(ABLATIONS[variant], summarise(delta), theirs, paper.runs, signed=True)
        rows2 += rows
        verdicts.append((f"ΔAP {ABLATIONS[variant]}", inside))
    if rows2:
        grid.sections["Table 2: ΔAP relative to EmbedSeg"] = rows2
    return grid, verdicts


def verdict(verdicts: list[tuple[str, np.ndarray]]) -> str:
    """One line: in how many (row, τ) cells the paper's number is consistent with ours (within
    1.96 standard errors of the difference of means), and which rows miss it at how many τ."""
    compared = [(name, inside[~np.isnan(inside)]) for name, inside in verdicts]
    compared = [(name, inside) for name, inside in compared if inside.size]
    if not compared:
        return "Verdict: none — no method has both the paper's number and at least two runs here."
    m = sum(inside.size for _, inside in compared)
    k = int(sum(inside.sum() for _, inside in compared))
    if k == m:
        return f"Verdict: consistent with the paper — within 1.96 standard errors of the difference in all {m} cells."
    misses = ", ".join(
        f"{name} ({int(inside.size - inside.sum())}/{inside.size} τ)"
        for name, inside in compared
        if inside.sum() < inside.size
    )
    quality = "mostly consistent with" if k >= 0.75 * m else "not consistent with"
    return (
        f"Verdict: {quality} the paper — within 1.96 standard errors of the difference in {k} of {m} "
        f"cells; outside at: {misses}."
    )


def comparison_markdown(collection: Collection, paper: Paper, results: Path, not_comparable: str | None) -> str:
    """`comparison_to_paper.md`: ours vs the paper per data set, with a one-line verdict each."""
    out = [
        "# Comparison with the paper",
        "",
        f"Results: `{results}`. Paper: {paper.source} (EmbedSeg and Neven et al. rows: means over {paper.runs} runs).",
        "Ours: mean ± sample sd (ddof = 1) over our runs (n) [95 % bootstrap interval of the mean]; "
        f"difference = ours − paper; SE of difference = sd · √(1/n + 1/{paper.runs}), the standard error "
        f"of the difference of our mean and the paper's {paper.runs}-run mean with our sd standing in for "
        "the paper's; \"consistent\" = the difference is at most 1.96 SE (allowing for the paper's rounding "
        "to three decimals; needs n ≥ 2). "
        '"ours, trained here" marks methods this pipeline trains where the paper used a published model. '
        "Table 2 rows pair runs by seed. Train memory: ours = largest peak over runs in GiB (CUDA = GPU max "
        "allocated, CPU RSS = process peak), paper = training GPU memory as printed.",
        "",
    ]
    if not_comparable:
        out += [
            f"**Not comparable to the paper: {not_comparable}** — numbers are listed for reference only, "
            "without verdicts.",
            "",
        ]
    for dataset in collection.datasets:
        out += [f"## {dataset}", ""]
        if dataset not in paper.table1:
            out += [f"Not in the paper: no comparison for {dataset}.", ""]
            continue
        grid, verdicts = compare_dataset(collection, paper, results, dataset)
        out.append(
            f"Not comparable to the paper ({not_comparable}): no verdict." if not_comparable else verdict(verdicts)
        )
        out += ["", to_markdown(grid).replace("\n### ", "\n#### ").replace("### ", "#### ", 1)]
    return "\n".join(out).rstrip() + "\n"


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_tables(
    results: Path,
    paper: Paper,
    out: Path,
    collection: Collection,
    not_comparable: str | None = None,
    metric: str = "ap",
) -> None:
    """Write table1/table2 as CSV, Markdown and LaTeX, comparison_to_paper.md and the budget
    companion of Table 1 (:mod:`embedseg.report.budget`) into `out`.
    `collection` holds the runs' `metric`; the paper reports AP_dsb only, so for another metric
    the comparison file says so instead of comparing."""
    name = METRICS[metric][0]
    title = "AP_dsb" if metric == "ap" else name
    thresholds = "τ = 0.50 … 0.90"
    if any(collection.taus_of(ds) != TAUS for ds in collection.datasets):
        thresholds += " (2-D data sets; 3-D data sets: τ = 0.1 … 0.9, as the paper's 3-D tables)"
    frame1, grid1 = table1(collection, paper, results, metric)
    mark_table1(frame1, grid1, write_budget(results, collection, out))  # budget.{csv,md}, convergence.json
    frame2, grid2 = table2(collection, metric)
    for stem, frame, grid, caption, note_column in (
        (
            "table1",
            frame1,
            grid1,
            f"{title} of every method at IoU thresholds {thresholds} (Table 1)",
            len(grid1.columns) - 1,
        ),
        ("table2", frame2, grid2, f"Ablation: Δ{name} relative to EmbedSeg, paired by seed (Table 2)", None),
    ):
        with atomic_write(out / f"{stem}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        write_text(out / f"{stem}.md", f"# {caption}\n\n{to_markdown(grid)}")
        write_text(out / f"{stem}.tex", to_latex(grid, caption, label=f"tab:{stem}", note_column=note_column))
    if metric == "ap":
        comparison = comparison_markdown(collection, paper, results, not_comparable)
    else:
        comparison = (
            f"# Comparison with the paper\n\nThese tables show {name}; the paper reports AP_dsb only. "
            "Run `embedseg tables` with `--metric ap` (the default) for the comparison.\n"
        )
    write_text(out / "comparison_to_paper.md", comparison)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--paper", type=Path, default=Path("config/paper_results.yaml"), help="the paper's numbers")
    parser.add_argument("--out", type=Path, required=True, metavar="TABLES_DIR", help="output folder")
    parser.add_argument("--datasets", nargs="+", metavar="DS", help="data sets (default: every one with scores)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods; each must have scores or NOT_RUN.txt")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds; every scores file must exist")
    parser.add_argument(
        "--metric",
        choices=list(METRICS),
        default="ap",
        help="score shown in the tables: a per-τ column of the scores files (the paper's: ap)",
    )
    parser.add_argument(
        "--not-comparable",
        metavar="REASON",
        help="say in comparison_to_paper.md why these runs cannot be compared (demo data, short training)",
    )

    parser.add_argument(
        "--force",
        action="store_true",
        help="replace TABLES_DIR even if it is a file or a folder not written by `embedseg tables`",
    )


def run(args: argparse.Namespace) -> int:
    inputs = {
        "--paper": args.paper,
        **{f"RESULTS_DIR/{name}": args.results / name for name in ("scores", "predictions", "models")},
    }
    with replacing(args.out, TABLES, inputs, args.force) as staging:
        paper = load_paper(args.paper)
        collection = collect(args.results, args.datasets, args.methods, args.seeds, args.metric)
        write_tables(args.results, paper, staging, collection, args.not_comparable, args.metric)
    print((args.out / "table1.md").read_text())
    return 0
