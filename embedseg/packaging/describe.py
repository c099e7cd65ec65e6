"""The bioimage.io description (model spec 0.5, ``rdf.yaml``) of a package: its input and output
tensors with axes, sizes and preprocessing, the two weight formats, citations, and
``config.embedseg`` (what turns the raw output into instances, and what `embedseg predict` needs to
load the package). Built from ModelFacts and the files build.py writes under the names below.

Only the raw network output is described: the greedy seed clustering is no standard bioimage.io
post-processing, so consumers other than `embedseg predict` run it from ``config.embedseg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.embedding import SIGMA_SCALE, grid_spacing
from ..dataset_settings import DatasetSettings
from ..models.checkpoint import PACKAGE_CONFIG_KEY
from ..models.erfnet import NETWORK_MULTIPLE
from ..schedule import BASE_LR, LR_HORIZON, LR_POWER
from .facts import METHOD_CITATIONS, ModelFacts

INPUT_ID, OUTPUT_ID = "image", "prediction"
SPACE_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}  # bioimage.io axis ids of the spatial axes, in array order
MIN_INPUT = 16  # smallest input edge stated in the spec (two multiples of the network's stride)
# bioimage.io allows eps in (0, 0.1]; ours is 1e-20, a difference far below the test tolerance.
BIOIMAGEIO_EPS = 1e-6
# The files of a package, as the description names them (build.py writes them).
WEIGHTS, ARCHITECTURE, TORCHSCRIPT = "weights.pt", "erfnet.py", "weights_torchscript.pt"
TEST_INPUT, TEST_OUTPUT = "test_input.npy", "test_output.npy"
SAMPLE_INPUT, SAMPLE_OUTPUT = "sample_input.tif", "sample_output.tif"
COVER, README = "cover.png", "README.md"


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


def embedseg_config(facts: ModelFacts) -> dict[str, Any]:
    """config.embedseg: everything between the raw output and labels, plus provenance.

    ``embedding.grid_spacing`` has one δ per embedding channel (x, y[, z]): what
    :func:`embedseg.core.cluster.cluster` takes as `spacing`; in 3-D δ_z = anisotropy·δ_x."""
    ndim, settings, training = facts.ndim, facts.settings, facts.training
    axes = ", ".join("xyz"[:ndim])
    return {
        "code_version": facts.code_version,
        "ndim": ndim,
        "model_config": dict(facts.model_config),
        "settings": settings.to_dict(),
        "output_channels": list(facts.channels),
        "embedding": {
            "grid_spacing": list(grid_spacing(ndim, settings.anisotropy)),
            "anisotropy": settings.anisotropy,
            "sigma_scale": SIGMA_SCALE,
            "formula": f"e = tanh(offset) + grid_spacing*({axes}) per channel; s = exp(sigma_scale*sigma)",
        },
        "clustering": facts.clustering_config(),
        "tta": facts.tta,
        "predict_command": facts.predict_command(),
        "tiling": facts.tiling(),
        "training": {
            "seed": training.seed,
            "best_val_iou": training.best_iou,
            "best_epoch": training.epoch,
            "args": dict(training.args),
        },
        "scores": facts.scores.to_config() if facts.scores else None,
    }


def spatial_scale(settings: DatasetSettings) -> tuple[dict[str, float], str | None]:
    """Scale per spatial axis id and its unit: in 3-D the voxel size (µm) the model was trained at;
    2-D data sets record no pixel size (scale 1, no unit)."""
    axes = SPACE_AXES[settings.ndim]
    scale = {} if settings.voxel_size is None else dict(zip(axes, settings.voxel_size))
    return scale, "micrometer" if scale else None


def input_tensor(folder: Path, facts: ModelFacts, dtype: str) -> Any:
    """The input `image` (stored `dtype`): batch, channel and spatial axes of any multiple of the
    network's stride, preprocessed by the training normalisation."""
    from bioimageio.spec.model import v0_5

    settings = facts.settings
    spatial = "a multiple of 8 (the ERF-Net downsamples 3x by 2); pad the image to it"
    float32 = v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))
    scale, unit = spatial_scale(settings)
    return v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description=f"{settings.in_channels}-channel {'2-D image' if settings.ndim == 2 else '3-D volume'} "
        f"as stored ({dtype})",
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
                for axis in SPACE_AXES[settings.ndim]
            ],
        ],
        test_tensor=v0_5.FileDescr(source=folder / TEST_INPUT),
        sample_tensor=v0_5.FileDescr(source=folder / SAMPLE_INPUT),
        data=v0_5.IntervalOrRatioDataDescr(type=dtype),
        # float32 before and after: without the last step bioimage.io casts back to the stored dtype
        preprocessing=[float32, *preprocessing(settings), float32],
    )


def output_tensor(folder: Path, facts: ModelFacts) -> Any:
    """The raw output `prediction`: float32 channels (offsets, σ, seed logits) of the input's size."""
    from bioimageio.spec.model import v0_5

    scale, unit = spatial_scale(facts.settings)
    return v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description="raw offsets, bandwidths σ and seed logit; instances via config.embedseg.clustering",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=list(facts.channels)),
            *[
                v0_5.SpaceOutputAxis(
                    id=v0_5.AxisId(axis),
                    size=v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis)),
                    scale=scale.get(axis, 1.0),  # the input's: a size reference counts in scaled units
                    unit=unit,
                )
                for axis in SPACE_AXES[facts.ndim]
            ],
        ],
        test_tensor=v0_5.FileDescr(source=folder / TEST_OUTPUT),
        sample_tensor=v0_5.FileDescr(source=folder / SAMPLE_OUTPUT),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
    )


def weights(folder: Path, facts: ModelFacts) -> Any:
    """The state dict (architecture: this project's erfnet.py) and its TorchScript conversion."""
    from bioimageio.spec.model import v0_5

    pytorch_version = v0_5.Version(facts.pytorch_version.split("+")[0])
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=folder / WEIGHTS,
            architecture=v0_5.ArchitectureFromFileDescr(
                source=folder / ARCHITECTURE,
                callable=v0_5.Identifier("BranchedERFNet"),
                kwargs=dict(facts.model_config),
            ),
            pytorch_version=pytorch_version,
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=folder / TORCHSCRIPT,
            pytorch_version=pytorch_version,
            parent="pytorch_state_dict",  # converted from the state dict
        ),
    )


def citations(facts: ModelFacts) -> list:
    """The method's papers and, when the registry has its DOI, the data's (DOIs only: no URL)."""
    from bioimageio.spec.model import v0_5

    cite = [v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in METHOD_CITATIONS]
    if facts.data.doi:
        cite.append(v0_5.CiteEntry(text=f"Data: {facts.data.citation}", doi=v0_5.Doi(facts.data.doi)))
    return cite


def build_description(folder: Path, facts: ModelFacts, input_dtype: str) -> Any:
    """The bioimage.io ModelDescr (validated on construction, which reads the files) of a package
    whose files lie in `folder`; `input_dtype` is the stored data type of the test input."""
    from bioimageio.spec.model import v0_5

    settings, args = facts.settings, facts.training.args
    return v0_5.ModelDescr(
        name=facts.name,
        description=(
            f"EmbedSeg (Branched ERF-Net) instance segmentation trained on {settings.name}; raw "
            "embeddings, bandwidths and seeds, to be clustered as config.embedseg describes."
        ),
        authors=[v0_5.Author(name=name) for name in facts.authors],
        cite=citations(facts),
        license=v0_5.LicenseId(facts.license),
        tags=["embedseg", "instance-segmentation", f"{settings.ndim}d", "pytorch", "erfnet", settings.name],
        documentation=v0_5.FileDescr(source=folder / README),
        covers=[v0_5.FileDescr(source=folder / COVER)],
        inputs=[input_tensor(folder, facts, input_dtype)],
        outputs=[output_tensor(folder, facts)],
        weights=weights(folder, facts),
        config=v0_5.Config(
            bioimageio=v0_5.BioimageioConfig(
                architecture_type="Branched ERF-Net",
                task="instance segmentation",
                model_parameter_count=facts.parameter_count,
                training=v0_5.TrainingDetails(
                    training_epochs=args.get("epochs"),
                    training_batch_size=args.get("batch_size"),
                    initial_learning_rate=BASE_LR,
                    learning_rate_schedule=f"poly: (1 - epoch/{LR_HORIZON})^{LR_POWER}",
                    optimizer="Adam",
                    loss_function="Lovász-hinge + seed + variance (EmbedSeg)",
                ),
            ),
            **{PACKAGE_CONFIG_KEY: embedseg_config(facts)},
        ),
    )
