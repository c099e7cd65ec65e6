"""Instance matching and the DSB-style average precision of the paper (docs/method.md §9).

Per image and IoU threshold τ: ground-truth and predicted objects are matched one-to-one by the
Hungarian algorithm with cost −[IoU ≥ τ] − IoU/(2·n_matched) (StarDist's `matching`), TP = matched
pairs with IoU ≥ τ, FP = n_pred − TP, FN = n_true − TP, and the image's score is
AP_dsb = TP / (TP + FP + FN) (0 when TP = 0). The paper reports the mean of the per-image scores.

BBBC010's ground truth has overlapping objects, stored as a (K, H, W) stack; its score
(:func:`match_one_hot`) counts a GT object as TP when any prediction reaches IoU ≥ τ with it, and
a prediction as FP when no GT object does (EmbedSeg's ``obtain_APdsb_one_hot``).

The overlap table is built once per image by one ``bincount`` and reused for every τ; the
Hungarian step runs only for a τ where the pairs with IoU ≥ τ do not already form a matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLDS = np.round(np.arange(0.50, 0.90 + 1e-9, 0.05), 2)  # τ = 0.50, 0.55, …, 0.90


@dataclass(frozen=True)
class MatchCounts:
    """Counts per threshold, each array of shape (T,)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @property
    def ap(self) -> np.ndarray:
        """AP_dsb = TP / (TP + FP + FN), 0 where TP = 0; shape (T,)."""
        total = self.tp + self.fp + self.fn
        return np.where(self.tp > 0, self.tp / np.maximum(total, 1), 0.0)


# Above this many ids per pixel, relabel by sorting (np.unique) instead of a lookup table.
MAX_IDS_PER_PIXEL = 4


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids mapped to 1..n in ascending order (0 stays background); returns (labels, n).

    One ``bincount`` over the raw ids finds the ids present, and a lookup table maps them (no
    sort); ids far above the pixel count (> MAX_IDS_PER_PIXEL · size) go through ``np.unique``
    instead. Same ids as skimage's ``relabel_sequential`` (which still handles empty, non-integer
    and negative input: it raises for the last two), as int64.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.size == 0 or labels.min() < 0:
        from skimage.segmentation import relabel_sequential  # raises for non-integer/negative ids

        relabelled = relabel_sequential(labels)[0]
        return relabelled, int(relabelled.max()) if relabelled.size else 0
    if int(labels.max()) > MAX_IDS_PER_PIXEL * labels.size:
        ids, inverse = np.unique(labels, return_inverse=True)
        if ids[0] != 0:  # no background: ids start at 1
            inverse = inverse + 1
        return inverse.reshape(labels.shape).astype(np.int64, copy=False), int(np.count_nonzero(ids))
    present = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=1) > 0
    present[0] = False
    lookup = np.cumsum(present)  # int64; background 0 → 0, k-th smallest id → k
    return lookup[labels], int(lookup[-1])


def label_overlap(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pixel counts of every (true id, pred id) pair, shape (n_true + 1, n_pred + 1), row/column 0
    = background. Both label images (H, W) must already be sequential (see :func:`relabel`)."""
    n_true, n_pred = int(true.max(initial=0)), int(pred.max(initial=0))
    pair_index = true.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel()
    return np.bincount(pair_index, minlength=(n_true + 1) * (n_pred + 1)).reshape(n_true + 1, n_pred + 1)


def overlap_table(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`label_overlap` of the relabelled images, for label images with any ids.

    When the raw ids are small enough (table of at most MAX_IDS_PER_PIXEL · size entries), one
    ``bincount`` over the raw id pairs, then the rows/columns of absent ids dropped (row/column 0
    kept); ids keep their order, so this is the table of the relabelled images, entry for entry.
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.dtype.kind in "iu" and pred.dtype.kind in "iu" and true.size and true.min() >= 0 and pred.min() >= 0:
        rows, cols = int(true.max()) + 1, int(pred.max()) + 1
        if rows * cols <= MAX_IDS_PER_PIXEL * true.size:
            pair_index = true.ravel().astype(np.intp)
            pair_index *= cols
            pair_index += pred.ravel()
            table = np.bincount(pair_index, minlength=rows * cols).reshape(rows, cols)
            present_rows, present_cols = table.any(axis=1), table.any(axis=0)
            present_rows[0] = present_cols[0] = True
            return table[np.flatnonzero(present_rows)][:, np.flatnonzero(present_cols)]
    return label_overlap(relabel(true)[0], relabel(pred)[0])


def iou_from_intersection(intersection: np.ndarray, true_sizes: np.ndarray, pred_sizes: np.ndarray) -> np.ndarray:
    """IoU (n_true, n_pred) from intersections (n_true, n_pred) and object sizes (n_true,), (n_pred,)."""
    union = true_sizes[:, None] + pred_sizes[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros(intersection.shape), where=union > 0)


def true_positives(iou: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """TP per threshold (T,) of the one-to-one Hungarian matching of an IoU table (n_true, n_pred)."""
    from scipy.optimize import linear_sum_assignment

    n_matched = min(iou.shape)
    if n_matched == 0:
        return np.zeros(len(thresholds), dtype=np.int64)
    tp = []
    for tau in thresholds:
        hits = iou >= tau
        if hits.sum(axis=0).max() <= 1 and hits.sum(axis=1).max() <= 1:
            # The pairs with IoU ≥ τ already form a matching, so the best matching holds all
            # of them (what the Hungarian cost below maximises first). Always the case for
            # τ > 0.5, where an object can overlap at most one other one with IoU ≥ τ.
            tp.append(int(np.count_nonzero(hits)))
            continue
        # The indicator term dominates (Σ IoU/(2·n_matched) < 1): maximise the number of pairs
        # with IoU ≥ τ first, then their IoU.
        cost = -hits.astype(np.float64) - iou / (2 * n_matched)
        rows, cols = linear_sum_assignment(cost)
        tp.append(np.count_nonzero(iou[rows, cols] >= tau))
    return np.asarray(tp, dtype=np.int64)


def match_labels(true: np.ndarray, pred: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> MatchCounts:
    """Match two label images (H, W) (any ids, 0 = background) at every threshold."""
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    overlap = overlap_table(true, pred)
    n_true, n_pred = overlap.shape[0] - 1, overlap.shape[1] - 1
    iou = iou_from_intersection(overlap[1:, 1:], overlap[1:, :].sum(axis=1), overlap[:, 1:].sum(axis=0))
    tp = true_positives(iou, thresholds)
    return MatchCounts(np.asarray(thresholds), tp, n_pred - tp, n_true - tp)


def one_hot_iou(true_stack: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU (K, n_pred) of the non-empty slices of a GT stack (K, H, W) with the objects of a
    sequential label image (H, W)."""
    true_stack = np.asarray(true_stack).astype(bool)
    true_stack = true_stack[true_stack.any(axis=(1, 2))]
    n_true, n_pred = len(true_stack), int(pred.max(initial=0))
    slice_index, ys, xs = np.nonzero(true_stack)
    intersection = np.bincount(
        slice_index * (n_pred + 1) + pred[ys, xs], minlength=n_true * (n_pred + 1)
    ).reshape(n_true, n_pred + 1)[:, 1:]
    true_sizes = np.bincount(slice_index, minlength=n_true)
    pred_sizes = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
    return iou_from_intersection(intersection, true_sizes, pred_sizes)


def match_one_hot(true_stack: np.ndarray, pred: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> MatchCounts:
    """BBBC010 counts: GT stack (K, H, W) of possibly overlapping objects vs a label image (H, W)."""
    if true_stack.shape[1:] != pred.shape:
        raise ValueError(f"GT stack {true_stack.shape} does not fit prediction {pred.shape}")
    pred, _ = relabel(pred)
    iou = one_hot_iou(true_stack, pred)
    hits = iou[None, :, :] >= np.asarray(thresholds)[:, None, None]  # (T, K, n_pred)
    tp = hits.any(axis=2).sum(axis=1)
    fp = (~hits.any(axis=1)).sum(axis=1)
    return MatchCounts(np.asarray(thresholds), tp, fp, iou.shape[0] - tp)
