"""What every baseline shares: reading a prepared split, writing predictions, the "not run" marker.

Only NumPy and the package's light modules are imported here, so these helpers work in the
StarDist (TensorFlow, no torch) and Cellpose environments as well as in the main one.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import layout
from ..core import dihedral
from ..core.labels import flatten_labels
from ..dataset_settings import DATASET_JSON, DatasetSettings, normalize
from ..io import DataError, atomic_write, list_images, read_image, read_labels, write_labels
from ..zarr_io import image_stem, is_zarr, list_images_and_zarr, open_image

NUCLEI_DATA_SETS = ("dsb", "nuclei")  # name fragments of data sets whose objects are nuclei


@dataclass
class Split:
    """One subset of a prepared data set, normalised for a network.

    images: list of float32 arrays (H, W) or (C, H, W); labels: list of flat integer label
    images (H, W) (overlapping one-hot stacks flattened, see :func:`flatten_labels`).
    """

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.names)


def load_split(data_dir: str | os.PathLike, subset: str, settings: DatasetSettings) -> Split:
    """Read `data_dir/subset/{images,masks}` as normalised images and flat label images."""
    image_dir = Path(data_dir) / subset / "images"
    mask_dir = Path(data_dir) / subset / "masks"
    paths = list_images(image_dir) if image_dir.is_dir() else []
    images, labels = [], []
    for path in paths:
        mask_path = mask_dir / path.name
        if not mask_path.is_file():
            raise DataError(f"{mask_path}: mask missing for {path}; every image needs a mask of the same name")
        image = normalize(read_image(path), settings)
        mask = flatten_labels(read_labels(mask_path))
        if image.shape[-2:] != mask.shape:
            raise DataError(f"{mask_path}: mask shape {mask.shape} differs from image shape {image.shape[-2:]}")
        images.append(image)
        labels.append(mask)
    return Split([p.name for p in paths], images, labels)


def load_train_val(data_dir: str | os.PathLike, seed: int) -> tuple[DatasetSettings, Split, Split]:
    """Settings, training and validation split of a prepared data set.

    Data sets whose validation share is cut from crops (``val_split: crop``, BBBC010) have an
    empty `val/`; the baselines then hold out ``val_fraction`` of the training images (seeded).
    """
    settings = DatasetSettings.load(data_dir)
    train = load_split(data_dir, "train", settings)
    if len(train) == 0:
        raise DataError(f"{Path(data_dir) / 'train' / 'images'}: no training images; run `embedseg prepare` first")
    val = load_split(data_dir, "val", settings)
    if len(val) == 0:
        train, val = hold_out(train, settings.val_fraction, seed)
    return settings, train, val


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Randomly move ``max(1, round(fraction·n))`` images of `split` into a second split."""
    if len(split) < 2:
        raise DataError("need at least 2 training images to hold one out for validation")
    n_val = min(len(split) - 1, max(1, round(fraction * len(split))))
    order = np.random.default_rng(seed).permutation(len(split))
    return subset(split, order[n_val:]), subset(split, order[:n_val])


def subset(split: Split, indices: Sequence[int]) -> Split:
    """The images of `split` at `indices`, in their original order."""
    keep = sorted(int(i) for i in indices)
    return Split([split.names[i] for i in keep], [split.images[i] for i in keep], [split.labels[i] for i in keep])


def start_training(
    data_dir: str | os.PathLike, model_dir: str | os.PathLike, seed: int
) -> tuple[DatasetSettings, Split, Split]:
    """Read the training and validation splits and keep the data set's settings in the model folder.

    `predict` reads them back from there (:func:`load_settings`) to normalise as training did.
    """
    settings, train, val = load_train_val(data_dir, seed)
    settings.save(model_dir)
    return settings, train, val


def load_settings(model_dir: str | os.PathLike) -> DatasetSettings:
    path = Path(model_dir) / DATASET_JSON
    if not path.is_file():
        raise DataError(f"{path}: not found; is {model_dir} a model folder written by `embedseg baseline … train`?")
    return DatasetSettings.load(model_dir)


def predict_folder(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: DatasetSettings,
    segment: Callable[[np.ndarray], np.ndarray],
) -> list[Path]:
    """Run `segment` (normalised image → label image (H, W)) on every image; write label TIFFs.

    Output files carry the input file names, so `embedseg evaluate` pairs them with the masks.
    OME-Zarr images are read whole (the baselines have no out-of-core prediction).
    """
    from ..runtime import progress

    paths = list_images_and_zarr(image_dir)
    if not paths:
        raise DataError(f"{image_dir}: no images to predict (TIFF or OME-Zarr)")
    written = []
    for path in progress(paths, desc="predict", unit="image"):
        image = open_image(path).read() if is_zarr(path) else read_image(path)
        labels = segment(normalize(image, settings))
        out = Path(out_dir) / ((image_stem(path) if is_zarr(path) else path.stem) + ".tif")
        write_labels(out, labels)
        written.append(out)
    return written


def write_log(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Per-epoch `log.csv` in the columns of :data:`embedseg.layout.LOG_COLUMNS`; a value a
    method does not have stays empty."""
    with atomic_write(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=layout.LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_not_run(marker: str | os.PathLike, reason: str) -> Path:
    """Record why a baseline could not run (docs/interfaces.md); the tables show it as "not run"."""
    marker = Path(marker)
    with atomic_write(marker) as tmp:
        tmp.write_text(reason.rstrip() + "\n")
    print(f"baseline not run: {reason} (recorded in {marker})", file=sys.stderr)
    return marker


def random_patches(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    patch: int,
    batch_size: int,
    rng: np.random.Generator,
    target_fill: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random square patches, each under one random dihedral transform (EmbedSeg's augmentation).

    images: (C, H, W); targets: (H, W). Images smaller than `patch` are padded (image by
    reflection, target with `target_fill`). Returns (B, C, P, P) and (B, P, P) arrays.
    """
    xs, ys = [], []
    for index in rng.integers(len(images), size=batch_size):
        image, target = images[index], targets[index]
        pad = [(0, max(0, patch - size)) for size in target.shape]
        image = np.pad(image, [(0, 0)] + pad, mode="reflect")
        target = np.pad(target, pad, constant_values=target_fill)
        top, left = (rng.integers(size - patch + 1) for size in target.shape)
        t = dihedral.TRANSFORMS[rng.integers(len(dihedral.TRANSFORMS))]
        xs.append(dihedral.forward(image[:, top : top + patch, left : left + patch], t))
        ys.append(dihedral.forward(target[top : top + patch, left : left + patch], t))
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


def mean_ap50(true_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray]) -> float:
    """Mean over images of TP/(TP+FP+FN) at IoU 0.5 (the paper's AP_dsb), for tuning on validation."""
    from ..core.metrics import match_labels

    return float(np.mean([match_labels(t, p, np.array([0.5])).ap[0] for t, p in zip(true_labels, pred_labels)]))


def consecutive(labels: np.ndarray) -> np.ndarray:
    """Label image with ids 1 … n (the generalists' outputs may skip ids or be signed/float)."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(np.asarray(labels).astype(np.int64, copy=False))[0]


def zero_shot_train(data_dir: str | os.PathLike, model_dir: str | os.PathLike, seed: int, chosen: dict) -> int:
    """The `train` step of a pretrained model used as it is: keep the data set's settings and
    record what `predict` runs (`chosen`, in ``generalist.json``); nothing is trained."""
    from ..io import write_json
    from ..runtime import write_memory_json

    start_training(data_dir, model_dir, seed)
    write_json(Path(model_dir) / GENERALIST_JSON, chosen)
    write_memory_json(Path(model_dir) / layout.MEMORY_JSON)
    return 0


GENERALIST_JSON = "generalist.json"
