"""`embedseg baseline METHOD train|predict …`: the competing methods of the paper's Table 1.

Each method runs in its own environment (StarDist: TensorFlow, Cellpose: its own torch stack),
so this module only declares options; a method's code is imported when it runs.

    embedseg baseline METHOD train DATA_DIR --out MODEL_DIR [--seed N] [--device auto] [options]
    embedseg baseline METHOD predict MODEL_DIR --images DIR --out PRED_DIR [--device auto]
"""

from __future__ import annotations

import argparse
import importlib

from ..outputs import BASELINE_MODEL, PREDICTIONS, replacing

# method -> (module, train function, predict function, one-line help)
METHODS: dict[str, tuple[str, str, str, str]] = {
    "3class-unet": ("embedseg.baselines.unet3class", "train", "predict",
                    "U-Net for background/interior/boundary; instances by watershed (PyTorch)"),
    "stardist": ("embedseg.baselines.stardist_runner", "train", "predict",
                 "StarDist 2D trained from scratch; thresholds optimised on validation (TensorFlow)"),
    "cellpose-trained": ("embedseg.baselines.cellpose_runner", "train", "predict",
                         "Cellpose 3.x trained from scratch; flow/cell-probability thresholds tuned on validation"),
    "cellpose-public": ("embedseg.baselines.cellpose_runner", "choose_public", "predict",
                        "Cellpose's published generalist model (weights fetched by Cellpose)"),
    "maskrcnn": ("embedseg.baselines.maskrcnn", "train", "predict",
                 "torchvision Mask R-CNN (ResNet-50-FPN); score threshold tuned on validation"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for method, (_, _, _, help_text) in METHODS.items():
        method_parser = methods.add_parser(method, help=help_text, description=help_text)
        actions = method_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        train = actions.add_parser("train", help="train on DATA_DIR/{train,val}",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        train.add_argument("data_dir", metavar="DATA_DIR", help="prepared split folder (with dataset.json)")
        train.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
        train.add_argument("--seed", type=int, default=0, help="seed of every random choice")
        train.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        train.add_argument("--force", action="store_true",
                           help="replace MODEL_DIR even if not written by this command")
        TRAIN_OPTIONS[method](train)
        predict = actions.add_parser("predict", help="write one label TIFF per image",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        predict.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `train`")
        predict.add_argument("--images", required=True, help="folder of input images")
        predict.add_argument("--out", required=True, metavar="PRED_DIR", help="folder for label TIFFs")
        predict.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        predict.add_argument("--force", action="store_true",
                             help="replace PRED_DIR even if not written by this command")
        PREDICT_OPTIONS.get(method, lambda p: None)(predict)


def run(args: argparse.Namespace) -> int | None:
    """Run the method's train or predict into a staging folder that replaces --out when done
    (embedseg.outputs); the method sees the staging folder as args.out (a str, as argparse
    gives it: some methods store their arguments in a weights-only checkpoint)."""
    module_name, train_name, predict_name, _ = METHODS[args.method]
    if args.action == "train":
        kind, inputs = BASELINE_MODEL, {"DATA_DIR": args.data_dir}
    else:
        kind, inputs = PREDICTIONS, {"MODEL_DIR": args.model_dir, "--images": args.images}
    with replacing(args.out, kind, inputs, args.force) as staging:
        args.out = str(staging)
        module = importlib.import_module(module_name)
        return getattr(module, train_name if args.action == "train" else predict_name)(args)


def _epochs(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--epochs", type=int, default=default, help="training epochs")


def _step_budget(parser: argparse.ArgumentParser, epochs: int, batch_size: int, patch_size: int) -> None:
    """Epochs × steps of batches of square patches (StarDist, Mask R-CNN)."""
    _epochs(parser, epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps per epoch")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="patches per step")
    parser.add_argument("--patch-size", type=int, default=patch_size, help="square patch side (reduced to fit small images)")


def _unet_train(parser: argparse.ArgumentParser) -> None:
    _epochs(parser, 200)
    parser.add_argument("--train-size", type=int, default=3000, help="random patches per epoch (EmbedSeg: crops per epoch)")
    parser.add_argument("--batch-size", type=int, default=8, help="patches per step")
    parser.add_argument("--patch-size", type=int, default=None, help="square patch side; default: the data set's crop size")
    parser.add_argument("--depth", type=int, default=4, help="U-Net levels (poolings)")
    parser.add_argument("--filters", type=int, default=32, help="feature maps at the first level (doubling per level)")
    parser.add_argument("--class-weights", type=float, nargs=3, default=(1.0, 1.0, 10.0),
                        metavar=("BG", "INTERIOR", "BOUNDARY"), help="cross-entropy class weights")


def _unet_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-size", type=int, default=37, help="drop objects with fewer pixels")


def _stardist_train(parser: argparse.ArgumentParser) -> None:
    _step_budget(parser, epochs=400, batch_size=4, patch_size=256)
    parser.add_argument("--rays", type=int, default=32, help="star-convex polygon rays")
    parser.add_argument("--grid", type=int, default=2, help="subsampling factor of the prediction grid (both axes)")


def _stardist_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-tiles", type=int, nargs=2, default=None, metavar=("TY", "TX"),
                        help="tile large images (default: StarDist's guess from the image size)")


def _cellpose_train(parser: argparse.ArgumentParser) -> None:
    _epochs(parser, 500)
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--lr", type=float, default=0.005, help="learning rate (Cellpose 3 AdamW default)")
    parser.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay")
    parser.add_argument("--flow-thresholds", type=float, nargs="+", default=(0.0, 0.4, 0.8),
                        help="flow-error thresholds tried on validation (0 disables the check)")
    parser.add_argument("--cellprob-thresholds", type=float, nargs="+", default=(-2.0, 0.0, 2.0),
                        help="cell-probability thresholds tried on validation")


def _cellpose_public(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-type", default="auto",
                        help="Cellpose model name (cyto3, cyto2, cyto, nuclei); auto: nuclei for nuclei data sets, else cyto3")
    parser.add_argument("--diameter", type=float, default=None,
                        help="object diameter in pixels; default: median diameter of the training masks")


def _maskrcnn_train(parser: argparse.ArgumentParser) -> None:
    _step_budget(parser, epochs=100, batch_size=2, patch_size=512)
    parser.add_argument("--lr", type=float, default=0.005, help="SGD learning rate (momentum 0.9, weight decay 1e-4)")
    parser.add_argument("--pretrained-backbone", action=argparse.BooleanOptionalAction, default=True,
                        help="start from torchvision's ImageNet ResNet-50 (downloaded by torchvision) or from scratch")
    parser.add_argument("--score-thresholds", type=float, nargs="+", default=(0.3, 0.5, 0.7, 0.9),
                        help="detection score thresholds tried on validation")


TRAIN_OPTIONS = {
    "3class-unet": _unet_train,
    "stardist": _stardist_train,
    "cellpose-trained": _cellpose_train,
    "cellpose-public": _cellpose_public,
    "maskrcnn": _maskrcnn_train,
}
PREDICT_OPTIONS = {"3class-unet": _unet_predict, "stardist": _stardist_predict}
