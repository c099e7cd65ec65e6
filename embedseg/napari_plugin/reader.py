"""napari reader: a results folder or a bioimage.io package of `embedseg export` as layers.

A results folder (``results/{run}``, paths from :mod:`embedseg.layout`) gives, per data set, its
test images, their ground truth and each method's labels per seed, each as one layer that stacks
the test images along a first axis (zero-padded to the largest): the slider steps through the
images and every layer shows the same one. Each layer's metadata names the images in slice
order; a method's layer also holds its per-image scores (``scores``: image → AP and F1 at
τ = 0.50, TP/FP/FN there, mSA), read from ``scores/{ds}/{method}/seed{s}.csv`` (`embedseg
evaluate`). Only the first data set is visible at first.

A package gives its test input and the instances of its stored raw test output (one forward
pass, no TTA), clustered with the package's own thresholds and grid; the metadata hold the
package's path (the widget's model) and its clustering, TTA and scores.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .. import layout, methods
from ..dataset_settings import DATASET_JSON, DatasetSettings
from ..io import DataError, list_images, read_labels
from ..zarr_io import in_any_format, read_image_any, read_labels_any

LayerData = tuple[np.ndarray, dict[str, Any], str]
SCORED_TAU = 0.5  # the per-image columns at this τ (AP@0.5, F1@0.5, …), besides mSA


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for `path` if it is a results folder or an `embedseg export` package, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if datasets(path):
        return read_results
    if str(path).lower().endswith(".zip") and Path(path).is_file():
        from ..models.checkpoint import is_package

        return read_package if is_package(path) else None
    return None


def datasets(results: str | os.PathLike) -> list[str]:
    """Data sets of a results folder with prepared test images (none: not a results folder)."""
    data = Path(results) / "data"
    if not data.is_dir():
        return []
    found = [folder.name for folder in sorted(data.iterdir()) if (folder / DATASET_JSON).is_file()]
    return [name for name in found if layout.test_images(layout.data_dir(results, name)).is_dir()]


def read_results(path: str | list[str]) -> list[LayerData]:
    results = Path(path[0] if isinstance(path, list) else path)
    return [
        layer for index, name in enumerate(datasets(results)) for layer in dataset_layers(results, name, index == 0)
    ]


def dataset_layers(results: Path, dataset: str, visible: bool) -> list[LayerData]:
    """Image, ground truth and every method's labels (per seed) of one data set's test images."""
    data = layout.data_dir(results, dataset)
    settings = DatasetSettings.load(data)
    # named as the masks; an image (and its prediction) may be NAME.ome.zarr
    names = [p.name for p in list_images(layout.test_masks(data))]
    paths = [in_any_format(layout.test_images(data), name) for name in names]
    scale = (1.0, *(settings.voxel_size or (1.0,) * settings.ndim))
    common = {"visible": visible, "metadata": {"dataset": dataset, "images": names}}
    images = stacked([read_image_any(p) for p in paths])
    # channels of a (C, *S) image come before the spatial axes: give them scale 1 as well
    image_scale = (*scale[:1], *(1.0,) * (images.ndim - len(scale)), *scale[1:])
    layers = [(images, {**common, "name": f"{dataset}: image", "scale": image_scale}, "image")]
    masks = layout.test_masks(data)
    if masks.is_dir():
        truth = stacked([label_image(read_labels(masks / name), settings.ndim) for name in names])
        layers.append((truth, {**common, "name": f"{dataset}: ground truth", "scale": scale}, "labels"))
    predictions = results / "predictions" / dataset
    found = [m.name for m in predictions.iterdir() if m.is_dir()] if predictions.is_dir() else []
    for method in sorted(found, key=methods.order):
        for seed_dir in sorted(p for p in (predictions / method).iterdir() if layout.SEED_DIR.fullmatch(p.name)):
            seed = layout.SEED_DIR.fullmatch(seed_dir.name).group(1)
            labels = stacked([read_labels_any(in_any_format(seed_dir, name)) for name in names])
            scores = layout.scores_file(results, dataset, method, seed)
            metadata = {**common["metadata"], "method": method, "seed": int(seed), "predictions": str(seed_dir)}
            if scores.is_file():
                metadata.update(scores=image_scores(scores), scores_file=str(scores))
            name = f"{dataset}: {method} seed {seed}"
            layers.append((labels, {**common, "name": name, "scale": scale, "metadata": metadata}, "labels"))
    return layers


def stacked(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays along a new first axis, each zero-padded at its end to the largest shape."""
    if len({a.ndim for a in arrays}) > 1:
        raise DataError(f"images of different dimensions {sorted({a.shape for a in arrays})}; cannot stack them")
    shape = np.max([a.shape for a in arrays], axis=0)
    out = np.zeros((len(arrays), *shape), dtype=np.result_type(*arrays))
    for index, array in enumerate(arrays):
        out[(index, *(slice(0, size) for size in array.shape))] = array
    return out


def label_image(labels: np.ndarray, ndim: int) -> np.ndarray:
    """A label image of a GT: as stored, or a one-hot stack (K, H, W) of a 2-D data set flattened
    (object k → id k + 1; where objects overlap the higher id shows)."""
    if labels.ndim == ndim:
        return labels
    ids = np.arange(1, len(labels) + 1, dtype=np.uint32).reshape(-1, *(1,) * ndim)
    return (labels.astype(bool) * ids).max(axis=0)


def image_scores(path: Path) -> dict[str, dict[str, float]]:
    """Per image: AP, F1, TP, FP, FN at τ = 0.50 and mSA, from a scores file of `embedseg evaluate`."""
    scores = pd.read_csv(path)
    at = scores[scores["tau"].round(2) == SCORED_TAU].set_index("image")
    columns = {f"{column}@0.5": at[column] for column in ("ap", "f1", "tp", "fp", "fn")}
    table = pd.DataFrame({**columns, "msa": at["msa"]})
    return {image: {key: float(value) for key, value in row.items()} for image, row in table.iterrows()}


def package_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.embedseg of an `embedseg export` package (what turns its raw output into instances)."""
    from ..models.checkpoint import PACKAGE_CONFIG_KEY, PACKAGE_RDF

    try:
        with zipfile.ZipFile(path) as archive:
            ours = (yaml.safe_load(archive.read(PACKAGE_RDF)).get("config") or {}).get(PACKAGE_CONFIG_KEY)
    except (KeyError, AttributeError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        raise DataError(f"{path}: broken bioimage.io package ({exc!r}); export it again") from exc
    if not isinstance(ours, dict) or "clustering" not in ours:
        raise DataError(
            f"{path}: no config.{PACKAGE_CONFIG_KEY}.clustering; only packages of `embedseg export` work here"
        )
    return ours


def read_package(path: str | list[str]) -> list[LayerData]:
    import torch

    from ..core.cluster import ClusterParams, cluster
    from ..packaging.describe import TEST_INPUT, TEST_OUTPUT

    path = Path(path[0] if isinstance(path, list) else path)
    ours = package_config(path)
    with zipfile.ZipFile(path) as archive:
        image, raw = (np.load(io.BytesIO(archive.read(name)))[0] for name in (TEST_INPUT, TEST_OUTPUT))
    params = {key: value for key, value in ours["clustering"].items() if key != "preset"}
    labels = cluster(torch.from_numpy(raw), ClusterParams(**params), ours["embedding"]["grid_spacing"])
    voxel_size = (ours.get("settings") or {}).get("voxel_size")
    scale = tuple(voxel_size) if voxel_size else (1.0,) * labels.ndim
    metadata = {"embedseg_model": str(path), **{key: ours.get(key) for key in ("clustering", "tta", "scores")}}
    image = image[0] if len(image) == 1 else image  # (C, *S): one channel shows as a plain image
    image_scale = (*(1.0,) * (image.ndim - len(scale)), *scale)
    return [
        (image, {"name": f"{path.stem}: test input", "scale": image_scale, "metadata": metadata}, "image"),
        (labels, {"name": f"{path.stem}: instances (no TTA)", "scale": scale, "metadata": metadata}, "labels"),
    ]
