"""The paper's 3-D table (`config/paper_results_3d.yaml`: Lalit et al., MIDL 2021, Table 2) and the
comparison section of 3-D runs beside it (in comparison_to_paper.md).

A 3-D run is comparable with that paper only if it was split, scored and trained as the paper's
code did; the section names every condition of the run (the prepared data set's dataset.json, the
models' train.json) that differs from the paper's (`conditions` in the YAML), so that no 3-D row
stands beside the paper's numbers without saying so (issue 30).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import layout
from ..io import DataError, read_json
from ..methods import label as method_label
from .results import TAUS_3D, Collection

PAPER_3D_FILE = "paper_results_3d.yaml"  # next to config/paper_results.yaml
CONDITIONS = ("split_seed", "ignore_region", "variance_loss", "clustering")


@dataclass
class Paper3D:
    """datasets[ds] = (conditions, {method: (AP per τ of TAUS_3D, NaN = not transcribed; note)})."""

    source: str
    runs: int
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, dict[str, tuple[np.ndarray, str]]] = field(default_factory=dict)


def load_paper3d(path: str | Path) -> Paper3D | None:
    """Read `paper_results_3d.yaml`; None when the file is absent (no 3-D comparison then)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not np.allclose(data.get("taus", []), TAUS_3D):
        raise DataError(f"{path}: expected `taus` {list(TAUS_3D)} and `datasets` (see the file's header comment)")
    paper = Paper3D(source=str(data.get("source", path)), runs=int(data.get("runs", 3)))
    for ds, entry in (data.get("datasets") or {}).items():
        paper.conditions[ds] = dict(entry.get("conditions") or {})
        paper.rows[ds] = {}
        for method, row in (entry.get("methods") or {}).items():
            ap = row.get("ap")
            if not isinstance(ap, list) or len(ap) != len(TAUS_3D):
                raise DataError(f"{path}: datasets.{ds}.methods.{method}.ap: expected {len(TAUS_3D)} values or nulls")
            values = np.array([np.nan if v is None else v for v in ap], dtype=float)
            paper.rows[ds][method] = (values, str(row.get("note", "")))
    return paper


def run_conditions(results: Path, dataset: str, methods: list[str], seeds: list[int]) -> dict[str, Any]:
    """The run's split seed and ignore region (dataset.json) and variance term and clustering
    preset (the first train.json found; `clustering` there is the data set's default, which
    `predict --clustering auto` uses). Missing files leave their keys out."""
    found: dict[str, Any] = {}
    data_json = layout.data_dir(results, dataset) / "dataset.json"
    if data_json.is_file():
        settings = read_json(data_json)
        found["split_seed"] = settings.get("extra", {}).get("split_seed", "not recorded")
        found["ignore_region"] = settings.get("ignore_region")
        found["clustering"] = settings.get("clustering", "paper")
    for method in methods:
        for seed in seeds:
            train_json = layout.model_dir(results, dataset, method, seed) / layout.TRAIN_JSON
            if train_json.is_file():
                found["variance_loss"] = read_json(train_json)["args"].get("variance_loss")
                return found
    return found


def _cell(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f}"


def comparison3d_markdown(collection: Collection, paper: Paper3D | None, results: Path) -> str:
    """Markdown section: per 3-D data set of the run, its conditions beside the paper's (each
    difference named), our mean AP per τ and the paper's rows; empty without 3-D data sets."""
    datasets = [ds for ds in collection.datasets if collection.taus_of(ds) == TAUS_3D]
    if not datasets:
        return ""
    out = ["## 3-D: the paper's 3-D table", ""]
    if paper is None:
        return "\n".join([*out, "No 3-D results file (config/paper_results_3d.yaml): no comparison.", ""])
    out += [
        f"Paper: {paper.source} (means over {paper.runs} runs), AP_dsb at τ = 0.1 … 0.9. Ours: mean over our runs.",
        "",
    ]
    header = "| method | n | " + " | ".join(f"{t:.1f}" for t in TAUS_3D) + " |"
    rule = "|---|---|" + "---|" * len(TAUS_3D)
    for dataset in datasets:
        out += [f"### {dataset}", ""]
        methods = [m for m in collection.methods(dataset) if (dataset, m) not in collection.not_run]
        seeds = sorted({int(s) for m in methods for s in collection.runs(dataset, m).index})
        ours = run_conditions(results, dataset, methods, seeds)
        out += ["This run: " + ", ".join(f"{key} {ours.get(key, 'not recorded')!r}" for key in CONDITIONS) + ".", ""]
        if dataset not in paper.conditions:
            out += [f"Not in the paper's 3-D table: no comparison for {dataset}.", ""]
            continue
        wanted = paper.conditions[dataset]
        differ = [
            f"{key} {ours.get(key, 'not recorded')!r} here, {wanted[key]!r} in the paper"
            for key in CONDITIONS
            if key in wanted and ours.get(key, "not recorded") != wanted[key]
        ]
        out.append(
            "**Not run as the paper ran it**: " + "; ".join(differ) + "."
            if differ
            else "Split seed, ignore region, variance term and clustering preset are the paper's."
        )
        out += ["", header, rule]
        for method in methods:
            runs = collection.runs(dataset, method)
            mean = runs.mean(axis=0).to_numpy(dtype=float)
            out.append(f"| {method_label(method)} (ours) | {len(runs)} | " + " | ".join(map(_cell, mean)) + " |")
        notes = []
        for method, (values, note) in paper.rows.get(dataset, {}).items():
            out.append(f"| {method_label(method)} (paper) | {paper.runs} | " + " | ".join(map(_cell, values)) + " |")
            if note:
                notes.append(f"{method_label(method)} (paper): {note}.")
        out += ["", *notes, ""] if notes else [""]
    return "\n".join(out)
