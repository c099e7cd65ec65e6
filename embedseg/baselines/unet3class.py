"""3-class U-Net baseline: per-pixel background / interior / boundary, instances by watershed.

The classic semantic route to instances (e.g. Caicedo et al. 2019): the boundary class keeps
touching objects apart, connected components of the interior class become seeds, and a
watershed grows them back over the boundary pixels into the whole predicted foreground.
Trained like EmbedSeg — 8-fold dihedral augmentation, Adam 5e-4 with weight decay 1e-4 and the
poly schedule (1 - e/200)^0.9, the same epoch budget — so Table 1 compares the output
representation, not the training recipe.

Model folder: ``model.pt`` (best validation epoch), ``log.csv``, ``memory.json``, ``dataset.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import atomic_write
from ..layout import LOG_CSV, MEMORY_JSON, VAL_PIXEL_MIOU
from ..runtime import progress, resolve_device, seed_everything, write_memory_json
from ..schedule import WEIGHT_DECAY, learning_rate
from .common import Split, load_settings, predict_folder, random_patches, start_training, write_log
from .configs import UNetPredictConfig, UNetTrainConfig

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
IGNORE = -1  # target value of padding outside the image; excluded from the loss


def three_class_target(labels: np.ndarray) -> np.ndarray:
    """Label image (H, W) → class map (H, W) int64: 0 background, 1 interior, 2 boundary.

    Boundary = the objects' own outermost pixels (`find_boundaries` mode "inner"), so the
    boundary class also separates touching objects and belongs to the foreground.
    """
    from skimage.segmentation import find_boundaries

    target = (labels > 0).astype(np.int64)
    target[find_boundaries(labels, mode="inner") & (labels > 0)] = BOUNDARY
    return target


def as_chw(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) → (C, H, W) float32."""
    return np.asarray(image, dtype=np.float32).reshape((-1,) + image.shape[-2:])


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(
            nn.Conv2d(n_in, n_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_out, n_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with `depth` 2× poolings; (B, C, H, W) → (B, 3, H, W) logits.

    H and W must be multiples of 2**depth (:func:`predict_probabilities` pads).
    """

    def __init__(self, in_channels: int = 1, depth: int = 4, filters: int = 32, n_classes: int = 3) -> None:
        super().__init__()
        widths = [filters * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [ConvBlock(in_channels, widths[0])] + [ConvBlock(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.upsample = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.up = nn.ModuleList([ConvBlock(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.up))):
            x = self.up[level](torch.cat([skips.pop(), self.upsample[level](x)], dim=1))
        return self.head(x)


@torch.no_grad()
def predict_logits(model: UNet, image: np.ndarray, device: torch.device) -> torch.Tensor:
    """Logits (3, H, W) for a whole normalised image (H, W) or (C, H, W), reflect-padded to fit."""
    multiple = 2 ** (len(model.down) - 1)
    height, width = image.shape[-2:]
    padded = np.pad(as_chw(image), [(0, 0), (0, -height % multiple), (0, -width % multiple)], mode="reflect")
    return model(torch.from_numpy(padded)[None].to(device))[0, :, :height, :width]


def probabilities_to_instances(probs: np.ndarray, min_size: int = 37) -> np.ndarray:
    """Class probabilities (3, H, W) → label image (H, W) int32, ids 1..N.

    Seeds = connected components of the interior class; the watershed (on 1 - p_interior)
    grows them over every pixel whose most likely class is not background; objects with fewer
    than `min_size` pixels are dropped (EmbedSeg's proposal rule |Q| > 36).
    """
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential, watershed

    classes = probs.argmax(axis=0)
    markers = label(classes == INTERIOR)
    labels = watershed(1.0 - probs[INTERIOR], markers, mask=classes != BACKGROUND)
    too_small = np.bincount(labels.ravel()) < min_size
    too_small[0] = False
    labels[too_small[labels]] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def validate(
    model: UNet, split: Split, targets: list[np.ndarray], loss_fn: nn.Module, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy over whole validation images, and the mean over classes of the pooled IoU."""
    model.eval()
    losses, confusion = [], np.zeros((3, 3), np.int64)  # confusion[true class, predicted class]
    for image, target in zip(split.images, targets):
        logits = predict_logits(model, image, device)
        losses.append(float(loss_fn(logits[None], torch.from_numpy(target)[None].to(device))))
        predicted = logits.argmax(0).cpu().numpy()
        confusion += np.bincount(3 * target.ravel() + predicted.ravel(), minlength=9).reshape(3, 3)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    return float(np.mean(losses)), float(np.mean(intersection / np.maximum(union, 1)))


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: UNetTrainConfig) -> int:
    """Train on `data_dir`/{train,val}; write the model folder `out_dir` (best epoch by pixel mIoU)."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model_dir = Path(out_dir)
    settings, train_split, val_split = start_training(data_dir, model_dir, config.seed)
    patch = config.patch_size or settings.crop_size
    multiple = 2**config.depth
    patch = max(multiple, patch // multiple * multiple)

    images = [as_chw(image) for image in train_split.images]
    targets = [three_class_target(labels) for labels in train_split.labels]
    val_targets = [three_class_target(labels) for labels in val_split.labels]
    model = UNet(images[0].shape[0], config.depth, config.filters).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate(0), weight_decay=WEIGHT_DECAY)
    weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)
    rng = np.random.default_rng(config.seed)
    steps = max(1, math.ceil(config.train_size / config.batch_size))
    log, best_miou = [], -1.0
    for epoch in range(config.epochs):
        start = time.perf_counter()
        lr = learning_rate(epoch, horizon=config.lr_horizon)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        train_loss = 0.0
        for _ in progress(range(steps), desc=f"epoch {epoch}", unit="batch", leave=False):
            batch = random_patches(images, targets, patch, config.batch_size, rng, IGNORE)
            x, y = (torch.from_numpy(a).to(device) for a in batch)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item() / steps
        val_loss, val_miou = validate(model, val_split, val_targets, loss_fn, device)
        if val_miou > best_miou:
            best_miou = val_miou
            save_model(model_dir / "model.pt", model, epoch, val_miou, config)
        log.append(
            {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val_loss,
                VAL_PIXEL_MIOU: val_miou,
                "seconds": time.perf_counter() - start,
            }
        )
        write_log(model_dir / LOG_CSV, log)
    write_memory_json(model_dir / MEMORY_JSON, device)
    return 0


def save_model(path: Path, model: UNet, epoch: int, val_miou: float, config: UNetTrainConfig) -> None:
    first = model.down[0][0]
    checkpoint = {
        "model_state_dict": model.state_dict(),
        "model_config": {"in_channels": first.in_channels, "depth": len(model.down) - 1, "filters": first.out_channels},
        "epoch": epoch,
        VAL_PIXEL_MIOU: val_miou,
        "train_args": dataclasses.asdict(config),
    }
    with atomic_write(path) as tmp:
        torch.save(checkpoint, tmp)


def load_model(model_dir: str | Path, device: torch.device) -> UNet:
    checkpoint = torch.load(Path(model_dir) / "model.pt", map_location=device, weights_only=True)
    model = UNet(**checkpoint["model_config"]).to(device)
    model.load_state_dict(checkpoint["model_state_dict"])
    return model.eval()


def predict(
    model_dir: str | os.PathLike, image_dir: str | os.PathLike, out_dir: str | os.PathLike, config: UNetPredictConfig
) -> int:
    """Write one label TIFF per image of `image_dir` into `out_dir`."""
    device = resolve_device(config.device)
    settings = load_settings(model_dir)
    model = load_model(model_dir, device)

    def segment(image: np.ndarray) -> np.ndarray:
        probs = torch.softmax(predict_logits(model, image, device), dim=0).cpu().numpy()
        return probabilities_to_instances(probs, config.min_size)

    predict_folder(image_dir, out_dir, settings, segment)
    return 0
