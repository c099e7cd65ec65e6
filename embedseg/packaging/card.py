"""The model card (the package's README.md): what the model is, its data, training, test scores,
how its raw output becomes instances, and what to cite. Rendered from ModelFacts alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import dihedral
from ..dataset_settings import DatasetSettings
from ..models.checkpoint import PACKAGE_CONFIG_KEY
from .describe import OUTPUT_ID
from .facts import METHOD_CITATIONS, ModelFacts


def model_card(facts: ModelFacts) -> str:
    """README.md of the package, in Markdown."""
    images = "2-D microscopy images" if facts.ndim == 2 else "3-D microscopy volumes"
    lines = [
        f"# {facts.name}",
        "",
        f"EmbedSeg instance segmentation (Lalit et al. 2021) of {images}: a Branched ERF-Net "
        f"predicts per-{element(facts.ndim)} spatial embeddings (offsets), clustering bandwidths (σ) and a seed "
        "map; a greedy clustering turns them into instances. This package was written by `embedseg export` "
        "of the embedseg-pipeline, a re-implementation of EmbedSeg.",
        "",
        "## Data",
        "",
        data_table(facts),
        "",
        "## Training",
        "",
        training_table(facts),
        "",
        "## Validation",
        "",
        *validation_section(facts),
        "",
        "## From raw output to instances",
        "",
        *clustering_section(facts),
        "",
        "## Citations",
        "",
        *citation_lines(facts),
        "",
    ]
    return "\n".join(lines)


def element(ndim: int) -> str:
    """What the network labels one by one: a pixel (2-D) or a voxel (3-D)."""
    return "pixel" if ndim == 2 else "voxel"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells as str() gives them."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def normalisation_text(settings: DatasetSettings) -> str:
    """The training normalisation in words."""
    if settings.normalization == "absolute":
        return f"divided by {settings.normalization_factor:g}"
    if settings.normalization == "percentile":
        low, high = settings.percentiles
        return f"percentiles {low:g}–{high:g} of each image mapped to 0–1, no clipping"
    return "zero mean, unit variance per image"


def data_table(facts: ModelFacts) -> str:
    """Data set, source, split, citation, licence, normalisation (and the voxel size in 3-D)."""
    settings = facts.settings
    counts = settings.extra.get("counts", {})
    split = ", ".join(f"{name} {n}" for name, n in counts.items()) or "not recorded"
    rows = [
        ["data set", settings.name],
        ["source", settings.extra.get("source", "not recorded")],
        ["split", f"{split} images (split seed {settings.extra.get('split_seed', 'not recorded')})"],
        ["citation", facts.data.citation],
        ["licence of the data", facts.data.licence],
        ["normalisation", normalisation_text(settings)],
    ]
    if facts.ndim == 3:
        rows.append(["voxel size (z, y, x)", " × ".join(f"{v:g}" for v in settings.voxel_size) + " µm"])
    return table(["", ""], rows)


def training_table(facts: ModelFacts) -> str:
    """Seed, epochs, selection among runs, crops, batch, loss, code and PyTorch version."""
    training, args = facts.training, facts.training.args
    n_runs = len(training.run_seeds)
    seeds = ", ".join(map(str, training.run_seeds))
    selection = f"best validation IoU of {n_runs} runs (seeds {seeds})" if n_runs > 1 else "-"
    rows = [
        ["seed", args.get("seed")],
        [
            "epochs",
            f"{args.get('epochs')} (best validation IoU {training.best_iou:.4f} after epoch {training.epoch + 1})",
        ],
        ["selection", selection],
        ["crops", f"{facts.settings.crop_size} px, centre: {facts.settings.center}"],
        [
            "batch",
            f"{args.get('batch_size')} (virtual batch {args.get('virtual_batch')}), "
            f"{args.get('train_size')} crops per epoch, {args.get('val_size')} validation crops",
        ],
        ["loss", f"Lovász-hinge + seed + variance ({args.get('variance_loss')} variance term)"],
        ["code version", facts.code_version],
        ["PyTorch", facts.pytorch_version],
    ]
    return table(["", ""], rows)


def validation_section(facts: ModelFacts) -> list[str]:
    """The test AP_dsb per τ of this model (and mean ± sd over its runs), or why there is none."""
    scores = facts.scores
    if scores is None:
        return ["No test scores were given to `embedseg export` (option --scores)."]
    spread = scores.sd is not None
    header = ["τ", "AP_dsb (this model)"] + ([f"mean ± sd over {scores.runs} runs"] if spread else [])
    rows = [
        [f"{tau:.2f}", f"{scores.model[i]:.3f}"] + ([f"{scores.mean[i]:.3f} ± {scores.sd[i]:.3f}"] if spread else [])
        for i, tau in enumerate(scores.taus)
    ]
    return [
        f"AP_dsb = TP / (TP + FP + FN) per test image, averaged over the {facts.settings.name} test images, "
        f"at IoU thresholds τ; TTA {'on' if facts.tta else 'off'}, clustering as below.",
        "",
        table(header, rows),
    ]


def clustering_section(facts: ModelFacts) -> list[str]:
    """The embedding, the greedy clustering with its parameters, TTA and tiling."""
    ndim, pixel = facts.ndim, element(facts.ndim)
    if ndim == 2:
        grid = "A pixel (i, j) is embedded at e = tanh(offset) + (j·δ, i·δ) with δ = 1/1023"
    else:
        grid = (
            "A voxel (k, i, j) (z, y, x) is embedded at e = tanh(offset) + (j·δ, i·δ, k·δ_z) with δ = 1/1023 "
            f"and δ_z = anisotropy·δ, anisotropy = voxel z / voxel x = {facts.settings.anisotropy:g}"
        )
    n_transforms = len(dihedral.transforms(ndim))
    tta = f"on ({n_transforms} rotations/flips, raw outputs averaged)" if facts.tta else "off"
    tiling = facts.tiling()  # tile_size: one length for every axis or one per axis, as predict's
    tile = " × ".join(map(str, tiling["tile_size"])) + (" a side" if len(tiling["tile_size"]) == 1 else "")
    return [
        f"The network output `{OUTPUT_ID}` has the channels {', '.join(facts.channels)} (raw values). "
        f"{grid}; the bandwidth is s = exp(10·σ); seed score = sigmoid(seed). The greedy clustering "
        f"(EmbedSeg's `cluster_fast`) takes the unclustered foreground {pixel} with the highest seed score, "
        f"groups the foreground {pixel}s whose score exp(−Σ s_d (e_d − e_seed,d)²) exceeds 0.5, and repeats "
        "while seeds exceed `seed_thresh`:",
        "",
        table(["parameter", "value"], [[key, value] for key, value in facts.clustering_config().items()]),
        "",
        f"Test-time augmentation: {tta}. Inputs whose forward pass fits {tiling['memory_gb']:g} GB are "
        f"predicted whole; larger ones in tiles of {tile} {pixel}s overlapping by {2 * tiling['overlap']} "
        f"{pixel}s (the network's receptive field: tiles equal the whole input to float rounding). All this is in the package's `config.{PACKAGE_CONFIG_KEY}`; with "
        f"embedseg-pipeline installed, `{facts.predict_command()}` gives these labels.",
        "",
        "Inputs: every spatial axis must be a multiple of 8 (pad, e.g. by reflection; crop the output back).",
    ]


def citation_lines(facts: ModelFacts) -> list[str]:
    """The method's papers, then the data's."""
    data = facts.data
    return [
        *[f"- {text} (doi:{doi})" for text, doi in METHOD_CITATIONS],
        f"- Data: {data.citation}" + (f" (doi:{data.doi})" if data.doi else ""),
    ]
