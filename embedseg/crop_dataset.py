"""Training and validation crops as the network sees them (docs/method.md §6.2).

A crops folder (written by `embedseg crops`) holds ``{images,masks,centers}/*.tif`` with the same
file names. Each epoch draws `size` crops uniformly **with replacement** and one of the 8
dihedral transforms per draw; the draws come from a seeded ``torch.Generator`` inside
:class:`RandomCropSampler`, so the dataset itself is deterministic and the whole sequence of an
epoch is reproducible from the generator state (also with worker processes).

The crops are read once, when the dataset is made, and held in memory in their stored dtypes
(masks relabelled to the smallest unsigned type, centres as pixel indices), about the size of the
crops folder on disk: a training draws each crop dozens of times, and decoding its three TIFFs
again each time cost more than the rest of the data pipeline. Worker processes share these
arrays (fork, copy-on-write). Normalisation and the dihedral transform run per draw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import dihedral
from .dataset_settings import DatasetSettings, normalize
from .io import DataError, list_images, read_image, read_labels
from .labels import relabel_sequential


def crop_files(folder: str | os.PathLike) -> list[tuple[Path, Path, Path]]:
    """(image, mask, centre) paths of every crop in `folder`, matched by file name."""
    folder = Path(folder)
    images = list_images(folder / "images") if (folder / "images").is_dir() else []
    if not images:
        raise DataError(f"{folder / 'images'}: no crops found; run `embedseg crops` to write them")
    triples = [(image, folder / "masks" / image.name, folder / "centers" / image.name) for image in images]
    missing = [str(path) for triple in triples for path in triple[1:] if not path.is_file()]
    if missing:
        raise DataError(
            f"{missing[0]}: missing ({len(missing)} mask/centre files in all); "
            "every crop needs images/, masks/ and centers/ files of the same name — re-run `embedseg crops`"
        )
    return triples


class CropDataset(Dataset):
    """Crops of one subset folder; item ``(crop index, transform index)`` → dict of tensors.

    Items: ``image`` (C, H, W) float32 normalised with the data set's settings; ``instances``
    (H, W) int64 ids 1..K, or for one-hot data (K, H, W) uint8; ``center`` (H, W) bool.
    Transform index t applies ``dihedral.TRANSFORMS[t]`` to all three alike.
    """

    def __init__(self, folder: str | os.PathLike, settings: DatasetSettings) -> None:
        self.files = crop_files(folder)
        self.settings = settings
        self.crops = [self.read_crop(index) for index in range(len(self.files))]

    def __len__(self) -> int:
        return len(self.files)

    def read_crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stored image (C, H, W), relabelled masks, flat indices of the centre pixels) of a crop."""
        image_path, mask_path, center_path = self.files[index]
        image = read_image(image_path)
        image = image[None] if image.ndim == 2 else image
        masks = read_labels(mask_path)
        masks = (masks > 0).astype(np.uint8) if self.settings.one_hot else relabel_sequential(masks)
        center = read_image(center_path) > 0
        self.check_shapes(index, image, masks, center)
        return image, masks.astype(np.min_scalar_type(int(masks.max(initial=0)))), np.flatnonzero(center)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, transform = key
        image, masks, center_indices = self.crops[index]
        image = image.astype(np.float32) if self.settings.prenormalized else normalize(image, self.settings)
        center = torch.zeros(masks.shape[-2:], dtype=torch.bool)
        center.view(-1)[torch.from_numpy(center_indices)] = True
        # torch.long / uint8 conversions copy, so no item shares memory with the held crops.
        masks = torch.from_numpy(masks).to(torch.uint8 if self.settings.one_hot else torch.long, copy=True)
        t = dihedral.TRANSFORMS[transform]
        return {
            name: dihedral.forward(tensor, t).contiguous()
            for name, tensor in (("image", torch.from_numpy(image)), ("instances", masks), ("center", center))
        }

    def check_shapes(self, index: int, image: np.ndarray, masks: np.ndarray, center: np.ndarray) -> None:
        image_path, mask_path, center_path = self.files[index]
        if image.ndim != 3 or image.shape[0] != self.settings.in_channels:
            raise DataError(
                f"{image_path}: image of shape {image.shape}, expected (H, W) or "
                f"({self.settings.in_channels}, H, W) as dataset.json's in_channels says"
            )
        expected_mask_ndim = 3 if self.settings.one_hot else 2
        if masks.ndim != expected_mask_ndim or masks.shape[-2:] != image.shape[-2:]:
            raise DataError(
                f"{mask_path}: mask of shape {masks.shape} does not fit image {image.shape[-2:]} "
                f"(one_hot={self.settings.one_hot} expects {'(K, H, W)' if self.settings.one_hot else '(H, W)'})"
            )
        if center.shape != image.shape[-2:]:
            raise DataError(f"{center_path}: centre image of shape {center.shape}, expected {image.shape[-2:]}")


class RandomCropSampler(Sampler):
    """`size` draws of (crop index, transform index), uniform and with replacement, per epoch."""

    def __init__(self, n_crops: int, size: int, generator: torch.Generator) -> None:
        self.n_crops, self.size, self.generator = n_crops, size, generator

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        crops = torch.randint(self.n_crops, (self.size,), generator=self.generator)
        transforms = torch.randint(len(dihedral.TRANSFORMS), (self.size,), generator=self.generator)
        return iter(zip(crops.tolist(), transforms.tolist()))


def collate_crops(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples; one-hot stacks are padded with empty slices to the batch's largest K
    (the loss ignores empty slices), so one-hot data are not restricted to batch size 1."""
    instances = [sample["instances"] for sample in samples]
    if instances[0].dim() == 3:
        n_slices = max(stack.shape[0] for stack in instances)
        instances = [torch.nn.functional.pad(stack, (0, 0, 0, 0, 0, n_slices - stack.shape[0])) for stack in instances]
    return {
        "image": torch.stack([sample["image"] for sample in samples]),
        "instances": torch.stack(instances),
        "center": torch.stack([sample["center"] for sample in samples]),
    }
