"""`embedseg train`: fit a Branched ERF-Net on object-centred crops (docs/method.md §6).

Adam (5e-4, weight decay 1e-4) with lr = 5e-4·(1 − epoch/200)^0.9 set once per epoch, optional
virtual batches (gradients of m mini-batches summed before a step), 8-fold dihedral
augmentation, random crops with replacement, validation after every epoch. Writes best.pt
(strictly higher validation IoU), last.pt (every epoch; the run resumes from it), log.csv,
memory.json and train.json. With the same seed a resumed CPU run ends with bit-identical
weights to an uninterrupted one: every random number generator is saved in last.pt.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .crop_dataset import CropDataset, RandomCropSampler, collate_crops
from .dataset_settings import DatasetSettings
from .io import DataError, atomic_write, write_json
from .layout import LOG_COLUMNS
from .losses import SpatialEmbLoss
from .models import BranchedERFNet, read_checkpoint, save_checkpoint
from .runtime import resolve_device, seed_everything, seed_worker, write_memory_json
from .schedule import BASE_LR, WEIGHT_DECAY, learning_rate

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training options (defaults = the paper's DSB/Usiigaci setting); stored in train.json."""

    epochs: int = 200
    batch_size: int = 2
    virtual_batch: int = 8
    train_size: int = 3000
    val_size: int = 2600
    val_batch_size: int = 16
    variance_loss: str = "paper"
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    resume: bool = True

    def __post_init__(self) -> None:
        if min(self.batch_size, self.virtual_batch, self.val_batch_size, self.epochs) < 1:
            raise ValueError("epochs, batch sizes and virtual batch must be at least 1")
        if self.train_size < self.batch_size or self.val_size < 1:
            raise ValueError(f"train size {self.train_size} must hold one batch of {self.batch_size}; val size must be ≥ 1")


def make_loader(dataset: CropDataset, size: int, batch_size: int, generator: torch.Generator, workers: int,
                drop_last: bool, device: torch.device) -> DataLoader:
    """DataLoader over `size` random (crop, transform) draws of `generator`."""
    sampler = RandomCropSampler(len(dataset), size, generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
                      collate_fn=collate_crops, worker_init_fn=seed_worker, pin_memory=device.type == "cuda")


def run_batch(model: BranchedERFNet, criterion: SpatialEmbLoss, batch: dict[str, torch.Tensor],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and object IoUs of one batch (see SpatialEmbLoss.forward)."""
    prediction = model(batch["image"].to(device, non_blocking=True))
    return criterion(prediction, batch["instances"].to(device, non_blocking=True),
                     batch["center"].to(device, non_blocking=True))


def train_epoch(model: BranchedERFNet, criterion: SpatialEmbLoss, optimizer: torch.optim.Optimizer,
                loader: DataLoader, virtual_batch: int, device: torch.device) -> float:
    """One pass over `loader`; the optimiser steps every `virtual_batch` mini-batches.

    Each mini-batch back-propagates loss/m, so a step sees the mean gradient of m mini-batches;
    a partial group left at the end of the epoch is discarded (as the official code does).
    Returns the mean mini-batch loss.
    """
    model.train()
    optimizer.zero_grad()
    losses = []
    for i, batch in enumerate(tqdm(loader, desc="train", leave=False)):
        loss, _ = run_batch(model, criterion, batch, device)
        (loss / virtual_batch).backward()
        if (i + 1) % virtual_batch == 0:
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    optimizer.zero_grad()
    return float(np.mean(losses))


def validate(model: BranchedERFNet, criterion: SpatialEmbLoss, loader: DataLoader,
             device: torch.device) -> tuple[float, float]:
    """(mean loss over batches, mean IoU over every object of every sampled crop)."""
    model.eval()
    losses, ious = [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="val", leave=False):
            loss, batch_ious = run_batch(model, criterion, batch, device)
            losses.append(loss.item())
            ious.append(batch_ious.cpu())
    all_ious = torch.cat(ious)
    return float(np.mean(losses)), float(all_ious.mean()) if len(all_ious) else 0.0


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run draws from, as tensors and plain values (safe to torch.load)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (name, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        **{key: generator.get_state() for key, generator in generators.items()},
    }


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Undo :func:`rng_state`: every generator continues exactly where the saved run stopped."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for key, generator in generators.items():
        generator.set_state(state[key].cpu())


def write_log(path: Path, history: list[dict[str, float]]) -> None:
    """log.csv with one row per finished epoch (rewritten whole, so a resume never duplicates rows)."""
    with atomic_write(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def sampler_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent train/val draw streams derived from `seed`."""
    train_seed, val_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    return {"train_sampler": torch.Generator().manual_seed(train_seed),
            "val_sampler": torch.Generator().manual_seed(val_seed)}


def resume(path: Path, model: BranchedERFNet, optimizer: torch.optim.Optimizer,
           generators: dict[str, torch.Generator], device: torch.device) -> tuple[int, float, list[dict[str, float]]]:
    """Load weights, optimiser and random states of `path`; returns (next epoch, best IoU, log rows)."""
    checkpoint = read_checkpoint(path, device)
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optim_state_dict"])
    restore_rng_state(checkpoint["rng_state"], generators)
    log.info("resuming %s after epoch %d (best val IoU %.4f)", path, checkpoint["epoch"], checkpoint["best_iou"])
    return checkpoint["epoch"] + 1, checkpoint["best_iou"], checkpoint["history"]


def train(crops_dir: str | Path, out_dir: str | Path, config: TrainConfig) -> list[dict[str, float]]:
    """Train on CROPS_DIR/{train,val}; write OUT_DIR/{best.pt,last.pt,log.csv,memory.json,train.json}.

    Resumes from OUT_DIR/last.pt when `config.resume` and it exists. Returns the log rows.
    """
    crops_dir, out_dir = Path(crops_dir), Path(out_dir)
    settings = DatasetSettings.load(crops_dir)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    train_set = CropDataset(crops_dir / "train", settings)
    val_set = CropDataset(crops_dir / "val", settings)

    model = BranchedERFNet(in_channels=settings.in_channels).to(device)
    criterion = SpatialEmbLoss(n_sigma=model.n_sigma, variance_loss=config.variance_loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=BASE_LR, weight_decay=WEIGHT_DECAY)
    generators = sampler_generators(config.seed)
    last_path = out_dir / "last.pt"
    start_epoch, best_iou, history = 0, 0.0, []
    if config.resume and last_path.is_file():
        start_epoch, best_iou, history = resume(last_path, model, optimizer, generators, device)
    write_json(out_dir / "train.json", {"crops_dir": str(crops_dir), "args": dataclasses.asdict(config),
                                        "settings": settings.to_dict(), "model_config": model.config})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    train_loader = make_loader(train_set, config.train_size, config.batch_size, generators["train_sampler"],
                               config.workers, drop_last=True, device=device)
    val_loader = make_loader(val_set, config.val_size, config.val_batch_size, generators["val_sampler"],
                             config.workers, drop_last=False, device=device)
    for epoch in tqdm(range(start_epoch, config.epochs), desc="epochs", initial=start_epoch, total=config.epochs):
        started = time.perf_counter()
        lr = learning_rate(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss = train_epoch(model, criterion, optimizer, train_loader, config.virtual_batch, device)
        val_loss, val_iou = validate(model, criterion, val_loader, device)
        history.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                        "val_iou": val_iou, "seconds": time.perf_counter() - started})
        improved = val_iou > best_iou
        best_iou = max(best_iou, val_iou)
        checkpoint = {
            "model_state_dict": model.state_dict(), "model_config": model.config, "settings": settings.to_dict(),
            "epoch": epoch, "best_iou": best_iou, "optim_state_dict": optimizer.state_dict(),
            "rng_state": rng_state(generators), "train_args": dataclasses.asdict(config), "history": history,
        }
        if improved:
            save_checkpoint(out_dir / "best.pt", checkpoint)
        save_checkpoint(last_path, checkpoint)
        write_log(out_dir / "log.csv", history)
        write_memory_json(out_dir / "memory.json", device)
        log.info("epoch %d: lr %.3e train %.4f val %.4f val IoU %.4f%s", epoch, lr, train_loss, val_loss,
                 val_iou, " (best)" if improved else "")
    return history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("crops_dir", type=Path, help="crops folder written by `embedseg crops` (dataset.json, train/, val/)")
    parser.add_argument("--out", type=Path, required=True, help="model folder (best.pt, last.pt, log.csv, memory.json, train.json)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="epochs to train (the learning rate decays over 200 whatever this is)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="crops per mini-batch")
    parser.add_argument("--virtual-batch", type=int, default=defaults.virtual_batch,
                        help="optimiser steps every N mini-batches (gradients of N mini-batches are averaged)")
    parser.add_argument("--train-size", type=int, default=defaults.train_size, help="random crops drawn per epoch")
    parser.add_argument("--val-size", type=int, default=defaults.val_size, help="random validation crops per epoch")
    parser.add_argument("--val-batch-size", type=int, default=defaults.val_batch_size, help="crops per validation batch")
    parser.add_argument("--variance-loss", choices=("paper", "fixed"), default=defaults.variance_loss,
                        help="paper: broadcast variance term of the paper code; fixed: EmbedSeg >= 0.2")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, crop draws, augmentation, dropout")
    parser.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="DataLoader worker processes")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=defaults.resume,
                        help="continue from OUT/last.pt if it exists")


def run(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{key: value for key, value in vars(args).items() if key in fields})
    if not (args.crops_dir / "train").is_dir():
        raise DataError(f"{args.crops_dir}: no train/ folder; run `embedseg crops DATA_DIR --out {args.crops_dir}` first")
    history = train(args.crops_dir, args.out, config)
    if history:
        best = max(history, key=lambda row: row["val_iou"])
        print(f"best val IoU {best['val_iou']:.4f} at epoch {best['epoch']}; model in {args.out / 'best.pt'}")
    return 0
