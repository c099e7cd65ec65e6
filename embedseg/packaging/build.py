"""Building a package: the test input cut from a sample image, the files the description names
(weights, TorchScript, test and sample tensors, cover, model card), the zip, and its validation
by bioimageio.core before it is written to its destination."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..inference import network_input, segment
from ..io import DataError, atomic_write, list_images, read_image, write_tiff
from ..models import erfnet
from ..models.erfnet import NETWORK_MULTIPLE, BranchedERFNet
from .card import model_card
from .describe import (
    ARCHITECTURE,
    COVER,
    MIN_INPUT,
    README,
    SAMPLE_INPUT,
    SAMPLE_OUTPUT,
    TEST_INPUT,
    TEST_OUTPUT,
    TORCHSCRIPT,
    WEIGHTS,
    build_description,
)
from .facts import ModelFacts

log = logging.getLogger(__name__)

# Test input and cover: at most this many pixels (voxels) per axis, so the package stays small; a
# 64³ volume's raw output (7 float32 channels) takes 7 MiB, twice in the package (.npy and .tif).
SAMPLE_SIZE = {2: 256, 3: 64}
COVER_HEIGHT = 256  # at least, in pixels
# TorchScript must reproduce the state-dict model; both run the same float32 kernels on the CPU.
SCRIPT_TOLERANCE = 1e-4


def sample_image(path: str | os.PathLike) -> tuple[Path, np.ndarray]:
    """The image a TIFF path names, or the first image (sorted by name) of a folder."""
    path = Path(path)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise DataError(f"{path}: no TIFF images for the test input; pass --sample IMAGE")
        path = images[0]
    return path, read_image(path)


def central_crop(image: np.ndarray, ndim: int = 2, source: str | os.PathLike = "sample image") -> np.ndarray:
    """Centre crop of the last `ndim` axes of (C, H, W) or (C, Z, Y, X): at most SAMPLE_SIZE[ndim]
    pixels per axis, cut to multiples of the network's stride; `source` names the image in errors."""
    spatial = image.shape[-ndim:]
    out = []
    for extent in spatial:
        length = min(SAMPLE_SIZE[ndim], extent) // NETWORK_MULTIPLE * NETWORK_MULTIPLE
        if length < MIN_INPUT:
            raise DataError(f"{source}: {spatial} is below {MIN_INPUT} px on an axis; pass a larger --sample")
        start = (extent - length) // 2
        out.append(slice(start, start + length))
    return image[(Ellipsis, *out)]


def cover_image(image: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """PNG with the input (left) and the predicted instances over it (right): `image` (C, H, W)
    and `labels` (H, W), or of a volume (C, Z, Y, X) / (Z, Y, X) the middle z slice."""
    import imageio.v3 as iio
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    if labels.ndim == 3:
        middle = labels.shape[0] // 2
        image, labels = image[:, middle], labels[middle]
    channel = image[0].astype(np.float64)
    low, high = np.percentile(channel, (1, 99.8))
    gray = np.clip((channel - low) / (high - low + 1e-20), 0, 1)
    overlay = label2rgb(labels, image=gray, alpha=0.35, bg_label=0)
    overlay[find_boundaries(labels, mode="inner")] = (1.0, 1.0, 0.0)
    panel = np.concatenate([np.repeat(gray[..., None], 3, axis=-1), overlay], axis=1)
    zoom = -(-COVER_HEIGHT // panel.shape[0])  # small samples are enlarged (nearest neighbour)
    panel = panel.repeat(zoom, axis=0).repeat(zoom, axis=1)
    iio.imwrite(path, (panel * 255).round().astype(np.uint8))


def script_model(model: BranchedERFNet, path: Path, sample: torch.Tensor, reference: torch.Tensor) -> float:
    """Save the TorchScript version of `model` and return its largest deviation from `reference`."""
    with warnings.catch_warnings():
        # Recent torch deprecates TorchScript in favour of torch.export, but bioimage.io's
        # `torchscript` weights (what deepImageJ runs) are TorchScript.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        torch.jit.script(model).save(str(path))
        scripted = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        deviation = float((scripted(sample) - reference).abs().max())
    if deviation > SCRIPT_TOLERANCE:
        raise RuntimeError(f"TorchScript output deviates by {deviation:.2e} from the state-dict model")
    return deviation


def write_files(
    folder: Path,
    model: BranchedERFNet,
    facts: ModelFacts,
    crop: np.ndarray,
    source: str | os.PathLike = "sample image",
) -> None:
    """Write into `folder` every file the description names, for the test input `crop` (C, *S) as
    stored (`source` names it in errors): weights in both formats and the architecture source,
    the test input and its raw output (.npy, and as TIFF for people), the cover, the model card."""
    normalised = network_input(crop, facts.settings, source)
    batch = torch.from_numpy(normalised)[None]
    with torch.inference_mode():
        raw = model(batch)
    torch.save(model.state_dict(), folder / WEIGHTS)
    (folder / ARCHITECTURE).write_bytes(Path(erfnet.__file__).read_bytes())
    deviation = script_model(model, folder / TORCHSCRIPT, batch, raw)
    log.info("TorchScript vs state dict: max |difference| %.2e on the test input", deviation)
    labels, _ = segment(model, crop, facts.settings, facts.tta, facts.params)
    cover_image(normalised, labels, folder / COVER)
    np.save(folder / TEST_INPUT, crop[None])
    np.save(folder / TEST_OUTPUT, raw.numpy())
    # The same tensors as TIFF, for people browsing the package (bioimage.io's "sample tensors").
    write_tiff(folder / SAMPLE_INPUT, crop[None], compress=False)
    write_tiff(folder / SAMPLE_OUTPUT, raw.numpy(), compress=False)
    (folder / README).write_text(model_card(facts), encoding="utf-8")


def validate_package(path: Path) -> None:
    """bioimageio.core's model test: both weight formats must reproduce the test output. The package
    names no remote file, so the test needs no network."""
    from bioimageio.core import test_model

    summary = test_model(path)
    if summary.status != "passed":
        failed = [
            f"{d.name}: {d.errors[0].msg.splitlines()[-1] if d.errors else d.status}"
            for d in summary.details
            if d.status == "failed"
        ]
        details = " | ".join(failed[:3]) or summary.status
        raise DataError(f"{path}: bioimageio.core's model test failed: {details}")
    log.info("bioimageio.core test_model: %s", summary.status)


def build_package(
    model: BranchedERFNet,
    facts: ModelFacts,
    crop: np.ndarray,
    out: str | os.PathLike,
    check: bool = True,
    source: str | os.PathLike = "sample image",
) -> Path:
    """Write the package of `model` with test input `crop` (see :func:`write_files`) to `out`
    (.zip); with `check`, bioimageio.core's model test must pass before `out` is written."""
    from bioimageio.spec import save_bioimageio_package

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="embedseg-export-") as tmp:
        folder = Path(tmp)
        write_files(folder, model, facts, crop, source)
        description = build_description(folder, facts, str(crop.dtype))
        package = save_bioimageio_package(description, output_path=folder / "package.zip")
        if check:
            validate_package(package)
        with atomic_write(out) as tmp_out:
            shutil.copyfile(package, tmp_out)
    return out
