"""Instance matching and every score `embedseg evaluate` reports (docs/method.md §9).

Per image and IoU threshold τ: ground-truth and predicted objects are matched one-to-one by the
Hungarian algorithm with cost −[IoU ≥ τ] − IoU/(2·n_matched) (StarDist's `matching`): as many
pairs with IoU ≥ τ as possible, then the largest IoU sum. TP = matched pairs with IoU ≥ τ,
FP = n_pred − TP, FN = n_true − TP, and from these (StarDist's names and conventions; a ratio
with a zero denominator is 0):

- AP_dsb = TP / (TP + FP + FN), the paper's score (mean over images);
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2·TP / (2·TP + FP + FN);
- mean matched IoU = SQ = mean IoU of the TP pairs, RQ = F1 and panoptic quality PQ = SQ · RQ
  (Kirillov et al. 2019; StarDist's ``panoptic_quality``);
- mSA (mean segmentation accuracy, independent of τ): the mean of AP_dsb over τ = 0.50, 0.55,
  …, 0.95 (:data:`MSA_THRESHOLDS`; NaN if some of them were not evaluated), and F1 at τ = 0.5
  is the F1 row at 0.50 — the scores of the current literature (NeurIPS 2022 cell segmentation);
- SEG of the Cell Tracking Challenge (independent of τ): per GT object R the IoU with the
  prediction S covering more than half of R (|R ∩ S| > 0.5·|R|), else 0; averaged over R.

Options: pixels whose GT is ``ignore_label`` are not scored (removed from both images); with
``exclude_border`` objects touching the image border are dropped from both images before
matching, and so is a prediction whose largest GT overlap is such a dropped GT object (else a
prediction that stops one pixel short of the border would count as a false positive).

BBBC010's ground truth has overlapping objects, stored as a (K, H, W) stack; its score
(:func:`match_one_hot`) counts a GT object as TP when any prediction reaches IoU ≥ τ with it
(its matched prediction is the one of largest IoU), and a prediction as FP when no GT object
does (EmbedSeg's ``obtain_APdsb_one_hot``).

The overlap table is built once per image by one ``bincount`` over the pixels of some object
and reused for every τ. Where the pairs at the lowest τ form a matching, every τ keeps its pairs
in one vectorised step. The Hungarian step runs only where the pairs with IoU ≥ τ do not already
form a matching, and then only on the groups of mutually overlapping objects that hold such a
conflict (the optimum splits over these groups, as objects without overlap add nothing to the cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLDS = np.round(np.arange(0.50, 0.90 + 1e-9, 0.05), 2)  # the paper's 2D tables: τ = 0.50, 0.55, …, 0.90
EVALUATION_THRESHOLDS = np.round(np.arange(0.10, 0.95 + 1e-9, 0.05), 2)  # what `evaluate` writes: 0.10 … 0.95
MSA_THRESHOLDS = np.round(np.arange(0.50, 0.95 + 1e-9, 0.05), 2)  # mSA = mean AP_dsb over τ = 0.50 … 0.95


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (StarDist's ``_safe_divide``)."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(
        numerator,
        denominator,
        out=np.zeros(np.broadcast(numerator, denominator).shape),
        where=denominator > 0,
    )


@dataclass(frozen=True)
class MatchCounts:
    """The matching of one image at every threshold, and the scores derived from it.

    true_ids, pred_ids: the objects' ids in the input (one-hot GT: slice index + 1);
    intersection (pixels) and iou: (n_true, n_pred); true_sizes: (n_true,) pixels per GT object;
    match: (T, n_true) column of the matched prediction, −1 if none; pred_matched: (T, n_pred)
    whether a prediction is a TP.
    """

    thresholds: np.ndarray
    true_ids: np.ndarray
    pred_ids: np.ndarray
    intersection: np.ndarray
    true_sizes: np.ndarray
    iou: np.ndarray
    match: np.ndarray
    pred_matched: np.ndarray

    @property
    def tp(self) -> np.ndarray:
        return np.count_nonzero(self.match >= 0, axis=1)

    @property
    def fp(self) -> np.ndarray:
        return np.count_nonzero(~self.pred_matched, axis=1)

    @property
    def fn(self) -> np.ndarray:
        return len(self.true_ids) - self.tp

    @property
    def ap(self) -> np.ndarray:
        """AP_dsb = TP / (TP + FP + FN), 0 where TP = 0; shape (T,)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> np.ndarray:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def match_iou(self) -> np.ndarray:
        """(T, n_true) IoU of each GT object with its matched prediction, 0 if unmatched."""
        if self.iou.shape[1] == 0:
            return np.zeros(self.match.shape)
        rows = np.arange(len(self.true_ids))[None, :]
        return np.where(self.match >= 0, self.iou[rows, np.maximum(self.match, 0)], 0.0)

    @property
    def mean_matched_iou(self) -> np.ndarray:
        """Mean IoU of the TP pairs (= SQ); 0 without TP."""
        return _ratio(self.match_iou.sum(axis=1), self.tp)

    @property
    def pq(self) -> np.ndarray:
        """Panoptic quality SQ · RQ = Σ IoU(TP) / (TP + FP/2 + FN/2)."""
        return self.mean_matched_iou * self.f1

    @property
    def seg_iou(self) -> np.ndarray:
        """(n_true,) SEG of each GT object: the IoU with the prediction covering more than half
        of it (at most one can), else 0."""
        covering = 2 * self.intersection > self.true_sizes[:, None]
        return np.where(covering, self.iou, 0.0).max(axis=1, initial=0.0)

    @property
    def msa(self) -> float:
        """Mean AP_dsb over :data:`MSA_THRESHOLDS`; NaN unless all of them are in `thresholds`."""
        at = [np.flatnonzero(np.isclose(self.thresholds, t)) for t in MSA_THRESHOLDS]
        return float(np.mean(self.ap[np.concatenate(at)])) if all(len(i) for i in at) else float("nan")

    @property
    def seg(self) -> float:
        """The Cell Tracking Challenge SEG score of the image (0 without GT objects)."""
        return float(self.seg_iou.mean()) if len(self.true_ids) else 0.0

    def scores(self) -> dict[str, np.ndarray]:
        """Every per-τ score, each of shape (T,), under the column names of `embedseg evaluate`."""
        sq, rq = self.mean_matched_iou, self.f1
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "ap": self.ap,
            "precision": self.precision,
            "recall": self.recall,
            "f1": rq,
            "mean_matched_iou": sq,
            "sq": sq,
            "rq": rq,
            "pq": sq * rq,
            "seg": np.full(len(self.thresholds), self.seg),
            "msa": np.full(len(self.thresholds), self.msa),
        }


# Above this many ids per pixel, relabel by sorting (np.unique) instead of a lookup table.
MAX_IDS_PER_PIXEL = 4


def sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids mapped to 1..n in ascending order (0 stays background), as int64, and the original
    ids (n,) in that order.

    One ``bincount`` over the raw ids finds the ids present, and a lookup table maps them (no
    sort); ids far above the pixel count (> MAX_IDS_PER_PIXEL · size) go through ``np.unique``
    instead. Same ids as skimage's ``relabel_sequential`` (which still handles empty, non-integer
    and negative input: it raises for the last two).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.size == 0 or labels.min() < 0:
        from skimage.segmentation import relabel_sequential  # raises for non-integer/negative ids

        return relabel_sequential(labels)[0], np.unique(labels[labels != 0])
    if int(labels.max()) > MAX_IDS_PER_PIXEL * labels.size:
        ids, inverse = np.unique(labels, return_inverse=True)
        if ids[0] != 0:  # no background: ids start at 1
            inverse = inverse + 1
        return inverse.reshape(labels.shape).astype(np.int64, copy=False), ids[ids != 0]
    present = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=1) > 0
    present[0] = False
    lookup = np.cumsum(present)  # int64; background 0 → 0, k-th smallest id → k
    return lookup[labels], np.flatnonzero(present)


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids mapped to 1..n in ascending order (0 stays background); returns (labels, n)."""
    relabelled, ids = sequential(labels)
    return relabelled, len(ids)


def label_overlap(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pixel counts of every (true id, pred id) pair, shape (n_true + 1, n_pred + 1), row/column 0
    = background. Both label images must already be sequential (see :func:`relabel`)."""
    n_true, n_pred = int(true.max(initial=0)), int(pred.max(initial=0))
    pair_index = true.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel()
    return np.bincount(pair_index, minlength=(n_true + 1) * (n_pred + 1)).reshape(n_true + 1, n_pred + 1)


def _non_negative(*labels: np.ndarray) -> bool:
    """No negative id in any of the images (an unsigned one needs no pass over its pixels)."""
    return all(image.dtype.kind == "u" or image.min() >= 0 for image in labels)


def overlap_with_ids(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`label_overlap` of the relabelled images, for label images with any ids, and the
    original ids of its rows 1… and columns 1….

    When the raw ids are small enough (table of at most MAX_IDS_PER_PIXEL · size entries), one
    ``bincount`` over the raw id pairs, then the rows/columns of absent ids dropped (row/column 0
    kept); ids keep their order, so this is the table of the relabelled images, entry for entry.
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.dtype.kind in "iu" and pred.dtype.kind in "iu" and true.size and _non_negative(true, pred):
        rows, cols = int(true.max()) + 1, int(pred.max()) + 1
        if rows * cols <= MAX_IDS_PER_PIXEL * true.size:
            # The pair index in the narrowest unsigned type that holds it (uint16 for up to 255
            # objects per image) and only pixels of some object in the bincount: background of
            # both images is most of a typical image, and the (0, 0) entry is what is left.
            index_type = np.min_scalar_type(rows * cols)  # also holds cols itself
            pair_index = true.ravel().astype(index_type)
            pair_index *= index_type.type(cols)
            pair_index += pred.ravel().astype(index_type, copy=False)
            pair_index = pair_index[pair_index != 0]
            table = np.bincount(pair_index, minlength=rows * cols).reshape(rows, cols)
            table[0, 0] = true.size - len(pair_index)
            present_rows, present_cols = table.any(axis=1), table.any(axis=0)
            present_rows[0] = present_cols[0] = True
            row_ids, col_ids = np.flatnonzero(present_rows), np.flatnonzero(present_cols)
            return table[row_ids][:, col_ids], row_ids[1:], col_ids[1:]
    (true, true_ids), (pred, pred_ids) = sequential(true), sequential(pred)
    return label_overlap(true, pred), true_ids, pred_ids


def overlap_table(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The table of :func:`overlap_with_ids` alone."""
    return overlap_with_ids(true, pred)[0]


def iou_from_intersection(intersection: np.ndarray, true_sizes: np.ndarray, pred_sizes: np.ndarray) -> np.ndarray:
    """IoU (n_true, n_pred) from intersections (n_true, n_pred) and object sizes (n_true,), (n_pred,)."""
    union = true_sizes[:, None] + pred_sizes[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros(intersection.shape), where=union > 0)


def overlap_groups(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of every GT object (n_true,) and prediction (n_pred,): the connected
    components of the graph whose edges are the pairs with IoU > 0."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_true, n_pred = iou.shape
    rows, cols = np.nonzero(iou > 0)
    graph = coo_matrix((np.ones(len(rows)), (rows, n_true + cols)), shape=(n_true + n_pred,) * 2)
    groups = connected_components(graph, directed=False)[1]
    return groups[:n_true], groups[n_true:]


def _crowded(indices: np.ndarray, length: int) -> np.ndarray:
    """(length,) whether an object appears in more than one of the pairs (`indices`: its side)."""
    return np.bincount(indices, minlength=length) > 1


def assign(iou: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """(T, n_true): per τ, the column of each GT object's matched prediction in the one-to-one
    matching of StarDist's ``matching`` (−1: no match with IoU ≥ τ)."""
    from scipy.optimize import linear_sum_assignment

    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.size and not ((thresholds > 0) & (thresholds <= 1)).all():
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {thresholds.tolist()}")
    n_true, n_pred = iou.shape
    match = np.full((len(thresholds), n_true), -1, dtype=np.int64)
    groups = None
    # The pairs above the lowest τ, found once; every τ picks its pairs from these few.
    candidate_rows, candidate_cols = np.nonzero(iou >= thresholds.min(initial=1.0))
    candidate_iou = iou[candidate_rows, candidate_cols]
    if not _crowded(candidate_rows, n_true).any() and not _crowded(candidate_cols, n_pred).any():
        # A matching at the lowest τ, so at every τ (its pairs are a subset): each τ keeps all
        # its pairs, as below, for all τ at once.
        taus, pairs = np.nonzero(candidate_iou[None, :] >= thresholds[:, None])
        match[taus, candidate_rows[pairs]] = candidate_cols[pairs]
        return match
    for t, tau in enumerate(thresholds):
        above = candidate_iou >= tau
        rows, cols = candidate_rows[above], candidate_cols[above]
        crowded_rows, crowded_cols = _crowded(rows, n_true), _crowded(cols, n_pred)
        if not crowded_rows.any() and not crowded_cols.any():
            # The pairs with IoU ≥ τ already form a matching, so the best matching holds all of
            # them (what the Hungarian cost maximises first). Always the case for τ > 0.5, where
            # an object can overlap at most one other one with IoU ≥ τ.
            match[t, rows] = cols
            continue
        if groups is None:
            true_group, pred_group = groups = overlap_groups(iou)
        conflicted = np.zeros(n_true + n_pred, dtype=bool)  # per group (at most one per object)
        conflicted[true_group[crowded_rows]] = True
        conflicted[pred_group[crowded_cols]] = True
        easy = ~conflicted[true_group[rows]]  # a pair's GT object and prediction share a group
        match[t, rows[easy]] = cols[easy]
        sub_rows, sub_cols = np.flatnonzero(conflicted[true_group]), np.flatnonzero(conflicted[pred_group])
        sub = iou[np.ix_(sub_rows, sub_cols)]
        # The indicator term dominates (Σ IoU/(2·n_matched) < 1): maximise the number of pairs
        # with IoU ≥ τ first, then their IoU.
        cost = -(sub >= tau).astype(np.float64) - sub / (2 * min(sub.shape))
        picked_rows, picked_cols = linear_sum_assignment(cost)
        hit = sub[picked_rows, picked_cols] >= tau
        match[t, sub_rows[picked_rows[hit]]] = sub_cols[picked_cols[hit]]
    return match


def border_ids(labels: np.ndarray) -> np.ndarray:
    """Ids (> 0) of the objects touching the border of a label image (H, W) or volume (Z, Y, X):
    its first and last index along every axis (the 4 edges of an image, the 6 faces of a volume)."""
    faces = [np.take(labels, index, axis=axis).ravel() for axis in range(labels.ndim) for index in (0, -1)]
    edge = np.concatenate(faces)
    return np.unique(edge[edge != 0])


def drop_border_objects(
    keep_true: np.ndarray,
    pred_border: np.ndarray,
    true_ids: np.ndarray,
    pred_ids: np.ndarray,
    intersection: np.ndarray,
    true_sizes: np.ndarray,
    pred_sizes: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """(true_ids, pred_ids, intersection, true_sizes, pred_sizes) without the GT objects where
    `keep_true` is False, the predictions with an id in `pred_border`, and the predictions whose
    largest GT overlap is a dropped GT object. Sizes stay those of the whole objects."""
    best_true = intersection.argmax(axis=0) if len(true_ids) else np.zeros(len(pred_ids), dtype=np.int64)
    with_dropped = intersection.max(axis=0, initial=0) > 0
    with_dropped[with_dropped] &= ~keep_true[best_true[with_dropped]]
    keep_pred = ~np.isin(pred_ids, pred_border) & ~with_dropped
    return (
        true_ids[keep_true],
        pred_ids[keep_pred],
        intersection[np.ix_(keep_true, keep_pred)],
        true_sizes[keep_true],
        pred_sizes[keep_pred],
    )


def _result(
    thresholds: np.ndarray,
    true_ids: np.ndarray,
    pred_ids: np.ndarray,
    intersection: np.ndarray,
    true_sizes: np.ndarray,
    pred_sizes: np.ndarray,
    match: np.ndarray | None = None,
) -> MatchCounts:
    """MatchCounts from the overlap of the scored objects; `match` None: the one-to-one matching."""
    thresholds = np.asarray(thresholds, dtype=float)
    iou = iou_from_intersection(intersection, true_sizes, pred_sizes)
    if match is None:
        match = assign(iou, thresholds)
        pred_matched = np.zeros((len(thresholds), len(pred_ids)), dtype=bool)
        taus, gts = np.nonzero(match >= 0)
        pred_matched[taus, match[taus, gts]] = True
    else:
        pred_matched = (iou[None, :, :] >= thresholds[:, None, None]).any(axis=1)
    return MatchCounts(thresholds, true_ids, pred_ids, intersection, true_sizes, iou, match, pred_matched)


def match_labels(
    true: np.ndarray,
    pred: np.ndarray,
    thresholds: np.ndarray = THRESHOLDS,
    ignore_label: int | None = None,
    exclude_border: bool = False,
) -> MatchCounts:
    """Match two label images (H, W) (any ids, 0 = background) at every threshold."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    scored_true, scored_pred = true, pred
    if ignore_label is not None:
        scored = true != ignore_label
        scored_true, scored_pred = true[scored], pred[scored]
    overlap, true_ids, pred_ids = overlap_with_ids(scored_true, scored_pred)
    intersection = overlap[1:, 1:]
    true_sizes, pred_sizes = overlap[1:, :].sum(axis=1), overlap[:, 1:].sum(axis=0)
    objects = (true_ids, pred_ids, intersection, true_sizes, pred_sizes)
    if exclude_border:
        objects = drop_border_objects(~np.isin(true_ids, border_ids(true)), border_ids(pred), *objects)
    return _result(thresholds, *objects)


def one_hot_overlap(true_stack: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overlap of the non-empty slices of a GT stack (K, H, W) with the objects of a sequential
    label image (H, W): intersection (k, n_pred), slice sizes (k,), prediction sizes (n_pred,),
    and the slices' numbers (index + 1) (k,)."""
    true_stack = np.asarray(true_stack).astype(bool)
    slice_ids = np.flatnonzero(true_stack.any(axis=(1, 2))) + 1
    true_stack = true_stack[slice_ids - 1]
    n_true, n_pred = len(true_stack), int(pred.max(initial=0))
    slice_index, ys, xs = np.nonzero(true_stack)
    intersection = np.bincount(slice_index * (n_pred + 1) + pred[ys, xs], minlength=n_true * (n_pred + 1)).reshape(
        n_true, n_pred + 1
    )[:, 1:]
    true_sizes = np.bincount(slice_index, minlength=n_true)
    pred_sizes = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
    return intersection, true_sizes, pred_sizes, slice_ids


def match_one_hot(
    true_stack: np.ndarray,
    pred: np.ndarray,
    thresholds: np.ndarray = THRESHOLDS,
    exclude_border: bool = False,
) -> MatchCounts:
    """BBBC010 counts: GT stack (K, H, W) of possibly overlapping objects vs a label image (H, W)."""
    true_stack, pred = np.asarray(true_stack), np.asarray(pred)
    if true_stack.shape[1:] != pred.shape:
        raise ValueError(f"GT stack {true_stack.shape} does not fit prediction {pred.shape}")
    relabelled, pred_ids = sequential(pred)
    intersection, true_sizes, pred_sizes, true_ids = one_hot_overlap(true_stack, relabelled)
    if exclude_border:
        edges = true_stack[true_ids - 1].astype(bool)
        keep_true = ~(
            edges[:, 0].any(axis=1)
            | edges[:, -1].any(axis=1)
            | edges[:, :, 0].any(axis=1)
            | edges[:, :, -1].any(axis=1)
        )
        true_ids, pred_ids, intersection, true_sizes, pred_sizes = drop_border_objects(
            keep_true, border_ids(pred), true_ids, pred_ids, intersection, true_sizes, pred_sizes
        )
    iou = iou_from_intersection(intersection, true_sizes, pred_sizes)
    thresholds = np.asarray(thresholds, dtype=float)
    best = iou.argmax(axis=1) if iou.shape[1] else np.zeros(len(true_ids), dtype=np.int64)
    best_iou = iou.max(axis=1, initial=0.0)
    match = np.where(best_iou[None, :] >= thresholds[:, None], best[None, :], -1)
    return _result(thresholds, true_ids, pred_ids, intersection, true_sizes, pred_sizes, match)
