"""`embedseg export`: a trained network as a bioimage.io model package (spec 0.5) with its evidence.

The package holds the weights twice — as a ``pytorch_state_dict`` whose architecture is this
package's ERF-Net source file, and as TorchScript — plus a test input and its expected raw output,
a cover image, a model card (README.md) with the data, split, training, code version, citations,
data licence and, when score files are given, the test AP_dsb of the model and the spread over
its sibling runs; ``config.embedseg`` carries what turns the raw output into instances (embedding
constants, clustering thresholds, TTA) and what `embedseg predict` needs to load the package.

2-D and 3-D models export alike: a 3-D package's tensors have a z axis (scaled by the data set's
voxel size), its test tensors are volumes and config.embedseg holds the anisotropic grid spacing.

Only the raw network output leaves the package's bioimage.io part: the greedy seed clustering is
no standard bioimage.io post-processing, so consumers other than `embedseg predict` run it
themselves from the config (docs/export.md). bioimageio.spec/core are imported only here, so they
are an optional dependency (extra `export`); loading a package for `predict` needs neither.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from .core import dihedral
from .core.cluster import ClusterParams
from .core.embedding import SIGMA_SCALE, grid_spacing
from .dataset_settings import DatasetSettings
from .inference import DEFAULT_OVERLAP, ClusteringConfig, default_tile, network_input, segment
from .io import DataError, atomic_write, list_images, read_image, write_tiff
from .models import erfnet, read_checkpoint
from .models.checkpoint import PACKAGE_CONFIG_KEY, is_package
from .models.erfnet import NETWORK_MULTIPLE, BranchedERFNet
from .options import add_options, from_args
from .outputs import check_output_file
from .schedule import BASE_LR, LR_HORIZON, LR_POWER

log = logging.getLogger(__name__)

INPUT_ID, OUTPUT_ID = "image", "prediction"
# Test input and cover: at most this many pixels (voxels) per axis, so the package stays small; a
# 64³ volume's raw output (7 float32 channels) takes 7 MiB, twice in the package (.npy and .tif).
SAMPLE_SIZE = {2: 256, 3: 64}
SPACE_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}  # bioimage.io axis ids of the spatial axes, in array order
COVER_HEIGHT = 256  # at least, in pixels
MIN_INPUT = 16  # smallest input edge stated in the spec (two multiples of the network's stride)
# TorchScript must reproduce the state-dict model; both run the same float32 kernels on the CPU.
SCRIPT_TOLERANCE = 1e-4
# bioimage.io allows eps in (0, 0.1]; ours is 1e-20, a difference far below the test tolerance.
BIOIMAGEIO_EPS = 1e-6
METHOD_CITATIONS = (
    (
        "Lalit, Tomancak, Jug: Embedding-based Instance Segmentation in Microscopy, MIDL 2021 (EmbedSeg)",
        "10.48550/arXiv.2101.10033",
    ),
    (
        "Lalit, Tomancak, Jug: EmbedSeg: Embedding-based Instance Segmentation for Biomedical Microscopy Data, "
        "Medical Image Analysis 81:102523 (2022)",
        "10.1016/j.media.2022.102523",
    ),
    (
        "Neven, De Brabandere, Proesmans, Van Gool: Instance Segmentation by Jointly Optimizing Spatial "
        "Embeddings and Clustering Bandwidth, CVPR 2019",
        "10.1109/CVPR.2019.00904",
    ),
    (
        "Romera, Álvarez, Bergasa, Arroyo: ERFNet: Efficient Residual Factorized ConvNet for Real-Time "
        "Semantic Segmentation, IEEE T-ITS 19:263-272 (2018)",
        "10.1109/TITS.2017.2750080",
    ),
)


@dataclass
class Run:
    """One trained model offered for export: its checkpoint and, optionally, its test scores."""

    checkpoint: Path
    best_iou: float  # validation IoU of the checkpoint
    seed: int | None
    scores: Path | None = None


@dataclass(frozen=True)
class PackageOptions:
    """What a package records besides the network: how its labels are made, who publishes it."""

    clustering: str = "paper"  # preset name, as for `embedseg predict`
    params: ClusterParams = ClusterParams()
    tta: bool = True
    authors: tuple[str, ...] = ()
    license: str = "CC-BY-4.0"  # SPDX id of the weights' licence
    name: str | None = None


def checkpoint_path(path: str | os.PathLike) -> Path:
    """best.pt of a model folder written by `embedseg train`, or the checkpoint file itself."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def select_best(runs: Sequence[Run]) -> Run:
    """The run with the highest validation IoU (the first of equals, i.e. in the order given)."""
    return max(runs, key=lambda run: run.best_iou)


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


def code_version() -> str:
    """Package version plus `git describe` of the checkout it runs from, when it is one."""
    root = Path(__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        described = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        if described:
            return f"{__version__} (git {described})"
    return __version__


def score_summary(runs: Sequence[Run], chosen: Run) -> dict[str, Any] | None:
    """AP_dsb per τ of the chosen run, and mean/sd over all runs (None without score files)."""
    from .report.results import read_scores, run_ap

    if chosen.scores is None:
        return None
    table = pd.DataFrame([run_ap(read_scores(run.scores)) for run in runs])
    return {
        "taus": [float(t) for t in table.columns],
        "model": [float(v) for v in run_ap(read_scores(chosen.scores)).to_numpy()],
        "runs": len(table),
        "mean": [float(v) for v in table.mean(axis=0)],
        "sd": [float(v) for v in table.std(axis=0, ddof=1)] if len(table) > 1 else None,
        "score_files": [str(run.scores) for run in runs],
    }


def predict_command(package: str, options: PackageOptions) -> str:
    """The `embedseg predict` call that reproduces the labels behind the card's scores."""
    params = options.params
    return (
        f"embedseg predict {package} --images DIR --out PRED_DIR --clustering {options.clustering} "
        f"--min-object-size {params.min_object_size} --seed-thresh {params.seed_thresh:g} "
        f"--fg-thresh {params.fg_thresh:g} {'--tta' if options.tta else '--no-tta'}"
    )


def preprocessing(settings: DatasetSettings) -> list:
    """The training normalisation as bioimage.io preprocessing (config.normalize's counterpart)."""
    from bioimageio.spec.model import v0_5

    # per image and channel, as normalize does
    axes = [v0_5.AxisId(axis) for axis in SPACE_AXES[settings.ndim]]
    if settings.normalization == "absolute":
        gain = 1.0 / float(settings.normalization_factor)
        return [v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=gain))]
    if settings.normalization == "percentile":
        low, high = settings.percentiles
        return [
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(axes=axes, min_percentile=low, max_percentile=high, eps=BIOIMAGEIO_EPS)
            )
        ]
    kwargs = v0_5.ZeroMeanUnitVarianceKwargs(axes=axes, eps=BIOIMAGEIO_EPS)
    return [v0_5.ZeroMeanUnitVarianceDescr(kwargs=kwargs)]


def channel_names(model: BranchedERFNet) -> list[str]:
    """Output channels in the network's order: offsets (x, y[, z]), bandwidths σ, seed logits."""
    axes = "xyz"[: model.ndim]
    per_axis = model.n_sigma == model.ndim
    sigmas = [f"sigma_{a}" for a in axes] if per_axis else [f"sigma_{i}" for i in range(model.n_sigma)]
    seeds = ["seed"] if model.n_seed == 1 else [f"seed_{i}" for i in range(model.n_seed)]
    return [*(f"offset_{a}" for a in axes), *sigmas, *seeds]


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


def dataset_info(settings: DatasetSettings) -> dict[str, Any]:
    """Citation, DOI and licence of the data from the registry (placeholders for unknown sets)."""
    from .data.registry import REGISTRY

    spec = REGISTRY.get(settings.name)
    return {
        "citation": spec.citation if spec else "not recorded",
        "doi": spec.doi if spec else "",
        "licence": spec.licence if spec and spec.licence else "not recorded: check the data's terms of use",
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def model_card(card: dict[str, Any]) -> str:
    """README.md of the package: what the model is, its data, training and test scores."""
    settings, train, data = card["settings"], card["train_args"], card["data"]
    extra = settings.get("extra", {})
    counts = extra.get("counts", {})
    split = ", ".join(f"{name} {n}" for name, n in counts.items()) or "not recorded"
    seeds = ", ".join(map(str, card["run_seeds"]))
    selection = f"best validation IoU of {card['n_runs']} runs (seeds {seeds})" if card["n_runs"] > 1 else "-"
    ndim = card["config"]["ndim"]
    pixel, images = ("pixel", "2-D microscopy images") if ndim == 2 else ("voxel", "3-D microscopy volumes")
    voxel_rows = []
    if ndim == 3:
        voxel_size = " × ".join(f"{v:g}" for v in settings["voxel_size"])
        voxel_rows.append(["voxel size (z, y, x)", f"{voxel_size} µm"])
    lines = [
        f"# {card['name']}",
        "",
        f"EmbedSeg instance segmentation (Lalit et al. 2021) of {images}: a Branched ERF-Net "
        f"predicts per-{pixel} spatial embeddings (offsets), clustering bandwidths (σ) and a seed map; a "
        "greedy clustering turns them into instances. This package was written by `embedseg export` of the "
        "embedseg-pipeline, a re-implementation of EmbedSeg.",
        "",
        "## Data",
        "",
        _table(
            ["", ""],
            [
                ["data set", settings["name"]],
                ["source", extra.get("source", "not recorded")],
                ["split", f"{split} images (split seed {extra.get('split_seed', 'not recorded')})"],
                ["citation", data["citation"]],
                ["licence of the data", data["licence"]],
                ["normalisation", _normalisation_text(settings)],
                *voxel_rows,
            ],
        ),
        "",
        "## Training",
        "",
        _table(
            ["", ""],
            [
                ["seed", train.get("seed")],
                [
                    "epochs",
                    f"{train.get('epochs')} (best validation IoU {card['best_iou']:.4f} after epoch "
                    f"{card['epoch'] + 1})",
                ],
                ["selection", selection],
                ["crops", f"{settings['crop_size']} px, centre: {settings.get('center')}"],
                [
                    "batch",
                    f"{train.get('batch_size')} (virtual batch {train.get('virtual_batch')}), "
                    f"{train.get('train_size')} crops per epoch, {train.get('val_size')} validation crops",
                ],
                ["loss", f"Lovász-hinge + seed + variance ({train.get('variance_loss')} variance term)"],
                ["code version", card["code_version"]],
                ["PyTorch", torch.__version__],
            ],
        ),
        "",
        "## Validation",
        "",
    ]
    scores = card["scores"]
    if scores is None:
        lines.append("No test scores were given to `embedseg export` (option --scores).")
    else:
        spread = scores["sd"] is not None
        header = ["τ", "AP_dsb (this model)"] + ([f"mean ± sd over {scores['runs']} runs"] if spread else [])
        rows = [
            [f"{tau:.2f}", f"{scores['model'][i]:.3f}"]
            + ([f"{scores['mean'][i]:.3f} ± {scores['sd'][i]:.3f}"] if spread else [])
            for i, tau in enumerate(scores["taus"])
        ]
        lines += [
            f"AP_dsb = TP / (TP + FP + FN) per test image, averaged over the {settings['name']} test images, "
            f"at IoU thresholds τ; TTA {'on' if card['tta'] else 'off'}, clustering as below.",
            "",
            _table(header, rows),
        ]
    clustering, embedding = card["clustering"], card["config"]["embedding"]
    if ndim == 2:
        grid = "A pixel (i, j) is embedded at e = tanh(offset) + (j·δ, i·δ) with δ = 1/1023"
    else:
        grid = (
            "A voxel (k, i, j) (z, y, x) is embedded at e = tanh(offset) + (j·δ, i·δ, k·δ_z) with δ = 1/1023 "
            f"and δ_z = anisotropy·δ, anisotropy = voxel z / voxel x = {embedding['anisotropy']:g}"
        )
    n_transforms = len(dihedral.transforms(ndim))
    tta = f"on ({n_transforms} rotations/flips, raw outputs averaged)" if card["tta"] else "off"
    tiling = card["config"]["tiling"]  # tile_size: one length for every axis or one per axis, as predict's
    tile = " × ".join(map(str, tiling["tile_size"])) + (" a side" if len(tiling["tile_size"]) == 1 else "")
    lines += [
        "",
        "## From raw output to instances",
        "",
        f"The network output `{OUTPUT_ID}` has the channels {', '.join(card['channels'])} (raw values). "
        f"{grid}; the bandwidth is s = exp(10·σ); seed score = sigmoid(seed). The greedy clustering "
        f"(EmbedSeg's `cluster_fast`) takes the unclustered foreground {pixel} with the highest seed score, "
        f"groups the foreground {pixel}s whose score exp(−Σ s_d (e_d − e_seed,d)²) exceeds 0.5, and repeats "
        "while seeds exceed `seed_thresh`:",
        "",
        _table(["parameter", "value"], [[key, value] for key, value in clustering.items()]),
        "",
        f"Test-time augmentation: {tta}. Large inputs: tiles of {tile} {pixel}s overlapping by "
        f"{2 * tiling['overlap']} {pixel}s. All this is in the package's `config.{PACKAGE_CONFIG_KEY}`; with "
        f"embedseg-pipeline installed, `{card['config']['predict_command']}` gives these labels.",
        "",
        "Inputs: every spatial axis must be a multiple of 8 (pad, e.g. by reflection; crop the output back).",
        "",
        "## Citations",
        "",
        *[f"- {text} (doi:{doi})" for text, doi in METHOD_CITATIONS],
        f"- Data: {data['citation']}" + (f" (doi:{data['doi']})" if data["doi"] else ""),
        "",
    ]
    return "\n".join(lines)


def _normalisation_text(settings: dict[str, Any]) -> str:
    if settings["normalization"] == "absolute":
        return f"divided by {settings['normalization_factor']:g}"
    if settings["normalization"] == "percentile":
        low, high = settings["percentiles"]
        return f"percentiles {low:g}–{high:g} of each image mapped to 0–1, no clipping"
    return "zero mean, unit variance per image"


def build_description(
    workdir: Path,
    model: BranchedERFNet,
    settings: DatasetSettings,
    card: dict[str, Any],
    sample: np.ndarray,
    raw: np.ndarray,
    options: PackageOptions,
) -> Any:
    """The bioimage.io ModelDescr (validated on construction) of files written into `workdir`."""
    from bioimageio.spec.model import v0_5

    np.save(workdir / "test_input.npy", sample[None])
    np.save(workdir / "test_output.npy", raw[None])
    # The same tensors as TIFF, for people browsing the package (bioimage.io's "sample tensors").
    write_tiff(workdir / "sample_input.tif", sample[None], compress=False)
    write_tiff(workdir / "sample_output.tif", raw[None], compress=False)
    (workdir / "README.md").write_text(model_card(card), encoding="utf-8")
    spatial = "a multiple of 8 (the ERF-Net downsamples 3x by 2); pad the image to it"
    float32 = v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))
    axes = SPACE_AXES[settings.ndim]
    # 3-D: the voxel size (µm) the model was trained at; 2-D data sets record no pixel size.
    scale = {} if settings.voxel_size is None else dict(zip(axes, settings.voxel_size))
    unit = "micrometer" if scale else None
    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description=f"{settings.in_channels}-channel {'2-D image' if settings.ndim == 2 else '3-D volume'} "
        f"as stored ({sample.dtype})",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[f"channel{i}" for i in range(settings.in_channels)]),
            *[
                v0_5.SpaceInputAxis(
                    id=v0_5.AxisId(axis),
                    description=f"{axis}: {spatial}",
                    size=v0_5.ParameterizedSize(min=MIN_INPUT, step=NETWORK_MULTIPLE),
                    scale=scale.get(axis, 1.0),
                    unit=unit,
                )
                for axis in axes
            ],
        ],
        test_tensor=v0_5.FileDescr(source=workdir / "test_input.npy"),
        sample_tensor=v0_5.FileDescr(source=workdir / "sample_input.tif"),
        data=v0_5.IntervalOrRatioDataDescr(type=str(sample.dtype)),
        # float32 before and after: without the last step bioimage.io casts back to the stored dtype
        preprocessing=[float32, *preprocessing(settings), float32],
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description="raw offsets, bandwidths σ and seed logit; instances via config.embedseg.clustering",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=card["channels"]),
            *[
                v0_5.SpaceOutputAxis(
                    id=v0_5.AxisId(axis),
                    size=v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis)),
                    scale=scale.get(axis, 1.0),  # the input's: a size reference counts in scaled units
                    unit=unit,
                )
                for axis in axes
            ],
        ],
        test_tensor=v0_5.FileDescr(source=workdir / "test_output.npy"),
        sample_tensor=v0_5.FileDescr(source=workdir / "sample_output.tif"),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
    )
    pytorch_version = v0_5.Version(torch.__version__.split("+")[0])
    weights = v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=workdir / "weights.pt",
            architecture=v0_5.ArchitectureFromFileDescr(
                source=workdir / "erfnet.py",
                callable=v0_5.Identifier("BranchedERFNet"),
                kwargs=model.config,
            ),
            pytorch_version=pytorch_version,
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=workdir / "weights_torchscript.pt",
            pytorch_version=pytorch_version,
            parent="pytorch_state_dict",  # converted from the state dict
        ),
    )
    data = card["data"]
    cite = [v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in METHOD_CITATIONS]
    if data["doi"]:
        cite.append(v0_5.CiteEntry(text=f"Data: {data['citation']}", doi=v0_5.Doi(data["doi"])))
    train = card["train_args"]
    return v0_5.ModelDescr(
        name=card["name"],
        description=(
            f"EmbedSeg (Branched ERF-Net) instance segmentation trained on {settings.name}; raw "
            "embeddings, bandwidths and seeds, to be clustered as config.embedseg describes."
        ),
        authors=[v0_5.Author(name=name) for name in options.authors],
        cite=cite,
        license=v0_5.LicenseId(options.license),
        tags=["embedseg", "instance-segmentation", f"{settings.ndim}d", "pytorch", "erfnet", settings.name],
        documentation=v0_5.FileDescr(source=workdir / "README.md"),
        covers=[v0_5.FileDescr(source=workdir / "cover.png")],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=v0_5.Config(
            bioimageio=v0_5.BioimageioConfig(
                architecture_type="Branched ERF-Net",
                task="instance segmentation",
                model_parameter_count=sum(p.numel() for p in model.parameters()),
                training=v0_5.TrainingDetails(
                    training_epochs=train.get("epochs"),
                    training_batch_size=train.get("batch_size"),
                    initial_learning_rate=BASE_LR,
                    learning_rate_schedule=f"poly: (1 - epoch/{LR_HORIZON})^{LR_POWER}",
                    optimizer="Adam",
                    loss_function="Lovász-hinge + seed + variance (EmbedSeg)",
                ),
            ),
            **{PACKAGE_CONFIG_KEY: card["config"]},
        ),
    )


def embedseg_config(
    model: BranchedERFNet, settings: DatasetSettings, options: PackageOptions, card: dict[str, Any]
) -> dict[str, Any]:
    """config.embedseg: everything between the raw output and labels, plus provenance.

    ``embedding.grid_spacing`` has one δ per embedding channel (x, y[, z]): what
    :func:`embedseg.core.cluster.cluster` takes as `spacing`; in 3-D δ_z = anisotropy·δ_x."""
    ndim = settings.ndim
    axes = ", ".join("xyz"[:ndim])
    return {
        "code_version": card["code_version"],
        "ndim": ndim,
        "model_config": model.config,
        "settings": settings.to_dict(),
        "output_channels": card["channels"],
        "embedding": {
            "grid_spacing": list(grid_spacing(ndim, settings.anisotropy)),
            "anisotropy": settings.anisotropy,
            "sigma_scale": SIGMA_SCALE,
            "formula": f"e = tanh(offset) + grid_spacing*({axes}) per channel; s = exp(sigma_scale*sigma)",
        },
        "clustering": card["clustering"],
        "tta": options.tta,
        "predict_command": predict_command(card["file_name"], options),
        "tiling": {"tile_size": default_tile(ndim), "overlap": DEFAULT_OVERLAP, "multiple": NETWORK_MULTIPLE},
        "training": {
            "seed": card["train_args"].get("seed"),
            "best_val_iou": card["best_iou"],
            "best_epoch": card["epoch"],
            "args": card["train_args"],
        },
        "scores": card["scores"],
    }


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


def load_runs(models: Sequence[str | os.PathLike], scores: Sequence[str | os.PathLike] | None) -> list[Run]:
    """Runs of the given model folders/checkpoints, paired in order with their score files."""
    if scores and len(scores) != len(models):
        raise DataError(
            f"--scores names {len(scores)} file(s) for {len(models)} model(s); give one scores "
            "CSV per model, in the same order"
        )
    runs = []
    for i, model in enumerate(models):
        path = checkpoint_path(model)
        checkpoint = read_checkpoint(path, "cpu")
        seed = checkpoint.get("train_args", {}).get("seed")
        best_iou = float(checkpoint.get("best_iou", 0.0))
        runs.append(Run(path, best_iou, seed, Path(scores[i]) if scores else None))
    return runs


def export(
    runs: Sequence[Run],
    out: str | os.PathLike,
    sample: str | os.PathLike,
    options: PackageOptions = PackageOptions(),
    check: bool = True,
) -> Path:
    """Write the package of the best of `runs` (validation IoU) to `out` (.zip); returns `out`.

    With `check`, bioimageio.core's model test must pass before `out` is written.
    """
    out = Path(out)
    chosen = select_best(runs)
    checkpoint = read_checkpoint(chosen.checkpoint, "cpu")
    model = BranchedERFNet(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    settings = DatasetSettings.from_dict(checkpoint["settings"], source=f"{chosen.checkpoint} (settings)")
    sample_path, image = sample_image(sample)
    crop = central_crop(image[None] if image.ndim == settings.ndim else image, settings.ndim, sample_path)
    normalised = network_input(crop, settings, sample_path)
    with torch.inference_mode():
        raw = model(torch.from_numpy(normalised)[None])
    train_args = checkpoint.get("train_args", {})
    card = {
        "name": options.name or f"EmbedSeg {settings.name} seed {chosen.seed}",
        "file_name": out.name,
        "settings": settings.to_dict(),
        "train_args": train_args,
        "best_iou": chosen.best_iou,
        "epoch": int(checkpoint.get("epoch", -1)),
        "n_runs": len(runs),
        "run_seeds": [run.seed for run in runs],
        "code_version": code_version(),
        "data": dataset_info(settings),
        "scores": score_summary(runs, chosen),
        "channels": channel_names(model),
        "tta": options.tta,
        "clustering": {"preset": options.clustering, **asdict(options.params)},
    }
    card["config"] = embedseg_config(model, settings, options, card)
    with tempfile.TemporaryDirectory(prefix="embedseg-export-") as tmp:
        workdir = Path(tmp)
        torch.save(model.state_dict(), workdir / "weights.pt")
        (workdir / "erfnet.py").write_bytes(Path(erfnet.__file__).read_bytes())
        batch = torch.from_numpy(normalised)[None]
        deviation = script_model(model, workdir / "weights_torchscript.pt", batch, raw)
        log.info("TorchScript vs state dict: max |difference| %.2e on the test input", deviation)
        labels, _ = segment(model, crop, settings, options.tta, options.params)
        cover_image(normalised, labels, workdir / "cover.png")
        descr = build_description(workdir, model, settings, card, crop, raw[0].numpy(), options)
        from bioimageio.spec import save_bioimageio_package

        package = save_bioimageio_package(descr, output_path=workdir / "package.zip")
        if check:
            validate_package(package)
        with atomic_write(out) as tmp_out:
            shutil.copyfile(package, tmp_out)
    log.info("exported %s (seed %s, validation IoU %.4f) to %s", chosen.checkpoint, chosen.seed, chosen.best_iou, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="model folder of `embedseg train` (its best.pt) or a checkpoint; several (the "
        "seeds of one method): the one with the best validation IoU is exported",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="NAME.zip", help="package to write")
    parser.add_argument(
        "--sample",
        required=True,
        metavar="IMAGE_OR_DIR",
        help="image (volume) of the data set, or a folder: its first image, for the test input "
        f"and cover; its centre, at most {SAMPLE_SIZE[2]} px a side ({SAMPLE_SIZE[3]} in 3-D), is used",
    )
    parser.add_argument(
        "--scores",
        nargs="+",
        metavar="CSV",
        default=None,
        help="test scores (`embedseg evaluate`) of each MODEL, in the same order: the card "
        "reports the exported model's AP_dsb and the mean ± sd over all",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the scores were predicted with test-time augmentation (recorded for consumers)",
    )
    add_options(parser, ClusteringConfig)  # as for predict; the package records them
    parser.add_argument("--name", default=None, help="model name (default: EmbedSeg DATASET seed N)")
    parser.add_argument(
        "--author", action="append", default=[], dest="authors", help="author of the package (repeat for several)"
    )
    parser.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run bioimageio.core's model test (offline) before writing the package",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing package at --out")


def run(args: argparse.Namespace) -> int:
    if args.out.suffix != ".zip":
        raise DataError(f"{args.out}: a bioimage.io package is a .zip; use {args.out.with_suffix('.zip')}")
    inputs = {f"MODEL {model}": model for model in args.models}
    inputs.update({"--sample": args.sample, **{f"--scores {csv}": csv for csv in args.scores or []}})
    check_output_file(args.out, inputs, is_package, "embedseg export", args.force)
    if importlib.util.find_spec("bioimageio.core") is None:
        raise DataError("embedseg export needs bioimageio.core: pip install 'embedseg-pipeline[export]'")
    runs = load_runs(args.models, args.scores)
    settings = DatasetSettings.from_dict(read_checkpoint(select_best(runs).checkpoint, "cpu")["settings"])
    params = from_args(ClusteringConfig, args).params(settings)
    options = PackageOptions(args.clustering, params, args.tta, tuple(args.authors), args.license, args.name)
    path = export(runs, args.out, args.sample, options, args.check)
    print(f"bioimage.io package: {path}")
    return 0
