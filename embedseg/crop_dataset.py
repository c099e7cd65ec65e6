"""Training and validation crops as the network sees them (docs/method.md §6.2).

A crops folder (written by `embedseg crops`) holds ``{images,masks,centers}/*.tif`` with the same
file names, 2-D (H, W) or 3-D (Z, Y, X) as the data set's ``ndim`` says. Each epoch draws `size`
crops uniformly **with replacement** and one training transform per draw
(:func:`training_transforms`: the 8 dihedral transforms in 2-D, EmbedSeg's 3-D rotations and
flips in 3-D); the draws come from a seeded ``torch.Generator`` inside :class:`RandomCropSampler`,
so the dataset itself is deterministic and the whole sequence of an epoch is reproducible from the
generator state (also with worker processes).

The crops are read once, when the dataset is made, and held in memory in their stored dtypes
(masks relabelled to the smallest unsigned type, centres as pixel indices), about the size of the
crops folder on disk: a training draws each crop dozens of times, and decoding its three TIFFs
again each time cost more than the rest of the data pipeline. Worker processes share these
arrays (fork, copy-on-write). Normalisation and the transform run per draw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .core.labels import relabel_sequential
from .dataset_settings import DatasetSettings, normalize
from .io import DataError, list_images, read_image, read_labels

# A training transform: rotate by k·90° in the plane of two axes (counted from the end, np.rot90
# direction from the first towards the second), then flip along one axis (None: no flip).
Transform = tuple[tuple[int, int], int, int | None]


def training_transforms(ndim: int) -> tuple[Transform, ...]:
    """The transforms one training draw picks from uniformly, as EmbedSeg's training augmentation.

    2-D: the 8 dihedral transforms (k·90° in (Y, X), then a Y flip or not), in the order of
    ``dihedral.TRANSFORMS``. 3-D: EmbedSeg draws a plane — (Z, Y) or (X, Z) rotated by 2k·90°,
    (Y, X) by k·90°, k ∈ 0..3 — then with probability 1/2 a flip along Z, Y or X (1/6 each);
    the 3 × 4 × 6 equally likely combinations below give the same distribution (a flip-free
    combination appears three times, as 1/2 = 3/6). Rotations in Z change no crop's shape (even
    multiples of 90°), so crops of any Z size batch together; (Y, X) must be square, as in 2-D.
    """
    if ndim == 2:
        return tuple(((-2, -1), k, flip) for k in range(4) for flip in (None, -2))
    planes = (((-3, -2), 2), ((-2, -1), 1), ((-1, -3), 2))  # (plane, multiple of k), EmbedSeg's order
    flips = (None, None, None, -3, -2, -1)
    return tuple((plane, k * multiple, flip) for plane, multiple in planes for k in range(4) for flip in flips)


def augment(x: torch.Tensor, transform: Transform) -> torch.Tensor:
    """Apply a :func:`training_transform <training_transforms>` to the trailing axes of `x`."""
    plane, k, flip = transform
    x = x.rot90(k, dims=plane)
    return x if flip is None else x.flip(flip)


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

    Items: ``image`` (C, *S) float32 normalised with the data set's settings; ``instances``
    (*S) int64 ids 1..K, or for one-hot data (K, H, W) uint8; ``center`` (*S) bool, where the
    spatial shape S is (H, W) or (Z, Y, X) by ``settings.ndim``. Transform index t applies
    ``self.transforms[t]`` (:func:`training_transforms`) to all three alike.
    """

    def __init__(self, folder: str | os.PathLike, settings: DatasetSettings) -> None:
        self.files = crop_files(folder)
        self.settings = settings
        self.ndim = settings.ndim
        self.transforms = training_transforms(self.ndim)
        self.crops = [self.read_crop(index) for index in range(len(self.files))]

    def __len__(self) -> int:
        return len(self.files)

    def read_crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stored image (C, *S), relabelled masks, flat indices of the centre pixels) of a crop."""
        image_path, mask_path, center_path = self.files[index]
        image = read_image(image_path)
        image = image[None] if image.ndim == self.ndim else image
        masks = read_labels(mask_path)
        masks = (masks > 0).astype(np.uint8) if self.settings.one_hot else relabel_sequential(masks)
        center = read_image(center_path) > 0
        self.check_shapes(index, image, masks, center)
        return image, masks.astype(np.min_scalar_type(int(masks.max(initial=0)))), np.flatnonzero(center)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, transform = key
        image, masks, center_indices = self.crops[index]
        image = image.astype(np.float32) if self.settings.prenormalized else normalize(image, self.settings)
        center = torch.zeros(image.shape[1:], dtype=torch.bool)
        center.view(-1)[torch.from_numpy(center_indices)] = True
        # torch.long / uint8 conversions copy, so no item shares memory with the held crops.
        masks = torch.from_numpy(masks).to(torch.uint8 if self.settings.one_hot else torch.long, copy=True)
        return {
            name: augment(tensor, self.transforms[transform]).contiguous()
            for name, tensor in (("image", torch.from_numpy(image)), ("instances", masks), ("center", center))
        }

    def check_shapes(self, index: int, image: np.ndarray, masks: np.ndarray, center: np.ndarray) -> None:
        image_path, mask_path, center_path = self.files[index]
        axes = "(H, W)" if self.ndim == 2 else "(Z, Y, X)"
        if image.ndim != self.ndim + 1 or image.shape[0] != self.settings.in_channels:
            raise DataError(
                f"{image_path}: image of shape {image.shape}, expected {axes} or "
                f"({self.settings.in_channels}, {axes[1:-1]}) as dataset.json's ndim and in_channels say"
            )
        spatial = image.shape[1:]
        expected = "(K, H, W)" if self.settings.one_hot else axes
        if masks.ndim != len(expected.split(",")) or masks.shape[-self.ndim :] != spatial:
            raise DataError(
                f"{mask_path}: mask of shape {masks.shape} does not fit image {spatial} "
                f"(one_hot={self.settings.one_hot} expects {expected})"
            )
        if center.shape != spatial:
            raise DataError(f"{center_path}: centre image of shape {center.shape}, expected {spatial}")


class RandomCropSampler(Sampler):
    """`size` draws of (crop index, transform index < `n_transforms`), uniform and with
    replacement, per epoch."""

    def __init__(self, n_crops: int, n_transforms: int, size: int, generator: torch.Generator) -> None:
        self.n_crops, self.n_transforms, self.size, self.generator = n_crops, n_transforms, size, generator

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        crops = torch.randint(self.n_crops, (self.size,), generator=self.generator)
        transforms = torch.randint(self.n_transforms, (self.size,), generator=self.generator)
        return iter(zip(crops.tolist(), transforms.tolist()))


def collate_crops(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples; one-hot stacks are padded with empty slices to the batch's largest K
    (the loss ignores empty slices), so one-hot data are not restricted to batch size 1."""
    instances = [sample["instances"] for sample in samples]
    if instances[0].dim() == samples[0]["image"].dim():  # (K, H, W) beside (C, H, W): one-hot
        n_slices = max(stack.shape[0] for stack in instances)
        instances = [torch.nn.functional.pad(stack, (0, 0, 0, 0, 0, n_slices - stack.shape[0])) for stack in instances]
    return {
        "image": torch.stack([sample["image"] for sample in samples]),
        "instances": torch.stack(instances),
        "center": torch.stack([sample["center"] for sample in samples]),
    }
