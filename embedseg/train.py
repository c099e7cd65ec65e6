"""`embedseg train`: fit a Branched ERF-Net on object-centred crops (docs/method.md §6).

Adam (5e-4, weight decay 1e-4) with lr = 5e-4·(1 − epoch/200)^0.9 set once per epoch, optional
virtual batches (gradients of m mini-batches summed before a step), rotation/flip augmentation
(:func:`embedseg.crop_dataset.training_transforms`), random crops with replacement, validation
after every epoch. 2-D or 3-D as the crops are: their settings (CROPS_DIR/dataset.json, also
summarised in crops.json) give the dimension D, the anisotropy (the loss's grid spacing along Z)
and the foreground weight of the seed loss (docs/method.md §12). Writes best.pt
(strictly higher validation IoU), last.pt (every epoch; the run resumes from it), log.csv,
memory.json and train.json. With the same seed a resumed CPU run ends with bit-identical
weights to an uninterrupted one: every random number generator is saved in last.pt.

A run resumes only itself: last.pt and train.json keep the run's :func:`fingerprint` (crops
folder and content, normalisation, centre type, batch sizes, loss, seed, code version), and a
resume with another fingerprint is refused (`--no-resume` starts over). A new or empty OUT_DIR
is trained in place, so a killed first run leaves last.pt to resume from; an earlier model
folder that is not resumed is replaced only when the new training has finished
(:mod:`embedseg.outputs`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import __version__
from .acceleration import PRECISION_HELP, PRECISIONS, Precision, maybe_compile, resolve_precision
from .core.embedding import grid_spacing
from .core.losses import SpatialEmbLoss
from .crop_dataset import CropDataset, RandomCropSampler, collate_crops
from .crops import crops_digest, digest_sha256
from .dataset_settings import DatasetSettings
from .inference import ClusteringConfig
from .io import DataError, UserError, atomic_write, read_json, write_json
from .layout import BEST_PT, LAST_PT, LOG_COLUMNS, LOG_CSV, MEMORY_JSON, TRAIN_JSON
from .models import BranchedERFNet, read_checkpoint, save_checkpoint
from .optim import ChunkedAdam, separate_state_dict_storage
from .options import add_options, fingerprint_fields, from_args, option
from .outputs import MODEL, OutputError, check_output, replacing
from .runtime import (
    progress,
    resolve_device,
    restore_rng_state,
    rng_state,
    sampler_generators,
    seed_everything,
    seed_worker,
    write_memory_json,
)
from .schedule import BASE_LR, LR_HORIZON, LR_HORIZON_HELP, WEIGHT_DECAY, learning_rate

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training options (defaults = the paper's DSB/Usiigaci setting); stored in train.json.

    ``fingerprint=True``: the options that make a run what it is (:func:`fingerprint`); epochs (a
    resumed run may go further), device, workers and resume do not change what is learned
    (compile and precision: only its rounding).
    """

    epochs: int = option(200, "epochs to train (the learning rate decays over --lr-horizon epochs)")
    lr_horizon: int = option(LR_HORIZON, LR_HORIZON_HELP, fingerprint=True)
    batch_size: int = option(2, "crops per mini-batch", fingerprint=True)
    virtual_batch: int = option(
        8, "optimiser steps every N mini-batches (gradients of N mini-batches are averaged)", fingerprint=True
    )
    train_size: int = option(3000, "random crops drawn per epoch", fingerprint=True)
    val_size: int = option(2600, "random validation crops per epoch", fingerprint=True)
    val_batch_size: int = option(16, "crops per validation batch", fingerprint=True)
    variance_loss: str = option(
        "auto",
        "paper: broadcast variance term of the paper code; fixed: per channel, EmbedSeg >= 0.2 (the "
        "official 3-D loss); auto: the data set's (dataset.json variance_loss: paper in 2-D, fixed in 3-D)",
        fingerprint=True,
        choices=("auto", "paper", "fixed"),
    )
    seed: int = option(0, "seed of weights, crop draws, augmentation, dropout", fingerprint=True)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    workers: int = option(0, "DataLoader worker processes")
    resume: bool = option(
        True,
        "continue from OUT/last.pt if it exists and is the same run (same crops and "
        "settings); --no-resume starts over and replaces OUT when done",
    )
    # off: not shown faster yet (embedseg/acceleration.py)
    compile: bool = option(False, "run the network through torch.compile (falls back to eager with a warning)")
    # fp32 in the paper configuration: reproduction first
    precision: str = option("fp32", PRECISION_HELP, choices=PRECISIONS)

    def __post_init__(self) -> None:
        if (
            min(
                self.batch_size, self.virtual_batch, self.val_batch_size, self.epochs, self.lr_horizon, self.workers + 1
            )
            < 1
        ):
            raise UserError(
                "--epochs, --lr-horizon, --batch-size, --val-batch-size and --virtual-batch must be at least 1, "
                "--workers at least 0"
            )
        if self.train_size < self.batch_size or self.val_size < 1:
            raise UserError(
                f"--train-size {self.train_size} must hold one batch of {self.batch_size}; "
                "--val-size must be at least 1"
            )


class TrainingInterrupted(UserError):
    """Ctrl-C during training; the message says what was kept and how to go on."""

    exit_code = 130


def make_loader(
    dataset: CropDataset,
    size: int,
    batch_size: int,
    generator: torch.Generator,
    workers: int,
    drop_last: bool,
    device: torch.device,
) -> DataLoader:
    """DataLoader over `size` random (crop, transform) draws of `generator`."""
    sampler = RandomCropSampler(len(dataset), len(dataset.transforms), size, generator)
    # Persistent workers start once per training, not twice per epoch. They draw their base seed
    # from a generator of their own: from torch's global one (Dropout's), a resumed run would
    # draw it at another point of that stream than an uninterrupted one.
    worker_options = {}
    if workers:
        worker_options = {"persistent_workers": True, "generator": torch.Generator().manual_seed(0)}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        collate_fn=collate_crops,
        worker_init_fn=seed_worker,
        pin_memory=device.type == "cuda",
        **worker_options,
    )


def make_optimizer(model: torch.nn.Module) -> torch.optim.Adam:
    """Adam with the paper's learning rate and weight decay (the official code's optimiser).

    :class:`embedseg.optim.ChunkedAdam`: torch.optim.Adam's numbers bit for bit and its
    state_dict, with the update run over one flat buffer in cache-sized chunks. It makes the
    model's trained parameters views of that buffer, so the model's state_dict is told to copy
    them out (checkpoints unchanged). Not ``fused=True``: it is 1.10x faster per CPU step on
    small crops, but its rounding sends training on another trajectory (benchmarks/README.md),
    and reproduction comes first.
    """
    separate_state_dict_storage(model)
    return ChunkedAdam(model.parameters(), lr=BASE_LR, weight_decay=WEIGHT_DECAY)


def run_batch(
    model: torch.nn.Module,
    criterion: SpatialEmbLoss,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    precision: Precision,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and object IoUs of one batch (see SpatialEmbLoss.forward); the loss runs in float32."""
    with precision.autocast():
        prediction = model(batch["image"].to(device, non_blocking=True))
    return criterion(
        prediction.float(),
        batch["instances"].to(device, non_blocking=True),
        batch["center"].to(device, non_blocking=True),
    )


def train_epoch(
    model: torch.nn.Module,
    criterion: SpatialEmbLoss,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    virtual_batch: int,
    device: torch.device,
    precision: Precision,
) -> float:
    """One pass over `loader`; the optimiser steps every `virtual_batch` mini-batches.

    Each mini-batch back-propagates loss/m, so a step sees the mean gradient of m mini-batches;
    a partial group left at the end of the epoch is discarded (as the official code does).
    Returns the mean mini-batch loss.
    """
    model.train()
    optimizer.zero_grad()
    losses = []
    for i, batch in enumerate(progress(loader, desc="train", leave=False)):
        loss, _ = run_batch(model, criterion, batch, device, precision)
        precision.backward(loss / virtual_batch)
        if (i + 1) % virtual_batch == 0:
            precision.step(optimizer)
            optimizer.zero_grad()
        losses.append(loss.item())
    optimizer.zero_grad()
    return float(np.mean(losses))


def validate(
    model: torch.nn.Module, criterion: SpatialEmbLoss, loader: DataLoader, device: torch.device, precision: Precision
) -> tuple[float, float]:
    """(mean loss over batches, mean IoU over every object of every sampled crop)."""
    model.eval()
    losses, ious = [], []
    with torch.no_grad():
        for batch in progress(loader, desc="val", leave=False):
            loss, batch_ious = run_batch(model, criterion, batch, device, precision)
            losses.append(loss.item())
            ious.append(batch_ious.cpu())
    all_ious = torch.cat(ious)
    return float(np.mean(losses)), float(all_ious.mean()) if len(all_ious) else 0.0


def write_log(path: Path, history: list[dict[str, float]]) -> None:
    """log.csv with one row per finished epoch (rewritten whole, so a resume never duplicates rows)."""
    with atomic_write(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def fingerprint(crops_dir: Path, settings: DatasetSettings, config: TrainConfig) -> dict[str, Any]:
    """What makes two trainings the same run (stored in last.pt and train.json; plain values)."""
    return {
        "crops_dir": str(crops_dir.resolve()),
        "crops_sha256": digest_sha256(crops_digest(crops_dir)),
        "normalization": settings.normalization,
        "normalization_factor": settings.normalization_factor,
        "percentiles": list(settings.percentiles),
        "center": settings.center,
        "crop_size": settings.crop_size,
        **{name: getattr(config, name) for name in fingerprint_fields(TrainConfig)},
        "embedseg_version": __version__,
    }


def check_same_run(checkpoint: dict[str, Any], current: dict[str, Any], out_dir: Path) -> None:
    """Refuse to resume `checkpoint` (last.pt of `out_dir`) unless it has the `current` fingerprint."""
    saved = checkpoint.get("fingerprint")
    if saved is None:
        differences = "its last.pt was written by an older embedseg that did not record its inputs"
    else:
        differences = "; ".join(
            f"{key} {saved.get(key)!r} there, {value!r} now"
            for key, value in current.items()  # a field added since `saved` was written: its default
            if saved.get(key, getattr(TrainConfig, key, None)) != value
        )
    if differences:
        raise OutputError(
            f"--out {out_dir} holds another training run ({differences}); resuming would mix two runs. "
            "Resume it with its original command, start over with --no-resume (the old model is replaced "
            "when the new one is done; in the Snakemake workflow: delete the folder), or choose another --out"
        )


def resume(
    checkpoint: dict[str, Any],
    model: BranchedERFNet,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> tuple[int, float, list[dict[str, float]]]:
    """Load weights, optimiser and random states of `checkpoint`; returns (next epoch, best IoU, log rows)."""
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optim_state_dict"])
    restore_rng_state(checkpoint["rng_state"], generators)
    return checkpoint["epoch"] + 1, checkpoint["best_iou"], checkpoint["history"]


def killed_before_first_epoch(out_dir: Path, current: dict[str, Any]) -> bool:
    """Whether `out_dir` is what this same run left when killed in epoch 0: a train.json with the
    `current` fingerprint and no checkpoint yet (so nothing to keep, and nothing to replace)."""
    if (out_dir / LAST_PT).exists() or (out_dir / BEST_PT).exists() or not (out_dir / TRAIN_JSON).is_file():
        return False
    try:
        saved = read_json(out_dir / TRAIN_JSON).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return False
    return saved == json.loads(json.dumps(current))


def train(
    crops_dir: str | Path, out_dir: str | Path, config: TrainConfig, force: bool = False
) -> list[dict[str, float]]:
    """Train on CROPS_DIR/{train,val}; write OUT_DIR/{best.pt,last.pt,log.csv,memory.json,train.json}.

    Resumes from OUT_DIR/last.pt when `config.resume`, it exists and it is the same run
    (:func:`fingerprint`); otherwise an existing model folder (any folder with `force`) is
    replaced when training has finished. Returns the log rows.
    """
    crops_dir, out_dir = Path(crops_dir), Path(out_dir)
    replace = check_output(out_dir, MODEL, {"CROPS_DIR": crops_dir}, force)
    settings = DatasetSettings.load(crops_dir)
    if config.variance_loss == "auto":  # train.json and the fingerprint record the mode used
        config = dataclasses.replace(config, variance_loss=settings.variance_loss)
    device = resolve_device(config.device)
    run_fingerprint = fingerprint(crops_dir, settings, config)
    last_path = out_dir / LAST_PT
    if replace and config.resume and killed_before_first_epoch(out_dir, run_fingerprint):
        # Restart in place, as the first run did: in a staging folder a second kill would lose
        # its epochs again and leave the staging folder behind.
        log.info("%s holds a run of this command killed before its first epoch ended; restarting it", out_dir)
        replace = False
    try:
        if config.resume and last_path.is_file():
            checkpoint = read_checkpoint(last_path, device)
            check_same_run(checkpoint, run_fingerprint, out_dir)
            log.info(
                "resuming %s after epoch %d (best val IoU %.4f)", last_path, checkpoint["epoch"], checkpoint["best_iou"]
            )
            return fit(crops_dir, out_dir, config, settings, device, run_fingerprint, checkpoint)
        if not replace:
            return fit(crops_dir, out_dir, config, settings, device, run_fingerprint)
        with replacing(out_dir, MODEL, {"CROPS_DIR": crops_dir}, force) as staging:
            return fit(crops_dir, staging, config, settings, device, run_fingerprint)
    except KeyboardInterrupt:
        if replace and not (config.resume and last_path.is_file()):
            raise TrainingInterrupted(f"interrupted; nothing was kept and {out_dir} is as it was") from None
        done = len(read_checkpoint(last_path)["history"]) if last_path.is_file() else 0
        raise TrainingInterrupted(
            f"interrupted after {done} of {config.epochs} epochs; {last_path} holds the last finished epoch: "
            "run the same command again to resume"
            if done
            else "interrupted before the first epoch finished; run the same command again to start"
        ) from None


def fit(
    crops_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    settings: DatasetSettings,
    device: torch.device,
    run_fingerprint: dict[str, Any],
    checkpoint: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """The training loop of :func:`train`, writing into `out_dir`, continuing `checkpoint` if given."""
    seed_everything(config.seed)
    train_set = CropDataset(crops_dir / "train", settings)
    val_set = CropDataset(crops_dir / "val", settings)

    ndim = settings.ndim
    model = BranchedERFNet(in_channels=settings.in_channels, n_sigma=ndim, ndim=ndim).to(device)
    criterion = SpatialEmbLoss(
        n_sigma=model.n_sigma,
        variance_loss=config.variance_loss,
        spacing=grid_spacing(ndim, settings.anisotropy),
        foreground_weight=settings.foreground_weight,
    )
    optimizer = make_optimizer(model)
    generators = sampler_generators(config.seed)
    start_epoch, best_iou, history = 0, 0.0, []
    if checkpoint is not None:
        start_epoch, best_iou, history = resume(checkpoint, model, optimizer, generators)
    precision_name, why = resolve_precision(config.precision, device)
    log.info("training precision %s (%s)", precision_name, why)
    write_json(
        out_dir / TRAIN_JSON,
        {
            "crops_dir": str(crops_dir),
            "args": dataclasses.asdict(config),
            "settings": settings.to_dict(),
            "clustering": ClusteringConfig().record(settings),  # what `predict --clustering auto` uses
            "model_config": model.config,
            "fingerprint": run_fingerprint,
            "precision": {"requested": config.precision, "used": precision_name, "why": why},
        },
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward = maybe_compile(model, config.compile)  # the same parameters: checkpoints save `model`
    precision = Precision.named(precision_name, device)
    if checkpoint is not None and checkpoint.get("scaler_state_dict"):  # empty: saved without CUDA AMP
        precision.scaler.load_state_dict(checkpoint["scaler_state_dict"])

    train_loader = make_loader(
        train_set,
        config.train_size,
        config.batch_size,
        generators["train_sampler"],
        config.workers,
        drop_last=True,
        device=device,
    )
    val_loader = make_loader(
        val_set,
        config.val_size,
        config.val_batch_size,
        generators["val_sampler"],
        config.workers,
        drop_last=False,
        device=device,
    )
    for epoch in progress(range(start_epoch, config.epochs), desc="epochs", initial=start_epoch, total=config.epochs):
        started = time.perf_counter()
        lr = learning_rate(epoch, horizon=config.lr_horizon)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss = train_epoch(forward, criterion, optimizer, train_loader, config.virtual_batch, device, precision)
        val_loss, val_iou = validate(forward, criterion, val_loader, device, precision)
        history.append(
            {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_iou": val_iou,
                "seconds": time.perf_counter() - started,
            }
        )
        improved = val_iou > best_iou
        best_iou = max(best_iou, val_iou)
        state = {
            "model_state_dict": model.state_dict(),
            "model_config": model.config,
            "settings": settings.to_dict(),
            "epoch": epoch,
            "best_iou": best_iou,
            "optim_state_dict": optimizer.state_dict(),
            "rng_state": rng_state(generators),
            "train_args": dataclasses.asdict(config),
            "history": history,
            "fingerprint": run_fingerprint,
            "scaler_state_dict": precision.scaler.state_dict(),
        }
        if improved:
            save_checkpoint(out_dir / BEST_PT, state)
        save_checkpoint(out_dir / LAST_PT, state)
        write_log(out_dir / LOG_CSV, history)
        write_memory_json(out_dir / MEMORY_JSON, device)
        log.info(
            "epoch %d: lr %.3e train %.4f val %.4f val IoU %.4f%s",
            epoch,
            lr,
            train_loss,
            val_loss,
            val_iou,
            " (best)" if improved else "",
        )
    return history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "crops_dir", type=Path, help="crops folder written by `embedseg crops` (dataset.json, train/, val/)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="model folder (best.pt, last.pt, log.csv, memory.json, train.json)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUT even if it is a file or a folder not written by `embedseg train` (never an input)",
    )
    add_options(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    config = from_args(TrainConfig, args)
    if not (args.crops_dir / "train").is_dir():
        raise DataError(
            f"{args.crops_dir}: no train/ folder; run `embedseg crops DATA_DIR --out {args.crops_dir}` first"
        )
    history = train(args.crops_dir, args.out, config, args.force)
    if history:
        best = max(history, key=lambda row: row["val_iou"])
        print(f"best val IoU {best['val_iou']:.4f} at epoch {best['epoch']}; model in {args.out / BEST_PT}")
    return 0
