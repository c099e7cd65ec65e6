"""Images of any size: OME-Zarr (NGFF 0.4 and 0.5) and OME-TIFF / pyramidal TIFF read lazily, and
label images written as OME-Zarr label groups (docs/interfaces.md "Large images").

Reading opens one resolution level (default 0, the full resolution) as a lazy array: nothing is
read until a region is asked for (:meth:`LazyImage.read`). A TIFF is read through tifffile's zarr
store, so an OME-TIFF or pyramidal TIFF of any size is read region by region as well.

A prediction for ``NAME.ome.zarr`` is written as ``PRED_DIR/NAME.ome.zarr``, an OME-Zarr of the
input's NGFF version whose label group ``labels/<label name>`` holds the labels as a multiscale
pyramid (nearest-neighbour downsampling of Y and X by 2 per level) with ``image-label`` metadata.
The output never writes into an input (embedseg/outputs.py), so its root image is the label
pyramid itself (its datasets' paths point into ``labels/<label name>``): viewers and ome-zarr-py's
reader open it as an image and find the label group under it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import IMAGE_SUFFIXES, DataError, check_labels, list_images

ZARR_SUFFIXES = (".zarr",)
NGFF_VERSIONS = ("0.4", "0.5")
LABEL_NAME = "embedseg"
SPATIAL_AXES = "zyx"


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a ``.zarr`` (``.ome.zarr``) folder."""
    path = Path(path)
    return path.suffix.lower() in ZARR_SUFFIXES and path.is_dir()


def list_images_and_zarr(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files of `folder` with one of `suffixes` (:func:`embedseg.io.list_images`), then
    its OME-Zarr images; hidden entries skipped."""
    zarrs = sorted(p for p in Path(folder).iterdir() if is_zarr(p) and not p.name.startswith("."))
    return list_images(folder, suffixes) + zarrs


def in_any_format(folder: str | os.PathLike, name: str) -> Path:
    """The file `name` (e.g. ``a.tif``, as the masks are named) of `folder`, or when there is
    none the OME-Zarr of the same stem (``a.ome.zarr``: a large test image, its prediction)."""
    path = Path(folder) / name
    zarr = Path(folder) / f"{image_stem(name)}.ome.zarr"
    return zarr if not path.exists() and is_zarr(zarr) else path


def read_image_any(path: str | os.PathLike) -> np.ndarray:
    """An image file as stored (:func:`embedseg.io.read_image`), or an OME-Zarr image's full
    resolution, whole, channels first."""
    from .io import read_image

    return open_image(path).read() if is_zarr(path) else read_image(path)


def image_stem(path: str | os.PathLike) -> str:
    """The name without ``.ome.zarr`` / ``.zarr`` / ``.ome.tif`` / ``.tif``: how a prediction and
    its ground truth are paired whatever their formats."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass
class LazyImage:
    """One resolution level of an image, read region by region.

    `array` is a zarr-like array with axes `axes` (lower case, of ``tczyx``); a time axis is read
    at t = 0. `scale`: the physical pixel size per spatial axis, `version` the NGFF version
    (None for a TIFF)."""

    array: Any
    axes: str
    path: Path
    scale: tuple[float, ...]
    version: str | None = None

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in SPATIAL_AXES)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape ((Z,) Y, X)."""
        return tuple(int(n) for a, n in zip(self.axes, self.array.shape) if a in SPATIAL_AXES)

    @property
    def channels(self) -> int | None:
        """Channel count, None without a channel axis."""
        return int(self.array.shape[self.axes.index("c")]) if "c" in self.axes else None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """The spatial `region` (one slice per spatial axis; default all) as (C, *S) with a
        channel axis, else (*S)."""
        region = region or tuple(slice(None) for _ in self.shape)
        spatial = iter(region)
        index = tuple(0 if a == "t" else slice(None) if a == "c" else next(spatial) for a in self.axes)
        try:
            return np.asarray(self.array[index])
        except Exception as exc:  # zarr/numcodecs/tifffile raise many types for corrupt chunks
            raise DataError(f"{self.path}: cannot read {region} ({exc}); the file is corrupt or incomplete") from exc


def ngff_metadata(attrs: dict) -> tuple[dict, str]:
    """The OME metadata of a group's attributes and its NGFF version: 0.5 nests it under ``ome``."""
    if "ome" in attrs:
        return attrs["ome"], str(attrs["ome"].get("version", "0.5"))
    multiscales = attrs.get("multiscales") or [{}]
    return attrs, str(multiscales[0].get("version", "0.4"))


def open_image(path: str | os.PathLike, level: int = 0) -> LazyImage:
    """Open resolution `level` of an OME-Zarr image or a (pyramidal, OME) TIFF lazily."""
    path = Path(path)
    if is_zarr(path):
        return _open_zarr(path, level)
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            levels = len(series.levels)
            axes = series.axes.lower().replace("s", "c").replace("q", "c")
        if level >= levels:
            raise DataError(f"{path}: no resolution level {level} (it has {levels}); choose 0 … {levels - 1}")
        array = zarr.open(tifffile.imread(path, aszarr=True, level=level), mode="r")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot read image ({exc}); the file is corrupt or not a TIFF") from exc
    return LazyImage(array, axes, path, (1.0,) * sum(a in SPATIAL_AXES for a in axes))


def _open_zarr(path: Path, level: int) -> LazyImage:
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        meta, version = ngff_metadata(group.attrs.asdict())
        multiscale = meta["multiscales"][0]
        datasets = multiscale["datasets"]
    except (KeyError, IndexError, TypeError):
        raise DataError(f"{path}: not an OME-Zarr image (no multiscales metadata); write it as NGFF 0.4/0.5") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot open as Zarr ({exc})") from exc
    if not 0 <= level < len(datasets):
        raise DataError(f"{path}: no resolution level {level} (it has {len(datasets)}); choose 0 … {len(datasets) - 1}")
    axes = "".join((a["name"] if isinstance(a, dict) else a).lower() for a in multiscale["axes"])
    scale = next(
        (t["scale"] for t in datasets[level].get("coordinateTransformations", []) if t.get("type") == "scale"),
        [1.0] * len(axes),
    )
    spatial_scale = tuple(float(s) for a, s in zip(axes, scale) if a in SPATIAL_AXES)
    return LazyImage(group[datasets[level]["path"]], axes, path, spatial_scale, version)


def label_group_path(path: str | os.PathLike, name: str = LABEL_NAME) -> Path:
    return Path(path) / "labels" / name


def create_labels(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: np.dtype,
    version: str = "0.4",
    name: str = LABEL_NAME,
) -> Any:
    """The full-resolution label array (``labels/<name>/0``, zeros) of a new OME-Zarr at `path`,
    or the existing one when a killed run left it with the same shape, chunks and dtype."""
    import zarr

    if version not in NGFF_VERSIONS:
        raise DataError(f"NGFF version {version}: write 0.4 or 0.5")
    zarr_format = 3 if version == "0.5" else 2
    root = zarr.open_group(path, mode="a", zarr_format=zarr_format)
    group = root.require_group(f"labels/{name}")
    if "0" in group:
        array = group["0"]
        if tuple(array.shape) == tuple(shape) and tuple(array.chunks) == tuple(chunks) and array.dtype == dtype:
            return array
        del group["0"]
    return group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def pyramid_regions(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """The chunk-aligned regions of an array of `shape`."""
    for corner in np.ndindex(*(math.ceil(n / c) for n, c in zip(shape, chunks))):
        yield tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(corner, chunks, shape))


def finish_labels(
    path: str | os.PathLike,
    axes: str,
    scale: tuple[float, ...],
    version: str = "0.4",
    name: str = LABEL_NAME,
    min_size: int = 256,
) -> int:
    """Downsample ``labels/<name>/0`` by 2 in Y and X (nearest neighbour: every other pixel) until
    a side falls below `min_size`, chunk by chunk, and write the NGFF metadata of the label image,
    the labels group and the root. `axes`: the spatial axes (``yx`` or ``zyx``), `scale` their
    pixel size. Returns the number of levels."""
    import zarr

    root = zarr.open_group(path, mode="a")
    group = root[f"labels/{name}"]
    level = 0
    planar = tuple(i for i, a in enumerate(axes) if a in "yx")
    while min(group[str(level)].shape[i] for i in planar) >= 2 * min_size:
        source = group[str(level)]
        shape = tuple((n + 1) // 2 if i in planar else n for i, n in enumerate(source.shape))
        if str(level + 1) in group:
            del group[str(level + 1)]
        target = group.create_array(str(level + 1), shape=shape, chunks=source.chunks, dtype=source.dtype, fill_value=0)
        for region in pyramid_regions(shape, source.chunks):
            step = tuple(slice(2 * r.start, 2 * r.stop, 2) if i in planar else r for i, r in enumerate(region))
            target[region] = source[step]
        level += 1
    axes_meta = [{"name": a, "type": "space", "unit": "micrometer"} for a in axes]
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [
                {"type": "scale", "scale": [s * (2**k if i in planar else 1) for i, s in enumerate(scale)]}
            ],
        }
        for k in range(level + 1)
    ]
    multiscale = {"name": name, "axes": axes_meta, "datasets": datasets}
    label_meta = {"multiscales": [multiscale], "image-label": {"version": version, "source": {"image": "../../"}}}
    root_multiscale = {
        **multiscale,
        "name": f"{name} labels",
        "datasets": [{**d, "path": f"labels/{name}/{d['path']}"} for d in datasets],
    }
    if version == "0.5":
        group.attrs["ome"] = {"version": version, **label_meta}
        root["labels"].attrs["ome"] = {"version": version, "labels": [name]}
        root.attrs["ome"] = {"version": version, "multiscales": [root_multiscale]}
    else:
        multiscale["version"] = root_multiscale["version"] = version
        group.attrs.update(label_meta)
        root["labels"].attrs["labels"] = [name]
        root.attrs["multiscales"] = [root_multiscale]
    return level + 1


def read_labels_any(path: str | os.PathLike) -> np.ndarray:
    """A label image from a TIFF/PNG, or the full-resolution labels of an OME-Zarr: its label
    group (the first one listed), else its image; read chunk by chunk into one array."""
    from .io import read_labels

    path = Path(path)
    if not is_zarr(path):
        return read_labels(path)
    import zarr

    root = zarr.open_group(path, mode="r")
    if "labels" in root:
        meta, _ = ngff_metadata(root["labels"].attrs.asdict())
        names = meta.get("labels") or []
        if names:
            return check_labels(_open_zarr(path / "labels" / names[0], 0).read(), path)
    return check_labels(np.asarray(open_image(path).read()), path)


def write_image(
    path: str | os.PathLike,
    image: Any,
    axes: str,
    chunks: tuple[int, ...],
    version: str = "0.4",
    scale: tuple[float, ...] | None = None,
) -> None:
    """A one-level OME-Zarr image at `path` from `image` (an array or a zarr-like array of the
    same shape, copied chunk by chunk) with axes `axes` (of ``czyx``)."""
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=3 if version == "0.5" else 2)
    array = root.create_array("0", shape=image.shape, chunks=chunks, dtype=image.dtype, fill_value=0)
    for region in pyramid_regions(tuple(image.shape), chunks):
        array[region] = np.asarray(image[region])
    scale = scale or tuple(1.0 for _ in axes)
    multiscale = {
        "name": Path(path).name,
        "axes": [{"name": a, "type": "channel" if a == "c" else "space"} for a in axes],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]}],
    }
    if version == "0.5":
        root.attrs["ome"] = {"version": version, "multiscales": [multiscale]}
    else:
        root.attrs["multiscales"] = [{**multiscale, "version": version}]
