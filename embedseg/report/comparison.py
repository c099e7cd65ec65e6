"""The comparison with the paper (`comparison_to_paper.md`): our Table 1 and Table 2 rows of each
paper data set beside the paper's numbers, with a per-τ consistency check (:func:`consistent`)
and a one-line verdict per data set."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..methods import EMBEDSEG
from ..methods import label as method_label
from ..methods import order as method_order
from .paper import Paper, PaperRow
from .render import Cell, Grid, to_markdown
from .results import ABLATIONS, TABLE2_ONLY, TAUS, Collection, memory_text, paired_delta, training_memory
from .stats import Summary, consistent, summarise, tau_headers

TAU_HEADERS = tau_headers(TAUS)


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
