"""Pretrained weights of the generalist baselines: where each library caches them, and
`embedseg fetch-weights NAME`, which downloads them into that cache on a machine that is online.

No wheel ships these weights; each library downloads them at first use (Cellpose from Hugging
Face, micro-sam through pooch, InstanSeg from GitHub releases), which fails on offline cluster
nodes. The runners therefore never let the library download: they look for the files first
(config ``baselines.weights.NAME`` or the library's own cache, computed here as the library
computes it) and, without them, write ``NOT_RUN.txt`` naming the command that fixes it
(:func:`missing_reason`). The download uses pooch, with the checksum where the library
publishes one. Standard library only at import (pooch is imported by the download).

    embedseg fetch-weights NAME [--cache DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    """One file of a model: its path in the cache folder, its URL, pooch's `known_hash` (None where the
    library publishes no checksum) and whether it is a zip that is unpacked into the cache."""

    name: str
    url: str
    known_hash: str | None = None
    unzip: bool = False


@dataclass(frozen=True)
class Weights:
    """The weights of one pretrained model and its library's cache folder.

    cache_env: the environment variable that moves the library's cache; default_cache: the
    folder without it (a function, as the library evaluates it at run time); main: the file the
    runner loads, relative to the cache folder.
    """

    library: str
    model: str
    files: tuple[WeightFile, ...]
    cache_env: str
    main: str

    def cache(self) -> Path:
        """The library's cache folder (as the library itself computes it)."""
        configured = os.environ.get(self.cache_env)
        return Path(configured).expanduser() if configured else _DEFAULT_CACHES[self.library]()


def _cellpose_cache() -> Path:
    # cellpose/models.py: MODEL_DIR = $CELLPOSE_LOCAL_MODELS_PATH or ~/.cellpose/models
    return Path.home() / ".cellpose" / "models"


def _micro_sam_cache() -> Path:
    # micro_sam/util.py: models() -> pooch.create(path=microsam_cachedir() / "models")
    import pooch

    return Path(os.path.expanduser(pooch.os_cache("micro_sam")))


def _instanseg_cache() -> Path:
    # instanseg/utils/utils.py download_model: $INSTANSEG_BIOIMAGEIO_PATH or the package's
    # bioimageio_models/ folder, so the default needs the package installed.
    spec = importlib.util.find_spec("instanseg")  # its folder, without importing torch
    if spec is None or spec.origin is None:
        raise ValueError(
            "instanseg is not installed here: set INSTANSEG_BIOIMAGEIO_PATH (the folder the jobs read "
            "InstanSeg's models from) or pass --cache DIR"
        )
    return Path(spec.origin).parent / "bioimageio_models"


_DEFAULT_CACHES = {"cellpose": _cellpose_cache, "micro-sam": _micro_sam_cache, "instanseg": _instanseg_cache}

_CELLPOSE_SAM = Weights(
    library="cellpose",
    model="cpsam",
    # cellpose 4.2.1.1 models.py _MODEL_URL; Hugging Face publishes no checksum with it.
    files=(WeightFile("cpsam", "https://huggingface.co/mouseland/cellpose-sam/resolve/main/cpsam"),),
    cache_env="CELLPOSE_LOCAL_MODELS_PATH",
    main="cpsam",
)
_MICRO_SAM_LM = Weights(
    library="micro-sam",
    model="vit_b_lm",
    # micro-sam 1.8.14 util.py models(): URLs and xxh128 hashes of the LM generalist and its decoder.
    files=(
        WeightFile(
            "models/vit_b_lm",
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/diplomatic-bug/1.2/files/vit_b.pt",
            "xxh128:fe9252a29f3f4ea53c15a06de471e186",
        ),
        WeightFile(
            "models/vit_b_lm_decoder",
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/diplomatic-bug/1.2/files/vit_b_decoder.pt",
            "xxh128:708b15ac620e235f90bb38612c4929ba",
        ),
    ),
    cache_env="MICROSAM_CACHEDIR",
    main="models/vit_b_lm",
)
# instanseg-torch 0.1.2 bioimageio_models/model-index.json: one zip per model (no checksum),
# unpacked into {name}/{version}/ with the TorchScript file instanseg.pt.
INSTANSEG_MODELS = {
    "fluorescence_nuclei_and_cells": "0.1.1",
    "brightfield_nuclei": "0.1.1",
    "single_channel_nuclei": "0.1.2",
}
INSTANSEG_DEFAULT = "fluorescence_nuclei_and_cells"


def instanseg_weights(model: str = INSTANSEG_DEFAULT) -> Weights:
    """The weights of one InstanSeg model (:data:`INSTANSEG_MODELS`)."""
    if model not in INSTANSEG_MODELS:
        raise ValueError(f"unknown InstanSeg model {model!r}; choose from {', '.join(INSTANSEG_MODELS)}")
    version = INSTANSEG_MODELS[model]
    url = f"https://github.com/instanseg/instanseg/releases/download/instanseg_models_v{version}/{model}.zip"
    return Weights(
        library="instanseg",
        model=model,
        files=(WeightFile(f"{model}/{version}", url, unzip=True),),
        cache_env="INSTANSEG_BIOIMAGEIO_PATH",
        main=f"{model}/{version}/instanseg.pt",
    )


# Method name -> its weights (cellpose-sam-trained starts its training from cpsam).
WEIGHTS: dict[str, Weights] = {
    "cellpose-sam": _CELLPOSE_SAM,
    "cellpose-sam-trained": _CELLPOSE_SAM,
    "micro-sam-ais": _MICRO_SAM_LM,
    "micro-sam-apg": _MICRO_SAM_LM,
    "instanseg": instanseg_weights(),
}


def fix_command(method: str) -> str:
    """What a user runs on an online machine (a login node) to make `method` runnable offline."""
    return f"embedseg fetch-weights {method}"


def missing_reason(method: str, path: Path) -> str:
    """The NOT_RUN.txt reason for weights that are not there; starts with "no weights" (the tables' words)."""
    return (
        f"no weights: {path} not found (the jobs never download); run `{fix_command(method)}` on a machine "
        f"with internet access (same cache folder as the jobs), or set config baselines.weights.{method}: PATH"
    )


def resolve(method: str, configured: str | None, weights: Weights | None = None) -> tuple[Path | None, str]:
    """The weights file of `method`: `configured` (config ``baselines.weights.NAME``) or the
    library's cache file; (None, reason for NOT_RUN.txt) where it is not there."""
    weights = weights or WEIGHTS[method]
    if configured:
        needed = [Path(configured).expanduser()]
    else:  # every file the library will look for, so that it never starts a download
        try:
            cache = weights.cache()
        except ValueError as exc:  # InstanSeg's default cache is inside the package
            return None, f"no weights: {exc}; then run `{fix_command(method)}`"
        needed = [cache / weights.main, *(cache / file.name for file in weights.files if not file.unzip)]
    missing = [path for path in needed if not path.is_file()]
    return (None, missing_reason(method, missing[0])) if missing else (needed[0], "")


def fetch(method: str, cache: str | os.PathLike | None = None, weights: Weights | None = None) -> Path:
    """Download the weights of `method` into `cache` (default: the library's cache folder) with
    pooch, checked against the library's checksum where it has one; returns the main file."""
    import pooch

    weights = weights or WEIGHTS[method]
    root = Path(cache) if cache is not None else weights.cache()
    for file in weights.files:
        target = root / file.name
        if file.unzip:  # the zip beside the folder it is unpacked into
            unzip = pooch.Unzip(extract_dir=str(target.resolve()))
            pooch.retrieve(file.url, file.known_hash, fname=f"{target.name}.zip", path=target.parent, processor=unzip)
        else:
            pooch.retrieve(file.url, file.known_hash, fname=target.name, path=target.parent)
    return root / weights.main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=list(WEIGHTS), metavar="NAME", help=", ".join(WEIGHTS))
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="download into DIR (default: the library's cache folder, which its environment variable moves)",
    )


def run(args: argparse.Namespace) -> int:
    path = fetch(args.method, args.cache)
    print(f"{args.method}: weights in {path}", file=sys.stderr)
    return 0
