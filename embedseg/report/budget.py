"""Training budget and convergence of every trained run: the companion of Table 1.

`embedseg tables` writes, beside table1:

- ``budget.{md,csv}``: per data set and method (means over its runs) the epochs, optimiser
  steps and patches of training, the training job's wall time and device seconds, the
  prediction job's seconds per megapixel of test image, and whether training converged;
- ``convergence.json``: per run (data set, model, seed) the same facts, the validation score's
  rise over the last epochs and the "time to target" (epochs, optimiser steps and seconds to
  reach :data:`TARGET_FRACTION` of the final validation score, as MLPerf reports time to a
  target quality).

Every fact is read from what the runs already wrote (:mod:`embedseg.layout`): the model
folder's log.csv, memory.json and the method's record of its options (EmbedSeg: train.json;
3-Class U-Net and Mask R-CNN: ``train_args`` in model.pt; StarDist: stardist/config.json), the
Snakemake benchmark TSVs of the train and predict jobs, and the test masks' sizes. A fact a
method does not record is "n/a" with the reason as a footnote, never estimated.
:func:`run_budget` gives one run's facts, for a table here or a sweep over training budgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout
from ..evaluate import labels_ndim
from ..io import atomic_write, list_images, read_image, read_json, write_json
from ..methods import PUBLISHED_MODELS
from ..methods import label as method_label
from ..methods import order as method_order
from .render import Cell, Grid, to_markdown
from .results import Collection, read_log

# A training is "not converged" when the least-squares line through its validation score over
# the last CONVERGENCE_WINDOW of its validated epochs (at least 2 epochs) rises by more than
# CONVERGENCE_RISE (absolute) from the first to the last epoch of that window.
CONVERGENCE_WINDOW = 0.2
CONVERGENCE_RISE = 0.01
TARGET_FRACTION = 0.9  # time to target: first epoch whose validation score ≥ 0.9 × the final one
NOT_CONVERGED = "not converged"
SNAKEMAKE_SAMPLING_S = 30  # snakemake.benchmark.BENCHMARK_INTERVAL
LOWER_BOUND_BELOW_S = 100 * SNAKEMAKE_SAMPLING_S
CONVERGENCE_JSON = "convergence.json"

DEFINITIONS = {
    "converged": (
        f"not converged = the least-squares line through the validation score ({', '.join(layout.VAL_METRICS)}) "
        f"over the last {CONVERGENCE_WINDOW * 100:.0f} % of the validated epochs (at least 2) rises by more than "
        f"{CONVERGENCE_RISE} (absolute) from the window's first to its last epoch"
    ),
    "time_to_target": (
        f"epochs (and optimiser steps, and log.csv seconds) until the first epoch whose validation score is "
        f"at least {TARGET_FRACTION * 100:.0f} % of the score of the last epoch"
    ),
    "steps": "optimiser steps over all logged epochs",
    "patches": "training crops/patches passed forward and backward over all logged epochs",
    "train_wall_s": (
        "wall time of the training job (Snakemake benchmark s; of its last attempt only where a preempted "
        "training was resumed)"
    ),
    "train_device_s": (
        "CPU training: CPU time of the job (user + system over all cores, Snakemake benchmark cpu_time); "
        "GPU training: wall time of the job × 1 GPU. Snakemake samples a job's CPU time every "
        f"{SNAKEMAKE_SAMPLING_S} s after its first 15 s and keeps each process's last sample, so cpu_time can "
        f"miss up to {SNAKEMAKE_SAMPLING_S} s per process: ≥ marks a job shorter than {LOWER_BOUND_BELOW_S} s, "
        "where that is more than 1 %"
    ),
    "epoch_s": "sum of the per-epoch seconds in log.csv (training and validation loops only)",
    "inference_s_per_mpx": (
        "wall time of the prediction job (start-up, model loading and file I/O included; Snakemake benchmark s) "
        "divided by the test images' megapixels (megavoxels for 3-D)"
    ),
}


class Unavailable(Exception):
    """A fact a run did not record; the message is the footnote."""


@dataclass
class Convergence:
    """Convergence of one run's validation curve (:data:`DEFINITIONS`); None where undetermined."""

    metric: str | None = None
    epochs: int = 0
    final: float | None = None
    rise: float | None = None
    window_epochs: int = 0
    converged: bool | None = None
    target_epochs: int | None = None
    target_seconds: float | None = None
    reason: str = ""  # why converged is None


def convergence(log: pd.DataFrame) -> Convergence:
    """Convergence and time to target of one run's log (:func:`embedseg.report.results.read_log`
    columns; the validation metric is the one of :data:`embedseg.layout.VAL_METRICS` it logged)."""
    metric = next((m for m in layout.VAL_METRICS if m in log and log[m].notna().any()), None)
    if metric is None:
        return Convergence(epochs=len(log), reason="no validation score in log.csv")
    log = log.sort_values("epoch")
    validated = log[log[metric].notna()]
    epochs, score = validated["epoch"].to_numpy(dtype=float), validated[metric].to_numpy(dtype=float)
    final = float(score[-1])
    reached = int(np.argmax(score >= TARGET_FRACTION * final))  # scores ≥ 0: the last epoch reaches it
    seconds = pd.to_numeric(log["seconds"], errors="coerce").cumsum()
    result = Convergence(
        metric=metric,
        epochs=len(log),
        final=final,
        target_epochs=int(epochs[reached]) + 1,
        target_seconds=float(seconds[log["epoch"] == epochs[reached]].iloc[0]),
    )
    if len(score) < 2:
        result.reason = "fewer than 2 validated epochs"
        return result
    window = max(2, math.ceil(CONVERGENCE_WINDOW * len(score) - 1e-9))
    x, y = epochs[-window:], score[-window:]
    slope = np.polyfit(x, y, 1)[0]
    result.window_epochs = window
    result.rise = float(slope * (x[-1] - x[0]))
    result.converged = bool(result.rise <= CONVERGENCE_RISE)
    return result


@dataclass
class RunBudget:
    """What one training run (and its model's use by `method`) cost; None where not recorded,
    with the reason in `missing` (field name → footnote)."""

    dataset: str
    method: str
    model: str
    seed: int
    trained: bool = True
    epochs: int | None = None
    steps_per_epoch: int | None = None
    patches_per_epoch: int | None = None
    train_wall_s: float | None = None
    train_device_s: float | None = None
    train_device_s_lower_bound: bool = False  # CPU time of a short job (DEFINITIONS["train_device_s"])
    device: str | None = None
    epoch_s: float | None = None
    inference_s_per_mpx: float | None = None
    convergence: Convergence = field(default_factory=Convergence)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> int | None:
        return None if self.epochs is None or self.steps_per_epoch is None else self.epochs * self.steps_per_epoch

    @property
    def patches(self) -> int | None:
        return None if self.epochs is None or self.patches_per_epoch is None else self.epochs * self.patches_per_epoch

    @property
    def target_steps(self) -> int | None:
        target = self.convergence.target_epochs
        return None if target is None or self.steps_per_epoch is None else target * self.steps_per_epoch

    def record(self) -> dict:
        """Plain values for convergence.json."""
        record = asdict(self)
        record.update(steps=self.steps, patches=self.patches, target_steps=self.target_steps)
        return record


def _checkpoint_args(path: Path) -> dict:
    """``train_args`` of a torch checkpoint (mapped, not read: only the small dict is loaded)."""
    import torch

    if not path.is_file():
        raise Unavailable(f"{path.name} not found in the model folder")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["train_args"]


def steps_per_epoch(model_dir: Path, model: str) -> tuple[int, int]:
    """(optimiser steps, patches) per epoch of a model folder, from the method's own record of its
    options and its training loop; :class:`Unavailable` where the folder does not record them."""
    if model.startswith("embedseg-"):  # embedseg/train.py: drop_last batches, a step every m of them
        if not (model_dir / layout.TRAIN_JSON).is_file():
            raise Unavailable(f"no {layout.TRAIN_JSON} in the model folder")
        args = read_json(model_dir / layout.TRAIN_JSON)["args"]
        batches = args["train_size"] // args["batch_size"]
        return batches // args["virtual_batch"], batches * args["batch_size"]
    if model == "3class-unet":  # baselines/unet3class.py: ceil(train_size / batch) steps
        args = _checkpoint_args(model_dir / "model.pt")
        steps = max(1, math.ceil(args["train_size"] / args["batch_size"]))
        return steps, steps * args["batch_size"]
    if model == "maskrcnn":
        args = _checkpoint_args(model_dir / "model.pt")
        return args["steps_per_epoch"], args["steps_per_epoch"] * args["batch_size"]
    if model == "stardist":
        config = model_dir / "stardist" / "config.json"
        if not config.is_file():
            raise Unavailable("no stardist/config.json in the model folder")
        record = read_json(config)
        return record["train_steps_per_epoch"], record["train_steps_per_epoch"] * record["train_batch_size"]
    if model == "cellpose-trained":
        raise Unavailable("Cellpose's model folder does not record its training batch size")
    raise Unavailable("a method of one's own: its training command reports no steps")


PUBLISHED_MODEL = "a published model used zero-shot: no training here"


def read_benchmark(path: Path) -> dict[str, float]:
    """Mean over the rows (Snakemake `repeat`) of a benchmark TSV's s and cpu_time; a value
    Snakemake could not measure ("NA", a job too short to sample) is left out."""
    if not path.is_file():
        raise Unavailable("no Snakemake benchmark of the job (run outside the workflow?)")
    table = pd.read_csv(path, sep="\t")
    found = {}
    for column in ("s", "cpu_time"):
        values = pd.to_numeric(table.get(column), errors="coerce")
        if values is not None and values.notna().any():
            found[column] = float(values.mean())
    return found


def testset_megapixels(results: Path, dataset: str) -> float:
    """Megapixels (3-D: megavoxels) of the test set: the test masks' spatial sizes summed."""
    data = layout.data_dir(results, dataset)
    masks = list_images(data / "test" / "masks") if (data / "test" / "masks").is_dir() else []
    if not masks:
        raise Unavailable("no test masks to measure the image sizes")
    ndim = labels_ndim(data)
    return sum(math.prod(read_image(path).shape[-ndim:]) for path in masks) / 1e6


def _benchmark_of(results: Path, steps: tuple[str, ...], dataset: str, name: str, seed: int) -> dict[str, float]:
    for step in steps:
        path = layout.job_benchmark(results, step, dataset, name, layout.seed_dir(seed))
        if path.is_file():
            return read_benchmark(path)
    raise Unavailable("no Snakemake benchmark of the job (run outside the workflow?)")


def run_budget(results: str | Path, dataset: str, method: str, seed: int, megapixels: float | None = None) -> RunBudget:
    """The training budget, convergence and inference cost of one run of `method` (its model
    folder, :func:`embedseg.layout.model_dir`); `megapixels` of the test set (default: measured)."""
    results = Path(results)
    model = layout.model_name(method)
    model_dir = layout.model_dir(results, dataset, method, seed)
    budget = RunBudget(dataset, method, model, seed, trained=method not in PUBLISHED_MODELS)

    def fill(name: str, get: Callable[[], None]) -> None:
        try:
            get()
        except Unavailable as reason:
            budget.missing[name] = str(reason)

    def inference() -> None:
        seconds = _benchmark_of(results, layout.PREDICT_BENCHMARKS, dataset, method, seed).get("s")
        mpx = testset_megapixels(results, dataset) if megapixels is None else megapixels
        if seconds is None:
            raise Unavailable("the prediction job's benchmark has no wall time")
        budget.inference_s_per_mpx = seconds / mpx

    fill("inference_s_per_mpx", inference)
    if not budget.trained or not model_dir.is_dir():
        reason = (
            PUBLISHED_MODEL
            if method in PUBLISHED_MODELS
            else "no model folder: the method trains nothing here (or elsewhere)"
        )
        budget.missing.update(dict.fromkeys(TRAINING_FACTS, reason))
        return budget

    def epochs() -> None:
        path = model_dir / layout.LOG_CSV
        if not path.is_file():
            raise Unavailable("no log.csv in the model folder")
        log = read_log(path)
        budget.epochs = len(log)
        budget.epoch_s = float(pd.to_numeric(log["seconds"], errors="coerce").sum())
        budget.convergence = convergence(log)

    def per_epoch() -> None:
        budget.steps_per_epoch, budget.patches_per_epoch = steps_per_epoch(model_dir, model)

    def wall() -> None:
        budget.train_wall_s = training_job().get("s")
        if budget.train_wall_s is None:
            raise Unavailable("the training job's benchmark has no wall time")

    def device_seconds() -> None:
        memory = model_dir / layout.MEMORY_JSON
        if not memory.is_file():
            raise Unavailable("no memory.json: the training device is unknown")
        record = read_json(memory)
        gpu = record.get("kind") == "cuda_max_allocated" or str(record.get("device", "")).startswith("cuda")
        budget.device = "cuda" if gpu else "cpu"
        measured = training_job()
        budget.train_device_s = measured.get("s") if gpu else measured.get("cpu_time")
        budget.train_device_s_lower_bound = not gpu and measured.get("s", 0) < LOWER_BOUND_BELOW_S
        if budget.train_device_s is None:
            raise Unavailable(f"the training job's benchmark has no {'wall' if gpu else 'CPU'} time")

    def training_job() -> dict[str, float]:
        return _benchmark_of(results, layout.TRAIN_BENCHMARKS, dataset, model, seed)

    for name, get in (
        ("epochs", epochs),
        ("steps", per_epoch),
        ("train_wall_s", wall),
        ("train_device_s", device_seconds),
    ):
        fill(name, get)
    if budget.convergence.converged is None:
        budget.missing["converged"] = budget.missing.get("epochs") or budget.convergence.reason
    return budget


TRAINING_FACTS = ("epochs", "steps", "train_wall_s", "train_device_s", "converged")


@dataclass(frozen=True)
class Column:
    """A column of budget.md/.csv: its header, CSV name, value of a run, the RunBudget.missing
    keys that explain an absent value, and whether runs' values are counts (shown as a range)."""

    header: str
    name: str
    value: Callable[[RunBudget], float | None]
    because: tuple[str, ...]
    count: bool = False
    at_least: Callable[[RunBudget], bool] = lambda run: False  # the run's value is a lower bound

    def text(self, value: float) -> str:
        if self.count:
            return f"{value:,.0f}".replace(",", " ")
        if self.name == "val_rise":
            return f"{value:+.3f}".replace("-0.000", "+0.000")
        return f"{value:.3g}" if value < 100 else f"{value:.0f}"


COLUMNS = (
    Column("Epochs", "epochs", lambda b: b.epochs, ("epochs",), count=True),
    Column("Steps", "steps", lambda b: b.steps, ("epochs", "steps"), count=True),
    Column("Patches", "patches", lambda b: b.patches, ("epochs", "steps"), count=True),
    Column("Train wall (s)", "train_wall_s", lambda b: b.train_wall_s, ("train_wall_s",)),
    Column(
        "Device (s)",
        "train_device_s",
        lambda b: b.train_device_s,
        ("train_device_s",),
        at_least=lambda b: b.train_device_s_lower_bound,
    ),
    Column("Inference (s/Mpx)", "inference_s_per_mpx", lambda b: b.inference_s_per_mpx, ("inference_s_per_mpx",)),
    Column(
        f"Epochs to {TARGET_FRACTION * 100:.0f} %",
        "target_epochs",
        lambda b: b.convergence.target_epochs,
        ("converged",),
        True,
    ),
    Column("Steps to target", "target_steps", lambda b: b.target_steps, ("converged", "steps"), count=True),
    Column("Val. rise", "val_rise", lambda b: b.convergence.rise, ("converged",)),
)


class Footnotes:
    """Letters for the reasons of "n/a" cells, in order of first use."""

    def __init__(self) -> None:
        self.letters: dict[str, str] = {}

    def na(self, reason: str) -> str:
        letter = self.letters.setdefault(reason or "not recorded", chr(ord("a") + len(self.letters)))
        return f"n/a [{letter}]"

    def notes(self) -> list[str]:
        return [f"[{letter}] {reason}." for reason, letter in self.letters.items()]


def _cell(column: Column, runs: list[RunBudget], footnotes: Footnotes) -> tuple[Cell, float | None]:
    """The cell of one method (its runs) and the CSV value: the mean over the runs that have it."""
    values = [column.value(run) for run in runs]
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        reasons = [run.missing[key] for run in runs for key in column.because if key in run.missing]
        return Cell(text=footnotes.na(reasons[0] if reasons else "")), None
    mean = float(np.mean(present))
    if column.count and min(present) != max(present):
        text = f"{column.text(min(present))}–{column.text(max(present))}"
    else:
        text = column.text(mean)
    if any(column.at_least(run) for run in runs if column.value(run) is not None):
        text = f"≥ {text}"
    if len(present) < len(values):
        text += f" ({len(present)}/{len(values)} runs)"
    return Cell(text=text), mean


def _converged_cell(runs: list[RunBudget], footnotes: Footnotes) -> tuple[Cell, str]:
    flags = [run.convergence.converged for run in runs]
    judged = [f for f in flags if f is not None]
    if not judged:
        return Cell(text=footnotes.na(runs[0].missing.get("converged", ""))), ""
    failed = judged.count(False)
    if failed:
        return Cell(text=f"no ({failed}/{len(flags)} runs)"), "no"
    return Cell(text="yes" if len(judged) == len(flags) else f"yes ({len(judged)}/{len(flags)} runs)"), "yes"


def budget_table(results: Path, collection: Collection) -> tuple[pd.DataFrame, Grid, list[RunBudget]]:
    """budget.csv (one row per data set and measured method), its rendered grid and every run's
    :class:`RunBudget` (for convergence.json and the Table 1 marker)."""
    grid = Grid(columns=["Method", "Runs", *(c.header for c in COLUMNS), "Converged"])
    footnotes, records, every_run = Footnotes(), [], []
    for dataset in collection.datasets:
        measured = [m for m in collection.methods(dataset) if (dataset, m) not in collection.not_run]
        if not measured:
            continue
        try:
            megapixels = testset_megapixels(results, dataset)
        except Unavailable:
            megapixels = None
        rows = []
        for method in sorted(measured, key=method_order):
            seeds = [int(s) for s in collection.runs(dataset, method).index]
            runs = [run_budget(results, dataset, method, seed, megapixels) for seed in seeds]
            every_run += runs
            cells, record = [], dict(dataset=dataset, method=method, label=method_label(method))
            record.update(model=layout.model_name(method), runs=len(runs))
            for column in COLUMNS:
                cell, record[column.name] = _cell(column, runs, footnotes)
                cells.append(cell)
            converged, record["converged"] = _converged_cell(runs, footnotes)
            record["not_converged_runs"] = sum(run.convergence.converged is False for run in runs)
            record["train_device_s_lower_bound"] = any(run.train_device_s_lower_bound for run in runs)
            record["device"] = "/".join(sorted({run.device for run in runs if run.device})) or None
            record["val_metric"] = next((run.convergence.metric for run in runs if run.convergence.metric), None)
            records.append(record)
            rows.append([Cell(text=method_label(method)), Cell(text=str(len(runs))), *cells, converged])
        grid.sections[dataset] = rows
    grid.notes = [budget_note(), *footnotes.notes()]
    columns = ["dataset", "method", "label", "model", "runs", *(c.name for c in COLUMNS)]
    columns += ["converged", "not_converged_runs", "train_device_s_lower_bound", "device", "val_metric"]
    return pd.DataFrame.from_records(records, columns=columns), grid, every_run


def budget_note() -> str:
    return (
        "Per method the mean over its runs (a range where counts differ). Epochs = rows of log.csv; "
        f"Steps = {DEFINITIONS['steps']}; Patches = {DEFINITIONS['patches']}; Train wall = "
        f"{DEFINITIONS['train_wall_s']}; Device = {DEFINITIONS['train_device_s']}; Inference = "
        f"{DEFINITIONS['inference_s_per_mpx']}. Epochs/Steps to target = {DEFINITIONS['time_to_target']}. "
        f"Val. rise and Converged: {DEFINITIONS['converged']}. Our TTA and no-TTA variants share one "
        f"trained model. Per run: {CONVERGENCE_JSON}."
    )


def write_budget(results: Path, collection: Collection, out: Path) -> pd.DataFrame:
    """Write budget.{csv,md} and convergence.json into `out`; returns budget.csv's frame."""
    frame, grid, runs = budget_table(results, collection)
    with atomic_write(out / "budget.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_write(out / "budget.md") as tmp:
        tmp.write_text(f"# Training budget, convergence and inference cost (beside Table 1)\n\n{to_markdown(grid)}")
    trained = {(r.dataset, r.model, r.seed): r.record() for r in runs if r.trained}  # TTA variants: one model
    write_json(out / CONVERGENCE_JSON, {"definitions": DEFINITIONS, "runs": list(trained.values())})
    return frame


def mark_table1(frame: pd.DataFrame, grid: Grid, budget: pd.DataFrame) -> None:
    """Table 1's hook: a `converged` column (yes / no / empty) in its CSV, "(not converged)"
    after the method's name where some run did not converge, and a note naming budget.md."""
    flags = budget.set_index(["dataset", "method"])["converged"].to_dict()
    frame["converged"] = [flags.get(key, "") for key in zip(frame["dataset"], frame["method"])]
    for dataset, method in frame.loc[frame["converged"] == "no", ["dataset", "method"]].itertuples(index=False):
        for row in grid.sections.get(dataset, []):
            if row[0].text == method_label(method):
                row[0].text += f" ({NOT_CONVERGED})"
    grid.notes.append(
        f"({NOT_CONVERGED}) = some run's validation score still rose by more than {CONVERGENCE_RISE} over its "
        f"last {CONVERGENCE_WINDOW * 100:.0f} % of epochs. Training budget (steps, patches, wall and device time), "
        "convergence and inference seconds per megapixel of every method: budget.md."
    )
