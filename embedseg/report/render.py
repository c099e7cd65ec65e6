"""Render a sectioned table (one section per data set) as Markdown or LaTeX (booktabs).

Tables are built as :class:`Grid` objects of :class:`Cell` values so that both formats show the
same numbers; only the formatting (±, bold/underline, escaping) differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BEST, SECOND = 1, 2
SMALL_N = "†"  # marks a mean of 2 … 4 runs, shown with each run's value and no interval


@dataclass
class Cell:
    """One table cell: a mean (± sd, [confidence interval], p-value, remark) or a text; `rank`
    1/2 marks best/second best. A mean of a few runs carries the runs' values (`runs`) instead
    of an sd and interval, and is marked :data:`SMALL_N`."""

    value: float | None = None
    sd: float | None = None
    text: str = ""
    rank: int = 0
    signed: bool = False  # show a + on positive values (ΔAP)
    ci: tuple[float, float] | None = None  # 95 % confidence interval of the mean
    p: float | None = None  # p-value of a test against zero (Table 2)
    runs: tuple[float, ...] = ()  # each run's value, for a mean of too few runs for an interval
    remark: str = ""  # e.g. why there is no p-value

    def number(self) -> str:
        """The value with three decimals; ΔAP with a sign, except for a (rounded) zero."""
        return _signed(self.value, self.signed)

    def has_sd(self) -> bool:
        return self.sd is not None and not math.isnan(self.sd)

    def extras(self) -> list[str]:
        """The runs' values, the confidence interval and the p-value as printed, where known
        (formulae only: `remark` is text)."""
        shown = [f"({', '.join(_signed(v, self.signed) for v in self.runs)})"] if self.runs else []
        if self.ci is not None and not any(math.isnan(v) for v in self.ci):
            shown.append(f"[{self.ci[0]:.3f}, {self.ci[1]:.3f}]".replace("-0.000", "0.000"))
        if self.p is not None and not math.isnan(self.p):
            shown.append(f"p = {self.p:.2g}")
        return shown

    def plain(self) -> str:
        if not _is_number(self):
            return self.text
        text = self.number() + (SMALL_N if self.runs else "")
        text = f"{text} ± {self.sd:.3f}" if self.has_sd() else text
        return " ".join([text, *self.extras(), *([self.remark] if self.remark else [])])


@dataclass
class Grid:
    """Column headers, rows grouped into titled sections, and notes printed under the table.
    A section listed in `section_columns` has headers of its own (3-D data sets: other τ)."""

    columns: list[str]
    sections: dict[str, list[list[Cell]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    section_columns: dict[str, list[str]] = field(default_factory=dict)


def rank_columns(rows: list[list[Cell]], columns: range) -> None:
    """Mark the best (1) and second best (2) value of each column among the given rows.

    Values are compared as printed (three decimals), so equal-looking numbers share a rank.
    A column whose numbers all look equal (or with a single number) gets no marks.
    """
    for col in columns:
        shown = sorted({round(row[col].value, 3) for row in rows if _is_number(row[col])}, reverse=True)
        if len(shown) < 2:
            continue
        for row in rows:
            if _is_number(row[col]) and round(row[col].value, 3) in shown[:2]:
                row[col].rank = shown.index(round(row[col].value, 3)) + 1


def _signed(value: float, signed: bool) -> str:
    text = f"{value:.3f}".replace("-0.000", "0.000")
    return f"+{text}" if signed and text[0] != "-" and text != "0.000" else text


def _is_number(cell: Cell) -> bool:
    return cell.value is not None and not math.isnan(cell.value)


def to_markdown(grid: Grid) -> str:
    """GitHub Markdown: one `###` heading and table per section, notes as a paragraph."""
    out = []
    for title, rows in grid.sections.items():
        columns = grid.section_columns.get(title, grid.columns)
        out += [f"### {title}", "", _md_row(columns), _md_row(["---"] * len(columns))]
        out += [_md_row([_md_cell(c) for c in row]) for row in rows]
        out.append("")
    out += grid.notes
    return "\n".join(out).rstrip() + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_cell(cell: Cell) -> str:
    text = cell.plain()
    if cell.rank == BEST:
        return f"**{text}**"
    if cell.rank == SECOND:
        return f"<u>{text}</u>"
    return text


def to_latex(grid: Grid, caption: str, label: str, note_column: int | None = None) -> str:
    """A booktabs `table` (needs \\usepackage{booktabs}); sections separated by \\midrule.

    Each mean ± sd is stacked (sd in small type below) so nine τ columns fit the text width.
    `note_column` (e.g. citations, reasons for not running) becomes superscript letters on the
    row's first cell, explained under the table.
    """
    keep = [i for i in range(len(grid.columns)) if i != note_column]
    markers: dict[str, str] = {}  # note text -> letter

    def first_cell(row: list[Cell]) -> str:
        note = row[note_column].plain() if note_column is not None else ""
        if not note:
            return _tex_cell(row[0])
        letter = markers.setdefault(note, chr(ord("a") + len(markers)))
        return f"{_tex_cell(row[0])}\\textsuperscript{{{letter}}}"

    lines = [
        "\\begin{table}",
        "\\centering",
        "\\small",
        "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{l{'c' * (len(keep) - 1)}}}",
        "\\toprule",
        " & ".join(latex_escape(grid.columns[i]) for i in keep) + " \\\\",
    ]
    for title, rows in grid.sections.items():
        lines += ["\\midrule", f"\\multicolumn{{{len(keep)}}}{{l}}{{\\textit{{{latex_escape(title)}}}}} \\\\"]
        if title in grid.section_columns:  # its own headers under its title
            lines.append(" & ".join(latex_escape(grid.section_columns[title][i]) for i in keep) + " \\\\")
        lines += [" & ".join([first_cell(row), *(_tex_cell(row[i]) for i in keep[1:])]) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = [f"\\textsuperscript{{{letter}}}{latex_escape(text)}" for text, letter in markers.items()]
    notes += [latex_escape(note) for note in grid.notes]
    lines += [f"\\par\\footnotesize {note}" for note in notes]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _tex_cell(cell: Cell) -> str:
    if not _is_number(cell):
        return latex_escape(cell.plain())
    number = cell.number()
    if cell.rank == BEST:
        number = f"\\mathbf{{{number}}}"  # \textbf does not reach into math mode
    elif cell.rank == SECOND:
        number = f"\\underline{{{number}}}"
    lines = [f"${number}^{{\\dagger}}$" if cell.runs else f"${number}$"]
    if cell.has_sd():
        lines.append(f"{{\\scriptsize $\\pm {cell.sd:.3f}$}}")
    lines += [f"{{\\scriptsize ${extra}$}}" for extra in cell.extras()]
    if cell.remark:
        lines.append(f"{{\\scriptsize {latex_escape(cell.remark)}}}")
    stacked = "\\\\".join(lines)
    return lines[0] if len(lines) == 1 else f"\\shortstack{{{stacked}}}"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "τ": r"$\tau$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "$-$",
    "…": r"\dots{}",
    "†": r"$^\dagger$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "α": r"$\alpha$",
    "½": r"$\frac{1}{2}$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols the tables use."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
