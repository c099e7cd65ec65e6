"""`embedseg gallery`: one HTML page per data set, every test image a row.

A row shows the image, the ground truth and each method's prediction (first seed) as contour
overlays — true positives green, false positives red, missed ground-truth objects yellow, at
IoU > 0.5 — with per-image AP@0.5, mSA and merge/split counts. The page is a plain file with
inline JavaScript (no server, no CDN): sort by any column or by the difference of two
methods, or show one method's worst 10. Thumbnails are inline; each links to its full-size
PNG in full/ beside the page.
"""

from __future__ import annotations

import argparse
import html
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import read_labels
from ..layout import data_dir, gallery_dir, predictions_dir, test_images, test_masks
from ..outputs import GALLERY, replacing
from ..zarr_io import in_any_format, read_image_any, read_labels_any
from .figures import display_image, match_to_gt
from .results import collect

TP, FP, MISSED, GT = (0, 200, 0), (230, 30, 30), (255, 215, 0), (0, 170, 255)
THUMB = 160  # px, the longer side of a thumbnail
TEMPLATE = Path(__file__).with_name("gallery.html")


def plane(array: np.ndarray, labels: bool) -> np.ndarray:
    """The 2-D plane drawn: the image itself, or the middle Z slice of a volume ((C,) Z, Y, X)."""
    array = np.asarray(array)
    if labels:
        return array if array.ndim == 2 else array[len(array) // 2]
    if array.ndim == 3 and array.shape[0] > 4:  # a volume, not a few channels
        return array[len(array) // 2]
    if array.ndim == 4:
        return array[0, len(array[0]) // 2]
    return array


def overlay(grey: np.ndarray, gt: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint8: `grey` with the ground truth's contours (pred None) or the prediction's
    contours coloured by outcome at IoU > 0.5, missed GT objects' contours in yellow."""
    from skimage.segmentation import find_boundaries

    rgb = np.repeat((display_image(grey) * 255).astype(np.uint8)[..., None], 3, axis=2)
    if pred is None:
        rgb[find_boundaries(gt, mode="inner")] = GT
        return rgb
    matches = match_to_gt(gt, pred)
    missed = np.isin(gt, [i for i in np.unique(gt[gt > 0]) if i not in set(matches.values())])
    rgb[find_boundaries(np.where(missed, gt, 0), mode="inner")] = MISSED
    boundary = find_boundaries(pred, mode="inner")
    matched = np.isin(pred, list(matches))
    rgb[boundary & matched] = TP
    rgb[boundary & ~matched] = FP
    return rgb


def merges_splits(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """(merges, splits): predicted objects holding most of ≥ 2 GT objects; GT objects holding
    most of ≥ 2 predicted objects."""
    from ..core.metrics import label_overlap, relabel

    overlap = label_overlap(relabel(gt)[0], relabel(pred)[0])[1:, 1:].astype(float)
    if not overlap.size:
        return 0, 0
    gt_in_pred = overlap > 0.5 * overlap.sum(axis=1, keepdims=True)  # GT i mostly inside pred j
    pred_in_gt = overlap > 0.5 * overlap.sum(axis=0, keepdims=True)
    return int((gt_in_pred.sum(axis=0) >= 2).sum()), int((pred_in_gt.sum(axis=1) >= 2).sum())


def save_png(rgb: np.ndarray, out: Path, stem: str) -> dict[str, str]:
    """Write the full-size PNG beside the page; return its relative path and the thumbnail as a
    data URI. Inline thumbnails keep the page one self-contained file, so it also renders inside
    Snakemake's single-file HTML report, where files beside it are not reachable."""
    import base64
    import io

    import matplotlib.image

    step = max(1, int(np.ceil(max(rgb.shape[:2]) / THUMB)))
    full = f"full/{stem}.png"
    (out / full).parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(out / full, np.ascontiguousarray(rgb))
    thumb = io.BytesIO()
    matplotlib.image.imsave(thumb, np.ascontiguousarray(rgb[::step, ::step]), format="png")
    return {"full": full, "thumb": "data:image/png;base64," + base64.b64encode(thumb.getvalue()).decode("ascii")}


def dataset_rows(results: Path, dataset: str, methods: list[str], seed: int, out: Path) -> list[dict]:
    """One record per test image: its pictures and each method's scores at τ = 0.5."""
    import pandas as pd

    from ..layout import scores_file

    data = data_dir(results, dataset)
    scores = {}
    for method in methods:
        table = pd.read_csv(scores_file(results, dataset, method, seed))
        scores[method] = table[table["tau"].round(2) == 0.5].set_index("image")
    rows = []
    for index, path in enumerate(sorted(test_masks(data).iterdir())):
        gt = plane(read_labels(path), labels=True)
        grey = plane(read_image_any(in_any_format(test_images(data), path.name)), labels=False)
        row = {
            "image": path.name,
            "pictures": {"image": save_png(overlay(grey, np.zeros_like(gt), None), out, f"{index}_image")},
        }
        row["pictures"]["gt"] = save_png(overlay(grey, gt, None), out, f"{index}_gt")
        row["scores"] = {}
        for m, method in enumerate(methods):
            pred_dir = predictions_dir(results, dataset, method, seed)
            pred = plane(read_labels_any(in_any_format(pred_dir, path.name)), labels=True)
            row["pictures"][method] = save_png(overlay(grey, gt, pred), out, f"{index}_m{m}")
            merges, splits = merges_splits(gt, pred)
            at = scores[method].loc[path.name] if path.name in scores[method].index else {}
            row["scores"][method] = {
                "ap": float(at["ap"]) if "ap" in at else None,
                "msa": float(at["msa"]) if "msa" in at else None,
                "merges": merges,
                "splits": splits,
            }
        rows.append(row)
    return rows


def write_page(out: Path, dataset: str, methods: list[str], rows: list[dict], seed: int) -> Path:
    """index.html: the template with the rows inlined as JSON (the page needs no other file)."""
    payload = json.dumps({"dataset": dataset, "seed": seed, "methods": methods, "rows": rows})
    page = TEMPLATE.read_text().replace("__TITLE__", html.escape(f"{dataset} — seed {seed}"))
    page = page.replace("__DATA__", payload.replace("</", "<\\/"))
    (out / "index.html").write_text(page)
    return out / "index.html"


def write_gallery(
    results: Path, dataset: str, out: Path, methods: Sequence[str] | None = None, seed: int | None = None
) -> Path:
    """The gallery of one data set into `out`; the methods with scores, the first seed."""
    collection = collect(results, [dataset], methods, [seed] if seed is not None else None)
    runs = collection.ap.loc[dataset]
    chosen = [m for m in collection.methods(dataset) if m in runs.index.get_level_values("method")]
    seed = int(min(runs.index.get_level_values("seed"))) if seed is None else seed
    chosen = [m for m in chosen if (m, seed) in runs.index]
    return write_page(out, dataset, chosen, dataset_rows(results, dataset, chosen, seed, out), seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--dataset", required=True, metavar="DS", help="the data set drawn")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RESULTS_DIR/gallery/DS)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods (default: every one with scores)")
    parser.add_argument("--seed", type=int, metavar="S", help="the run drawn (default: the smallest seed)")
    parser.add_argument("--force", action="store_true", help="replace DIR even if `embedseg gallery` did not write it")


def run(args: argparse.Namespace) -> int:
    out = args.out or gallery_dir(args.results) / args.dataset
    inputs = {f"RESULTS_DIR/{name}": args.results / name for name in ("data", "scores", "predictions")}
    with replacing(out, GALLERY, inputs, args.force) as staging:
        write_gallery(args.results, args.dataset, staging, args.methods, args.seed)
    print(out / "index.html")
    return 0
