"""Instance matching and the DSB-style average precision of the paper (spec §7).

Per image and IoU threshold τ: ground-truth and predicted objects are matched one-to-one by the
Hungarian algorithm with cost −[IoU ≥ τ] − IoU/(2·n_matched) (StarDist's `matching`), TP = matched
pairs with IoU ≥ τ, FP = n_pred − TP, FN = n_true − TP, and the image's score is
AP_dsb = TP / (TP + FP + FN) (0 when TP = 0). The paper reports the mean of the per-image scores.

BBBC010's ground truth has overlapping objects, stored as a (K, H, W) stack; its score
(:func:`match_one_hot`) counts a GT object as TP when any prediction reaches IoU ≥ τ with it, and
a prediction as FP when no GT object does (EmbedSeg's ``obtain_APdsb_one_hot``).

The overlap table is built once per image by one ``bincount`` and reused for every τ.
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


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids mapped to 1..n in ascending order (0 stays background); returns (labels, n)."""
    from skimage.segmentation import relabel_sequential

    relabelled = relabel_sequential(np.asarray(labels))[0]
    return relabelled, int(relabelled.max()) if relabelled.size else 0


def label_overlap(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pixel counts of every (true id, pred id) pair, shape (n_true + 1, n_pred + 1), row/column 0
    = background. Both label images (H, W) must already be sequential (see :func:`relabel`)."""
    n_true, n_pred = int(true.max(initial=0)), int(pred.max(initial=0))
    pair_index = true.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel()
    return np.bincount(pair_index, minlength=(n_true + 1) * (n_pred + 1)).reshape(n_true + 1, n_pred + 1)


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
        # The indicator term dominates (Σ IoU/(2·n_matched) < 1): maximise the number of pairs
        # with IoU ≥ τ first, then their IoU.
        cost = -(iou >= tau).astype(np.float64) - iou / (2 * n_matched)
        rows, cols = linear_sum_assignment(cost)
        tp.append(np.count_nonzero(iou[rows, cols] >= tau))
    return np.asarray(tp, dtype=np.int64)


def match_labels(true: np.ndarray, pred: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> MatchCounts:
    """Match two label images (H, W) (any ids, 0 = background) at every threshold."""
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    true, n_true = relabel(true)
    pred, n_pred = relabel(pred)
    overlap = label_overlap(true, pred)
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
