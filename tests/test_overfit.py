"""End to end on CPU: the network overfits one synthetic image until it segments it perfectly.

Train (`embedseg.train`, crop = whole 128×128 image with four discs, augmentation on) → best.pt
→ `embedseg.inference.segment` (8-fold TTA, paper clustering thresholds) → AP_dsb@0.5 = 1.
About 150 steps on one thread: ~35 s on a busy 2-core machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedseg.core.cluster import ClusterParams
from embedseg.core.metrics import match_labels
from embedseg.data.synthetic import disc_centers, disc_image, disc_labels
from embedseg.dataset_settings import DatasetSettings
from embedseg.inference import segment
from embedseg.io import write_labels, write_tiff
from embedseg.models import load_checkpoint
from embedseg.train import TrainConfig, train

SIZE = 128
DISCS = [(30, 34, 14), (36, 92, 12), (90, 40, 16), (94, 96, 11)]


@pytest.mark.usefixtures("one_thread")
def test_network_overfits_one_image_to_perfect_ap(tmp_path) -> None:
    labels = disc_labels((SIZE, SIZE), DISCS)
    image = disc_image(labels, np.random.default_rng(0))
    crops = tmp_path / "crops"
    for subset in ("train", "val"):
        write_tiff(crops / subset / "images" / "one.tif", image)
        write_labels(crops / subset / "masks" / "one.tif", labels)
        write_tiff(crops / subset / "centers" / "one.tif", disc_centers((SIZE, SIZE), DISCS))
    DatasetSettings(name="one-image", crop_size=SIZE, center="centroid").save(crops)

    config = TrainConfig(
        epochs=15, batch_size=1, virtual_batch=1, train_size=10, val_size=1, val_batch_size=1, device="cpu"
    )
    history = train(crops, tmp_path / "model", config)
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    model, settings = load_checkpoint(tmp_path / "model" / "best.pt", device="cpu")
    predicted, seeds = segment(model, image, settings, tta=True, params=ClusterParams())
    assert seeds.max() > 0.9
    assert match_labels(labels, predicted).ap[0] == 1.0
