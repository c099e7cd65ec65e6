"""The paper's Table 1 and Table 2 (`config/paper_results.yaml`), loaded and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import DataError
from .results import TAUS


@dataclass
class PaperRow:
    """One Table 1 row of the paper: AP per τ (NaN = not reported) and its GPU memory as printed."""

    ap: np.ndarray  # (len(TAUS),) float, NaN where the paper leaves the cell empty
    gpu_memory: str | None = None
    reported: bool = False  # literature number without a runnable method in the pipeline
    label: str | None = None
    citation: str | None = None
    note: str | None = None  # e.g. the paper used a published model instead of training it
    trained_here: bool = False  # the paper's number is a published model's; our row trains the method


@dataclass
class Paper:
    """table1[ds][method] -> PaperRow; table2[ds][method] -> ΔAP per τ (len(TAUS),)."""

    source: str
    runs: int
    table1: dict[str, dict[str, PaperRow]]
    table2: dict[str, dict[str, np.ndarray]]


def _values(raw: Any, where: str) -> np.ndarray:
    if (
        not isinstance(raw, list)
        or len(raw) != len(TAUS)
        or not all(v is None or isinstance(v, (int, float)) for v in raw)
    ):
        raise DataError(f"{where}: expected a list of {len(TAUS)} numbers (null = not reported), got {raw!r}")
    return np.array([np.nan if v is None else v for v in raw], dtype=float)


def load_paper(path: str | Path) -> Paper:
    """Read `paper_results.yaml`; a malformed entry is an error naming the entry."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: paper results not found; pass --paper config/paper_results.yaml") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not {"taus", "table1", "table2"} <= set(data):
        raise DataError(f"{path}: expected keys taus, table1, table2 (see the file's header comment)")
    if not isinstance(data.get("runs"), int) or data["runs"] < 1:
        raise DataError(
            f"{path}: `runs` (the number of runs each EmbedSeg/Neven et al. number averages, 9 in the "
            f"paper) must be a positive integer, got {data.get('runs')!r}; the comparison's standard "
            "error needs it"
        )
    if not np.allclose(data["taus"], TAUS):
        raise DataError(f"{path}: taus {data['taus']} differ from the evaluated thresholds {list(TAUS)}")
    table1 = {
        ds: {
            method: PaperRow(
                ap=_values(row.get("ap"), f"{path}: table1.{ds}.{method}.ap"),
                gpu_memory=row.get("gpu_memory"),
                reported=bool(row.get("reported", False)),
                label=row.get("label"),
                citation=row.get("citation"),
                note=row.get("note"),
                trained_here=bool(row.get("trained_here", False)),
            )
            for method, row in rows.items()
        }
        for ds, rows in data["table1"].items()
    }
    table2 = {
        ds: {
            method: _values(row.get("delta_ap"), f"{path}: table2.{ds}.{method}.delta_ap")
            for method, row in rows.items()
        }
        for ds, rows in data["table2"].items()
    }
    return Paper(source=str(data.get("source", path)), runs=data["runs"], table1=table1, table2=table2)
