"""Collect what the tables and figures need from one workflow run folder (``results/{run}``).

Layout (docs/interfaces.md): per-image scores in ``scores/{ds}/{method}/seed{s}.csv``, training
memory and logs in ``models/{ds}/{model}/seed{s}/``, predictions in
``predictions/{ds}/{method}/seed{s}/`` and, for a baseline that could not run,
``predictions/{ds}/{method}/NOT_RUN.txt`` with the reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..evaluate import COLUMNS as SCORE_COLUMNS
from ..io import DataError, read_json
from ..metrics import THRESHOLDS

log = logging.getLogger(__name__)

TAUS = tuple(THRESHOLDS.tolist())  # the paper's IoU thresholds, as `evaluate` writes them
LOG_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "val_iou", "seconds")
NOT_RUN_FILE = "NOT_RUN.txt"
EMBEDSEG = "embedseg-medoid-tta"
NEVEN = "embedseg-centroid-notta"
BASELINES = ("3class-unet", "stardist", "maskrcnn", "cellpose-trained", "cellpose-public")
BASELINE_LABELS = {
    "3class-unet": "3-Class U-Net",
    "stardist": "StarDist",
    "maskrcnn": "Mask R-CNN",
    "cellpose-trained": "Cellpose (trained)",
    "cellpose-public": "Cellpose (public)",
}
_OURS = re.compile(r"embedseg-(?P<center>[a-z-]+)-(?P<tta>tta|notta)")
_SEED_DIR = re.compile(r"seed(\d+)")


def method_label(method: str) -> str:
    """Display name of a method folder: the paper's names for EmbedSeg, Neven et al. and baselines."""
    if method == EMBEDSEG:
        return "EmbedSeg"
    if method == NEVEN:
        return "Neven et al."
    ours = _OURS.fullmatch(method)
    if ours:
        return f"EmbedSeg ({ours['center']}, {'TTA' if ours['tta'] == 'tta' else 'no TTA'})"
    return BASELINE_LABELS.get(method, method)


def method_order(method: str) -> tuple[int, str]:
    """Sort key: baselines first (paper order), other methods, Neven et al., EmbedSeg last."""
    if method in BASELINES:
        return (0, f"{BASELINES.index(method)}")
    if method == NEVEN:
        return (3, method)
    if method == EMBEDSEG:
        return (4, method)
    return (2 if _OURS.fullmatch(method) else 1, method)


def model_dir(results: Path, dataset: str, method: str, seed: int) -> Path:
    """Training folder of a method's run: our TTA/no-TTA variants share `embedseg-{center}`."""
    ours = _OURS.fullmatch(method)
    model = f"embedseg-{ours['center']}" if ours else method
    return Path(results) / "models" / dataset / model / f"seed{seed}"


def scores_path(results: Path, dataset: str, method: str, seed: int) -> Path:
    return Path(results) / "scores" / dataset / method / f"seed{seed}.csv"


def not_run_reason(results: Path, dataset: str, method: str) -> str | None:
    """The reason in ``predictions/{ds}/{method}/NOT_RUN.txt``, or None if there is no marker."""
    marker = Path(results) / "predictions" / dataset / method / NOT_RUN_FILE
    if not marker.is_file():
        return None
    reason = " ".join(marker.read_text().split())
    return reason or "no reason given"


def read_scores(path: Path, metric: str = "ap") -> pd.DataFrame:
    """Read and check one per-image scores CSV (`embedseg evaluate`'s columns), restricted to
    the rows at τ ∈ :data:`TAUS`.

    Every image must carry a finite `metric` at every τ in :data:`TAUS`; anything else is an
    error naming the file, because a silently shorter mean would bias the table.
    """
    try:
        scores = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: scores file not found; run `embedseg evaluate` for this run") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); re-run `embedseg evaluate`") from exc
    required = [*SCORE_COLUMNS[:6], metric]  # today's columns; older files lack the others
    missing = [c for c in dict.fromkeys(required) if c not in scores.columns]
    if missing or scores.empty:
        raise DataError(
            f"{path}: expected columns {','.join(dict.fromkeys(required))} and at least one row "
            f"(missing: {missing or 'rows'}); re-run `embedseg evaluate`"
        )
    values = scores[["tau", metric]].apply(pd.to_numeric, errors="coerce")
    if not np.isfinite(values.to_numpy(dtype=float)).all():
        raise DataError(f"{path}: NaN or non-numeric tau/{metric} values; re-run `embedseg evaluate`")
    scores["tau"] = values["tau"].round(2)
    scores[metric] = values[metric]
    scores = scores[scores["tau"].isin(TAUS)]
    per_image = scores.groupby("image")["tau"].agg(frozenset)
    incomplete = per_image[per_image != frozenset(TAUS)]
    if per_image.empty:
        raise DataError(f"{path}: no rows at the thresholds {list(TAUS)}; re-run `embedseg evaluate`")
    if len(incomplete):
        raise DataError(
            f"{path}: image {incomplete.index[0]!r} has thresholds {sorted(incomplete.iloc[0])}, "
            f"expected each of {list(TAUS)} once; re-run `embedseg evaluate`"
        )
    if scores.duplicated(["image", "tau"]).any():
        raise DataError(f"{path}: repeated (image, tau) rows; re-run `embedseg evaluate`")
    return scores


def run_ap(scores: pd.DataFrame, metric: str = "ap") -> pd.Series:
    """A score of one run (AP_dsb by default): per τ the mean over images of the per-image
    score. Index: τ."""
    return scores.groupby("tau")[metric].mean()


@dataclass
class Collection:
    """Per-run AP of every (data set, method, seed) found, plus the methods that could not run.

    ap: DataFrame, MultiIndex (dataset, method, seed), one column per τ.
    not_run: {(dataset, method): reason}.
    """

    ap: pd.DataFrame
    not_run: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        found = set(self.ap.index.get_level_values("dataset")) | {ds for ds, _ in self.not_run}
        return sorted(found)

    def methods(self, dataset: str) -> list[str]:
        found = {m for ds, m in self.not_run if ds == dataset}
        if dataset in self.ap.index.get_level_values("dataset"):
            found |= set(self.ap.loc[dataset].index.get_level_values("method"))
        return sorted(found, key=method_order)

    def runs(self, dataset: str, method: str) -> pd.DataFrame:
        """AP per run (rows: seed, columns: τ); empty if the method has no scores."""
        try:
            return self.ap.loc[(dataset, method)]
        except KeyError:
            return self.ap.iloc[:0].droplevel(["dataset", "method"])


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _seeds_found(folder: Path) -> list[int]:
    """Seeds of the `seed{N}.csv` files in a method's scores folder."""
    matches = [_SEED_DIR.fullmatch(p.stem) for p in folder.glob("seed*.csv")]
    return sorted(int(m[1]) for m in matches if m)


def _methods_found(results: Path, dataset: str) -> list[str]:
    """Methods with a scores folder or a NOT_RUN.txt for `dataset`."""
    declined = {m for m in _subfolders(results / "predictions" / dataset) if not_run_reason(results, dataset, m)}
    return sorted(set(_subfolders(results / "scores" / dataset)) | declined)


def collect(
    results: str | Path,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    metric: str = "ap",
) -> Collection:
    """Load every run's AP (or another `metric` column of the scores) under `results`; what is
    not given is discovered from the folders.

    Every (data set, method, seed) asked for — or, when seeds are not given, every method
    folder found — must have scores unless the method left a NOT_RUN.txt; otherwise a
    :class:`DataError` names the missing file.
    """
    results = Path(results)
    if not results.is_dir():
        raise DataError(f"{results}: results folder not found; pass results/{{run}} of a workflow run")
    dataset_names = list(datasets) if datasets else sorted(
        set(_subfolders(results / "scores")) | set(_subfolders(results / "predictions"))
    )
    if not dataset_names:
        raise DataError(f"{results}: no scores/ or predictions/ folders; run the workflow (or `embedseg evaluate`) first")
    rows: dict[tuple[str, str, int], pd.Series] = {}
    not_run: dict[tuple[str, str], str] = {}
    for dataset in dataset_names:
        for method in list(methods) if methods else _methods_found(results, dataset):
            method_seeds = list(seeds) if seeds else _seeds_found(results / "scores" / dataset / method)
            reason = not_run_reason(results, dataset, method)
            present = [s for s in method_seeds if scores_path(results, dataset, method, s).is_file()]
            if reason and not present:
                not_run[(dataset, method)] = reason
                continue
            if not method_seeds:
                raise DataError(
                    f"{results / 'scores' / dataset / method}: no seed*.csv scores and no "
                    f"predictions/{dataset}/{method}/{NOT_RUN_FILE}; run `embedseg evaluate` for it"
                )
            for seed in method_seeds:
                scores = read_scores(scores_path(results, dataset, method, seed), metric)
                rows[(dataset, method, seed)] = run_ap(scores, metric)
    index = pd.MultiIndex.from_tuples(list(rows), names=["dataset", "method", "seed"])
    ap = pd.DataFrame(list(rows.values()), index=index, columns=list(TAUS)).sort_index()
    return Collection(ap=ap, not_run=not_run)


def read_memory(path: Path) -> tuple[int, str] | None:
    """(peak_bytes, kind) from a run's memory.json, or None if the run wrote none."""
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("peak_bytes"), int) or record.get("kind") not in (
        "cuda_max_allocated",
        "cpu_peak_rss",
    ):
        raise DataError(
            f"{path}: expected {{\"peak_bytes\": int, \"kind\": \"cuda_max_allocated\"|\"cpu_peak_rss\"}}; "
            "re-run the training step (embedseg.runtime.write_memory_json)"
        )
    return record["peak_bytes"], record["kind"]


def training_memory(results: Path, dataset: str, method: str, seeds: Sequence[int]) -> tuple[int, str] | None:
    """Largest training peak over a method's runs and its kind (``mixed`` if runs differ)."""
    records = [read_memory(model_dir(results, dataset, method, s) / "memory.json") for s in seeds]
    found = [r for r in records if r is not None]
    if len(found) < len(records):
        log.warning("%s/%s: %d of %d runs have no memory.json", dataset, method, len(records) - len(found), len(records))
    if not found:
        return None
    kinds = {kind for _, kind in found}
    return max(peak for peak, _ in found), kinds.pop() if len(kinds) == 1 else "mixed"


def read_log(path: Path) -> pd.DataFrame:
    """One run's training log (`epoch,lr,train_loss,val_loss,val_iou,seconds`)."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); the training run wrote a broken log") from exc
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; expected {','.join(LOG_COLUMNS)}")
    return frame


def training_logs(results: str | Path, datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """All ``models/{ds}/{model}/seed{s}/log.csv`` stacked, with dataset, model and seed columns."""
    frames = []
    for path in sorted(Path(results).glob("models/*/*/seed*/log.csv")):
        dataset, model, seed_dir = path.parts[-4:-1]
        seed = _SEED_DIR.fullmatch(seed_dir)
        if seed is None or (datasets and dataset not in datasets) or (seeds and int(seed[1]) not in seeds):
            continue
        frames.append(read_log(path).assign(dataset=dataset, model=model, seed=int(seed[1])))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*LOG_COLUMNS, "dataset", "model", "seed"])
