"""`embedseg <step>`: one sub-command per pipeline step.

Each step lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int | None``. Modules are imported only when their step runs (or for `--help`),
so the baseline runners work in environments without torch and `embedseg --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from . import __version__
from .methods import BASELINES
from .options import HelpFormatter

# step name -> (module, one-line help)
STEPS: dict[str, tuple[str, str]] = {
    "prepare": (
        "embedseg.data.prepare",
        "download or synthesise a data set, validate it and split it into train/val/test",
    ),
    "describe-data": (
        "embedseg.data.describe",
        "measure a data set: object counts, areas, contacts, contrast, SNR, overlap (per image and per set)",
    ),
    "crops": ("embedseg.crops", "cut object-centred training crops with medoid/centroid centre images"),
    "train": ("embedseg.train", "train a Branched ERF-Net on crops (EmbedSeg or Neven et al.)"),
    "predict": ("embedseg.predict", "predict label images (padding, tiling, 8-fold TTA, seed clustering)"),
    "export": ("embedseg.export", "package a model for the BioImage Model Zoo (bioimage.io) with its scores"),
    "evaluate": (
        "embedseg.evaluate",
        "score predicted label images against ground truth (AP_dsb per image and IoU threshold)",
    ),
    "baseline": ("embedseg.baseline", "train or run a baseline: " + ", ".join(BASELINES)),
    "fetch-weights": (
        "embedseg.baselines.weights",
        "download a generalist baseline's pretrained weights into its library's cache (on an online machine)",
    ),
    "command": ("embedseg.command", "run a method of one's own: a train or predict command template (config methods:)"),
    "tables": (
        "embedseg.report.tables",
        "write Table 1, Table 2 and the comparison to the paper from per-image scores",
    ),
    "compare": (
        "embedseg.report.compare",
        "compare two methods image by image: paired differences, Wilcoxon, P(A > B)",
    ),
    "figures": ("embedseg.report.figures", "draw the qualitative panels, AP-vs-threshold curves and training curves"),
    "crate": ("embedseg.report.provenance", "write the run's provenance: an RO-Crate (Workflow Run Crate profile)"),
    "gallery": ("embedseg.report.gallery", "write a data set's per-image HTML gallery of every method's masks"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Parser listing every step; only the `chosen` step's module is imported for its options."""
    parser = argparse.ArgumentParser(
        prog="embedseg",
        description=(
            "Embedding-based instance segmentation of microscopy images (EmbedSeg, Lalit et al. 2021; "
            "Neven et al. 2019). Each step reads and writes plain folders of TIFF files, so a step can be "
            "run by hand exactly as the Snakemake workflow runs it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages; show the traceback of errors")
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for name, (module_name, help_text) in STEPS.items():
        step_parser = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            formatter_class=HelpFormatter,
        )
        step_parser.set_defaults(_module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(step_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; a :class:`~embedseg.io.UserError` is one line on stderr and its exit code,
    Ctrl-C exits 130 with one line (also while the step's modules, e.g. torch, are imported)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_step(argv)
    except KeyboardInterrupt:
        if "-v" in argv or "--verbose" in argv:
            traceback.print_exc()
        print("embedseg: interrupted", file=sys.stderr)
        return 130


def run_step(argv: list[str]) -> int:
    # Imported here, not at the top: numpy comes with it, and main must be ready for Ctrl-C first.
    from .io import UserError

    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        status = importlib.import_module(args._module).run(args)
    except UserError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"embedseg {args.step}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Outputs are built in a staging folder and swapped in only on success (embedseg.outputs),
        # so an interrupted step leaves the previous output as it was.
        if args.verbose:
            traceback.print_exc()
        print(f"embedseg {args.step}: error: interrupted; the previous output (if any) is unchanged", file=sys.stderr)
        return 130
    finally:
        # Locks a step holds until its end (embedseg.outputs.check_output) end with it, also
        # when main() runs inside a longer process (tests, notebooks).
        if "embedseg.outputs" in sys.modules:
            sys.modules["embedseg.outputs"].release_all_locks()
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
