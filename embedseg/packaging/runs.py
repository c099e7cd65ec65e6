"""The trained runs offered for export (e.g. the seeds of one method) and the one exported.

Each checkpoint is read once: its seed and validation IoU for the selection, and the chosen run's
whole checkpoint (weights, data set settings, training arguments) for everything after.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dataset_settings import DatasetSettings
from ..io import DataError
from ..layout import BEST_PT
from ..models import read_checkpoint
from ..models.erfnet import BranchedERFNet


@dataclass(frozen=True)
class Run:
    """One trained model offered for export: its checkpoint and, optionally, its test scores."""

    checkpoint: Path
    best_iou: float  # validation IoU of the checkpoint
    seed: int | None
    scores: Path | None = None


@dataclass(frozen=True)
class Selection:
    """The runs offered, in the order given, and the chosen one with its checkpoint."""

    runs: tuple[Run, ...]
    chosen: Run
    checkpoint: Mapping[str, Any]  # the chosen run's checkpoint dict (read_checkpoint)
    settings: DatasetSettings  # the data set settings the chosen network was trained with

    def model(self) -> BranchedERFNet:
        """The chosen network on the CPU, in eval mode."""
        model = BranchedERFNet(**self.checkpoint["model_config"])
        model.load_state_dict(self.checkpoint["model_state_dict"])
        return model.eval()


def checkpoint_path(path: str | os.PathLike) -> Path:
    """best.pt of a model folder written by `embedseg train`, or the checkpoint file itself."""
    path = Path(path)
    return path / BEST_PT if path.is_dir() else path


def read_runs(models: Sequence[str | os.PathLike], scores: Sequence[str | os.PathLike] | None = None) -> Selection:
    """Runs of the given model folders/checkpoints, paired in order with their score files, and
    the one with the highest validation IoU (the first of equals, i.e. in the order given)."""
    if scores and len(scores) != len(models):
        raise DataError(
            f"--scores names {len(scores)} file(s) for {len(models)} model(s); give one scores "
            "CSV per model, in the same order"
        )
    runs: list[Run] = []
    best: tuple[Run, dict[str, Any]] | None = None
    for i, model in enumerate(models):
        path = checkpoint_path(model)
        checkpoint = read_checkpoint(path, "cpu")
        seed = checkpoint.get("train_args", {}).get("seed")
        run = Run(path, float(checkpoint.get("best_iou", 0.0)), seed, Path(scores[i]) if scores else None)
        runs.append(run)
        if best is None or run.best_iou > best[0].best_iou:  # keep only the best checkpoint in memory
            best = (run, checkpoint)
    if best is None:
        raise DataError("no model to export; name at least one model folder or checkpoint")
    chosen, checkpoint = best
    settings = DatasetSettings.from_dict(checkpoint["settings"], source=f"{chosen.checkpoint} (settings)")
    return Selection(tuple(runs), chosen, checkpoint, settings)
