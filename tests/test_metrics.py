"""Matching and every score against independent references: a brute-force matching (all
injective matchings) on tiny images, StarDist's `stardist.matching.matching` (run in
.venv-stardist) on random label images, and hand-made cases with hand-computed scores."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from embedseg.core import metrics


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
        labels[y : y + h, x : x + w] = rng.integers(1, 60000)  # arbitrary, non-consecutive ids
    return labels


def jitter(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted objects, some dropped, one spurious."""
    pred = np.roll(labels, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1)).astype(np.uint32)
    for label_id in np.unique(pred)[1:]:
        if rng.random() < 0.2:
            pred[pred == label_id] = 0
    y, x = rng.integers(0, 20, size=2)
    pred[y : y + 3, x : x + 3] = 70000
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
    assert counts.iou.shape == (3, 3) and counts.iou.max(axis=1)[1] == pytest.approx(20 / 24)
    assert counts.true_ids.tolist() == [1, 2, 3] and counts.pred_ids.tolist() == [4, 5, 9]
    # Worm 0 (24 px) is predicted exactly, worm 1 (24 px) by 20 px of it: its SEG partner covers
    # 20/24 > half; worm 2 has none.
    assert counts.seg == pytest.approx((1 + 20 / 24 + 0) / 3)
    np.testing.assert_allclose(counts.mean_matched_iou, [(1 + 20 / 24) / 2, 1])
    # Border exclusion: worms 0 and 1 touch the border, and so do predictions 4, 5 and 9.
    inner = metrics.match_one_hot(stack, pred, np.array([0.5]), exclude_border=True)
    assert inner.true_ids.tolist() == [3] and inner.pred_ids.tolist() == []
    assert (inner.tp[0], inner.fp[0], inner.fn[0]) == (0, 0, 1)


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


def hungarian_matching(iou: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and IoU sum of the TP pairs per τ, always through one linear_sum_assignment over the
    whole table (the cost of StarDist's `matching`)."""
    from scipy.optimize import linear_sum_assignment

    n_matched = min(iou.shape)
    tp, iou_sum = [], []
    for tau in thresholds:
        rows, cols = linear_sum_assignment(-(iou >= tau).astype(np.float64) - iou / (2 * n_matched))
        hit = iou[rows, cols] >= tau
        tp.append(np.count_nonzero(hit))
        iou_sum.append(iou[rows, cols][hit].sum())
    return np.asarray(tp), np.asarray(iou_sum)


def test_grouped_matching_equals_one_hungarian_over_the_whole_table():
    rng = np.random.default_rng(8)
    thresholds = np.concatenate([metrics.EVALUATION_THRESHOLDS, [0.35]])
    for _ in range(300):
        shape = tuple(rng.integers(1, 9, 2))
        iou = np.where(rng.random(shape) < 0.3, rng.random(shape), 0.0)
        iou[rng.random(shape) < 0.1] = 0.5  # exact boundary values, several per row/column
        match = metrics.assign(iou, thresholds)
        tp, iou_sum = hungarian_matching(iou, thresholds)
        np.testing.assert_array_equal((match >= 0).sum(axis=1), tp)
        matched = np.where(match >= 0, iou[np.arange(shape[0]), np.maximum(match, 0)], 0).sum(axis=1)
        np.testing.assert_allclose(matched, iou_sum)
        for row in match:  # one-to-one
            assert len(set(row[row >= 0])) == np.count_nonzero(row >= 0)
    # A GT object split into equal halves: IoU exactly 0.5 with both, and one pred covering two
    # GT halves; at τ = 0.5 a row and a column have two pairs each, so the Hungarian step decides.
    true = np.array([[1, 1, 2, 2]])
    pred = np.array([[3, 3, 3, 3]])
    assert metrics.match_labels(true, pred, np.array([0.5])).tp.tolist() == [1]
    true = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    pred = np.array([[3, 3, 4, 4, 5, 5, 5, 5]])
    assert metrics.match_labels(true, pred, np.array([0.5, 0.55])).tp.tolist() == [2, 1]
    with pytest.raises(ValueError, match="thresholds"):
        metrics.assign(np.ones((2, 2)), np.array([0.0, 0.5]))


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
    np.testing.assert_array_equal(
        metrics.overlap_table(full, full[::-1]),
        metrics.label_overlap(full, relabel_sequential(full[::-1])[0]),
    )
    # The pair index's type is the narrowest that holds (n_true + 1)·(n_pred + 1): uint8 here,
    # where the column count 256 itself does not fit an id of 255.
    empty = np.zeros((4, 4), dtype=np.uint8)
    last = empty.copy()
    last[0, 0] = 255
    np.testing.assert_array_equal(metrics.overlap_table(empty, last), [[15, 1]])
    np.testing.assert_array_equal(metrics.overlap_table(last.astype(np.int64), last), [[15, 0], [0, 1]])


REPO = Path(__file__).resolve().parents[1]
STARDIST_PYTHON = REPO / ".venv-stardist" / "bin" / "python"
# Runs in .venv-stardist: StarDist's own matching, every score it reports, per image and τ.
STARDIST_SCRIPT = """
import json, sys
import numpy as np
from stardist.matching import matching
data = np.load(sys.argv[1])
out = []
for i in range(len(data.files) // 2):
    stats = matching(data[f"true{i}"], data[f"pred{i}"], thresh=[float(t) for t in sys.argv[2].split(",")])
    out.append([{k: float(getattr(s, k)) for k in ("tp", "fp", "fn", "precision", "recall", "accuracy", "f1",
                                                  "mean_matched_score", "panoptic_quality")} for s in stats])
print(json.dumps(out))
"""


def merge_and_split(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A prediction with the errors that make low thresholds hard: two neighbours merged, one
    object cut in two, one shifted, one spurious."""
    pred = jitter(rng, labels).astype(np.int64)
    ids = np.unique(pred)[1:]
    if len(ids) >= 3:
        pred[pred == ids[1]] = ids[0]
        ys, xs = np.nonzero(pred == ids[2])
        cut = xs >= np.median(xs)
        pred[ys[cut], xs[cut]] = 90000
    return pred


def random_pairs(rng: np.random.Generator, n: int, shape=(40, 40)) -> list[tuple[np.ndarray, np.ndarray]]:
    """(GT, prediction) label images: merged/split, unrelated and jittered predictions in turn."""
    pairs = []
    for i in range(n):
        true = random_labels(rng, int(rng.integers(0, 14)), shape=shape)
        pred = (
            merge_and_split(rng, true),
            random_labels(rng, int(rng.integers(0, 10)), shape=shape),
            jitter(rng, true),
        )[i % 3]
        pairs.append((true, pred))
    return pairs


# Our score column -> StarDist's field of the same quantity.
STARDIST_NAMES = {
    "tp": "tp",
    "fp": "fp",
    "fn": "fn",
    "precision": "precision",
    "recall": "recall",
    "ap": "accuracy",
    "f1": "f1",
    "rq": "f1",
    "mean_matched_iou": "mean_matched_score",
    "sq": "mean_matched_score",
    "pq": "panoptic_quality",
}


def stardist_reference(
    pairs: list[tuple[np.ndarray, np.ndarray]], taus: np.ndarray, folder: Path
) -> list[dict[str, np.ndarray]]:
    """Per pair, StarDist's scores per τ (our column names), computed in .venv-stardist."""
    if not STARDIST_PYTHON.exists():
        pytest.skip(f"{STARDIST_PYTHON} missing: build it with `make venv-stardist`")
    arrays = {f"{kind}{i}": a for i, pair in enumerate(pairs) for kind, a in zip(("true", "pred"), pair)}
    np.savez(folder / "pairs.npz", **arrays)
    done = subprocess.run(
        [str(STARDIST_PYTHON), "-c", STARDIST_SCRIPT, str(folder / "pairs.npz"), ",".join(map(str, taus))],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        {ours: np.array([s[theirs] for s in stats]) for ours, theirs in STARDIST_NAMES.items()}
        for stats in json.loads(done.stdout)
    ]


def test_every_score_equals_stardist_matching_on_random_label_images(tmp_path):
    pairs = random_pairs(np.random.default_rng(11), 24)
    taus = metrics.EVALUATION_THRESHOLDS
    conflicts = 0
    for (true, pred), theirs in zip(pairs, stardist_reference(pairs, taus, tmp_path)):
        counts = metrics.match_labels(true, pred, taus)
        ours = counts.scores()
        for column, expected in theirs.items():
            np.testing.assert_allclose(ours[column], expected, rtol=1e-6, atol=1e-9, err_msg=column)
        # mSA = mean of StarDist's accuracy (AP_dsb) over τ = 0.50 … 0.95, the same on every row.
        msa = theirs["ap"][np.isin(taus, metrics.MSA_THRESHOLDS)].mean()
        np.testing.assert_allclose(ours["msa"], msa, rtol=1e-6, atol=1e-9, err_msg="msa")
        conflicts += int(((counts.iou >= 0.1).sum(axis=0) > 1).any())
    assert conflicts >= 3  # the Hungarian step was really exercised


def test_msa_and_f1_of_a_hand_made_case():
    # GT objects 1 and 2 (8 and 6 pixels); prediction 5 is 6 pixels of object 1 (IoU 6/8),
    # prediction 6 is object 2 exactly, prediction 7 is spurious: TP 2, FP 1, FN 0 while
    # τ ≤ 0.75, then TP 1, FP 2, FN 1.
    true = np.zeros((4, 8), dtype=np.int32)
    true[0:2, 0:4], true[3, 0:6] = 1, 2
    pred = np.zeros_like(true)
    pred[0:2, 0:3] = 5
    pred[3, 0:6], pred[1, 6:8] = 6, 7
    counts = metrics.match_labels(true, pred, metrics.EVALUATION_THRESHOLDS)
    ap = dict(zip(metrics.EVALUATION_THRESHOLDS.round(2), counts.ap))
    assert ap[0.75] == pytest.approx(2 / 3) and ap[0.8] == pytest.approx(1 / 4) and ap[0.95] == pytest.approx(1 / 4)
    # Over τ = 0.50 … 0.95: six thresholds at 2/3, four at 1/4.
    assert counts.msa == pytest.approx((6 * 2 / 3 + 4 * 1 / 4) / 10)
    assert counts.scores()["f1"][np.isclose(counts.thresholds, 0.5)] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert np.isnan(metrics.match_labels(true, pred, metrics.THRESHOLDS).msa)  # 0.95 not evaluated


def test_hand_made_scores_pq_and_seg():
    true = np.zeros((10, 10), dtype=np.uint16)
    true[0:4, 0:4] = 1  # 16 px, predicted exactly
    true[5:9, 5:9] = 2  # 16 px, predicted by its left half (8 px): IoU 0.5, covers only half → SEG 0
    true[0:2, 7:10] = 3  # 6 px, missed
    pred = np.zeros_like(true)
    pred[0:4, 0:4] = 10
    pred[5:9, 5:7] = 20
    pred[7:9, 0:2] = 30  # spurious
    counts = metrics.match_labels(true, pred, np.array([0.5, 0.6]))
    scores = counts.scores()
    np.testing.assert_array_equal(scores["tp"], [2, 1])
    np.testing.assert_array_equal(scores["fp"], [1, 2])
    np.testing.assert_array_equal(scores["fn"], [1, 2])
    np.testing.assert_allclose(scores["ap"], [2 / 4, 1 / 5])
    np.testing.assert_allclose(scores["precision"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(scores["recall"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(scores["sq"], [0.75, 1.0])
    np.testing.assert_allclose(scores["pq"], [0.75 * 2 / 3, 1 / 3])
    assert counts.seg == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3: |R ∩ S| must exceed half of R
    assert counts.match[0].tolist() == [0, 1, -1] and counts.pred_ids.tolist() == [10, 20, 30]
    pred[5:9, 5:8] = 20  # 12 of 16 px: now SEG counts IoU 12/16
    assert metrics.match_labels(true, pred).seg == pytest.approx((1 + 0.75) / 3)
    empty = np.zeros_like(true)
    none = metrics.match_labels(empty, empty).scores()
    assert all((none[k] == 0).all() for k in ("ap", "f1", "pq", "sq", "seg", "precision", "recall"))


def test_ignore_label_removes_pixels_from_both_images():
    true = np.zeros((8, 8), dtype=np.uint16)
    true[0:4, 0:4] = 1
    true[:, 4:8] = 255  # not annotated
    pred = np.zeros_like(true)
    pred[0:4, 0:6] = 7  # object 1 plus 4·2 px in the unannotated region
    pred[5:8, 6:8] = 8  # entirely in the unannotated region
    plain = metrics.match_labels(true, pred, np.array([0.7]))
    assert (plain.tp[0], plain.fp[0], plain.fn[0]) == (0, 2, 2)  # 255 is an object; IoU 16/24 < 0.7
    ignored = metrics.match_labels(true, pred, np.array([0.7]), ignore_label=255)
    assert ignored.true_ids.tolist() == [1] and ignored.pred_ids.tolist() == [7]  # prediction 8 vanished
    np.testing.assert_allclose(ignored.iou, [[1.0]])
    assert (ignored.tp[0], ignored.fp[0], ignored.fn[0]) == (1, 0, 0)


def test_exclude_border_drops_objects_touching_it_in_both_images():
    true = np.zeros((12, 12), dtype=np.uint16)
    true[0:3, 0:3] = 1  # touches the border
    true[5:8, 5:8] = 2
    true[9:12, 4:7] = 3  # touches the border; its prediction stops one pixel short of it
    pred = np.zeros_like(true)
    pred[5:8, 5:8] = 12
    pred[9:11, 4:7] = 13  # does not touch the border, but goes with the dropped GT object 3
    pred[0:2, 9:12] = 14  # spurious, touching the border
    pred[2:4, 8:10] = 15  # spurious, inside
    plain = metrics.match_labels(true, pred, np.array([0.5]))
    assert (plain.tp[0], plain.fp[0], plain.fn[0]) == (2, 2, 1)
    inner = metrics.match_labels(true, pred, np.array([0.5]), exclude_border=True)
    assert inner.true_ids.tolist() == [2] and inner.pred_ids.tolist() == [12, 15]
    assert (inner.tp[0], inner.fp[0], inner.fn[0]) == (1, 1, 0)


def test_border_ids_of_a_volume_are_on_its_six_faces():
    volume = np.zeros((6, 8, 8), dtype=np.uint16)
    volume[0, 3:5, 3:5] = 1  # only on the first z face: inside every (Y, X) edge
    volume[2:4, 3:5, 3:5] = 2  # inside
    volume[2:4, 3:5, 7] = 3  # on the last x face
    volume[5, 1:3, 1:3] = 4  # only on the last z face
    assert metrics.border_ids(volume).tolist() == [1, 3, 4]
    assert metrics.border_ids(volume[2]).tolist() == [3]


def brute_force_seg(true: np.ndarray, pred: np.ndarray) -> float:
    """CTC SEG object by object: the prediction covering more than half of the GT object, its IoU."""
    scores = []
    for t in np.unique(true[true > 0]):
        region = true == t
        ids, counts = np.unique(pred[region], return_counts=True)
        partner = [pred == i for i, c in zip(ids, counts) if i != 0 and c > 0.5 * region.sum()]
        scores.append(np.sum(region & partner[0]) / np.sum(region | partner[0]) if partner else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def test_seg_and_ignore_label_equal_independent_references():
    for true, pred in random_pairs(np.random.default_rng(5), 18):
        assert metrics.match_labels(true, pred).seg == pytest.approx(brute_force_seg(true, pred))
        # Ignoring GT label L = zeroing the pixels of L in both images (they then count for nothing).
        label = int(np.unique(true)[-1])
        ignored = metrics.match_labels(true, pred, metrics.EVALUATION_THRESHOLDS, ignore_label=label).scores()
        unscored = true == label
        zeroed = metrics.match_labels(
            np.where(unscored, 0, true), np.where(unscored, 0, pred), metrics.EVALUATION_THRESHOLDS
        ).scores()
        for column, values in zeroed.items():
            np.testing.assert_allclose(ignored[column], values, err_msg=column)


def without_border_objects(labels: np.ndarray) -> np.ndarray:
    """The label image with every object (id) that has a pixel on the image border set to 0
    (skimage's clear_border would keep the inner pieces of an object that other objects cut)."""
    edge = {int(v) for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]) for v in side} - {0}
    return np.where(np.isin(labels, list(edge)), 0, labels)


def test_exclude_border_equals_matching_images_without_border_objects():
    for true, pred in random_pairs(np.random.default_rng(6), 18):
        kept_true, kept_pred = without_border_objects(true), without_border_objects(pred)
        dropped = set(np.unique(true)) - set(np.unique(kept_true))
        for pred_id in np.unique(kept_pred[kept_pred > 0]):  # goes with a dropped GT object it overlaps most
            ids, counts = np.unique(true[(pred == pred_id) & (true > 0)], return_counts=True)
            if len(ids) and ids[np.argmax(counts)] in dropped:
                kept_pred[kept_pred == pred_id] = 0
        ours = metrics.match_labels(true, pred, metrics.EVALUATION_THRESHOLDS, exclude_border=True)
        reference = metrics.match_labels(kept_true, kept_pred, metrics.EVALUATION_THRESHOLDS)
        assert ours.true_ids.tolist() == reference.true_ids.tolist()
        assert ours.pred_ids.tolist() == reference.pred_ids.tolist()
        for column, values in reference.scores().items():
            np.testing.assert_allclose(ours.scores()[column], values, err_msg=column)
