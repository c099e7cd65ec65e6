"""The comparison with the paper (`comparison_to_paper.md`): our Table 1 and Table 2 rows of each
paper data set beside the paper's numbers, with a per-τ consistency check (:func:`consistent`)
and a one-line verdict per data set."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..methods import ABLATIONS, EMBEDSEG, TABLE2_ONLY
from ..methods import label as method_label
from ..methods import order as method_order
from .paper import Paper, PaperRow
from .render import Cell, Grid, to_markdown
from .results import TAUS, Collection, memory_text, paired_delta, paired_scores, training_memory
from .stats import (
    INTERVAL_NOTE,
    MIN_VERDICT_RUNS,
    SMALL_N_NOTE,
    Paired,
    Summary,
    consistent,
    paired_images,
    summarise,
    tau_headers,
)

TAU_HEADERS = tau_headers(TAUS)


def paired_rows(paired: Paired, a: str, b: str) -> list[list[Cell]]:
    """Rows of a per-image paired comparison of A with B (columns: name, n, τ…): the mean
    difference [interval] with the Wilcoxon p, the median difference [interval], P(A > B)."""

    def remark(p: float, nonzero: int) -> str:
        if np.isfinite(p):
            return ""
        if paired.no_interval:  # "no interval: 3 images" -> "no interval, no test: 3 images"
            return paired.no_interval.replace("no interval", "no interval, no test")
        return f"not testable ({nonzero} of {paired.n_images} images differ)"

    mean = [
        Cell(m, signed=True, ci=(lo, hi), p=p, remark=remark(p, k) or paired.no_interval)
        for m, lo, hi, p, k in zip(paired.mean, paired.mean_low, paired.mean_high, paired.p, paired.n_nonzero)
    ]
    median = [
        Cell(m, signed=True, ci=(lo, hi), remark=paired.no_interval)
        for m, lo, hi in zip(paired.median, paired.median_low, paired.median_high)
    ]
    n = Cell(text=f"{paired.seeds_text()} × {paired.n_images} images")
    return [
        [Cell(text="  per image: mean Δ"), n, *mean],
        [Cell(text="  per image: median Δ"), Cell(), *median],
        [Cell(text=f"  per image: P({a} > {b})"), Cell(), *[Cell(v) for v in paired.prob]],
    ]


def paired_note(name: str) -> str:
    """What the per-image paired rows mean (for the notes of a table that has them)."""
    return (
        f"Per-image rows: Δ{name} per (seed, test image) on the same test images; mean Δ and median Δ "
        "are the mean and median over images of each image's Δ averaged over the seeds, with a 95 % "
        "two-level bootstrap interval (9999 resamples, seeded: resample the runs, then the images, so "
        "that both the training variance and the test-image sampling are in; runs of the same trained "
        "model, TTA on/off, resampled as pairs; no interval from fewer than 5 images, nor from fewer "
        "than 5 runs of either of two separately trained models); p = Wilcoxon signed-rank test of the per-image Δ "
        "(the image is the unit; given only where the non-zero differences are enough to reach p < 0.05, "
        'at least 6, else "not testable"); '
        "P(A > B) = share of (image, seed) pairs where A scores higher (ties count ½; every seed "
        "pair for separately trained models)."
    )


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
            Cell(text="consistent (≤ t SE)"),
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
    t(0.975, n − 1) standard errors of the difference of means), and which rows miss it at how many τ."""
    compared = [(name, inside[~np.isnan(inside)]) for name, inside in verdicts]
    compared = [(name, inside) for name, inside in compared if inside.size]
    if not compared:
        return f"Verdict: none — no method has both the paper's number and at least {MIN_VERDICT_RUNS} runs here."
    m = sum(inside.size for _, inside in compared)
    k = int(sum(inside.sum() for _, inside in compared))
    if k == m:
        return f"Verdict: consistent with the paper — within t(0.975, n − 1) standard errors of the difference in all {m} cells."
    misses = ", ".join(
        f"{name} ({int(inside.size - inside.sum())}/{inside.size} τ)"
        for name, inside in compared
        if inside.sum() < inside.size
    )
    quality = "mostly consistent with" if k >= 0.75 * m else "not consistent with"
    return (
        f"Verdict: {quality} the paper — within t(0.975, n − 1) standard errors of the difference in {k} of {m} "
        f"cells; outside at: {misses}."
    )


def comparison_markdown(collection: Collection, paper: Paper, results: Path, not_comparable: str | None) -> str:
    """`comparison_to_paper.md`: ours vs the paper per data set, with a one-line verdict each."""
    out = [
        "# Comparison with the paper",
        "",
        f"Results: `{results}`. Paper: {paper.source} (EmbedSeg and Neven et al. rows: means over {paper.runs} runs).",
        f"Ours: mean ± sample sd (ddof = 1) over our runs (n) {INTERVAL_NOTE}; {SMALL_N_NOTE} "
        f"difference = ours − paper; SE of difference = sd · √(1/n + 1/{paper.runs}), the standard error "
        f"of the difference of our mean and the paper's {paper.runs}-run mean with our sd standing in for "
        "the paper's; \"consistent\" = the difference is at most t(0.975, n − 1) SE (allowing for the paper's rounding "
        f"to three decimals; needs n ≥ {MIN_VERDICT_RUNS}: no verdict from fewer runs). "
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
    out += ["## EmbedSeg against every other method, image by image", "", win_tie_loss(collection)]
    return "\n".join(out).rstrip() + "\n"


def _wtl_text(counts: np.ndarray) -> str:
    """ "3–5–1" (wins–ties–losses), with ", no verdict at k τ" where k τ had no interval."""
    text = "–".join(map(str, counts[:3]))
    return f"{text}, no verdict at {counts[3]} τ" if counts[3] else text


def win_tie_loss(collection: Collection) -> str:
    """Markdown: per method compared with EmbedSeg and per data set, over the τ columns, how
    often EmbedSeg wins (the interval of the per-image paired mean difference lies above 0),
    ties (contains 0) or loses; and the totals across data sets."""
    counts: dict[str, dict[str, np.ndarray]] = {}
    for dataset in collection.datasets:
        measured = [m for m in collection.methods(dataset) if (dataset, m) not in collection.not_run]
        if EMBEDSEG not in measured:
            continue
        for other in measured:
            if other != EMBEDSEG:
                scores = paired_scores(collection, dataset, EMBEDSEG, other)
                paired = paired_images(*scores, taus=collection.taus_of(dataset))
                verdicts = paired.verdicts()
                wtl = np.array([*((verdicts == v).sum() for v in (1, 0, -1)), np.isnan(verdicts).sum()])
                counts.setdefault(ABLATIONS.get(other, method_label(other)), {})[dataset] = wtl
    if not counts:
        return "No data set has EmbedSeg and another method: nothing to compare."
    datasets = sorted({d for row in counts.values() for d in row})
    grid = Grid(columns=["EmbedSeg vs", *datasets, "all data sets"])
    rows = []
    for name, row in counts.items():
        total = sum(row.values())
        cells = [Cell(text="–" if d not in row else _wtl_text(row[d])) for d in datasets]
        rows.append([Cell(text=name), *cells, Cell(text=_wtl_text(total))])
    grid.sections["Wins–ties–losses of EmbedSeg over the τ columns"] = rows
    grid.notes = [
        "Each cell counts the τ columns of the data set at which EmbedSeg wins–ties–loses against the "
        "method: win = the 95 % two-level bootstrap interval of the per-image mean ΔAP_dsb (EmbedSeg − "
        "method, as in Table 2's per-image rows) lies above 0, loss = below 0, tie = it contains 0; "
        '"no verdict at k τ": too few images or runs for an interval (docs/statistics.md).'
    ]
    return to_markdown(grid).replace("### ", "#### ")
