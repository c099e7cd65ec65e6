"""`embedseg tables`: Table 1, Table 2 and the comparison with the paper from per-image scores.

Per run (seed), a score at τ (AP_dsb unless ``--metric`` names another column of the scores
files) is the mean over test images of the per-image score; the cells summarise that over the
runs (:mod:`embedseg.report.stats`). Table 2 pairs the runs of each ablation with EmbedSeg's run
of the same seed: per ablation the per-seed differences (in the CSV), their summary and
sign-flip p-value, per data set. The comparison with the paper is :mod:`embedseg.report.comparison`.
Best and second best per τ are marked among our measured rows only: the literature rows come
from other set-ups and report only some thresholds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..io import atomic_write
from ..methods import ABLATIONS, EMBEDSEG, TABLE2_ONLY
from ..methods import label as method_label
from ..methods import order as method_order
from ..outputs import TABLES, replacing
from .budget import mark_table1, write_budget
from .comparison import comparison_markdown, paired_note, paired_rows
from .generalists import ReportedResults, generalists_markdown, load_reported
from .generalists import mark_table1 as mark_generalists
from .paper import Paper, PaperRow, load_paper
from .paper3d import PAPER_3D_FILE, Paper3D, comparison3d_markdown, load_paper3d
from .render import Cell, Grid, rank_columns, to_latex, to_markdown
from .results import (
    TAUS,
    Collection,
    collect,
    memory_text,
    paired_delta,
    paired_scores,
    training_memory,
)
from .stats import (
    ALPHA,
    INTERVAL_NOTE,
    PAIRED_PARTS,
    SMALL_N_NOTE,
    VARIANCE_NOTE,
    Summary,
    paired_images,
    sign_flip_p,
    summarise,
    tau_headers,
)

TAU_HEADERS = tau_headers(TAUS)
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
    "msa": ("mSA", "mSA = mean AP_dsb over τ = 0.50 … 0.95 (independent of τ)"),
}


def _tau_columns(*parts: str, taus: tuple[float, ...] = TAUS) -> list[str]:
    return [f"{part}_{h}" for part in parts for h in tau_headers(taus)]


Row = tuple[dict, list[Cell]]  # (CSV record, rendered cells) of one table row
# Table 1's columns after the paper's τ: the scores of the current literature (results.EXTRAS but
# the metric at τ = 0.95, which is in the CSV only: the τ columns stay the paper's 0.50 … 0.90).
EXTRA_HEADERS = ["mSA", "F1@0.5"]


def extra_columns(metric: str) -> list[str]:
    """CSV names of :data:`~embedseg.report.results.EXTRAS` for a table of `metric`."""
    return [f"{metric}_0.95", "msa", "f1_0.50"]


def _extras_record(summary: Summary, metric: str) -> dict[str, float]:
    """CSV fields {name}, sd_{name}, ci_low_{name}, ci_high_{name} of the extra scores."""
    parts = {"": summary.mean, "sd_": summary.sd, "ci_low_": summary.ci_low, "ci_high_": summary.ci_high}
    return {f"{prefix}{name}": v for prefix, values in parts.items() for name, v in zip(extra_columns(metric), values)}


def _measured_row(collection: Collection, results: Path, dataset: str, method: str, metric: str) -> Row:
    runs = collection.runs(dataset, method)
    summary = summarise(runs)
    extras = summarise(collection.extras.loc[(dataset, method)])
    memory = training_memory(results, dataset, method, list(runs.index))
    memory_fields = dict(
        memory_gib=None if memory is None else memory[0] / 2**30,
        memory_kind=None if memory is None else memory[1],
        note="",
    )
    # For the metric f1 its τ = 0.50 column is also the extra F1@0.5: the same value.
    record = dict(status="measured", runs=len(runs)) | summary.record(metric) | _extras_record(extras, metric)
    record |= memory_fields
    cells = [*summary.cells(), *extras.cells()[1:]]
    return record, [Cell(text=str(len(runs))), *cells, Cell(text=memory_text(memory)), Cell()]


def _not_run_row(reason: str, n_taus: int) -> Row:
    record = dict(status="not run", runs=0, note=reason)
    return record, [
        Cell(text="0"),
        *[Cell(text="–") for _ in range(n_taus + len(EXTRA_HEADERS))],
        Cell(text="–"),
        Cell(text=f"not run: {reason}"),
    ]


def _reported_row(row: PaperRow) -> Row:
    record = dict(status="reported", runs=None, **dict(zip(_tau_columns("ap"), row.ap)), note=row.citation or "")
    return record, [
        Cell(text="reported"),
        *[Cell(v) for v in row.ap],
        *[Cell(text="–") for _ in EXTRA_HEADERS],
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
    grid = Grid(columns=["Method", "Runs", *TAU_HEADERS, *EXTRA_HEADERS, "Memory (GiB)", "Note"])
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
        rank_columns(
            [cells for *_, (record, cells) in rows if record["status"] == "measured"],
            range(1, 1 + len(TAUS) + len(EXTRA_HEADERS)),
        )
        records += [
            dict(dataset=dataset, method=method, label=label, **record) for _, method, label, (record, _) in rows
        ]
        grid.sections[dataset] = [[Cell(text=label), *cells] for _, _, label, (_, cells) in rows]
    grid.notes = [
        f"{METRICS[metric][1]} per test image at IoU threshold τ, averaged over the test images of a "
        f"run; cells = mean ± sample standard deviation (ddof = 1) over runs (seeds) {INTERVAL_NOTE}. "
        f"{VARIANCE_NOTE} {SMALL_N_NOTE} mSA = mean of AP_dsb over τ = 0.50, 0.55, … 0.95 and F1@0.5 = F1 at "
        "τ = 0.50, per image and then averaged like the τ columns (the scores of the current literature; "
        f"table1.csv also has {METRICS[metric][0]} at τ = 0.95: the τ columns here stay the paper's). Bold = best, underlined = "
        "second best per column among our measured rows (reported literature rows are not ranked). Memory = "
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
        *[f"{prefix}{name}" for prefix in ("", "sd_", "ci_low_", "ci_high_") for name in extra_columns(metric)],
        "memory_gib",
        "memory_kind",
        "note",
    ]
    return pd.DataFrame.from_records(records, columns=columns), grid


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
            paired = paired_images(*paired_scores(collection, dataset, variant, EMBEDSEG), taus=taus)
            records.append(
                dict(
                    dataset=dataset,
                    method=variant,
                    label=label,
                    quantity=f"delta_{name}_image",
                    runs=paired.n_seeds,
                    n_seeds_embedseg=paired.n_seeds_b,
                    n_images=paired.n_images,
                    pairing="by seed (same model)" if paired.same_model else "two-level bootstrap",
                    **paired.record(),
                )
            )
            rows += paired_rows(paired, label, "EmbedSeg")
        grid.sections[dataset] = rows
    grid.notes = [
        f"EmbedSeg row: {name}, mean ± sd (ddof = 1) over runs {INTERVAL_NOTE}. "
        f"Other rows: Δ{name} = {name}(variant) − {name}(EmbedSeg) of the same seed, mean ± sd of these "
        "paired differences [95 % t-interval] and p = two-sided sign-flip permutation test of "
        "their mean (exact: all 2^n sign patterns), given only where its smallest possible p, 2/2^n, is "
        f'below α = {ALPHA} (n ≥ 6 pairs), else "not testable at n"; Runs = number of pairs. {VARIANCE_NOTE} '
        f"{SMALL_N_NOTE} table2.csv also lists each seed's difference.",
        paired_note(name),
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
        "n_seeds_embedseg",
        "n_images",
        "pairing",
        *_tau_columns("value", "sd", "ci_low", "ci_high", "p", taus=collection.all_taus),
        *_tau_columns(*PAIRED_PARTS, taus=collection.all_taus),
    ]
    return pd.DataFrame.from_records(records, columns=columns), grid


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
    paper3d: Paper3D | None = None,
    reported: ReportedResults | None = None,
) -> None:
    """Write table1/table2 as CSV, Markdown and LaTeX, comparison_to_paper.md (with the 3-D
    section of :mod:`embedseg.report.paper3d` for 3-D data sets) and the budget
    companion of Table 1 (:mod:`embedseg.report.budget`) into `out`; with `reported` (the
    generalists' published mSA) the comparison has the generalists' section
    (:mod:`embedseg.report.generalists`).
    `collection` holds the runs' `metric`; the paper reports AP_dsb only, so for another metric
    the comparison file says so instead of comparing."""
    name = METRICS[metric][0]
    title = "AP_dsb" if metric == "ap" else name
    thresholds = "τ = 0.50 … 0.90"
    if any(collection.taus_of(ds) != TAUS for ds in collection.datasets):
        thresholds += " (2-D data sets; 3-D data sets: τ = 0.1 … 0.9, as the paper's 3-D tables)"
    frame1, grid1 = table1(collection, paper, results, metric)
    mark_table1(frame1, grid1, write_budget(results, collection, out))  # budget.{csv,md}, convergence.json
    mark_generalists(frame1, grid1, collection, results)  # training data (contamination), cost per image
    frame2, grid2 = table2(collection, metric)
    for stem, frame, grid, caption, note_column in (
        (
            "table1",
            frame1,
            grid1,
            f"{title} of every method at IoU thresholds {thresholds} (Table 1)",
            len(grid1.columns) - 1,
        ),
        (
            "table2",
            frame2,
            grid2,
            f"Ablation: Δ{name} relative to EmbedSeg, paired by seed and per image (Table 2)",
            None,
        ),
    ):
        with atomic_write(out / f"{stem}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        write_text(out / f"{stem}.md", f"# {caption}\n\n{to_markdown(grid)}")
        write_text(out / f"{stem}.tex", to_latex(grid, caption, label=f"tab:{stem}", note_column=note_column))
    if metric == "ap":
        comparison = comparison_markdown(collection, paper, results, not_comparable)
        section3d = comparison3d_markdown(collection, paper3d, results)
        comparison += f"\n{section3d}" if section3d else ""
    else:
        comparison = (
            f"# Comparison with the paper\n\nThese tables show {name}; the paper reports AP_dsb only. "
            "Run `embedseg tables` with `--metric ap` (the default) for the comparison.\n"
        )
    if reported is not None:
        comparison += "\n" + generalists_markdown(collection, results, reported)
    write_text(out / "comparison_to_paper.md", comparison)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--paper", type=Path, default=Path("config/paper_results.yaml"), help="the paper's numbers")
    parser.add_argument(
        "--reported",
        type=Path,
        default=Path("config/generalist_results.yaml"),
        help="the generalists' published zero-shot mSA (shown beside ours in comparison_to_paper.md)",
    )
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
        "--reported": args.reported,
        **{f"RESULTS_DIR/{name}": args.results / name for name in ("scores", "predictions", "models")},
    }
    with replacing(args.out, TABLES, inputs, args.force) as staging:
        paper = load_paper(args.paper)
        collection = collect(args.results, args.datasets, args.methods, args.seeds, args.metric)
        paper3d = load_paper3d(args.paper.with_name(PAPER_3D_FILE))  # beside the paper's 2-D file
        reported = load_reported(args.reported)
        write_tables(args.results, paper, staging, collection, args.not_comparable, args.metric, paper3d, reported)
    print((args.out / "table1.md").read_text())
    return 0
