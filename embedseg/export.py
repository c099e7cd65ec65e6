"""`embedseg export`: a trained network as a bioimage.io model package (spec 0.5) with its evidence.

The package holds the weights twice — as a ``pytorch_state_dict`` whose architecture is this
package's ERF-Net source file, and as TorchScript — plus a test input and its expected raw output,
a cover image, a model card (README.md) with the data, split, training, code version, citations,
data licence and, when score files are given, the test AP_dsb of the model and the spread over
its sibling runs; ``config.embedseg`` carries what turns the raw output into instances (embedding
constants, clustering thresholds, TTA) and what `embedseg predict` needs to load the package.

2-D and 3-D models export alike: a 3-D package's tensors have a z axis (scaled by the data set's
voxel size), its test tensors are volumes and config.embedseg holds the anisotropic grid spacing.

This module is the step: its options, `run` and :func:`export`, which chooses the run and the test
input and hands them to embedseg/packaging/ (facts, card, description, build; see its
``__init__``). bioimageio.spec/core are imported only there, so they are an optional dependency
(extra `export`); loading a package for `predict` needs neither (docs/export.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import string
from pathlib import Path

from .inference import ClusteringConfig
from .io import DataError
from .models.checkpoint import is_package
from .options import add_options, from_args
from .outputs import check_output_file
from .packaging.build import SAMPLE_SIZE, build_package, central_crop, sample_image
from .packaging.facts import PackageOptions, gather_facts
from .packaging.runs import Selection, read_runs

log = logging.getLogger(__name__)


def export(
    selection: Selection,
    out: str | os.PathLike,
    sample: str | os.PathLike,
    options: PackageOptions | None = None,
    check: bool = True,
) -> Path:
    """Write the package of the chosen run of `selection` (:func:`~embedseg.packaging.runs.read_runs`)
    to `out` (.zip), its test input the centre of the image `sample` (or a folder's first image);
    returns `out`. `options` default to PackageOptions(); with `check`, bioimageio.core's model test
    must pass before `out` is written.
    """
    out, settings, chosen = Path(out), selection.settings, selection.chosen
    model = selection.model()
    sample_path, image = sample_image(sample)
    crop = central_crop(image[None] if image.ndim == settings.ndim else image, settings.ndim, sample_path)
    facts = gather_facts(selection, model, options or PackageOptions(), out.name)
    build_package(model, facts, crop, out, check, sample_path)
    log.info("exported %s (seed %s, validation IoU %.4f) to %s", chosen.checkpoint, chosen.seed, chosen.best_iou, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="model folder of `embedseg train` (its best.pt) or a checkpoint; several (the "
        "seeds of one method): the one with the best validation IoU is exported",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="NAME.zip", help="package to write")
    parser.add_argument(
        "--sample",
        required=True,
        metavar="IMAGE_OR_DIR",
        help="image (volume) of the data set, or a folder: its first image, for the test input "
        f"and cover; its centre, at most {SAMPLE_SIZE[2]} px a side ({SAMPLE_SIZE[3]} in 3-D), is used",
    )
    parser.add_argument(
        "--scores",
        nargs="+",
        metavar="CSV",
        default=None,
        help="test scores (`embedseg evaluate`) of each MODEL, in the same order: the card "
        "reports the exported model's AP_dsb and the mean ± sd over all",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the scores were predicted with test-time augmentation (recorded for consumers)",
    )
    add_options(parser, ClusteringConfig)  # as for predict; the package records them
    parser.add_argument("--name", default=None, help="model name (default: EmbedSeg DATASET seed N)")
    parser.add_argument(
        "--author", action="append", default=[], dest="authors", help="author of the package (repeat for several)"
    )
    parser.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run bioimageio.core's model test (offline) before writing the package",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing package at --out")


# bioimage.io's rule for a model name (bioimageio.spec model v0.5 `name`), checked before any work.
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_+- ()")


def check_name(name: str | None) -> None:
    """Refuse a --name that bioimage.io would reject only after the whole export."""
    if name is None:
        return
    bad = sorted(set(name) - NAME_CHARACTERS)
    if bad or not 5 <= len(name) <= 128:
        raise DataError(
            f"--name {name!r}: a bioimage.io model name has 5 to 128 characters, only ASCII letters, digits, "
            f"spaces and _+-(){'; not ' + ' '.join(map(repr, bad)) if bad else ''}"
        )


def run(args: argparse.Namespace) -> int:
    check_name(args.name)
    if args.out.suffix != ".zip":
        raise DataError(f"{args.out}: a bioimage.io package is a .zip; use {args.out.with_suffix('.zip')}")
    inputs = {f"MODEL {model}": model for model in args.models}
    inputs.update({"--sample": args.sample, **{f"--scores {csv}": csv for csv in args.scores or []}})
    check_output_file(args.out, inputs, is_package, "embedseg export", args.force)
    if importlib.util.find_spec("bioimageio.core") is None:
        raise DataError("embedseg export needs bioimageio.core: pip install 'embedseg-pipeline[export]'")
    selection = read_runs(args.models, args.scores)
    settings = selection.settings
    clustering = from_args(ClusteringConfig, args)
    params = clustering.params(settings)
    options = PackageOptions(
        clustering.preset_name(settings), params, args.tta, tuple(args.authors), args.license, args.name
    )
    path = export(selection, args.out, args.sample, options, args.check)
    print(f"bioimage.io package: {path}")
    return 0
