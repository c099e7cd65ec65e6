"""`embedseg evaluate GT_DIR PRED_DIR --out scores.csv`: every score per image and IoU threshold.

Ground truth and predictions are label TIFFs with the same file names: 2-D label images (H, W)
(GT also one-hot stacks (K, H, W)) or, for a 3-D data set, label volumes (Z, Y, X); which one a
3-axis GT is comes from the data set's ``ndim`` (``--ndim``, default: the dataset.json of the
prepared data set the GT folder belongs to), never from its shape. The scores file has one
row per image and threshold τ = 0.10, 0.15, …, 0.95, columns :data:`COLUMNS` (embedseg.core.metrics
defines each, counting voxels in 3-D). `ap` is AP_dsb = TP/(TP+FP+FN) (the Data Science Bowl's
"average precision" of one image at one τ), not COCO's AP (area under a precision–recall curve);
the mean of `ap` over images at τ = 0.50 … 0.90 is the number the paper reports in 2-D, at
τ = 0.1, 0.2, …, 0.9 in 3-D. `msa` (the same on every row of an image) is the mean of `ap` over
τ = 0.50 … 0.95, `f1` at τ = 0.50 the F1@0.5 of the current literature.
``--objects`` also writes one row per GT object and per unmatched prediction at one τ, so that the
failures can be found (:func:`object_rows`). ``--ignore-label`` and ``--exclude-border`` change
which pixels and objects are scored (both off by default, as in the paper). An ignore region
(``--ignore-region``, default: the data set's ``ignore_region`` in dataset.json, e.g. the
unannotated block of Mouse-Organoid-Cells-CBG) is applied as the official EmbedSeg v0.2.5
``test.py`` applies ``mask_region``: prediction voxels inside it are set to 0 before matching, so
predicted objects there are no false positives (an object reaching into it keeps its part
outside); the ground truth is left as it is (the region is unannotated: it holds none).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .core.metrics import EVALUATION_THRESHOLDS, MatchCounts, match_labels, match_one_hot
from .dataset_settings import DATASET_JSON
from .io import DataError, atomic_write, read_json
from .outputs import check_output_file
from .runtime import progress
from .zarr_io import image_stem, list_images_and_zarr, read_labels_any

COLUMNS = [
    "image",
    "tau",
    "tp",
    "fp",
    "fn",
    "ap",
    "precision",
    "recall",
    "f1",
    "mean_matched_iou",
    "sq",
    "rq",
    "pq",
    "seg",
    "msa",
]
OBJECT_COLUMNS = ["image", "tau", "gt_id", "pred_id", "iou", "status"]


def paired_files(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(GT, prediction) paths matched by name without the format's suffix (``a.tif`` with
    ``a.ome.zarr``: OME-Zarr label groups, :func:`~embedseg.zarr_io.read_labels_any`); DataError
    listing missing or extra files."""

    def listed(folder: str | os.PathLike) -> dict[str, Path]:
        return {image_stem(p): p for p in list_images_and_zarr(folder)}

    gt, pred = listed(gt_dir), listed(pred_dir)
    missing = sorted(gt[name].name for name in set(gt) - set(pred))
    extra = sorted(pred[name].name for name in set(pred) - set(gt))
    if missing or extra:
        raise DataError(
            f"{pred_dir}: predictions do not match the ground truth in {gt_dir}: "
            f"missing {missing or 'none'}, extra {extra or 'none'}; predict every GT image, nothing else"
        )
    if not gt:
        raise DataError(f"{gt_dir}: no label TIFFs to evaluate")
    return [(gt[name], pred[name]) for name in sorted(gt)]


def data_set_json(gt_dir: str | os.PathLike) -> Path | None:
    """The dataset.json of the prepared data set `gt_dir` belongs to (DATA_DIR/test/masks, so
    DATA_DIR/dataset.json), None when there is none."""
    for folder in (Path(gt_dir), *Path(gt_dir).resolve().parents[:2]):
        if (folder / DATASET_JSON).is_file():
            return folder / DATASET_JSON
    return None


def labels_ndim(gt_dir: str | os.PathLike) -> int:
    """Dimension of the GT of `gt_dir`: the ``ndim`` of its data set's dataset.json, else 2."""
    path = data_set_json(gt_dir)
    ndim = 2 if path is None else read_json(path).get("ndim", 2)
    if ndim not in (2, 3):
        raise DataError(f"{path}: ndim {ndim!r}; expected 2 or 3")
    return ndim


def data_set_ignore_region(gt_dir: str | os.PathLike) -> list[list[int]] | str | None:
    """The ``ignore_region`` of the data set of `gt_dir` (a relative mask path made absolute)."""
    path = data_set_json(gt_dir)
    region = None if path is None else read_json(path).get("ignore_region")
    return str(path.parent / region) if isinstance(region, str) else region


def parse_ignore_region(text: str | None) -> list[list[int]] | str | None:
    """``--ignore-region``: ``none``, 2·D integers (starts then ends, exclusive: z0 y0 x0 z1 y1
    x1), or the path of a mask TIFF; None (not given) stays None."""
    if text is None or text == "none":
        return None
    values = text.replace(",", " ").split()
    if all(value.isdigit() for value in values) and len(values) in (4, 6):
        return [[int(v) for v in values[: len(values) // 2]], [int(v) for v in values[len(values) // 2 :]]]
    if len(values) != 1 or not Path(text).is_file():
        raise DataError(
            f"--ignore-region {text!r}: give 'none', starts and ends (z0 y0 x0 z1 y1 x1, ends exclusive) "
            "or an existing mask TIFF"
        )
    return text


def ignored_voxels(region: list[list[int]] | str | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Boolean map (of `shape`) of the region not scored: a box (official ``mask_region``, ends
    exclusive, clipped to the image) or a mask file (nonzero = ignored); None: no region."""
    if region is None:
        return None
    if isinstance(region, str):
        mask = read_labels_any(region) != 0
        if mask.shape != tuple(shape):
            raise DataError(f"ignore region {region}: mask shape {mask.shape}, images are {tuple(shape)}")
        return mask
    start, end = region
    if len(start) != len(shape):
        raise DataError(f"ignore region {region}: {len(start)} axes, the images have {len(shape)}")
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(int(a), int(b)) for a, b in zip(start, end))] = True
    return mask


def score_pair(
    gt_path: Path,
    pred_path: Path,
    one_hot: str = "auto",
    thresholds: np.ndarray = EVALUATION_THRESHOLDS,
    ignore_label: int | None = None,
    exclude_border: bool = False,
    ndim: int = 2,
    ignore_region: list[list[int]] | str | None = None,
) -> MatchCounts:
    """Matching of one image. 2-D (`ndim` 2): one_hot auto (a (K, H, W) GT is a stack of
    overlapping objects), yes (GT must be such a stack) or no (GT must be a label image (H, W)).
    3-D: GT and prediction are label volumes (Z, Y, X) of the same shape. `ignore_region`
    (:func:`ignored_voxels`): prediction pixels inside it are set to 0 first (official test.py)."""
    gt, pred = read_labels_any(gt_path), read_labels_any(pred_path)
    ignored = ignored_voxels(ignore_region, pred.shape)
    if ignored is not None:
        pred = np.where(ignored, 0, pred)
    if ndim == 3:
        return score_volumes(gt, pred, gt_path, pred_path, one_hot, thresholds, ignore_label, exclude_border)
    stacked = gt.ndim == 3
    if (one_hot == "yes" and not stacked) or (one_hot == "no" and stacked) or gt.ndim not in (2, 3):
        raise DataError(
            f"{gt_path}: GT shape {gt.shape} does not fit --one-hot {one_hot}; "
            "one-hot GT is (K, H, W), label images are (H, W)"
        )
    if pred.ndim != 2 or pred.shape != gt.shape[-2:]:
        raise DataError(
            f"{pred_path}: prediction shape {pred.shape} does not match GT {gt_path} "
            f"{gt.shape}; predictions must be (H, W) label images of the GT's size"
        )
    if stacked and ignore_label is not None:
        raise DataError(
            f"{gt_path}: --ignore-label needs GT label images (H, W); this GT is a one-hot stack "
            f"{gt.shape}, which has no label values to ignore"
        )
    if stacked:
        return match_one_hot(gt, pred, thresholds, exclude_border=exclude_border)
    return match_labels(gt, pred, thresholds, ignore_label=ignore_label, exclude_border=exclude_border)


def score_volumes(
    gt: np.ndarray,
    pred: np.ndarray,
    gt_path: Path,
    pred_path: Path,
    one_hot: str,
    thresholds: np.ndarray,
    ignore_label: int | None,
    exclude_border: bool,
) -> MatchCounts:
    """:func:`score_pair` of a 3-D data set: label volumes, no one-hot stacks (EmbedSeg's 3-D data
    have none: a voxel belongs to one object)."""
    if one_hot == "yes" or gt.ndim != 3:
        raise DataError(
            f"{gt_path}: GT shape {gt.shape}, expected a label volume (Z, Y, X) of a 3-D data set "
            "(one-hot stacks are 2-D only); pass --ndim 2 if this is 2-D data"
        )
    if pred.shape != gt.shape:
        raise DataError(
            f"{pred_path}: prediction shape {pred.shape} does not match GT {gt_path} {gt.shape}; "
            "predictions must be (Z, Y, X) label volumes of the GT's size"
        )
    return match_labels(gt, pred, thresholds, ignore_label=ignore_label, exclude_border=exclude_border)


def object_rows(counts: MatchCounts, tau: float) -> pd.DataFrame:
    """One row per GT object (status `matched` or `missed`) and per unmatched prediction (`false
    positive`) at threshold `tau`: ids as in the label images, and the IoU of the matched pair;
    for a missed GT object / false positive, the other id and the IoU are those of the object it
    overlaps most (0 if none), the near miss to look at."""
    t = int(np.flatnonzero(np.isclose(counts.thresholds, tau))[0])
    n_true, n_pred = counts.iou.shape
    # A zero row and column (id 0) so that every object has a "most overlapping" partner.
    iou = np.pad(counts.iou, ((0, 1), (0, 1)))
    true_ids, pred_ids = np.append(counts.true_ids, 0), np.append(counts.pred_ids, 0)
    match = counts.match[t]
    pred_col = np.where(match >= 0, match, iou[:n_true].argmax(axis=1))
    gt_iou = iou[np.arange(n_true), pred_col]
    gt_rows = pd.DataFrame(
        {
            "gt_id": true_ids[:n_true],
            "pred_id": np.where(gt_iou > 0, pred_ids[pred_col], 0),
            "iou": gt_iou,
            "status": np.where(match >= 0, "matched", "missed"),
        }
    )
    unmatched = np.flatnonzero(~counts.pred_matched[t])
    true_row = iou[:, unmatched].argmax(axis=0)
    fp_iou = iou[true_row, unmatched]
    fp_rows = pd.DataFrame(
        {
            "gt_id": np.where(fp_iou > 0, true_ids[true_row], 0),
            "pred_id": pred_ids[unmatched],
            "iou": fp_iou,
            "status": "false positive",
        }
    )
    return pd.concat([gt_rows, fp_rows], ignore_index=True).assign(tau=counts.thresholds[t])


def score_folders(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    one_hot: str = "auto",
    thresholds: np.ndarray = EVALUATION_THRESHOLDS,
    ignore_label: int | None = None,
    exclude_border: bool = False,
    objects_tau: float = 0.5,
    ndim: int | None = None,
    ignore_region: list[list[int]] | str | None = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores table with COLUMNS (one row per image and threshold) and the per-object table
    with OBJECT_COLUMNS at `objects_tau` (one of `thresholds`); `ndim` None: :func:`labels_ndim`;
    `ignore_region` ``auto``: the data set's (:func:`data_set_ignore_region`), None: none."""
    ndim = labels_ndim(gt_dir) if ndim is None else ndim
    ignore_region = data_set_ignore_region(gt_dir) if ignore_region == "auto" else ignore_region
    if not np.isclose(thresholds, objects_tau).any():
        raise DataError(
            f"--objects-tau {objects_tau} is not one of the evaluated thresholds "
            f"{[round(float(t), 2) for t in thresholds]}"
        )
    tables, objects = [], []
    for gt_path, pred_path in progress(paired_files(gt_dir, pred_dir), desc="evaluate", unit="image"):
        counts = score_pair(gt_path, pred_path, one_hot, thresholds, ignore_label, exclude_border, ndim, ignore_region)
        tables.append(pd.DataFrame({"image": gt_path.name, "tau": counts.thresholds, **counts.scores()}))
        objects.append(object_rows(counts, objects_tau).assign(image=gt_path.name))
    scores, per_object = pd.concat(tables, ignore_index=True), pd.concat(objects, ignore_index=True)
    return scores[COLUMNS], per_object[OBJECT_COLUMNS]


def write_scores(path: str | os.PathLike, scores: pd.DataFrame) -> None:
    with atomic_write(path) as tmp:
        scores.to_csv(tmp, index=False)


def is_scores_file(path: Path) -> bool:
    """True for a CSV that `embedseg evaluate` wrote (its header starts with image,tau)."""
    with open(path, "rb") as handle:
        return handle.readline().startswith(b"image,tau,")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt_dir", metavar="GT_DIR", help="ground-truth label TIFFs")
    parser.add_argument(
        "pred_dir", metavar="PRED_DIR", help="predicted label TIFFs or OME-Zarr label groups (same names)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="CSV",
        help=f"scores file ({','.join(COLUMNS)}); ap = AP_dsb = TP/(TP+FP+FN), not COCO AP",
    )
    parser.add_argument(
        "--one-hot",
        choices=("auto", "yes", "no"),
        default="auto",
        help="GT as (K, H, W) stacks of overlapping objects (BBBC010); auto: by the GT's shape",
    )
    parser.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        default=None,
        help="2: images (H, W) (GT also one-hot stacks); 3: volumes (Z, Y, X); default: `ndim` of the "
        "dataset.json of the data set GT_DIR belongs to (DATA_DIR/test/masks), else 2",
    )
    parser.add_argument(
        "--objects",
        metavar="CSV",
        help=f"also write one row per GT object and unmatched prediction ({','.join(OBJECT_COLUMNS)})",
    )
    parser.add_argument("--objects-tau", type=float, default=0.5, metavar="TAU", help="IoU threshold of --objects")
    parser.add_argument(
        "--ignore-label",
        type=int,
        metavar="ID",
        help="GT label whose pixels are not scored (removed from GT and prediction); default: none",
    )
    parser.add_argument(
        "--ignore-region",
        metavar="REGION",
        help="region whose predictions are removed before matching (official mask_region): 'none', "
        "starts and ends 'z0 y0 x0 z1 y1 x1' (ends exclusive; 2-D: y0 x0 y1 x1) or a mask TIFF; "
        "default: ignore_region of the data set's dataset.json (Mouse-Organoid-Cells-CBG: its unannotated block)",
    )
    parser.add_argument(
        "--exclude-border",
        action="store_true",
        help="drop objects touching the image border from GT and prediction before matching",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace CSV even if it is a file not written by `embedseg evaluate` (never an input)",
    )


def run(args: argparse.Namespace) -> int:
    check_output_file(
        args.out, {"GT_DIR": args.gt_dir, "PRED_DIR": args.pred_dir}, is_scores_file, "embedseg evaluate", args.force
    )
    if args.objects:
        if Path(args.objects).resolve() == Path(args.out).resolve():
            raise DataError(f"--objects {args.objects} is also --out: give the per-object table its own file")
        check_output_file(
            args.objects,
            {"GT_DIR": args.gt_dir, "PRED_DIR": args.pred_dir},
            is_scores_file,
            "embedseg evaluate",
            args.force,
        )
    scores, objects = score_folders(
        args.gt_dir,
        args.pred_dir,
        args.one_hot,
        ignore_label=args.ignore_label,
        exclude_border=args.exclude_border,
        objects_tau=args.objects_tau,
        ndim=args.ndim,
        ignore_region="auto" if args.ignore_region is None else parse_ignore_region(args.ignore_region),
    )
    write_scores(args.out, scores)
    if args.objects:
        write_scores(args.objects, objects)
    print(summary_text(scores))
    return 0


def summary_text(scores: pd.DataFrame) -> str:
    """The means over images that `evaluate` prints, every number labelled: the per-image scores
    independent of τ (mSA, F1@0.5, SEG), then AP_dsb, F1 and PQ per τ."""
    means = scores.groupby("tau")[["ap", "f1", "pq"]].mean()
    per_image = scores.groupby("image")[["msa", "seg"]].first().mean()
    f1_050 = means["f1"].get(0.5, float("nan"))
    lines = [
        f"mean over {scores['image'].nunique()} images: mSA (AP_dsb over tau 0.50-0.95) {per_image['msa']:.4f}  "
        f"F1@0.50 {f1_050:.4f}  SEG {per_image['seg']:.4f}",
        "per tau (AP_dsb = TP/(TP+FP+FN), not COCO AP):",
    ]
    lines += [
        f"  tau {tau:.2f}: AP_dsb {row['ap']:.4f}  F1 {row['f1']:.4f}  PQ {row['pq']:.4f}"
        for tau, row in means.iterrows()
    ]
    return "\n".join(lines)
