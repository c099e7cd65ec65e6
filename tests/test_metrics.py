"""Matching and AP_dsb against a brute-force reference (all injective matchings) on tiny images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embedseg import metrics


def brute_force_ap(true: np.ndarray, pred: np.ndarray, tau: float) -> tuple[int, int, int, float]:
    """TP = the largest number of one-to-one pairs with IoU ≥ τ, by trying every assignment."""
    true_ids = [i for i in np.unique(true) if i != 0]
    pred_ids = [i for i in np.unique(pred) if i != 0]
    iou = np.zeros((len(true_ids), len(pred_ids)))
    for a, t in enumerate(true_ids):
        for b, p in enumerate(pred_ids):
            inter = np.sum((true == t) & (pred == p))
            union = np.sum((true == t) | (pred == p))
            iou[a, b] = inter / union
    best = 0
    small, large = sorted([len(true_ids), len(pred_ids)])
    for perm in itertools.permutations(range(large), small):
        pairs = zip(range(small), perm) if len(true_ids) <= len(pred_ids) else zip(perm, range(small))
        best = max(best, sum(iou[a, b] >= tau for a, b in pairs))
    fp, fn = len(pred_ids) - best, len(true_ids) - best
    return best, fp, fn, best / (best + fp + fn) if best else 0.0


def random_labels(rng: np.random.Generator, n_objects: int, shape=(24, 24)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint16)
    for _ in range(n_objects):
        y, x = rng.integers(0, shape[0] - 4, size=2)
        h, w = rng.integers(3, 9, size=2)
        labels[y:y + h, x:x + w] = rng.integers(1, 60000)  # arbitrary, non-consecutive ids
    return labels


def jitter(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted objects, some dropped, one spurious."""
    pred = np.roll(labels, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1)).astype(np.uint32)
    for label_id in np.unique(pred)[1:]:
        if rng.random() < 0.2:
            pred[pred == label_id] = 0
    y, x = rng.integers(0, 20, size=2)
    pred[y:y + 3, x:x + 3] = 70000
    return pred


@pytest.mark.parametrize("seed", range(6))
def test_ap_equals_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    true = random_labels(rng, 5)
    pred = jitter(rng, true) if seed % 2 else random_labels(rng, 4)
    counts = metrics.match_labels(true, pred)
    for i, tau in enumerate(metrics.THRESHOLDS):
        tp, fp, fn, ap = brute_force_ap(true, pred, tau)
        assert (counts.tp[i], counts.fp[i], counts.fn[i]) == (tp, fp, fn)
        assert counts.ap[i] == pytest.approx(ap)


def test_thresholds_are_the_paper_ones():
    np.testing.assert_allclose(metrics.THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9])


def test_identical_images_score_one_and_empty_images_zero():
    labels = np.zeros((10, 10), dtype=np.uint16)
    labels[1:4, 1:4] = 7
    labels[5:9, 5:9] = 3
    assert (metrics.match_labels(labels, labels).ap == 1).all()
    empty = np.zeros_like(labels)
    counts = metrics.match_labels(empty, empty)
    assert (counts.ap == 0).all() and (counts.tp == 0).all()
    counts = metrics.match_labels(labels, empty)
    assert (counts.fn == 2).all() and (counts.ap == 0).all()


def test_overlap_table_counts_pixels_per_pair():
    true = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[1, 1, 0], [1, 2, 2]])
    np.testing.assert_array_equal(metrics.label_overlap(true, pred), [[0, 1, 1], [1, 1, 0], [0, 1, 1]])


def test_one_hot_counts_overlapping_objects():
    stack = np.zeros((3, 12, 12), dtype=np.uint16)
    stack[0, 2:4, 0:12] = 1  # horizontal worm
    stack[1, 0:12, 5:7] = 1  # vertical worm crossing it
    stack[2, 9:11, 9:11] = 1  # missed entirely
    pred = np.zeros((12, 12), dtype=np.uint16)
    pred[2:4, 0:12] = 5  # = worm 0 (the crossing pixels go to it)
    pred[0:12, 5:7][stack[0, 0:12, 5:7] == 0] = 9  # worm 1 minus the crossing: IoU 20/24
    pred[6:8, 0:3] = 4  # spurious
    counts = metrics.match_one_hot(stack, pred, np.array([0.5, 0.9]))
    np.testing.assert_array_equal(counts.tp, [2, 1])
    np.testing.assert_array_equal(counts.fn, [1, 2])
    np.testing.assert_array_equal(counts.fp, [1, 2])
    np.testing.assert_allclose(counts.ap, [2 / 4, 1 / 5])
    iou = metrics.one_hot_iou(stack, metrics.relabel(pred)[0])
    assert iou.shape == (3, 3)
    assert iou.max(axis=1)[1] == pytest.approx(20 / 24)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        metrics.match_labels(np.zeros((4, 4), int), np.zeros((4, 5), int))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_relabel_equals_skimage_relabel_sequential(dtype):
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(7)
    high = min(np.iinfo(dtype).max, 10**9)
    cases = [
        random_labels(rng, 12).astype(dtype) if high >= 60000 else rng.integers(0, 40, (24, 24)).astype(dtype),
        rng.integers(1, min(high, 50), (9, 13)).astype(dtype),  # no background
        np.zeros((5, 6), dtype),
        np.array([[0, high], [high, 3]], dtype),  # ids far above the pixel count: np.unique path
        np.array([[high, 2], [2, high]], dtype),  # ... without background
    ]
    for labels in cases:
        expected = relabel_sequential(labels)[0]
        relabelled, n = metrics.relabel(labels)
        np.testing.assert_array_equal(relabelled, expected)
        assert n == (int(expected.max()) if expected.size else 0)


def hungarian_true_positives(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """TP per τ always through linear_sum_assignment (the cost of StarDist's `matching`)."""
    from scipy.optimize import linear_sum_assignment

    n_matched = min(iou.shape)
    tp = []
    for tau in thresholds:
        rows, cols = linear_sum_assignment(-(iou >= tau).astype(np.float64) - iou / (2 * n_matched))
        tp.append(np.count_nonzero(iou[rows, cols] >= tau))
    return np.asarray(tp)


def test_true_positives_shortcut_equals_the_hungarian_matching():
    rng = np.random.default_rng(8)
    thresholds = np.concatenate([metrics.THRESHOLDS, [0.2, 0.35]])
    for _ in range(200):
        shape = tuple(rng.integers(1, 8, 2))
        iou = np.where(rng.random(shape) < 0.4, rng.random(shape), 0.0)
        iou[rng.random(shape) < 0.2] = 0.5  # exact boundary values, several per row/column
        np.testing.assert_array_equal(metrics.true_positives(iou, thresholds),
                                      hungarian_true_positives(iou, thresholds))
    # A GT object split into equal halves: IoU exactly 0.5 with both, and one pred covering two
    # GT halves; at τ = 0.5 a row and a column have two pairs each, so the Hungarian step decides.
    true = np.array([[1, 1, 2, 2]])
    pred = np.array([[3, 3, 3, 3]])
    assert metrics.match_labels(true, pred, np.array([0.5])).tp.tolist() == [1]
    true = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    pred = np.array([[3, 3, 4, 4, 5, 5, 5, 5]])
    assert metrics.match_labels(true, pred, np.array([0.5, 0.55])).tp.tolist() == [2, 1]


def test_overlap_table_of_raw_ids_equals_the_relabelled_one():
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(9)
    for n_objects, high in [(6, 30), (12, 200), (8, 60000)]:  # direct bincount, and the relabel path
        true = random_labels(rng, n_objects) % high
        pred = random_labels(rng, n_objects) % high
        pred[:2] = high - 1  # an id present in one image only
        expected = metrics.label_overlap(relabel_sequential(true)[0], relabel_sequential(pred)[0])
        np.testing.assert_array_equal(metrics.overlap_table(true, pred), expected)
    full = np.arange(1, 17, dtype=np.uint8).reshape(4, 4)  # no background in either image
    np.testing.assert_array_equal(metrics.overlap_table(full, full[::-1]),
                                  metrics.label_overlap(full, relabel_sequential(full[::-1])[0]))
