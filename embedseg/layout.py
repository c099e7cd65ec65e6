"""Where every step's results live, the marker files and the training-log columns.

One source for the workflow (``workflow/rules/*.smk``), the report (tables, figures) and
the methods (`embedseg train`, the baselines). Standard library only: the Snakefile and every
method's environment (TensorFlow for StarDist, Cellpose's own torch) import it.

A run folder ``results/{run}`` holds (docs/interfaces.md)::

    data/{ds}/                                prepared split (dataset.json, train/ val/ test/)
    data-resplit/{ds}/seed{s}/                the same with run s's own validation split
    crops/{ds}/{center}/                      training crops (crops-resplit/{ds}/{center}/seed{s}/)
    models/{ds}/{model}/seed{s}/              training output: train.json, best.pt, last.pt, log.csv, memory.json
    predictions/{ds}/{method}/seed{s}/        one label TIFF per test image
    predictions/{ds}/{method}/NOT_RUN.txt     a method that declined to run, with the reason
    scores/{ds}/{method}/seed{s}.csv          per-image scores (`embedseg evaluate`)
    status/{ds}/{method}/seed{s}.{step}       empty flags of finished baseline steps
    export/{ds}/{method}.zip                  bioimage.io package (`embedseg export`)
    tables/, figures/                         `embedseg tables`, `embedseg figures`
    logs/{step}/….log, benchmarks/{step}/….tsv each workflow job's log and Snakemake benchmark

Our TTA/no-TTA variants (:class:`embedseg.methods.Variant`) share the model
``embedseg-{center}``; every other method's model folder has the method's name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .methods import Variant

NOT_RUN = "NOT_RUN.txt"
LOG_CSV = "log.csv"
MEMORY_JSON = "memory.json"
TRAIN_JSON = "train.json"  # written by `embedseg train` whenever training (re)starts
BEST_PT = "best.pt"  # checkpoint of the best validation epoch (what predict and export read)
LAST_PT = "last.pt"  # checkpoint of the last epoch (what a resumed training starts from)

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

PathLike = str | os.PathLike


def seed_dir(seed: int | str) -> str:
    """``seed{seed}``; `seed` may be a Snakemake wildcard such as ``"{seed}"``."""
    return f"seed{seed}"


def data_dir(results: PathLike, dataset: str) -> Path:
    return Path(results) / "data" / dataset


def test_images(data: PathLike) -> Path:
    """The test images of a prepared data set (folder `data`)."""
    return Path(data) / "test" / "images"


def test_masks(data: PathLike) -> Path:
    return Path(data) / "test" / "masks"


def resplit_data_dir(results: PathLike, dataset: str, seed: int | str) -> Path:
    """Prepared data of run `seed` with `resplit: true`: its own train/val split."""
    return Path(results) / "data-resplit" / dataset / seed_dir(seed)


def crops_dir(results: PathLike, dataset: str, center: str) -> Path:
    return Path(results) / "crops" / dataset / center


def resplit_crops_dir(results: PathLike, dataset: str, center: str, seed: int | str) -> Path:
    """Crops of run `seed` with `resplit: true` (cut from its own split)."""
    return Path(results) / "crops-resplit" / dataset / center / seed_dir(seed)


def model_name(method: str) -> str:
    """Model folder of a method: ``embedseg-{center}`` for our variants, else the method itself."""
    variant = Variant.parse(method)
    return variant.model if variant else method


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


def export_package(results: PathLike, dataset: str, method: str) -> Path:
    """The bioimage.io zip of a method's model on a data set (`embedseg export`)."""
    return Path(results) / "export" / dataset / f"{method}.zip"


def tables_dir(results: PathLike) -> Path:
    return Path(results) / "tables"


def figures_dir(results: PathLike) -> Path:
    return Path(results) / "figures"


def crate_file(results: PathLike) -> Path:
    """`embedseg crate`'s RO-Crate of the run (its name is the RO-Crate specification's)."""
    return Path(results) / "ro-crate-metadata.json"


def gallery_dir(results: PathLike) -> Path:
    """gallery/{ds}/index.html: `embedseg gallery`'s per-image page of each data set."""
    return Path(results) / "gallery"


def gallery_report_page(results: PathLike, dataset: str) -> Path:
    """gallery/{ds}.html: the copy of a gallery page that `snakemake --report` embeds (a single-file
    report cannot hold the folder; the inline thumbnails render, the full-size links do not)."""
    return gallery_dir(results) / f"{dataset}.html"


def job_log(results: PathLike, step: str, *parts: str) -> Path:
    """Log of a workflow job: ``logs/{step}/{part}/…/{last part}.log`` (``logs/{step}.log``)."""
    return _job_file(Path(results, "logs"), step, parts, ".log")


def job_benchmark(results: PathLike, step: str, *parts: str) -> Path:
    """Snakemake benchmark of a workflow job: ``benchmarks/{step}/{part}/…/{last part}.tsv``."""
    return _job_file(Path(results, "benchmarks"), step, parts, ".tsv")


def _job_file(root: Path, step: str, parts: tuple[str, ...], suffix: str) -> Path:
    *folders, last = (step, *parts)
    return root.joinpath(*folders, last + suffix)  # not with_suffix: names may hold dots


def deployed_commit_file(root: PathLike) -> Path:
    """The file naming the commit of a deployed copy of the workflow (no .git of its own):
    written by workflow/rules/config.smk, read by the run's provenance."""
    return Path(root) / "DEPLOYED_COMMIT"
