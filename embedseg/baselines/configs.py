"""Options of every baseline as dataclasses: the fields are the options, with default and help.

`embedseg baseline METHOD train|predict` builds its command line from these fields
(``--field-name``, :mod:`embedseg.options`), and Python code calls a runner directly, e.g.
``unet3class.train(data_dir, out_dir, UNetTrainConfig(epochs=5))``. Standard library only, so
the help of every baseline works in every environment without importing torch or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from ..schedule import LR_HORIZON, LR_HORIZON_HELP


@dataclass
class TrainConfig:
    """Options every baseline's training takes."""

    seed: int = option(0, "seed of every random choice")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")


@dataclass
class PredictConfig:
    """Options every baseline's prediction takes."""

    device: str = option("auto", "auto | cpu | cuda | cuda:N")


@dataclass
class StepBudget(TrainConfig):
    """Epochs × steps of batches of square patches (StarDist, Mask R-CNN)."""

    epochs: int = option(100, "training epochs")
    steps_per_epoch: int = option(100, "optimiser steps per epoch")
    batch_size: int = option(2, "patches per step")
    patch_size: int = option(512, "square patch side (reduced to fit small images)")


@dataclass
class UNetTrainConfig(TrainConfig):
    epochs: int = option(200, "training epochs")
    lr_horizon: int = option(LR_HORIZON, LR_HORIZON_HELP)
    train_size: int = option(3000, "random patches per epoch (EmbedSeg: crops per epoch)")
    batch_size: int = option(8, "patches per step")
    patch_size: int | None = option(None, "square patch side; default: the data set's crop size", type=int)
    depth: int = option(4, "U-Net levels (poolings)")
    filters: int = option(32, "feature maps at the first level (doubling per level)")
    class_weights: tuple[float, float, float] = option(
        (1.0, 1.0, 10.0), "cross-entropy class weights", nargs=3, metavar=("BG", "INTERIOR", "BOUNDARY")
    )


@dataclass
class UNetPredictConfig(PredictConfig):
    min_size: int = option(37, "drop objects with fewer pixels")


@dataclass
class StarDistTrainConfig(StepBudget):
    epochs: int = option(400, "training epochs")
    batch_size: int = option(4, "patches per step")
    patch_size: int = option(256, "square patch side (reduced to fit small images)")
    rays: int = option(32, "star-convex polygon rays")
    grid: int = option(2, "subsampling factor of the prediction grid (both axes)")


@dataclass
class StarDistPredictConfig(PredictConfig):
    n_tiles: tuple[int, int] | None = option(
        None,
        "tile large images (default: StarDist's guess from the image size)",
        type=int,
        nargs=2,
        metavar=("TY", "TX"),
    )


@dataclass
class CellposeTrainConfig(TrainConfig):
    epochs: int = option(500, "training epochs")
    batch_size: int = option(8, "images per step")
    lr: float = option(0.005, "learning rate (Cellpose 3 AdamW default)")
    weight_decay: float = option(1e-5, "AdamW weight decay")
    flow_thresholds: tuple[float, ...] = option(
        (0.0, 0.4, 0.8), "flow-error thresholds tried on validation (0 disables the check)"
    )
    cellprob_thresholds: tuple[float, ...] = option((-2.0, 0.0, 2.0), "cell-probability thresholds tried on validation")


@dataclass
class CellposePublicConfig(TrainConfig):
    model_type: str = option(
        "auto", "Cellpose model name (cyto3, cyto2, cyto, nuclei); auto: nuclei for nuclei data sets, else cyto3"
    )
    diameter: float | None = option(
        None, "object diameter in pixels; default: median diameter of the training masks", type=float
    )


@dataclass
class MaskRCNNTrainConfig(StepBudget):
    lr: float = option(0.005, "SGD learning rate (momentum 0.9, weight decay 1e-4), scaled by EmbedSeg's poly decay")
    pretrained_backbone: bool = option(
        True, "start from torchvision's ImageNet ResNet-50 (downloaded by torchvision) or from scratch"
    )
    score_thresholds: tuple[float, ...] = option((0.3, 0.5, 0.7, 0.9), "detection score thresholds tried on validation")
    roi_samples: int = option(
        512,
        "proposals sampled per image to train the box and mask heads (torchvision's default; "
        "the mask head's cost grows with it, small patches with few objects need fewer)",
    )


# The generalists (embedseg/baselines/weights.py): pretrained weights from the library's cache
# or from config baselines.weights.NAME, which the workflow passes as --weights.
WEIGHTS_HELP = "weights file (config baselines.weights.NAME); default: the library's cache (`embedseg fetch-weights`)"


@dataclass
class GeneralistPredictConfig(PredictConfig):
    weights: str | None = option(None, WEIGHTS_HELP, type=str)


@dataclass
class InstanSegChooseConfig(TrainConfig):
    model: str = option(
        "auto",
        "InstanSeg model (fluorescence_nuclei_and_cells, brightfield_nuclei, single_channel_nuclei); "
        "auto: fluorescence_nuclei_and_cells (the fluorescence data sets), brightfield_nuclei for brightfield ones",
    )


@dataclass
class CellposeSAMTrainConfig(TrainConfig):
    weights: str | None = option(None, WEIGHTS_HELP + "; training starts from them", type=str)
    epochs: int = option(100, "training epochs (Cellpose 4 default)")
    batch_size: int = option(1, "images per step (Cellpose 4 default)")
    lr: float = option(1e-5, "learning rate (Cellpose 4 AdamW default)")
    weight_decay: float = option(0.1, "AdamW weight decay (Cellpose 4 default)")
