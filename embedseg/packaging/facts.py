"""ModelFacts: everything a package states about its model, gathered once.

The card (card.py) and the description (describe.py) render these facts and nothing else, so both
can be built and tested from a ModelFacts made by hand. :func:`gather_facts` collects them for a
real export: from the chosen checkpoint (via runs.Selection), the network, the data-set registry,
the score files and the checkout's `git describe`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..core.cluster import ClusterParams
from ..dataset_settings import DatasetSettings
from ..inference import DEFAULT_MEMORY_GB, default_tile, network_overlap
from ..layout import deployed_commit_file
from ..models.erfnet import NETWORK_MULTIPLE, BranchedERFNet
from ..report.provenance import git_commit
from .runs import Selection

METHOD_CITATIONS = (
    (
        "Lalit, Tomancak, Jug: Embedding-based Instance Segmentation in Microscopy, MIDL 2021 (EmbedSeg)",
        "10.48550/arXiv.2101.10033",
    ),
    (
        "Lalit, Tomancak, Jug: EmbedSeg: Embedding-based Instance Segmentation for Biomedical Microscopy Data, "
        "Medical Image Analysis 81:102523 (2022)",
        "10.1016/j.media.2022.102523",
    ),
    (
        "Neven, De Brabandere, Proesmans, Van Gool: Instance Segmentation by Jointly Optimizing Spatial "
        "Embeddings and Clustering Bandwidth, CVPR 2019",
        "10.1109/CVPR.2019.00904",
    ),
    (
        "Romera, Álvarez, Bergasa, Arroyo: ERFNet: Efficient Residual Factorized ConvNet for Real-Time "
        "Semantic Segmentation, IEEE T-ITS 19:263-272 (2018)",
        "10.1109/TITS.2017.2750080",
    ),
)


@dataclass(frozen=True)
class PackageOptions:
    """What a package records besides the network: how its labels are made, who publishes it."""

    clustering: str = "paper"  # preset name, as for `embedseg predict`
    params: ClusterParams = ClusterParams()
    tta: bool = True
    authors: tuple[str, ...] = ()
    license: str = "CC-BY-4.0"  # SPDX id of the weights' licence
    name: str | None = None


@dataclass(frozen=True)
class DataFacts:
    """Citation, DOI and licence of the training data (from the data-set registry)."""

    citation: str
    doi: str  # "" when none is recorded
    licence: str


@dataclass(frozen=True)
class TrainingFacts:
    """How the exported network was trained and chosen."""

    seed: int | None  # the training seed (train_args), also what identifies the run
    best_iou: float  # validation IoU of the checkpoint
    epoch: int  # 0-based epoch of the checkpoint; -1 where not recorded
    args: Mapping[str, Any]  # every training argument, as the checkpoint stores them
    run_seeds: tuple[int | None, ...]  # seeds of all runs it was selected from (itself included)


@dataclass(frozen=True)
class ScoreSummary:
    """Test AP_dsb per IoU threshold τ: of the exported model, and mean/sd over all runs."""

    taus: tuple[float, ...]
    model: tuple[float, ...]
    runs: int
    mean: tuple[float, ...]
    sd: tuple[float, ...] | None  # None for a single run
    score_files: tuple[str, ...]

    def to_config(self) -> dict[str, Any]:
        """As config.embedseg.scores: lists, not tuples, so the YAML holds plain sequences."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ModelFacts:
    """What the card and the description of one package say."""

    name: str
    file_name: str  # of the package, as `embedseg predict` is told to load it
    settings: DatasetSettings  # of the training data: normalisation, ndim, voxel size, split …
    model_config: Mapping[str, Any]  # BranchedERFNet's constructor arguments
    parameter_count: int
    channels: tuple[str, ...]  # output channel names, in the network's order
    training: TrainingFacts
    data: DataFacts
    scores: ScoreSummary | None  # None when no score files were given
    clustering: str  # preset name
    params: ClusterParams  # the thresholds the scores were made with
    tta: bool
    code_version: str
    pytorch_version: str
    authors: tuple[str, ...] = ()
    license: str = "CC-BY-4.0"  # SPDX id of the weights' licence

    @property
    def ndim(self) -> int:
        return self.settings.ndim

    def clustering_config(self) -> dict[str, Any]:
        """The preset and every clustering parameter (config.embedseg.clustering)."""
        return {"preset": self.clustering, **asdict(self.params)}

    def tiling(self) -> dict[str, Any]:
        """How `embedseg predict` tiles large inputs by default for this D (config.embedseg.tiling):
        inputs whose forward pass fits `memory_gb` whole, larger ones in tiles (at least 4 × the
        overlap a side) overlapping by the receptive field of the ERF-Net."""
        overlap = network_overlap(BranchedERFNet(ndim=self.ndim))
        tile = [max(t, 4 * overlap) for t in default_tile(self.ndim)]
        return {"tile_size": tile, "overlap": overlap, "memory_gb": DEFAULT_MEMORY_GB, "multiple": NETWORK_MULTIPLE}

    def predict_command(self) -> str:
        """The `embedseg predict` call that reproduces the labels behind the card's scores."""
        params = self.params
        return (
            f"embedseg predict {self.file_name} --images DIR --out PRED_DIR --clustering {self.clustering} "
            f"--min-object-size {params.min_object_size} --seed-thresh {params.seed_thresh:g} "
            f"--fg-thresh {params.fg_thresh:g} {'--tta' if self.tta else '--no-tta'}"
        )


def code_version() -> str:
    """Package version plus the commit it runs from: `git describe` of its checkout, or the
    commit of a deployed copy of the workflow (:func:`embedseg.report.provenance.git_commit`)."""
    root = Path(__file__).resolve().parents[2]
    commit = git_commit(root)
    if commit is None:
        return __version__
    described = commit[:12]
    if not deployed_commit_file(root).is_file():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            described = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
    return f"{__version__} (git {described})"


def dataset_info(settings: DatasetSettings) -> DataFacts:
    """Citation, DOI and licence of the data from the registry (placeholders for unknown sets)."""
    from ..data.registry import REGISTRY

    spec = REGISTRY.get(settings.name)
    return DataFacts(
        citation=spec.citation if spec else "not recorded",
        doi=spec.doi if spec else "",
        licence=spec.licence if spec and spec.licence else "not recorded: check the data's terms of use",
    )


def score_summary(selection: Selection) -> ScoreSummary | None:
    """AP_dsb per τ of the chosen run, and mean/sd over all runs (None without score files)."""
    import pandas as pd

    from ..report.results import read_scores, run_ap

    if selection.chosen.scores is None:
        return None
    table = pd.DataFrame([run_ap(read_scores(run.scores)) for run in selection.runs])
    return ScoreSummary(
        taus=tuple(float(t) for t in table.columns),
        model=tuple(float(v) for v in run_ap(read_scores(selection.chosen.scores)).to_numpy()),
        runs=len(table),
        mean=tuple(float(v) for v in table.mean(axis=0)),
        sd=tuple(float(v) for v in table.std(axis=0, ddof=1)) if len(table) > 1 else None,
        score_files=tuple(str(run.scores) for run in selection.runs),
    )


def channel_names(model: BranchedERFNet) -> tuple[str, ...]:
    """Output channels in the network's order: offsets (x, y[, z]), bandwidths σ, seed logits."""
    axes = "xyz"[: model.ndim]
    per_axis = model.n_sigma == model.ndim
    sigmas = [f"sigma_{a}" for a in axes] if per_axis else [f"sigma_{i}" for i in range(model.n_sigma)]
    seeds = ["seed"] if model.n_seed == 1 else [f"seed_{i}" for i in range(model.n_seed)]
    return (*(f"offset_{a}" for a in axes), *sigmas, *seeds)


def gather_facts(selection: Selection, model: BranchedERFNet, options: PackageOptions, file_name: str) -> ModelFacts:
    """The facts of the package `file_name` of the chosen run's `model`, published with `options`."""
    checkpoint, chosen = selection.checkpoint, selection.chosen
    train_args = checkpoint.get("train_args", {})
    settings = selection.settings
    return ModelFacts(
        name=options.name or f"EmbedSeg {settings.name} seed {chosen.seed}",
        file_name=file_name,
        settings=settings,
        model_config=model.config,
        parameter_count=sum(p.numel() for p in model.parameters()),
        channels=channel_names(model),
        training=TrainingFacts(
            seed=train_args.get("seed"),
            best_iou=chosen.best_iou,
            epoch=int(checkpoint.get("epoch", -1)),
            args=train_args,
            run_seeds=tuple(run.seed for run in selection.runs),
        ),
        data=dataset_info(settings),
        scores=score_summary(selection),
        clustering=options.clustering,
        params=options.params,
        tta=options.tta,
        code_version=code_version(),
        pytorch_version=torch.__version__,
        authors=options.authors,
        license=options.license,
    )
