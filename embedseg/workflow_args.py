"""Command-line options of the workflow's jobs, built from the workflow config.

The Snakemake rules (workflow/rules/*.smk) pass each `embedseg` step the config keys of that
step as options, spelled by one generic rule (:func:`options`): key ``train_size`` becomes
``--train-size VALUE``, a boolean ``--amp`` or ``--no-amp``, a list ``--voxel-size 1 2 3``, and an
unset (None) key is left out so that the step's default applies. A new option of a step is thus
a field of its Config (the CLI follows) plus its config and schema entries; nothing here changes
(tests/test_workflow_args.py checks that every schema key is an option of its step).

Pure functions of plain values (config dicts, wildcard strings) returning shell-ready strings:
every value is shell-quoted, so a path with a space or a ``$x`` in a value stays one word.
Standard library only: the Snakefile imports it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from .methods import EMBEDSEG, TABLE2_ONLY, Variant

# Keys of config `datasets.<ds>` that are the workflow's own, not options of `embedseg prepare`.
WORKFLOW_DATASET_KEYS = ("train", "baselines")
# Config keys whose `embedseg prepare` option has another name.
PREPARE_FLAGS = {"test": "--test-fraction"}
# Keys of config `predict` that turn the network's output into labels: shared by `embedseg
# predict` and `embedseg export` (the package's card); the others only concern prediction.
CLUSTERING_KEYS = ("clustering", "seed_thresh", "fg_thresh", "min_object_size")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def quote(value: object) -> str:
    """`value` as one shell word."""
    return shlex.quote(str(value))


def cli_flag(key: str) -> str:
    """The option a config key becomes: ``train_size`` → ``--train-size``."""
    return "--" + key.replace("_", "-")


def option(flag: str, value: object) -> str:
    """One option: ``--flag value``, ``--flag v1 v2 …`` for a list, ``--flag``/``--no-flag`` for a
    boolean, nothing for None (the step's default)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return flag if value else f"--no-{flag.removeprefix('--')}"
    values = value if isinstance(value, list | tuple) else [value]
    return " ".join([flag, *map(quote, values)])


def options(values: Mapping[str, object], flags: Mapping[str, str] | None = None) -> str:
    """Every key of `values` as an option (:func:`option`), in the mapping's order; `flags`
    names the options whose name is not :func:`cli_flag` of the key."""
    flags = flags or {}
    return " ".join(filter(None, (option(flags.get(key) or cli_flag(key), value) for key, value in values.items())))


def local_source(source: str | None) -> Path | None:
    """A data set's `source` when it is a local zip or folder (not a URL, not unset)."""
    return None if source is None or _URL.match(source) else Path(source).expanduser()


def source_files(source: Path) -> list[str]:
    """Every file of a local source (sorted; hidden ones left out), or the zip itself: the inputs
    of `prepare`, so that an added image or a mask edited in place re-prepares the data set
    (a folder's own time stamp changes with neither)."""
    if not source.is_dir():
        return [str(source)]
    return sorted(
        str(path)
        for path in source.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(source).parts)
    )


def prepare_options(settings: Mapping[str, object]) -> str:
    """Options of `embedseg prepare` from config `datasets.<ds>` (a local source with ``~``
    expanded). The crop size goes into dataset.json, so crops and the U-Net baseline both use it."""
    prepared = {key: value for key, value in settings.items() if key not in WORKFLOW_DATASET_KEYS}
    source = local_source(settings.get("source"))
    if source is not None:
        prepared["source"] = source
    return options(prepared, PREPARE_FLAGS)


def train_options(dataset_train: Mapping[str, object], train: Mapping[str, object]) -> str:
    """Options of `embedseg train`: the data set's config `datasets.<ds>.train` (batch and epoch
    sizes) and the global config `train`."""
    return options({**dataset_train, **train})


def clustering_options(predict: Mapping[str, object], variant: Variant) -> str:
    """The variant's TTA switch and the clustering keys of config `predict`: what turns the
    network's output into labels, for `embedseg predict` and `embedseg export` alike."""
    return " ".join(filter(None, [variant.flag, options({key: predict.get(key) for key in CLUSTERING_KEYS})]))


def predict_options(predict: Mapping[str, object], variant: Variant) -> str:
    """Options of `embedseg predict`: :func:`clustering_options` plus the other keys of config
    `predict` (tiles, compile, AMP)."""
    others = {key: value for key, value in predict.items() if key not in CLUSTERING_KEYS}
    return " ".join(filter(None, [clustering_options(predict, variant), options(others)]))


def job_device(device: str, gpu: bool) -> str:
    """`--device` of training and prediction. `gpu: true` gives each such job a GPU, so it must
    use it: ``cuda``, which fails without one (CPU build of PyTorch, node without driver) instead
    of silently training for days on the CPU as ``auto`` would. ValueError for ``cpu``."""
    if not gpu:
        return device
    if device == "cpu":
        raise ValueError("config: `gpu: true` asks for a GPU per job but `device: cpu` would not use it; set one")
    return "cuda" if device == "auto" else device


def weights_option(method: str, action: str, weights: Mapping[str, str]) -> str:
    """``--weights PATH`` of config ``baselines.weights.<method>`` for the `action` (train |
    predict) whose options have a `weights` field (embedseg/baselines/configs.py); else nothing."""
    from dataclasses import fields

    from . import methods

    entry = methods.BASELINES[method]
    config = entry.train_config if action == "train" else entry.predict_config
    if method not in weights or "weights" not in {field.name for field in fields(config)}:
        return ""
    return option("--weights", weights[method])


def unshown_variants(variants: list[Variant]) -> list[str]:
    """Planned variants that no table shows: Table 1 has EmbedSeg and Neven et al., Table 2 the
    other variants beside EmbedSeg (embedseg-medoid-tta), so without it they are in neither."""
    names = [variant.name for variant in variants]
    return [] if EMBEDSEG in names else [name for name in names if name in TABLE2_ONLY]
