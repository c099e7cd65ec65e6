"""`embedseg figures`: qualitative panels, AP-vs-τ curves and training curves of one run folder.

Writes into FIG_DIR: ``fig1_{ds}.{png,pdf}`` (input, ground truth, 3-Class U-Net, the best other
built-in method, each method of one's own, EmbedSeg; full image and a zoomed window, for a 3-D
data set the middle Z slice and the maximum projection along Z), ``ap_curves.{png,pdf}`` (mean AP over runs
with a ± 1 sd band) and ``training_curves.{png,pdf}`` (loss and validation IoU per run, not-converged runs marked).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.labels import flatten_labels
from ..evaluate import labels_ndim
from ..io import DataError, atomic_write, list_images
from ..layout import VAL_METRICS, data_dir, predictions_dir, scores_file
from ..methods import BASELINES, EMBEDSEG, NEVEN, built_in
from ..methods import label as method_label
from ..outputs import FIGURES, replacing
from ..zarr_io import in_any_format, read_image_any, read_labels_any
from .budget import CONVERGENCE_RISE, CONVERGENCE_WINDOW, convergence
from .results import Collection, collect, read_scores, training_logs

if TYPE_CHECKING:
    import matplotlib.figure

log = logging.getLogger(__name__)

PAPER_WIDTH = 7.0  # inches: a full-width figure in a two-column paper
UNET = "3class-unet"
MATCH_IOU = 0.5  # a prediction takes its GT object's colour above this IoU (then the match is unique)
N_COLOURS = 4096
NOT_CONVERGED_LABEL = (
    f"not converged: val. score rose > {CONVERGENCE_RISE}\nover the last {CONVERGENCE_WINDOW * 100:.0f} % of epochs"
)


def method_colours(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method or model folder, the same in every figure and run: EmbedSeg (and its
    `embedseg-medoid` model) first, Neven et al. (`embedseg-centroid`) second, then the ablation
    variants and the baselines; other names take the remaining palette colours."""
    import seaborn as sns

    fixed = [EMBEDSEG, NEVEN, "embedseg-centroid-tta", "embedseg-medoid-notta", *BASELINES]
    models = {"embedseg-medoid": EMBEDSEG, "embedseg-centroid": NEVEN}
    others = sorted({models.get(n, n) for n in names} - set(fixed))
    # The colour-blind palette has ten colours and then repeats: methods past the tenth take
    # evenly spaced hues instead, so no two methods of one figure share a colour.
    n = len(fixed) + len(others)
    palette = sns.color_palette("colorblind") + sns.color_palette("husl", max(n - 10, 0))
    colour = dict(zip(fixed + others, palette))
    return {n: colour[models.get(n, n)] for n in names}


def instance_lut(n: int = N_COLOURS, seed: int = 0) -> np.ndarray:
    """(n, 3) fixed random bright colours; the same table for every panel and figure."""
    import matplotlib.colors

    rng = np.random.default_rng(seed)
    hsv = np.stack([rng.uniform(0, 1, n), rng.uniform(0.5, 1, n), rng.uniform(0.7, 1, n)], axis=1)
    return matplotlib.colors.hsv_to_rgb(hsv)


def match_to_gt(gt: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """{pred id: GT id} for predicted objects whose IoU with a GT object exceeds 0.5.

    gt, pred: (H, W) label images. IoU > 0.5 makes the match one-to-one.
    """
    from ..core.metrics import iou_from_intersection, label_overlap, relabel

    overlap = label_overlap(relabel(gt)[0], relabel(pred)[0])  # (n_gt + 1, n_pred + 1), row/col 0 = background
    iou = iou_from_intersection(overlap[1:, 1:], overlap[1:].sum(axis=1), overlap[:, 1:].sum(axis=0))
    gt_rows, pred_columns = np.nonzero(iou > MATCH_IOU)
    # relabel keeps the order of the ids, so row k is the k-th smallest original id
    gt_ids, pred_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    return dict(zip(pred_ids[pred_columns].tolist(), gt_ids[gt_rows].tolist()))


def colour_labels(labels: np.ndarray, colour_index: dict[int, int], first_free: int, lut: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB: object `i` in colour `lut[colour_index[i]]`, background black.

    Objects without an entry take the colours from `first_free` on, so that in a panel no two
    objects share a colour and an unmatched object never borrows a ground-truth colour.
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    free = iter(range(first_free, first_free + len(ids)))
    index = np.array([colour_index[i] if i in colour_index else next(free) for i in ids.tolist()], dtype=int)
    rgb = np.zeros((*labels.shape, 3))
    foreground = labels > 0
    rgb[foreground] = lut[index % len(lut)][np.searchsorted(ids, labels[foreground])]
    return rgb


def display_image(image: np.ndarray) -> np.ndarray:
    """(H, W) grey image in [0, 1] from (H, W) or (C, H, W) (first channel), p1–p99.8 stretch."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3:
        image = image[0]
    low, high = np.percentile(image, [1, 99.8])
    return np.clip((image - low) / max(high - low, 1e-12), 0, 1)


def image_views(image: np.ndarray, ndim: int, window: tuple[slice, slice] | None) -> tuple[np.ndarray, np.ndarray]:
    """The two grey (H, W, 3) rows of an input panel: 2-D the image (H, W) or (C, H, W) and its
    `window`; 3-D the middle Z slice of (Z, Y, X) or (C, Z, Y, X) and the maximum projection."""
    if ndim == 2:
        top = display_image(image)
        bottom = top[window]
    else:
        volume = np.asarray(image, dtype=float)
        volume = volume[0] if volume.ndim == 4 else volume
        top, bottom = display_image(volume[len(volume) // 2]), display_image(volume.max(axis=0))
    return np.repeat(top[..., None], 3, axis=2), np.repeat(bottom[..., None], 3, axis=2)


def label_views(
    labels: np.ndarray,
    colour_index: dict[int, int],
    first_free: int,
    lut: np.ndarray,
    window: tuple[slice, slice] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The two RGB rows of a label panel (:func:`colour_labels`): 2-D the label image and its
    `window`; 3-D (`window` None) the middle Z slice and the maximum projection along Z, every
    object in the same colour in both (unmatched ones numbered over the whole volume)."""
    if window is not None:
        rgb = colour_labels(labels, colour_index, first_free, lut)
        return rgb, rgb[window]
    unmatched = [i for i in np.unique(labels)[1:].tolist() if i not in colour_index]
    colours = {**colour_index, **{i: first_free + n for n, i in enumerate(unmatched)}}
    return tuple(
        colour_labels(view, colours, first_free, lut) for view in (labels[len(labels) // 2], labels.max(axis=0))
    )


def zoom_window(gt: np.ndarray, fraction: float = 0.35) -> tuple[slice, slice]:
    """A square window (`fraction` of the shorter side) centred on the GT object closest to the
    image centre, shifted to stay inside the image."""
    height, width = gt.shape
    side = max(8, int(min(height, width) * fraction))
    ys, xs = np.nonzero(gt)
    if ys.size:
        nearest = np.argmin((ys - height / 2) ** 2 + (xs - width / 2) ** 2)
        cy, cx = ys[nearest], xs[nearest]
    else:
        cy, cx = height // 2, width // 2
    top = int(np.clip(cy - side // 2, 0, height - side))
    left = int(np.clip(cx - side // 2, 0, width - side))
    return slice(top, top + side), slice(left, left + side)


def representative_image(results: Path, dataset: str, seed: int, names: list[str]) -> str:
    """The test image whose EmbedSeg AP at τ = 0.50 is closest to the median (first image if
    EmbedSeg has no scores for that seed)."""
    path = scores_file(results, dataset, EMBEDSEG, seed)
    if not path.is_file():
        return names[0]
    at_050 = read_scores(path).query("tau == 0.5").set_index("image")["ap"]
    at_050 = at_050[at_050.index.isin(names)]
    if at_050.empty:
        return names[0]
    return str((at_050 - at_050.median()).abs().idxmin())


def competitor(collection: Collection, dataset: str) -> str | None:
    """The competing method with the best mean AP at τ = 0.50: any measured baseline but the
    3-Class U-Net (it has its own panel), or Neven et al.; None if none was measured."""
    candidates = [m for m in (*BASELINES, NEVEN) if m != UNET and not collection.runs(dataset, m).empty]
    if not candidates:
        return None
    return max(candidates, key=lambda m: collection.runs(dataset, m)[0.5].mean())


def save(fig: matplotlib.figure.Figure, out: Path, stem: str) -> list[Path]:
    """Write `fig` as PNG (200 dpi) and PDF, each atomically."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = out / f"{stem}{suffix}"
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=200, bbox_inches="tight")
        paths.append(path)
    return paths


def qualitative_panel(
    results: Path, collection: Collection, dataset: str, seed: int | None = None
) -> matplotlib.figure.Figure:
    """Fig. 1 style: columns input, GT, 3-Class U-Net, best other built-in method, each method of
    one's own (config `methods:`), EmbedSeg; top row the whole test image (zoom window outlined),
    bottom row the zoom window; for a 3-D data set (its dataset.json) top row the middle Z slice,
    bottom row the maximum projection along Z."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    data = data_dir(results, dataset) / "test"
    names = [p.name for p in list_images(data / "masks")]  # an image may be NAME.ome.zarr
    if not names:
        raise DataError(f"{data / 'images'}: no test images; run `embedseg prepare` for {dataset}")
    if seed is None:
        seed = min(collection.runs(dataset, EMBEDSEG).index, default=0)
    name = representative_image(results, dataset, seed, names)
    log.info("%s: Fig. 1 panel of test image %s, seed %d", dataset, name, seed)
    ndim = labels_ndim(data.parent)

    def read_shown(path: Path) -> np.ndarray:  # one-hot stacks flattened; 3-D volumes stay
        labels = read_labels_any(in_any_format(path.parent, path.name))
        return labels if ndim == 3 else flatten_labels(labels)

    gt = read_shown(data / "masks" / name)
    lut = instance_lut()
    gt_ids = np.unique(gt)[1:].tolist()
    gt_colours = {gt_id: rank for rank, gt_id in enumerate(gt_ids)}
    window = zoom_window(gt) if ndim == 2 else None
    panels = [
        ("Input", image_views(read_image_any(in_any_format(data / "images", name)), ndim, window)),
        ("Ground truth", label_views(gt, gt_colours, len(gt_ids), lut, window)),
    ]
    own = [m for m in collection.methods(dataset) if not built_in(m)]
    unet = (UNET,) if ndim == 2 else ()  # the 3-Class U-Net is 2-D: no empty panel for a volume
    for method in (*unet, competitor(collection, dataset), *own, EMBEDSEG):
        if method is None:
            continue
        label = method_label(method)
        runs = collection.runs(dataset, method)
        if runs.empty:
            panels.append(
                (f"{label}\n(not run)" if (dataset, method) in collection.not_run else f"{label}\n(no runs)", None)
            )
            continue
        # The same seed as EmbedSeg's panel where the method has it (cellpose-public may have one seed only).
        method_seed = seed if seed in runs.index else int(runs.index.min())
        pred = read_shown(predictions_dir(results, dataset, method, method_seed) / name)
        colours = {pred_id: gt_colours[gt_id] for pred_id, gt_id in match_to_gt(gt, pred).items()}
        panels.append((label, label_views(pred, colours, len(gt_ids), lut, window)))
    fig, axes = plt.subplots(2, len(panels), figsize=(PAPER_WIDTH, PAPER_WIDTH / len(panels) * 2 + 0.4), squeeze=False)
    for column, (title, views) in enumerate(panels):
        top, bottom = axes[:, column]
        top.set_title(title, fontsize=8)
        if views is not None:
            top.imshow(views[0], interpolation="nearest")
            bottom.imshow(views[1], interpolation="nearest")
        if views is not None and window is not None:
            top.add_patch(
                Rectangle(
                    (window[1].start, window[0].start),
                    window[1].stop - window[1].start,
                    window[0].stop - window[0].start,
                    fill=False,
                    edgecolor="white",
                    linewidth=0.8,
                )
            )
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if ndim == 3:
        axes[0, 0].set_ylabel(f"slice z = {len(gt) // 2}", fontsize=7)
        axes[1, 0].set_ylabel("max. projection (Z)", fontsize=7)
    fig.suptitle(f"{dataset}: {name} (seed {seed}); matched objects share the ground truth's colour", fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def ap_curves(collection: Collection) -> matplotlib.figure.Figure:
    """One axis per data set: mean AP_dsb over runs vs τ per method, band = ± 1 sd (≥ 2 runs);
    τ = 0.50 … 0.90 for 2-D data sets, 0.1 … 0.9 for 3-D ones."""
    import matplotlib.pyplot as plt

    datasets = collection.datasets
    n_cols = min(3, len(datasets))
    n_rows = -(-len(datasets) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PAPER_WIDTH, 2.4 * n_rows + 0.6), squeeze=False, sharey=True)
    methods = sorted({m for ds in datasets for m in collection.methods(ds)}, key=lambda m: (m != EMBEDSEG, m))
    colours = method_colours(methods)
    n_runs = {m: [len(collection.runs(ds, m)) for ds in datasets if len(collection.runs(ds, m))] for m in methods}
    for ax, dataset in zip(axes.flat, datasets):
        taus = np.array(collection.taus_of(dataset))
        for method in collection.methods(dataset):
            runs = collection.runs(dataset, method).to_numpy(dtype=float)
            if not len(runs):
                continue
            mean = runs.mean(axis=0)
            fewest, most = min(n_runs[method]), max(n_runs[method])
            n_text = str(fewest) if fewest == most else f"{fewest}–{most}"
            ax.plot(
                taus,
                mean,
                marker="o",
                markersize=2.5,
                linewidth=1.6 if method == EMBEDSEG else 1.0,
                color=colours[method],
                label=f"{method_label(method)} (n = {n_text})",
            )
            if len(runs) > 1:
                sd = runs.std(axis=0, ddof=1)
                ax.fill_between(taus, mean - sd, mean + sd, color=colours[method], alpha=0.2, linewidth=0)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("IoU threshold τ", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("AP$_{dsb}$ (mean ± 1 sd)", fontsize=8)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    # one legend for all panels, below them, so it never hides a curve
    legend = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(legend) // 4), 1, 1))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(4, len(legend)), fontsize=7, frameon=False)
    return fig


def training_curves(logs: pd.DataFrame) -> matplotlib.figure.Figure:
    """Rows = data sets (named on the left); first column: train (solid) and val (dashed) loss,
    then one column per validation metric that some run logged (object IoU of EmbedSeg, pixel
    mIoU of the U-Net: different quantities, so never on one axis); one colour per model, one
    thin line per run. A run that had not converged (:func:`embedseg.report.budget.convergence`)
    ends in an open triangle on its validation curve. logs: :func:`training_logs`."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    datasets = sorted(logs["dataset"].unique())
    metrics = [m for m in VAL_METRICS if m in logs.columns and logs[m].notna().any()]
    n_rows = max(1, len(datasets))
    fig, axes = plt.subplots(
        n_rows, 1 + len(metrics), figsize=(PAPER_WIDTH, 1.9 * n_rows + 0.9), squeeze=False, layout="constrained"
    )
    if not datasets:
        axes[0, 0].text(
            0.5,
            0.5,
            "no training logs (models/*/*/seed*/log.csv)",
            ha="center",
            va="center",
            transform=axes[0, 0].transAxes,
        )
    models = sorted(logs["model"].unique())
    colours = method_colours(models)
    run_counts: dict[str, set[int]] = {}  # model -> its number of runs per data set
    for row, dataset in zip(axes, datasets):
        loss_ax, metric_axes = row[0], dict(zip(metrics, row[1:]))
        for model, model_runs in logs[logs["dataset"] == dataset].sort_values("epoch").groupby("model"):
            n_runs = model_runs["seed"].nunique()
            run_counts.setdefault(model, set()).add(n_runs)
            for _, run in model_runs.groupby("seed"):
                loss_ax.plot(run["epoch"], run["train_loss"], color=colours[model], linewidth=0.9)
                loss_ax.plot(run["epoch"], run["val_loss"], color=colours[model], linewidth=0.9, linestyle="--")
                still_rising = convergence(run).converged is False
                for metric, ax in metric_axes.items():
                    if run[metric].notna().any():
                        ax.plot(run["epoch"], run[metric], color=colours[model], linewidth=0.9)
                        if still_rising:
                            last = run[run[metric].notna()].iloc[-1]
                            ax.scatter(
                                last["epoch"],
                                last[metric],
                                marker="^",
                                s=22,
                                facecolor="none",
                                edgecolor=colours[model],
                                linewidth=0.9,
                                zorder=3,
                            )
        loss_ax.set_ylabel(f"{dataset}\nloss", fontsize=8)
        for ax in metric_axes.values():
            ax.set_ylim(0, 1)
        for ax in row:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    titles = ["loss (train solid, val dashed)", *(VAL_METRICS[m] for m in metrics)]
    for ax, title in zip(axes[0], titles):  # column titles once, on the top row; wrapped to fit
        ax.set_title(textwrap.fill(title, 22), fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    handles = []
    for model in models:
        fewest, most = min(run_counts[model]), max(run_counts[model])
        runs = f"{fewest} run{'s' if most > 1 else ''}" if fewest == most else f"{fewest}–{most} runs"
        handles.append(Line2D([], [], color=colours[model], linewidth=0.9, label=f"{model} ({runs})"))
    if any(ax.collections for ax in axes.flat):
        handles.append(
            Line2D(
                [], [], color="grey", marker="^", markerfacecolor="none", linestyle="none", label=NOT_CONVERGED_LABEL
            )
        )
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)
    return fig


def write_figures(
    results: Path,
    out: Path,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Path]:
    """Draw every figure of a run folder into `out`; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = Path(results)
    collection = collect(results, datasets, methods, seeds)
    figures = [
        (f"fig1_{ds}", qualitative_panel(results, collection, ds, seeds[0] if seeds else None))
        for ds in collection.datasets
    ]
    figures += [
        ("ap_curves", ap_curves(collection)),
        ("training_curves", training_curves(training_logs(results, datasets, seeds))),
    ]
    written = []
    for stem, fig in figures:
        written += save(fig, out, stem)
        plt.close(fig)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--out", type=Path, required=True, metavar="FIG_DIR", help="output folder")
    parser.add_argument("--datasets", nargs="+", metavar="DS", help="data sets (default: every one with scores)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods; each must have scores or NOT_RUN.txt")
    parser.add_argument(
        "--seeds", nargs="+", type=int, metavar="S", help="seeds; the first one's predictions are drawn in fig1"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace FIG_DIR even if it is a file or a folder not written by `embedseg figures`",
    )


def run(args: argparse.Namespace) -> int:
    inputs = {f"RESULTS_DIR/{name}": args.results / name for name in ("data", "scores", "predictions", "models")}
    with replacing(args.out, FIGURES, inputs, args.force) as staging:
        written = write_figures(args.results, staging, args.datasets, args.methods, args.seeds)
    for path in written:
        print(args.out / Path(path).relative_to(staging))
    return 0
