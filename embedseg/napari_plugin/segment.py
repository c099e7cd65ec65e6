"""What the napari widget runs, free of napari and Qt: the model and the labels of an image
layer's data. The method is :func:`embedseg.inference.segment` on the model that `embedseg
predict` runs (:func:`embedseg.acceleration.inference_model`), so the labels are predict's."""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..acceleration import inference_model
from ..dataset_settings import DatasetSettings
from ..inference import ClusteringConfig, segment
from ..io import DataError
from ..layout import BEST_PT
from ..models import load_checkpoint
from ..predict import PredictConfig
from ..runtime import resolve_device

Progress = Generator[tuple[int, int], None, np.ndarray]  # yields (images done, of), returns the labels


def model_file(path: str | os.PathLike) -> Path:
    """The file to load: a package (.zip) or checkpoint as given, a model folder's best.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_PT
    if not path.is_file():
        raise DataError(f"{path}: no model here; choose a package of `embedseg export` (.zip) or a best.pt")
    return path


def devices() -> list[str]:
    """The device choices on this machine: auto, cpu and each CUDA GPU."""
    return ["auto", "cpu", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]


@dataclass(frozen=True)
class Segmenter:
    """A loaded network with its data-set settings and the inference options of one run."""

    model: torch.nn.Module
    settings: DatasetSettings
    tta: bool = True
    cluster: ClusteringConfig = ClusteringConfig()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        tta: bool = True,
        cluster: ClusteringConfig | None = None,
    ) -> Segmenter:
        """The model at `path` (package, checkpoint or model folder) on `device`, as `predict` runs it."""
        model, settings = load_checkpoint(model_file(path), resolve_device(device))
        return cls(inference_model(model), settings, tta, cluster or ClusteringConfig())

    def stack(self, data: np.ndarray, rgb: bool = False, name: str = "image") -> Progress:
        """Label `data`: one image of the model's kind, or a stack of them along leading axes
        (a 2-D model on a (Z, Y, X) layer labels each plane). Yields (images done, of) after
        each image and returns the labels, shaped as the data without its channel axis.

        A colour (RGB) layer is reduced to luminance, as `predict --rgb-to-grey` does.
        """
        data = np.asarray(data)
        ndim = self.settings.ndim
        image_axes = ndim + (rgb or self.settings.in_channels > 1)
        if data.ndim < image_axes:
            raise DataError(f"{name}: {data.ndim}-D data, but this {ndim}-D model needs {image_axes} axes")
        stack = data.shape[: data.ndim - image_axes]
        spatial = data.shape[len(stack) :][:ndim] if rgb else data.shape[-ndim:]
        params = self.cluster.params(self.settings)
        tile_size = PredictConfig().tile(ndim)  # predict's default tiles (larger in 2-D than in 3-D)
        labels = np.zeros((*stack, *spatial), dtype=np.uint32)
        total = int(np.prod(stack, dtype=int))
        for done, index in enumerate(np.ndindex(stack), start=1):
            labels[index], _ = segment(
                self.model, data[index], self.settings, self.tta, params, name, rgb, tile_size=tile_size
            )
            yield done, total
        return labels


def run_to_end(progress: Progress) -> np.ndarray:
    """The labels of :meth:`Segmenter.stack`, ignoring its progress."""
    while True:
        try:
            next(progress)
        except StopIteration as stop:
            return stop.value
