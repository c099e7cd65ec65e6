"""The methods the pipeline compares: one registry of names, runners, environments and help.

The workflow (``workflow/rules/common.smk``: wildcards, conda environments, config checks), the
`embedseg baseline` command line, the report (display names, order) and the tests read it, so
adding a baseline means one :class:`Method` entry here plus its runner module. Standard library
only: the Snakefile and every method's environment import it.

A runner module provides ``train(data_dir, out_dir, config)`` and
``predict(model_dir, image_dir, out_dir, config)``; the configs are the dataclasses named in the
entry (:mod:`embedseg.baselines.configs`), whose fields are also the command-line options.

User-defined methods (shell command templates from the workflow config) are meant to become
entries of the same registry with ``kind="command"``: they carry their commands instead of a
runner module, and everything that lists methods already goes through :func:`get`/:data:`BASELINES`.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from types import ModuleType

from .baselines import configs


@dataclass(frozen=True)
class Method:
    """One method of Table 1.

    name: folder and wildcard name (``results/{run}/predictions/{ds}/{name}``);
    label: the name in tables and figures; help: one line for `--help`;
    env: conda environment name (the workflow maps it to its environment file);
    gpu: whether training profits from a GPU (cluster profiles request one);
    kind: ``embedseg`` (our network, `embedseg train|predict`) or ``baseline`` (a Python runner);
    runner, train, predict: module and function names of a baseline;
    train_config, predict_config: the dataclasses of its options.
    """

    name: str
    label: str
    help: str
    env: str
    gpu: bool = True
    kind: str = "baseline"
    runner: str | None = None
    train: str = "train"
    predict: str = "predict"
    train_config: type = configs.TrainConfig
    predict_config: type = configs.PredictConfig

    def module(self) -> ModuleType:
        """The runner module (imported now: it needs the method's environment)."""
        if self.runner is None:
            raise ValueError(f"method {self.name!r} has no Python runner")
        return importlib.import_module(self.runner)


# The competing methods of the paper's Table 1, in the paper's order.
_BUILT_IN_BASELINES = (
    Method(
        name="3class-unet",
        label="3-Class U-Net",
        help="U-Net for background/interior/boundary; instances by watershed (PyTorch)",
        env="embedseg",
        runner="embedseg.baselines.unet3class",
        train_config=configs.UNetTrainConfig,
        predict_config=configs.UNetPredictConfig,
    ),
    Method(
        name="stardist",
        label="StarDist",
        help="StarDist 2D trained from scratch; thresholds optimised on validation (TensorFlow)",
        env="stardist",
        runner="embedseg.baselines.stardist_runner",
        train_config=configs.StarDistTrainConfig,
        predict_config=configs.StarDistPredictConfig,
    ),
    Method(
        name="maskrcnn",
        label="Mask R-CNN",
        help="torchvision Mask R-CNN (ResNet-50-FPN); score threshold tuned on validation",
        env="maskrcnn",
        runner="embedseg.baselines.maskrcnn",
        train_config=configs.MaskRCNNTrainConfig,
    ),
    Method(
        name="cellpose-trained",
        label="Cellpose (trained)",
        help="Cellpose 3.x trained from scratch; flow/cell-probability thresholds tuned on validation",
        env="cellpose",
        runner="embedseg.baselines.cellpose_runner",
        train_config=configs.CellposeTrainConfig,
    ),
    Method(
        name="cellpose-public",
        label="Cellpose (public)",
        help="Cellpose's published generalist model (weights fetched by Cellpose)",
        env="cellpose",
        runner="embedseg.baselines.cellpose_runner",
        train="choose_public",
        train_config=configs.CellposePublicConfig,
    ),
)
BASELINES: dict[str, Method] = {method.name: method for method in _BUILT_IN_BASELINES}

# Our network: `embedseg-{center}-{tta}`; the paper's two named variants.
EMBEDSEG = "embedseg-medoid-tta"
NEVEN = "embedseg-centroid-notta"
EMBEDSEG_ENV = "embedseg"
_EMBEDSEG_NAME = re.compile(r"embedseg-(?P<center>[a-z-]+)-(?P<tta>tta|notta)")


def embedseg_name(center: str, tta: bool | str) -> str:
    """``embedseg-{center}-{tta|notta}``; `tta` is a flag or already ``tta``/``notta``."""
    suffix = tta if isinstance(tta, str) else ("tta" if tta else "notta")
    return f"embedseg-{center}-{suffix}"


def embedseg_variant(name: str) -> Method | None:
    """The entry of one of our variants (any centre type), or None if `name` is not one."""
    match = _EMBEDSEG_NAME.fullmatch(name)
    if match is None:
        return None
    if name == EMBEDSEG:
        label = "EmbedSeg"
    elif name == NEVEN:
        label = "Neven et al."
    else:
        label = f"EmbedSeg ({match['center']}, {'TTA' if match['tta'] == 'tta' else 'no TTA'})"
    return Method(
        name=name,
        label=label,
        help="Branched ERF-Net, spatial embeddings and seed clustering (`embedseg train|predict`)",
        env=EMBEDSEG_ENV,
        kind="embedseg",
    )


def get(name: str) -> Method:
    """The entry of a method name; ValueError naming the known ones otherwise."""
    method = BASELINES.get(name) or embedseg_variant(name)
    if method is None:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(BASELINES)} and embedseg-CENTER-tta|notta")
    return method


def label(name: str) -> str:
    """Display name of a method; a folder name that is no registered method is shown as it is."""
    method = BASELINES.get(name) or embedseg_variant(name)
    return method.label if method else name


def order(name: str) -> tuple[int, str]:
    """Sort key: baselines first (registry order), other methods, Neven et al., EmbedSeg last."""
    if name in BASELINES:
        return (0, f"{list(BASELINES).index(name):04d}")
    if name == NEVEN:
        return (3, name)
    if name == EMBEDSEG:
        return (4, name)
    return (2 if embedseg_variant(name) else 1, name)


def check_baselines(names: list[str], where: str) -> None:
    """ValueError naming `where` (a config key) if a name is no registered baseline."""
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"{where}: unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
