"""Training data pipeline: crops held in memory once, transformed as tensors, worker processes."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from embedseg.core import dihedral
from embedseg.crop_dataset import CropDataset, relabel_sequential
from embedseg.dataset_settings import DatasetSettings, normalize
from embedseg.io import read_image, read_labels
from embedseg.train import make_loader

from discs import write_crop_folder


def test_crops_are_read_once_and_items_equal_the_files(tmp_path) -> None:
    root = write_crop_folder(tmp_path / "crops", n_train=3, n_val=1)
    settings = DatasetSettings.load(root)
    subset = root / "train"
    expected = [
        (
            normalize(read_image(subset / "images" / name), settings),
            relabel_sequential(read_labels(subset / "masks" / name)),
            read_image(subset / "centers" / name) > 0,
        )
        for name in ("crop_000.tif", "crop_001.tif", "crop_002.tif")
    ]
    dataset = CropDataset(subset, settings)
    shutil.rmtree(subset)  # held in memory: no file is read after the dataset is made
    for index, (image, masks, center) in enumerate(expected):
        for transform, (k, flip) in enumerate(dihedral.TRANSFORMS):
            item = dataset[index, transform]
            assert item["image"].dtype == torch.float32 and item["instances"].dtype == torch.int64
            assert item["center"].dtype == torch.bool
            for name, array in (("image", image[None]), ("instances", masks), ("center", center)):
                assert np.array_equal(item[name].numpy(), dihedral.forward(array, (k, flip))), (name, transform)
    # An item is a copy: changing it leaves the held crop alone.
    dataset[0, 0]["instances"].fill_(7)
    assert np.array_equal(dataset[0, 0]["instances"].numpy(), expected[0][1])


def test_worker_processes_give_the_same_batches(tmp_path) -> None:
    """Persistent workers (and their own seed generator) change neither the draws nor the data."""
    root = write_crop_folder(tmp_path / "crops", n_train=4, n_val=1)
    dataset = CropDataset(root / "train", DatasetSettings.load(root))
    epochs = []
    for workers in (0, 1):
        generator = torch.Generator().manual_seed(3)
        loader = make_loader(dataset, 6, 2, generator, workers, drop_last=True, device=torch.device("cpu"))
        epochs.append([[batch["image"] for batch in loader] for _ in range(2)])
        assert loader.persistent_workers == (workers > 0)
    for serial, parallel in zip(*epochs):
        assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(epochs[0][0][0], epochs[0][1][0])  # the two epochs draw differently
