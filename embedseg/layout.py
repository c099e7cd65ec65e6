"""Where every step's results live, the marker files and the training-log columns.

One source for the workflow (``workflow/rules/common.smk``), the report (tables, figures) and
the methods (`embedseg train`, the baselines). Standard library only: the Snakefile and every
method's environment (TensorFlow for StarDist, Cellpose's own torch) import it.

A run folder ``results/{run}`` holds (docs/interfaces.md)::

    data/{ds}/                                prepared split (dataset.json, train/ val/ test/)
    models/{ds}/{model}/seed{s}/              training output: log.csv, memory.json, …
    predictions/{ds}/{method}/seed{s}/        one label TIFF per test image
    predictions/{ds}/{method}/NOT_RUN.txt     a method that declined to run, with the reason
    scores/{ds}/{method}/seed{s}.csv          per-image scores (`embedseg evaluate`)
    status/{ds}/{method}/seed{s}.{step}       empty flags of finished baseline steps
    benchmarks/{step}/{ds}/{name}/seed{s}.tsv Snakemake benchmark of a run's job (s, cpu_time, …)

Our TTA/no-TTA variants (methods ``embedseg-{center}-{tta}``) share the model
``embedseg-{center}``; every other method's model folder has the method's name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

NOT_RUN = "NOT_RUN.txt"
LOG_CSV = "log.csv"
MEMORY_JSON = "memory.json"
TRAIN_JSON = "train.json"  # written by `embedseg train` whenever training (re)starts

# Validation metrics in log.csv; the two IoUs measure different things and never share a column.
VAL_OBJECT_IOU = "val_iou"  # EmbedSeg: mean IoU of the clustered objects with their GT (official name)
VAL_PIXEL_MIOU = "val_pixel_miou"  # 3-class U-Net: pixel IoU averaged over its three classes
VAL_METRICS = {
    VAL_OBJECT_IOU: "validation object IoU (EmbedSeg)",
    VAL_PIXEL_MIOU: "validation pixel mIoU (3 classes)",
}
# Columns of every method's per-epoch log.csv; a value a method does not have stays empty.
LOG_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", VAL_OBJECT_IOU, VAL_PIXEL_MIOU, "seconds")
LOG_REQUIRED = ("epoch", "lr", "train_loss", "val_loss", "seconds")  # older logs lack a metric column

# Steps of one run's job with a Snakemake benchmark, by what they do (the rules' names).
TRAIN_BENCHMARKS = ("train", "baseline_train", "method_train")
PREDICT_BENCHMARKS = ("predict", "baseline_predict", "method_predict")

SEED_DIR = re.compile(r"seed(\d+)")
_OURS = re.compile(r"embedseg-(?P<center>[a-z-]+)-(?P<tta>tta|notta)")

PathLike = str | os.PathLike


def seed_dir(seed: int | str) -> str:
    """``seed{seed}``; `seed` may be a Snakemake wildcard such as ``"{seed}"``."""
    return f"seed{seed}"


def data_dir(results: PathLike, dataset: str) -> Path:
    return Path(results) / "data" / dataset


def embedseg_model(center: str) -> str:
    """Model folder name shared by our variants ``embedseg-{center}-tta`` and ``-notta``."""
    return f"embedseg-{center}"


def model_name(method: str) -> str:
    """Model folder of a method: ``embedseg-{center}`` for our variants, else the method itself."""
    ours = _OURS.fullmatch(method)
    return embedseg_model(ours["center"]) if ours else method


def model_dir(results: PathLike, dataset: str, method: str, seed: int | str) -> Path:
    """Training folder of a method's run (our TTA/no-TTA variants share one)."""
    return Path(results) / "models" / dataset / model_name(method) / seed_dir(seed)


def predictions_dir(results: PathLike, dataset: str, method: str, seed: int | str) -> Path:
    return Path(results) / "predictions" / dataset / method / seed_dir(seed)


def not_run_file(results: PathLike, dataset: str, method: str) -> Path:
    """The marker a method writes instead of predictions when it cannot run (with the reason)."""
    return Path(results) / "predictions" / dataset / method / NOT_RUN


def not_run_beside(pred_dir: PathLike) -> Path:
    """The NOT_RUN.txt of the method whose prediction folder (``…/{method}/seed{s}``) is given."""
    return Path(pred_dir).resolve().parent / NOT_RUN


def scores_dir(results: PathLike, dataset: str, method: str) -> Path:
    return Path(results) / "scores" / dataset / method


def scores_file(results: PathLike, dataset: str, method: str, seed: int | str) -> Path:
    return scores_dir(results, dataset, method) / f"{seed_dir(seed)}.csv"


def status_flag(results: PathLike, dataset: str, method: str, seed: int | str, step: str) -> Path:
    """Empty file marking that a baseline's `step` (trained | predicted) has finished."""
    return Path(results) / "status" / dataset / method / f"{seed_dir(seed)}.{step}"


def benchmark_file(results: PathLike, step: str, dataset: str, name: str, seed: int | str) -> Path:
    """The Snakemake benchmark TSV of one run's `step` job (:data:`TRAIN_BENCHMARKS`,
    :data:`PREDICT_BENCHMARKS`); `name` is the job's model folder (``embedseg-{center}`` for
    `train`) or method."""
    return Path(results) / "benchmarks" / step / dataset / name / f"{seed_dir(seed)}.tsv"
