"""Mask R-CNN baseline (He et al. 2017): torchvision's ResNet-50-FPN model, two classes.

Detection-first instance segmentation, as in the Usiigaci paper that Table 1 quotes. Training
uses random patches under EmbedSeg's 8 dihedral transforms, SGD (momentum 0.9, weight decay
1e-4) with EmbedSeg's poly decay; the backbone starts from torchvision's ImageNet ResNet-50
(``--pretrained-backbone``, fetched by torchvision) or from scratch (tests, offline). Images are
kept at their own scale (torchvision would resize them to 800 px). The detection score
threshold is chosen on the validation images (mean AP@0.5).

Needs torchvision, which must match the installed torch (docs/baselines.md).
Model folder: ``model.pt``, ``log.csv``, ``memory.json``, ``dataset.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..io import DataError, atomic_write
from ..layout import LOG_CSV, MEMORY_JSON
from ..runtime import resolve_device, seed_everything, write_memory_json
from ..schedule import learning_rate
from .common import load_settings, mean_ap50, predict_folder, random_patches, start_training, write_log
from .configs import MaskRCNNTrainConfig, PredictConfig

MAX_DETECTIONS = 500  # dense DSB/Usiigaci images hold a few hundred objects (torchvision default: 100)
MASK_THRESHOLD = 0.5


def build_model(pretrained_backbone: bool, roi_samples: int = 512) -> torch.nn.Module:
    """Mask R-CNN ResNet-50-FPN for one object class (+ background); no detection weights.
    `roi_samples`: proposals per image that train the box and mask heads (training only)."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=ResNet50_Weights.IMAGENET1K_V1 if pretrained_backbone else None,
        num_classes=2,
        box_detections_per_img=MAX_DETECTIONS,
        box_batch_size_per_image=roi_samples,
    )


def keep_scale(model: torch.nn.Module, height: int, width: int) -> None:
    """Make torchvision's resize step an identity for (height, width) inputs."""
    model.transform.min_size = (min(height, width),)
    model.transform.max_size = max(height, width)


def as_rgb(image: np.ndarray) -> torch.Tensor:
    """Normalised image (H, W) or (C, H, W) → (3, H, W) float tensor (greyscale repeated)."""
    chw = torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape((-1,) + image.shape[-2:])
    if chw.shape[0] == 1:
        return chw.expand(3, -1, -1)
    if chw.shape[0] != 3:
        raise DataError(f"Mask R-CNN takes 1 or 3 channels, got {chw.shape[0]}; use another baseline for this data set")
    return chw


def detection_target(labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Label image (H, W) → torchvision target: boxes (N, 4) xyxy, labels (N,), masks (N, H, W) uint8."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    masks = torch.from_numpy(labels[None] == ids[:, None, None])
    boxes = torch.zeros((len(ids), 4))
    if len(ids):
        from torchvision.ops import masks_to_boxes

        # masks_to_boxes gives the last pixel's index; +1 keeps one-pixel objects' boxes non-empty.
        boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    return {"boxes": boxes, "labels": torch.ones(len(ids), dtype=torch.int64), "masks": masks.to(torch.uint8)}


@torch.no_grad()
def detect(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """Detections of a whole image: scores (N,) and masks (N, H, W) bool, at the image's own scale."""
    model.eval()
    x = as_rgb(image).to(device)
    keep_scale(model, *x.shape[-2:])
    output = model([x])[0]
    return {"scores": output["scores"].cpu().numpy(), "masks": (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy()}


def paint(detections: dict[str, np.ndarray], score_threshold: float) -> np.ndarray:
    """Label image (H, W) int32 from the detections above the threshold; higher scores paint last (win overlaps)."""
    keep = np.flatnonzero(detections["scores"] > score_threshold)
    labels = np.zeros(detections["masks"].shape[1:], np.int32)
    for rank, index in enumerate(keep[np.argsort(detections["scores"][keep])], start=1):
        labels[detections["masks"][index]] = rank
    return labels


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: MaskRCNNTrainConfig) -> int:
    """Train on `data_dir`/{train,val}, choose the score threshold on validation; write `out_dir`."""
    from ..runtime import progress

    device = resolve_device(config.device)
    seed_everything(config.seed)
    model_dir = Path(out_dir)
    settings, train_split, val_split = start_training(data_dir, model_dir, config.seed)
    try:
        model = build_model(config.pretrained_backbone, config.roi_samples).to(device)
    except OSError as exc:  # URLError and friends: the ImageNet weights could not be fetched
        raise DataError(
            f"torchvision could not fetch the ImageNet ResNet-50 weights ({exc}); "
            "connect once to cache them, or train from scratch with --no-pretrained-backbone"
        ) from exc
    images = [as_rgb(image).numpy() for image in train_split.images]
    patch = min(config.patch_size, *(min(labels.shape) for labels in train_split.labels))
    keep_scale(model, patch, patch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(config.seed)
    log = []
    for epoch in range(config.epochs):
        start = time.perf_counter()
        lr = learning_rate(epoch, base=config.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        train_loss = 0.0
        for _ in progress(range(config.steps_per_epoch), desc=f"epoch {epoch}", unit="batch", leave=False):
            x, y = random_patches(images, train_split.labels, patch, config.batch_size, rng)
            targets = [{key: value.to(device) for key, value in detection_target(labels).items()} for labels in y]
            loss = sum(model(list(torch.from_numpy(x).to(device)), targets).values())
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"Mask R-CNN loss became {loss.item()} at epoch {epoch}; lower --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item() / config.steps_per_epoch
        log.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "seconds": time.perf_counter() - start})
        write_log(model_dir / LOG_CSV, log)
    write_memory_json(model_dir / MEMORY_JSON, device)
    detections = [detect(model, image, device) for image in progress(val_split.images, desc="validate", unit="image")]
    thresholds = config.score_thresholds
    scores = [mean_ap50(val_split.labels, [paint(d, threshold) for d in detections]) for threshold in thresholds]
    checkpoint = {
        "model_state_dict": model.state_dict(),
        "score_threshold": thresholds[int(np.argmax(scores))],
        "val_ap50": max(scores),
        "train_args": dataclasses.asdict(config),
    }
    with atomic_write(model_dir / "model.pt") as tmp:
        torch.save(checkpoint, tmp)
    return 0


def predict(
    model_dir: str | os.PathLike, image_dir: str | os.PathLike, out_dir: str | os.PathLike, config: PredictConfig
) -> int:
    """Write one label TIFF per image of `image_dir` into `out_dir`."""
    device = resolve_device(config.device)
    settings = load_settings(model_dir)
    checkpoint = torch.load(Path(model_dir) / "model.pt", map_location=device, weights_only=True)
    # Built without downloading: a pretrained backbone's frozen batch norms load into plain
    # ones, which compute the same in eval mode and only add `num_batches_tracked` buffers.
    model = build_model(pretrained_backbone=False).to(device)
    missing, unexpected = model.load_state_dict(checkpoint["model_state_dict"], strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise DataError(
            f"{model_dir}/model.pt does not fit Mask R-CNN ResNet-50-FPN "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); retrain it"
        )
    threshold = checkpoint["score_threshold"]
    predict_folder(image_dir, out_dir, settings, lambda image: paint(detect(model, image, device), threshold))
    return 0
