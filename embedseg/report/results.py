"""Collect what the tables and figures need from one workflow run folder (``results/{run}``).

The folders and files are those of :mod:`embedseg.layout` (per-image scores, training logs and
memory, predictions, and the ``NOT_RUN.txt`` of a method that could not run); display names and
order come from the method registry (:mod:`embedseg.methods`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout
from ..core.metrics import THRESHOLDS
from ..evaluate import COLUMNS as SCORE_COLUMNS
from ..evaluate import labels_ndim
from ..io import DataError, read_json
from ..layout import LOG_COLUMNS, LOG_CSV, LOG_REQUIRED, MEMORY_JSON, NOT_RUN, SEED_DIR, model_dir, scores_file
from ..methods import EMBEDSEG
from ..methods import order as method_order

log = logging.getLogger(__name__)

TAUS = tuple(THRESHOLDS.tolist())  # the paper's IoU thresholds of its 2-D tables, as `evaluate` writes them
TAUS_3D = tuple(np.round(np.arange(0.1, 0.9 + 1e-9, 0.1), 2).tolist())  # those of its 3-D tables
# Per-run scores beside the paper's τ columns (Table 1's CSV, and its mSA and F1@0.5 columns): the
# table's metric at τ = 0.95 (the first entry: "metric" stands for the metric's name), mSA, F1@0.5.
EXTRAS = ("metric_0.95", "msa", "f1_0.50")
EXTRA_TAUS = (0.5, 0.95)  # the thresholds :func:`run_extras` reads
MEMORY_KINDS = {"cuda_max_allocated": "CUDA", "cpu_peak_rss": "CPU RSS", "mixed": "mixed"}


def dataset_taus(results: Path, dataset: str) -> tuple[float, ...]:
    """The thresholds a data set is reported at: :data:`TAUS_3D` for a 3-D data set (the ndim of
    its prepared data's dataset.json), else :data:`TAUS`."""
    return TAUS_3D if labels_ndim(layout.data_dir(results, dataset)) == 3 else TAUS


def not_run_reason(results: Path, dataset: str, method: str) -> str | None:
    """The reason in ``predictions/{ds}/{method}/NOT_RUN.txt``, or None if there is no marker."""
    marker = layout.not_run_file(results, dataset, method)
    if not marker.is_file():
        return None
    reason = " ".join(marker.read_text().split())
    return reason or "no reason given"


def read_scores(
    path: Path, metric: str = "ap", taus: Sequence[float] = TAUS, also: Sequence[float] = ()
) -> pd.DataFrame:
    """Read and check one per-image scores CSV (`embedseg evaluate`'s columns), restricted to
    the rows at τ ∈ `taus` (and those at τ ∈ `also`, where present, unchecked).

    Every image must carry a finite `metric` at every τ in `taus`; anything else is an
    error naming the file, because a silently shorter mean would bias the table.
    """
    taus = tuple(taus)
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
    kept = scores[scores["tau"].isin((*taus, *also))]
    scores = kept[kept["tau"].isin(taus)]
    per_image = scores.groupby("image")["tau"].agg(frozenset)
    incomplete = per_image[per_image != frozenset(taus)]
    if per_image.empty:
        raise DataError(f"{path}: no rows at the thresholds {list(taus)}; re-run `embedseg evaluate`")
    if len(incomplete):
        raise DataError(
            f"{path}: image {incomplete.index[0]!r} has thresholds {sorted(incomplete.iloc[0])}, "
            f"expected each of {list(taus)} once; re-run `embedseg evaluate`"
        )
    if scores.duplicated(["image", "tau"]).any():
        raise DataError(f"{path}: repeated (image, tau) rows; re-run `embedseg evaluate`")
    return kept


def run_ap(scores: pd.DataFrame, metric: str = "ap") -> pd.Series:
    """A score of one run (AP_dsb by default): per τ the mean over images of the per-image
    score. Index: τ."""
    return scores.groupby("tau")[metric].mean()


def run_extras(scores: pd.DataFrame, metric: str = "ap") -> pd.Series:
    """The scores of the current literature for one run, means over images: `metric` at
    τ = 0.95, mSA and F1 at τ = 0.50 (:data:`EXTRAS`); NaN where the scores file lacks them
    (written before `evaluate` scored them)."""
    per_image = scores.drop_duplicates("image").set_index("image")
    at = {tau: scores[scores["tau"] == tau].set_index("image") for tau in EXTRA_TAUS}
    values = {
        EXTRAS[0]: at[0.95][metric].mean() if len(at[0.95]) else np.nan,
        "msa": per_image["msa"].mean() if "msa" in per_image else np.nan,
        "f1_0.50": at[0.5]["f1"].mean() if "f1" in at[0.5] and len(at[0.5]) else np.nan,
    }
    return pd.Series(values)


@dataclass
class Collection:
    """Per-run AP of every (data set, method, seed) found, plus the methods that could not run.

    ap: DataFrame, MultiIndex (dataset, method, seed), one column per τ of any data set (NaN
    at the thresholds a data set is not reported at).
    extras: the same index, columns :data:`EXTRAS` (:func:`run_extras`).
    images: the per-image scores behind `ap`, MultiIndex (dataset, method, seed, image).
    not_run: {(dataset, method): reason}.
    taus: the thresholds of each data set (:func:`dataset_taus`); absent = :data:`TAUS`.
    """

    ap: pd.DataFrame
    extras: pd.DataFrame = field(default_factory=pd.DataFrame)
    images: pd.DataFrame = field(default_factory=pd.DataFrame)
    not_run: dict[tuple[str, str], str] = field(default_factory=dict)
    taus: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def taus_of(self, dataset: str) -> tuple[float, ...]:
        return self.taus.get(dataset, TAUS)

    @property
    def all_taus(self) -> tuple[float, ...]:
        """Every threshold some data set is reported at, ascending (CSV columns of the tables)."""
        return tuple(sorted({t for ds in self.datasets for t in self.taus_of(ds)}))

    @property
    def datasets(self) -> list[str]:
        found = set(self.ap.index.get_level_values("dataset")) | {ds for ds, _ in self.not_run}
        return sorted(found)

    def methods(self, dataset: str) -> list[str]:
        found = {m for ds, m in self.not_run if ds == dataset}
        if dataset in self.ap.index.get_level_values("dataset"):
            found |= set(self.ap.loc[dataset].index.get_level_values("method"))
        return sorted(found, key=method_order)

    def image_scores(self, dataset: str, method: str) -> pd.DataFrame:
        """Per-image scores (rows: (seed, image), columns: the data set's τ)."""
        return self.images.loc[(dataset, method), list(self.taus_of(dataset))]

    def runs(self, dataset: str, method: str) -> pd.DataFrame:
        """AP per run (rows: seed, columns: the data set's τ); empty if the method has no scores."""
        columns = list(self.taus_of(dataset))
        try:
            return self.ap.loc[(dataset, method), columns]
        except KeyError:
            return self.ap.iloc[:0].droplevel(["dataset", "method"]).reindex(columns=columns)


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _seeds_found(folder: Path) -> list[int]:
    """Seeds of the `seed{N}.csv` files in a method's scores folder."""
    matches = [SEED_DIR.fullmatch(p.stem) for p in folder.glob("seed*.csv")]
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
    dataset_names = (
        list(datasets)
        if datasets
        else sorted(set(_subfolders(results / "scores")) | set(_subfolders(results / "predictions")))
    )
    if not dataset_names:
        raise DataError(
            f"{results}: no scores/ or predictions/ folders; run the workflow (or `embedseg evaluate`) first"
        )
    rows: dict[tuple[str, str, int], pd.Series] = {}
    extras: dict[tuple[str, str, int], pd.Series] = {}
    images: dict[tuple[str, str, int], pd.DataFrame] = {}
    not_run: dict[tuple[str, str], str] = {}
    taus = {dataset: dataset_taus(results, dataset) for dataset in dataset_names}
    for dataset in dataset_names:
        for method in list(methods) if methods else _methods_found(results, dataset):
            method_seeds = list(seeds) if seeds else _seeds_found(results / "scores" / dataset / method)
            reason = not_run_reason(results, dataset, method)
            present = [s for s in method_seeds if scores_file(results, dataset, method, s).is_file()]
            if reason and not present:
                not_run[(dataset, method)] = reason
                continue
            if not method_seeds:
                raise DataError(
                    f"{results / 'scores' / dataset / method}: no seed*.csv scores and no "
                    f"predictions/{dataset}/{method}/{NOT_RUN}; run `embedseg evaluate` for it"
                )
            for seed in method_seeds:
                path = scores_file(results, dataset, method, seed)
                scores = read_scores(path, metric, taus[dataset], also=EXTRA_TAUS)
                key = (dataset, method, seed)
                shown = scores[scores["tau"].isin(taus[dataset])]
                rows[key] = run_ap(shown, metric)
                images[key] = shown.pivot(index="image", columns="tau", values=metric)
                extras[key] = run_extras(scores, metric)
    index = pd.MultiIndex.from_tuples(list(rows), names=["dataset", "method", "seed"])
    columns = sorted({t for values in taus.values() for t in values})
    ap = pd.DataFrame(list(rows.values()), index=index, columns=columns).sort_index()
    extra = pd.DataFrame(list(extras.values()), index=index, columns=list(EXTRAS)).sort_index()
    names = ["dataset", "method", "seed", "image"]
    per_image = (
        pd.concat(images, names=names).sort_index()
        if images
        else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=names))
    )
    return Collection(ap=ap, extras=extra, images=per_image, not_run=not_run, taus=taus)


def read_memory(path: Path) -> tuple[int, str] | None:
    """(peak_bytes, kind) from a run's memory.json, or None if the run wrote none."""
    if not path.is_file():
        return None
    record = read_json(path)
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("peak_bytes"), int)
        or record.get("kind")
        not in (
            "cuda_max_allocated",
            "cpu_peak_rss",
        )
    ):
        raise DataError(
            f'{path}: expected {{"peak_bytes": int, "kind": "cuda_max_allocated"|"cpu_peak_rss"}}; '
            "re-run the training step (embedseg.runtime.write_memory_json)"
        )
    return record["peak_bytes"], record["kind"]


def training_memory(results: Path, dataset: str, method: str, seeds: Sequence[int]) -> tuple[int, str] | None:
    """Largest training peak over a method's runs and its kind (``mixed`` if runs differ)."""
    records = [read_memory(model_dir(results, dataset, method, s) / MEMORY_JSON) for s in seeds]
    found = [r for r in records if r is not None]
    if len(found) < len(records):
        log.warning(
            "%s/%s: %d of %d runs have no memory.json", dataset, method, len(records) - len(found), len(records)
        )
    if not found:
        return None
    kinds = {kind for _, kind in found}
    return max(peak for peak, _ in found), kinds.pop() if len(kinds) == 1 else "mixed"


def read_log(path: Path) -> pd.DataFrame:
    """One run's training log in :data:`embedseg.layout.LOG_COLUMNS`; a validation metric the
    run did not log (each method has at most one) is added as an empty column."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}); the training run wrote a broken log") from exc
    missing = [c for c in LOG_REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; expected {','.join(LOG_COLUMNS)}")
    return frame.reindex(columns=[*LOG_COLUMNS, *(c for c in frame.columns if c not in LOG_COLUMNS)])


def training_logs(
    results: str | Path, datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> pd.DataFrame:
    """All ``models/{ds}/{model}/seed{s}/log.csv`` stacked, with dataset, model and seed columns."""
    frames = []
    for path in sorted(Path(results).glob(f"models/*/*/seed*/{LOG_CSV}")):
        dataset, model, seed_dir = path.parts[-4:-1]
        seed = SEED_DIR.fullmatch(seed_dir)
        if seed is None or (datasets and dataset not in datasets) or (seeds and int(seed[1]) not in seeds):
            continue
        frames.append(read_log(path).assign(dataset=dataset, model=model, seed=int(seed[1])))
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*LOG_COLUMNS, "dataset", "model", "seed"])
    )


def paired_scores(collection: Collection, dataset: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-image scores of methods `a` and `b` on the same test images, for
    :func:`embedseg.report.stats.paired_images`: arrays (n_seeds, n_images, n_taus) and whether
    the two are the same trained model (TTA on/off), whose runs are then paired by seed (the
    seeds both have) rather than taken as they are."""
    frames = {m: collection.image_scores(dataset, m) for m in (a, b)}
    images = {m: sorted(set(f.index.get_level_values("image"))) for m, f in frames.items()}
    if images[a] != images[b]:
        raise DataError(
            f"{dataset}: {a} and {b} were scored on different test images ({len(images[a])} and "
            f"{len(images[b])}, e.g. {sorted(set(images[a]) ^ set(images[b]))[:3]}); evaluate both on one test set"
        )
    same_model = layout.model_name(a) == layout.model_name(b)
    seeds = {m: sorted(set(f.index.get_level_values("seed"))) for m, f in frames.items()}
    if same_model:
        common = sorted(set(seeds[a]) & set(seeds[b]))
        if not common:
            raise DataError(f"{dataset}: {a} and {b} share no seed; run both with the same --seeds")
        seeds = {a: common, b: common}
    arrays = [np.stack([frames[m].loc[s].loc[images[m]].to_numpy(dtype=float) for s in seeds[m]]) for m in (a, b)]
    return arrays[0], arrays[1], same_model


def memory_text(memory: tuple[int, str] | None) -> str:
    if memory is None:
        return "–"
    peak, kind = memory
    return f"{peak / 2**30:.2f} ({MEMORY_KINDS[kind]})"


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
