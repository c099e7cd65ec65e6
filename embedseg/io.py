"""Reading and writing images, label images and small metadata files.

Every writer goes through :func:`atomic_write`: the data lands in a temporary file in the
target folder and is renamed into place, so a crash never leaves a half-written output and an
earlier result stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .core.labels import label_dtype

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff")
# errno values that say the destination cannot take the data (not that an input is unreadable).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


class UserError(Exception):
    """A mistake the user can fix (bad option, unusable output folder, interrupted run).

    The command line prints the message as one line, without a traceback (`-v` shows it), and
    exits with `exit_code`; anything else that goes wrong is a bug and keeps its traceback.
    """

    exit_code = 2


class DataError(UserError, ValueError):
    """Bad input data; the message names the file and what to do about it."""


class WriteError(UserError):
    """Writing `path` failed for a reason the user can fix (full disk, read-only folder).

    `cause` is the system's reason in words ("no space left on device"); :mod:`embedseg.outputs`
    rewords it to name the output folder the user gave instead of its hidden staging folder.
    """

    def __init__(self, path: str | os.PathLike, error: OSError) -> None:
        self.path, self.errno, self.cause = Path(path), error.errno, os.strerror(error.errno).lower()
        super().__init__(f"cannot write {self.path}: {self.cause}")


def concerns(path: Path, target: Path) -> bool:
    """True when the absolute `path` is the output `target`, inside it, a folder above it or
    one of its hidden work files beside it (``.NAME.*``: staging folder, temporary file)."""
    within = (path, *path.parents)
    return (
        target in within
        or path in target.parents
        or any(p.parent == target.parent and p.name.startswith(f".{target.name}.") for p in within)
    )


def is_write_error(error: OSError, target: Path) -> bool:
    """True when `error` says the output `target` (an absolute path) cannot be written: a
    :data:`WRITE_ERRNOS` failure on a path that :func:`concerns` it; a full disk counts
    wherever it shows (a failed write() names no file)."""
    if error.errno not in WRITE_ERRNOS:
        return False
    if error.filename is None or error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return concerns(Path(os.path.abspath(error.filename)), target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the block succeeds.

    The temporary file (``.NAME.XXXXXXXX.SUFFIX``, a pattern :mod:`embedseg.outputs` cleans up
    after a killed run) keeps the target's suffix (``suffix`` overrides it) because some
    writers pick the format from the name. On an exception the temporary file is removed and
    `path` is left as it was.
    A full disk or a folder that cannot be written raises :class:`WriteError` naming `path`.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp creates 0600; give the result the mode a plain open() would (shared clusters, reports).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as exc:
        if not is_write_error(exc, Path(os.path.abspath(path))):
            raise
        raise WriteError(path, exc) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def list_images(directory: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Sorted list of image files (by name) in `directory`; hidden and temporary files skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: folder not found")
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (TIFF via tifffile, anything else via imageio) as stored."""
    path = Path(path)
    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            import tifffile

            array = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            array = np.asarray(iio.imread(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # tifffile/imageio raise many types for corrupt files
        raise DataError(f"{path}: cannot read image ({exc}); the file is corrupt or not an image") from exc
    # tifffile returns an empty array (with only a warning) for some truncated files.
    if array.size == 0:
        raise DataError(f"{path}: no image data (truncated or corrupt file); replace it with a valid image")
    if array.ndim > 2 and array.shape[-1] == 1:
        # (H, W, 1): a single-channel picture saved with a channel axis (imageio, some PNG/TIFF
        # writers); no image or mask of ours is 1 pixel wide, so the axis carries nothing.
        log.debug("%s: dropping the trailing axis of length 1 of shape %s", path, array.shape)
        array = array[..., 0]
    return array


def check_labels(labels: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Validate a label image (integer, non-negative) and return it as an unsigned array."""
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        if (
            np.issubdtype(labels.dtype, np.floating)
            and np.all(np.isfinite(labels))
            and np.all(labels == np.round(labels))
        ):
            labels = labels.astype(np.int64)
        else:
            raise DataError(
                f"{path}: label image has non-integer values (dtype {labels.dtype}); "
                "store instance ids as integers, 0 = background"
            )
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: label image has negative ids (min {labels.min()}); ids must be >= 0")
    return labels.astype(label_dtype(int(labels.max()) if labels.size else 0), copy=False)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read and validate a label image (H, W) or one-hot/overlap stack (K, H, W)."""
    return check_labels(read_image(path), path)


def write_tiff(path: str | os.PathLike, array: np.ndarray, compress: bool = True) -> None:
    """Write `array` as TIFF atomically (zlib-compressed by default)."""
    import tifffile

    # minisblack: a (3, H, W) or (4, H, W) stack (channels, one-hot objects) is not an RGB picture.
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, array, compression="zlib" if compress else None, photometric="minisblack")


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label image as uint16 (or uint32 when ids exceed 65535)."""
    labels = np.asarray(labels)
    write_tiff(path, labels.astype(label_dtype(int(labels.max()) if labels.size else 0), copy=False))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
