"""The methods the pipeline compares: one registry of names, runners, environments and help.

The workflow (``workflow/rules/config.smk``: wildcards, conda environments, config checks), the
`embedseg baseline` command line, the report (display names, order) and the tests read it, so
adding a baseline means one :class:`Method` entry here plus its runner module. Standard library
only: the Snakefile and every method's environment import it.

A runner module provides ``train(data_dir, out_dir, config)`` and
``predict(model_dir, image_dir, out_dir, config)``; the configs are the dataclasses named in the
entry (:mod:`embedseg.baselines.configs`), whose fields are also the command-line options.

User-defined methods (config ``methods:``) are entries with ``kind="command"``, built by
:func:`command_methods`: they carry shell command templates instead of a runner module, and
`embedseg command` runs them (:func:`fill` quotes every value). Their name is their label; the
report places them after the baselines, by name (:func:`order`).
"""

from __future__ import annotations

import importlib
import re
import shlex
import string
from collections.abc import Mapping
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
    kind: ``embedseg`` (our network, `embedseg train|predict`), ``baseline`` (a Python runner) or
    ``command`` (a user's shell commands, `embedseg command`);
    runner, train, predict: module and function names of a baseline;
    train_config, predict_config: the dataclasses of its options;
    train_command, predict_command: a command method's templates (:data:`PLACEHOLDERS`);
    env_file: a command method's conda environment file (None: the ``env`` environment's).
    trains: False for a published model used as it is (zero-shot): its "training" only picks
    weights, so budget tables show no training compute for it.
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
    train_command: str | None = None
    predict_command: str | None = None
    env_file: str | None = None
    trains: bool = True

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
        trains=False,
        label="Cellpose (public)",
        help="Cellpose's published generalist model (weights fetched by Cellpose)",
        env="cellpose",
        runner="embedseg.baselines.cellpose_runner",
        train="choose_public",
        train_config=configs.CellposePublicConfig,
    ),
    # The generalists (docs/baselines.md): pretrained weights, NOT_RUN.txt where they are missing.
    Method(
        name="cellpose-sam",
        trains=False,
        label="Cellpose-SAM (zero-shot)",
        help="Cellpose 4 `cpsam`, zero-shot (weights: Cellpose's cache or baselines.weights)",
        env="cellpose4",
        runner="embedseg.baselines.cellpose_sam",
        train="choose",
        predict_config=configs.GeneralistPredictConfig,
    ),
    Method(
        name="cellpose-sam-trained",
        label="Cellpose-SAM (fine-tuned)",
        help="Cellpose 4 `cpsam` fine-tuned on the training split with Cellpose's own training",
        env="cellpose4",
        runner="embedseg.baselines.cellpose_sam",
        train_config=configs.CellposeSAMTrainConfig,
        predict_config=configs.GeneralistPredictConfig,
    ),
    Method(
        name="micro-sam-ais",
        trains=False,
        label="µSAM AIS (zero-shot)",
        help="micro-sam `vit_b_lm`, automatic instance segmentation (decoder + watershed), zero-shot",
        env="micro-sam",
        runner="embedseg.baselines.micro_sam_runner",
        train="choose",
        predict="predict_ais",
        predict_config=configs.GeneralistPredictConfig,
    ),
    Method(
        name="micro-sam-apg",
        trains=False,
        label="µSAM APG (zero-shot)",
        help="micro-sam `vit_b_lm`, automatic prompt generation (decoder points → SAM), zero-shot",
        env="micro-sam",
        runner="embedseg.baselines.micro_sam_runner",
        train="choose",
        predict="predict_apg",
        predict_config=configs.GeneralistPredictConfig,
    ),
    Method(
        name="instanseg",
        trains=False,
        label="InstanSeg (zero-shot)",
        help="InstanSeg published model (fluorescence nuclei / brightfield as the data set fits), zero-shot",
        env="instanseg",
        runner="embedseg.baselines.instanseg_runner",
        train="choose",
        train_config=configs.InstanSegChooseConfig,
        predict_config=configs.GeneralistPredictConfig,
    ),
)
BASELINES: dict[str, Method] = {method.name: method for method in _BUILT_IN_BASELINES}
PUBLISHED_MODELS = frozenset(name for name, method in BASELINES.items() if not method.trains)

# Our network: one model per centre type, each predicted with and without test-time augmentation.
_VARIANT_NAME = re.compile(r"embedseg-(?P<center>[a-z-]+)-(?P<tta>tta|notta)")  # the one spelling
TTA_WORDS = {True: "tta", False: "notta"}  # the last part of a variant's name
EMBEDSEG_ENV = "embedseg"


def embedseg_model(center: str) -> str:
    """Model folder name shared by the variants ``embedseg-{center}-tta`` and ``-notta``."""
    return f"embedseg-{center}"


@dataclass(frozen=True)
class Variant:
    """One of our network's variants: its centre type and whether prediction uses TTA.

    name: ``embedseg-{center}-{tta|notta}`` (method, folder and wildcard name);
    model: the model folder both TTA settings share; flag: the `embedseg predict|export` switch.
    """

    center: str
    tta: bool

    @property
    def name(self) -> str:
        return f"{embedseg_model(self.center)}-{TTA_WORDS[self.tta]}"

    @property
    def model(self) -> str:
        return embedseg_model(self.center)

    @property
    def flag(self) -> str:
        return "--tta" if self.tta else "--no-tta"

    @classmethod
    def parse(cls, name: str) -> Variant | None:
        """The variant a method name spells, or None if `name` is not one of ours."""
        match = _VARIANT_NAME.fullmatch(name)
        return None if match is None else cls(match["center"], match["tta"] == TTA_WORDS[True])


# The paper's two named variants, and the ablation of Table 2 (what each other variant changes).
EMBEDSEG = Variant("medoid", tta=True).name
NEVEN = Variant("centroid", tta=False).name
ABLATIONS = {
    Variant("centroid", tta=True).name: "medoid → centroid",
    Variant("medoid", tta=False).name: "no TTA",
    NEVEN: "both (= Neven et al.)",
}
# Variants that only answer the ablation; Table 1 shows EmbedSeg and Neven et al. of the four.
TABLE2_ONLY = tuple(name for name in ABLATIONS if name != NEVEN)


def embedseg_variant(name: str) -> Method | None:
    """The entry of one of our variants (any centre type), or None if `name` is not one."""
    variant = Variant.parse(name)
    if variant is None:
        return None
    if name == EMBEDSEG:
        label = "EmbedSeg"
    elif name == NEVEN:
        label = "Neven et al."
    else:
        label = f"EmbedSeg ({variant.center}, {'TTA' if variant.tta else 'no TTA'})"
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


def built_in(name: str) -> bool:
    """Whether `name` is one of our variants or a baseline, not a method of one's own."""
    return name in BASELINES or embedseg_variant(name) is not None


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


# What a command method's templates may name, per action: the prepared data set (dataset.json,
# train/ val/ test/), the model folder (written by `train`, read by `predict`), the folder of
# images to segment, the folder to write one label TIFF per image into, the run's seed and the
# torch-style device (cpu, cuda, cuda:N).
PLACEHOLDERS = {
    "train": ("data", "model", "seed", "device"),
    "predict": ("data", "model", "images", "out", "seed", "device"),
}
_COMMAND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def placeholders(template: str, where: str) -> set[str]:
    """The ``{name}`` fields of a template (``{{``/``}}`` are literal braces); ValueError naming
    `where` for a malformed one (``{}``, ``{0}``, ``{a.b}``, ``{a!r}``, an unclosed brace)."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} in {template!r}; write a literal brace as {{{{ or }}}}") from None
    names = set()
    for name, spec, conversion in fields:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{where}: placeholder {{{name}}} is not a plain {{name}} in {template!r}")
        names.add(name)
    return names


def command_methods(entries: Mapping[str, Mapping], where: str = "config methods") -> dict[str, Method]:
    """Registry entries of the workflow config's `methods:` map, in its order.

    Each entry: ``predict`` (required) and ``train`` (optional) command templates, ``conda`` (an
    environment file), ``gpu``. ValueError naming the config key for a name that is a built-in
    method's (or could be taken for one), an unknown placeholder, or a ``{model}`` in ``predict``
    with no ``train`` to write it.
    """
    found = {}
    for name, entry in entries.items():
        key = f"{where}.{name}"
        if name in BASELINES or name.startswith("embedseg"):
            raise ValueError(
                f"{key}: {name!r} is taken by a built-in method ({', '.join(BASELINES)}, embedseg-*); rename it"
            )
        if not _COMMAND_NAME.fullmatch(name):
            raise ValueError(f"{key}: a method name is letters, digits and _.+- (it names folders); rename it")
        for action, allowed in PLACEHOLDERS.items():
            template = entry.get(action)
            if template is None:
                continue
            unknown = placeholders(template, f"{key}.{action}") - set(allowed)
            if unknown:
                raise ValueError(
                    f"{key}.{action}: unknown placeholder(s) {', '.join(f'{{{u}}}' for u in sorted(unknown))}; "
                    f"a {action} command may use {', '.join(f'{{{a}}}' for a in allowed)}"
                )
        if entry.get("train") is None and "model" in placeholders(entry["predict"], f"{key}.predict"):
            raise ValueError(f"{key}.predict uses {{model}} but the method has no `train` command to write it")
        found[name] = Method(
            name=name,
            label=name,
            help=f"command method of the workflow config ({key})",
            env=EMBEDSEG_ENV,
            gpu=bool(entry.get("gpu", False)),
            kind="command",
            train_command=entry.get("train"),
            predict_command=entry["predict"],
            env_file=entry.get("conda"),
        )
    return found


def fill(template: str, values: Mapping[str, object]) -> str:
    """`template` with each placeholder replaced by its value, shell-quoted (paths with spaces or
    quotes stay one word, nothing in a value is run)."""
    return template.format_map({name: shlex.quote(str(value)) for name, value in values.items()})
