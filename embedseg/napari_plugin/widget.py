"""napari dock widget: segment the chosen image layer with an `embedseg export` package or a
trained model (best.pt, or its folder) on the chosen device, with or without TTA, with the
clustering thresholds as controls; the labels arrive as a new labels layer.

The work runs in a napari worker thread (the viewer stays usable), image by image for a stack,
with the progress bar counting images; errors show in the widget and as a napari notification.
Choosing a package sets the controls to the clustering and TTA it records (its card's numbers).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error

from ..core.cluster import PRESETS, ClusterParams
from ..inference import ClusteringConfig
from ..io import UserError
from ..models.checkpoint import is_package
from .reader import package_config
from .segment import Segmenter, devices

MODEL_KEY = "embedseg_model"  # metadata key of layers read from a package: the widget's default model


class SegmentWidget(Container):
    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=self._image_layers, tooltip="image layer to segment")
        self.model = FileEdit(
            label="model", mode="r", filter="*.zip *.pt", tooltip="package (.zip), best.pt or its folder"
        )
        self.device = ComboBox(label="device", choices=devices(), value="auto")
        self.tta = CheckBox(text="test-time augmentation (8 rotations/flips, 16 in 3-D)", value=True)
        self.clustering = ComboBox(label="clustering", choices=PRESETS, value="paper")
        self.min_object_size = SpinBox(
            label="min object size",
            min=-1,
            max=10**9,
            value=-1,
            tooltip="-1: the preset's (paper 36, current: the data set's)",
        )
        self.seed_thresh = FloatSpinBox(
            label="seed threshold", min=0, max=1, step=0.01, value=ClusterParams.seed_thresh
        )
        self.fg_thresh = FloatSpinBox(
            label="foreground threshold", min=0, max=1, step=0.01, value=ClusterParams.fg_thresh
        )
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(label="images", min=0, max=1, value=0)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.image,
                self.model,
                self.device,
                self.tta,
                self.clustering,
                self.min_object_size,
                self.seed_thresh,
                self.fg_thresh,
                self.run_button,
                self.progress,
                self.status,
            ]
        )
        self.worker: GeneratorWorker | None = None
        self.model.changed.connect(self._package_defaults)
        self.run_button.changed.connect(self.run)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self._layers_changed()

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _model_path(self) -> Path | None:
        value = self.model.value
        return None if not value or str(value) == "." else Path(value)  # FileEdit's empty value is Path(".")

    def _layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()
        if self._model_path() is None:
            packages = [layer.metadata[MODEL_KEY] for layer in self.viewer.layers if MODEL_KEY in layer.metadata]
            if packages:
                self.model.value = packages[-1]

    def _package_defaults(self, path: Path) -> None:
        """The controls as a package's config.embedseg records them (what its scores were made with)."""
        if not (Path(path).is_file() and is_package(path)):
            return
        try:
            ours = package_config(path)
        except UserError as error:
            self.status.value = str(error)
            return
        clustering = ours["clustering"]
        self.clustering.value = clustering["preset"]
        self.min_object_size.value = clustering["min_object_size"]
        self.seed_thresh.value = clustering["seed_thresh"]
        self.fg_thresh.value = clustering["fg_thresh"]
        self.tta.value = bool(ours.get("tta", True))

    def cluster_config(self) -> ClusteringConfig:
        size = self.min_object_size.value
        return ClusteringConfig(
            self.clustering.value, None if size < 0 else size, self.seed_thresh.value, self.fg_thresh.value
        )

    def run(self, _value: Any = None) -> GeneratorWorker | None:
        """Start segmenting the chosen layer; returns the worker (None when the inputs are wrong)."""
        layer = self.image.value
        if layer is None or self._model_path() is None:
            self._failed(UserError("choose an image layer and a model (package .zip, best.pt or its folder)"))
            return None
        try:
            cluster = self.cluster_config()
        except UserError as error:
            self._failed(error)
            return None
        options = (self._model_path(), self.device.value, self.tta.value, cluster)
        # an `errored` handler given here replaces the default one, which re-raises in Qt's loop
        connect = {
            "yielded": self._progressed,
            "returned": lambda result: self._add_labels(layer, *result, options),
            "errored": self._failed,
            "finished": lambda: setattr(self.run_button, "enabled", True),
        }
        worker = create_worker(self._work, layer, *options, _start_thread=False, _connect=connect)
        self.run_button.enabled = False
        self.status.value = f"segmenting {layer.name} …"
        self.progress.value = 0
        self.worker = worker
        worker.start()
        return worker

    @staticmethod
    def _work(
        layer: Image, model: Path, device: str, tta: bool, cluster: ClusteringConfig
    ) -> Generator[tuple[int, int], None, tuple[np.ndarray, int]]:
        """The labels of the layer and the model's spatial dimension; yields (images done, of)."""
        segmenter = Segmenter.load(model, device, tta, cluster)
        labels = yield from segmenter.stack(layer.data, layer.rgb, layer.name)
        return labels, segmenter.settings.ndim

    def _progressed(self, done_of: tuple[int, int]) -> None:
        done, total = done_of
        self.progress.max = total
        self.progress.value = done

    def _add_labels(self, layer: Image, labels: np.ndarray, ndim: int, options: tuple) -> Labels:
        model, device, tta, cluster = options
        scale, translate = np.asarray(layer.scale), np.asarray(layer.translate)
        if len(scale) > labels.ndim:  # the image's channel axis, just before the `ndim` spatial ones
            scale, translate = (np.delete(values, labels.ndim - ndim) for values in (scale, translate))
        metadata = {MODEL_KEY: str(model), "device": device, "tta": tta, "clustering": asdict(cluster)}
        added = self.viewer.add_labels(
            labels, name=f"{layer.name}: EmbedSeg labels", scale=scale, translate=translate, metadata=metadata
        )
        images = int(np.prod(labels.shape[: labels.ndim - ndim], dtype=int))
        self.status.value = f"labels of {images} image(s) of {layer.name} added"
        return added

    def _failed(self, error: Exception) -> None:
        message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        self.status.value = message
        show_error(message)
