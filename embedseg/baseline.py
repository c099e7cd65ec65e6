"""`embedseg baseline METHOD train|predict …`: the competing methods of the paper's Table 1.

Each method runs in its own environment (StarDist: TensorFlow, Cellpose: its own torch stack),
so this module only builds options, from the registry (:mod:`embedseg.methods`) and the config
dataclasses (:mod:`embedseg.baselines.configs`); a method's code is imported when it runs.

    embedseg baseline METHOD train DATA_DIR --out MODEL_DIR [--seed N] [--device auto] [options]
    embedseg baseline METHOD predict MODEL_DIR --images DIR --out PRED_DIR [--device auto] [options]
"""

from __future__ import annotations

import argparse

from . import methods
from .options import HelpFormatter, add_options, from_args
from .outputs import BASELINE_MODEL, PREDICTIONS, replacing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, method in methods.BASELINES.items():
        method_parser = subparsers.add_parser(name, help=method.help, description=method.help)
        actions = method_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        train = actions.add_parser("train", help="train on DATA_DIR/{train,val}", formatter_class=HelpFormatter)
        train.add_argument("data_dir", metavar="DATA_DIR", help="prepared split folder (with dataset.json)")
        train.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
        train.add_argument("--force", action="store_true", help="replace MODEL_DIR even if not written by this command")
        add_options(train, method.train_config)
        predict = actions.add_parser("predict", help="write one label TIFF per image", formatter_class=HelpFormatter)
        predict.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `train`")
        predict.add_argument("--images", required=True, help="folder of input images")
        predict.add_argument("--out", required=True, metavar="PRED_DIR", help="folder for label TIFFs")
        predict.add_argument(
            "--force", action="store_true", help="replace PRED_DIR even if not written by this command"
        )
        add_options(predict, method.predict_config)


def run(args: argparse.Namespace) -> int | None:
    """Run the method's train or predict into a staging folder that replaces --out when done
    (:mod:`embedseg.outputs`); the method writes to the staging folder."""
    method = methods.BASELINES[args.method]
    if args.action == "train":
        kind, inputs = BASELINE_MODEL, {"DATA_DIR": args.data_dir}
    else:
        kind, inputs = PREDICTIONS, {"MODEL_DIR": args.model_dir, "--images": args.images}
    with replacing(args.out, kind, inputs, args.force) as staging:
        module = method.module()
        if args.action == "train":
            return getattr(module, method.train)(args.data_dir, str(staging), from_args(method.train_config, args))
        return getattr(module, method.predict)(
            args.model_dir, args.images, str(staging), from_args(method.predict_config, args)
        )
