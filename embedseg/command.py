"""`embedseg command train|predict TEMPLATE …`: run a user's method (config `methods:`) under the
output policy of every step (:mod:`embedseg.outputs`).

The template's placeholders (:data:`embedseg.methods.PLACEHOLDERS`) are filled with shell-quoted
values; ``{model}`` (train) and ``{out}`` (predict) name a staging folder that replaces --out only
when the command succeeded, so a failing command leaves the previous output as it was and fails
the step with the command's exit status. Prediction must write one label TIFF per input image,
with the image's file name, which `embedseg evaluate` then scores like any other method's.

    embedseg command train TEMPLATE --data DATA_DIR --out MODEL_DIR [--seed N] [--device D]
    embedseg command predict TEMPLATE --images DIR --out PRED_DIR [--data DATA_DIR] [--model MODEL_DIR] …
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from . import __version__
from .io import UserError, list_images, write_json
from .methods import PLACEHOLDERS, fill, placeholders
from .outputs import METHOD_MODEL, PREDICTIONS, replacing

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in (
        ("train", "run a train command template; {model} is the model folder it writes"),
        ("predict", "run a predict command template; {out} is the folder of label TIFFs it writes"),
    ):
        sub = actions.add_parser(action, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument(
            "template",
            metavar="TEMPLATE",
            help="shell command with " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS[action]),
        )
        sub.add_argument("--data", metavar="DATA_DIR", help="prepared data set: {data}")
        sub.add_argument("--seed", type=int, default=1, help="{seed}")
        sub.add_argument("--device", default="cpu", help="{device}")
        sub.add_argument("--force", action="store_true", help="replace --out even if not written by this command")
        if action == "train":
            sub.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write: {model}")
        else:
            sub.add_argument("--model", metavar="MODEL_DIR", help="folder written by `train`: {model}")
            sub.add_argument("--images", required=True, help="folder of input images: {images}")
            sub.add_argument("--out", required=True, metavar="PRED_DIR", help="folder for label TIFFs: {out}")


def run_template(template: str, values: dict[str, object]) -> str:
    """Fill and run one template with bash; UserError with the exit status if it fails."""
    command = fill(template, values)
    log.info("running: %s", command)
    # `python` in a template is the interpreter running this step: the method's environment
    # (conda) or the one running Snakemake, even where another Python comes first on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    status = subprocess.run(["bash", "-c", command], check=False, env={**os.environ, "PATH": path}).returncode
    if status != 0:
        raise UserError(f"the command exited with status {status} (its output is above): {command}")
    return command


def run(args: argparse.Namespace) -> None:
    try:
        used = placeholders(args.template, "TEMPLATE")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    unknown = used - set(PLACEHOLDERS[args.action])
    if unknown:
        raise UserError(f"TEMPLATE: unknown placeholder(s) {sorted(unknown)}; allowed: {PLACEHOLDERS[args.action]}")
    values: dict[str, object] = {"data": args.data, "seed": args.seed, "device": args.device}
    if args.action == "predict":
        values |= {"model": args.model, "images": args.images}
    missing = sorted(name for name in used & values.keys() if values[name] is None)
    if missing:
        raise UserError(f"TEMPLATE uses {', '.join(f'{{{m}}}' for m in missing)}: pass --{' --'.join(missing)}")
    if args.action == "train":
        with replacing(args.out, METHOD_MODEL, {"--data": args.data}, args.force) as staging:
            command = run_template(args.template, values | {"model": staging})
            # The marker makes the folder a model folder even when the command wrote nothing.
            write_json(staging / METHOD_MODEL.markers[0], {"command": command, "embedseg_version": __version__})
        return
    images = list_images(args.images)
    if not images:
        raise UserError(f"--images {args.images}: no TIFF images to segment")
    inputs = {"--images": args.images, "--model": args.model, "--data": args.data}
    with replacing(args.out, PREDICTIONS, inputs, args.force) as staging:
        run_template(args.template, values | {"out": staging})
        written = {path.name for path in list_images(staging)}
        missing_labels = [image.name for image in images if image.name not in written]
        if missing_labels:
            raise UserError(
                f"the predict command wrote no label TIFF for {len(missing_labels)} of {len(images)} images "
                f"(e.g. {missing_labels[0]}); it must write {{out}}/<image file name> for every image of {{images}}"
            )
    log.info("%d label images in %s", len(images), Path(args.out))
