"""`embedseg evaluate` end to end on small label folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from embedseg import cli, evaluate
from embedseg.core import metrics


def write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, array, photometric="minisblack")


@pytest.fixture
def folders(tmp_path):
    gt = np.zeros((16, 16), dtype=np.uint16)
    gt[1:6, 1:6] = 1
    gt[8:14, 8:14] = 2
    good = gt.copy()
    poor = np.zeros_like(gt)
    poor[1:6, 1:4] = 4  # IoU 15/25 = 0.6 with object 1; object 2 missed
    write(tmp_path / "gt", "a.tif", gt)
    write(tmp_path / "gt", "b.tif", gt)
    write(tmp_path / "pred", "a.tif", good)
    write(tmp_path / "pred", "b.tif", poor)
    return tmp_path


def test_cli_writes_scores_objects_and_prints_means(folders, capsys):
    out, objects = folders / "scores" / "seed0.csv", folders / "objects.csv"
    assert (
        cli.main(
            [
                "evaluate",
                str(folders / "gt"),
                str(folders / "pred"),
                "--out",
                str(out),
                "--objects",
                str(objects),
            ]
        )
        == 0
    )
    scores = pd.read_csv(out)
    assert list(scores.columns) == [
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
    assert len(scores) == 2 * 18 and sorted(scores.tau.unique()) == pytest.approx(np.arange(0.1, 0.96, 0.05))
    a = scores[scores.image == "a.tif"]
    assert (a.ap == 1).all() and (a.tp == 2).all() and (a.pq == 1).all() and (a.seg == 1).all()
    b = scores[scores.image == "b.tif"].set_index("tau")
    assert b.loc[0.5, "ap"] == pytest.approx(1 / 2) and b.loc[0.6, "tp"] == 1
    assert b.loc[0.65, "ap"] == 0 and b.loc[0.65, "fn"] == 2 and b.loc[0.65, "fp"] == 1
    # b at τ = 0.5: one pair of IoU 0.6, one GT object missed: F1 = 2/3, SQ = 0.6, PQ = 0.4, SEG = 0.6/2
    assert (b.loc[0.5, "precision"], b.loc[0.5, "recall"], b.loc[0.5, "f1"]) == pytest.approx((1, 0.5, 2 / 3))
    assert (b.loc[0.5, "sq"], b.loc[0.5, "pq"], b.loc[0.5, "seg"]) == pytest.approx((0.6, 0.4, 0.3))
    # b's mSA: AP_dsb 1/2 at τ = 0.50, 0.55, 0.60 (the IoU-0.6 pair), 0 at the seven τ up to 0.95.
    assert b.msa.to_numpy() == pytest.approx(np.full(18, 3 * 0.5 / 10)) and (a.msa == 1).all()
    table = pd.read_csv(objects)
    assert list(table.columns) == ["image", "tau", "gt_id", "pred_id", "iou", "status"]
    b_objects = table[table.image == "b.tif"].set_index("gt_id")
    assert b_objects.loc[1, "pred_id"] == 4 and b_objects.loc[1, "iou"] == pytest.approx(0.6)
    assert b_objects.loc[2, "status"] == "missed" and b_objects.loc[2, "pred_id"] == 0
    assert (table.tau == 0.5).all() and len(table) == 4
    printed = capsys.readouterr().out
    assert "tau 0.50: AP_dsb 0.7500  F1 0.8333" in printed and "tau 0.95: AP_dsb 0.5000" in printed
    assert "mSA (AP_dsb over tau 0.50-0.95) 0.5750  F1@0.50 0.8333  SEG 0.6500" in printed
    assert "not COCO AP" in printed


def test_objects_show_near_misses_and_false_positives(folders):
    _, objects = evaluate.score_folders(folders / "gt", folders / "pred", objects_tau=0.7)
    b = objects[objects.image == "b.tif"]
    # At τ = 0.7 the IoU-0.6 pair is no match: the GT object is missed with its near miss named,
    # and prediction 4 is a false positive pointing back at GT object 1.
    assert b[b.status == "missed"][["gt_id", "pred_id"]].values.tolist() == [[1, 4], [2, 0]]
    fp = b[b.status == "false positive"].iloc[0]
    assert (fp.gt_id, fp.pred_id, fp.iou) == (1, 4, pytest.approx(0.6))
    with pytest.raises(evaluate.DataError, match="objects-tau 0.33"):
        evaluate.score_folders(folders / "gt", folders / "pred", objects_tau=0.33)


def test_ignore_label_and_exclude_border_options(tmp_path):
    gt = np.zeros((16, 16), dtype=np.uint16)
    gt[0:4, 0:4] = 1  # touches the border
    gt[6:10, 6:10] = 2
    gt[12:16, 10:16] = 9  # unannotated region, also on the border
    pred = np.zeros_like(gt)
    pred[0:4, 0:4] = 5
    pred[6:10, 6:9] = 6  # IoU 0.75 with object 2
    pred[12:15, 12:15] = 7  # inside the unannotated region
    write(tmp_path / "gt", "x.tif", gt)
    write(tmp_path / "pred", "x.tif", pred)
    out = tmp_path / "s.csv"

    def at_050(*options: str) -> pd.Series:
        assert cli.main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "--out", str(out), *options]) == 0
        return pd.read_csv(out).set_index("tau").loc[0.5]

    plain = at_050()
    assert (plain.tp, plain.fp, plain.fn) == (2, 1, 1)
    ignored = at_050("--ignore-label", "9")
    assert (ignored.tp, ignored.fp, ignored.fn) == (2, 0, 0)
    inner = at_050("--ignore-label", "9", "--exclude-border")
    assert (inner.tp, inner.fp, inner.fn, inner.sq) == (1, 0, 0, pytest.approx(0.75))


def test_f1_and_pq_equal_stardist_on_random_label_images(tmp_path):
    from test_metrics import random_pairs, stardist_reference

    pairs = random_pairs(np.random.default_rng(3), 9)
    for i, (true, pred) in enumerate(pairs):
        write(tmp_path / "gt", f"im{i}.tif", true.astype(np.uint32))
        write(tmp_path / "pred", f"im{i}.tif", pred.astype(np.uint32))
    out = tmp_path / "s.csv"
    assert cli.main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "--out", str(out)]) == 0
    scores = pd.read_csv(out)
    reference = stardist_reference(pairs, metrics.EVALUATION_THRESHOLDS, tmp_path)
    for i, theirs in enumerate(reference):
        ours = scores[scores.image == f"im{i}.tif"].sort_values("tau")
        for column in ("f1", "pq", "ap", "precision", "recall", "mean_matched_iou"):
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-6, atol=1e-9, err_msg=column)


def test_missing_and_extra_files_are_named(folders):
    (folders / "pred" / "b.tif").rename(folders / "pred" / "c.tif")
    code = cli.main(["evaluate", str(folders / "gt"), str(folders / "pred"), "--out", str(folders / "s.csv")])
    assert code == 2
    with pytest.raises(evaluate.DataError, match=r"missing \['b.tif'\], extra \['c.tif'\]"):
        evaluate.paired_files(folders / "gt", folders / "pred")
    assert not (folders / "s.csv").exists()


def test_shape_mismatch_is_reported(folders):
    write(folders / "pred", "b.tif", np.zeros((16, 15), dtype=np.uint16))
    with pytest.raises(evaluate.DataError, match="b.tif"):
        evaluate.score_folders(folders / "gt", folders / "pred")


def test_one_hot_ground_truth_is_detected(tmp_path):
    stack = np.zeros((2, 12, 12), dtype=np.uint16)
    stack[0, 2:4, :] = 1
    stack[1, :, 5:7] = 1
    pred = np.zeros((12, 12), dtype=np.uint16)
    pred[2:4, :] = 1
    write(tmp_path / "gt", "w.tif", stack)
    write(tmp_path / "pred", "w.tif", pred)
    scores, _ = evaluate.score_folders(tmp_path / "gt", tmp_path / "pred")
    expected = metrics.match_one_hot(stack, pred, metrics.EVALUATION_THRESHOLDS)
    np.testing.assert_allclose(scores.ap, expected.ap)
    assert (scores.tp == 1).all() and (scores.fn == 1).all()
    with pytest.raises(evaluate.DataError, match="one-hot"):
        evaluate.score_folders(tmp_path / "gt", tmp_path / "pred", one_hot="no")


def test_real_masks_score_one_against_themselves_and_less_with_a_cell_missing(shared_data, tmp_path):
    from embedseg.io import read_labels

    labels = read_labels(shared_data / "usiigaci-2017" / "train" / "set2" / "instances_ids.png")
    n_cells = len(np.unique(labels)) - 1
    write(tmp_path / "gt", "set2.tif", labels)
    write(tmp_path / "same", "set2.tif", labels)
    damaged = labels.copy()
    damaged[damaged == labels.max()] = 0
    write(tmp_path / "damaged", "set2.tif", damaged)
    assert (evaluate.score_folders(tmp_path / "gt", tmp_path / "same")[0].ap == 1).all()
    scores, objects = evaluate.score_folders(tmp_path / "gt", tmp_path / "damaged")
    np.testing.assert_allclose(scores.ap, (n_cells - 1) / n_cells)
    assert (scores.fn == 1).all() and (scores.fp == 0).all()
    assert objects.set_index("gt_id").loc[int(labels.max()), "status"] == "missed"


def ignored_block_case(root):
    """A made 3-D data set: two GT nuclei outside the ignored block z 4:8, y 0:6, x 10:16, the
    prediction = GT + three false positives inside the block; returns (masks, predictions)."""
    gt = np.zeros((10, 12, 20), np.uint16)
    gt[1:3, 2:6, 2:6], gt[5:9, 7:11, 3:8] = 1, 2
    pred = gt.copy()
    pred[4:6, 0:2, 10:12], pred[6:8, 3:5, 12:14], pred[4:8, 4:6, 14:16] = 7, 8, 9
    masks, predictions = root / "data" / "test" / "masks", root / "pred"
    write(masks, "v.tif", gt)
    write(predictions, "v.tif", pred)
    (root / "data" / "dataset.json").write_text(
        '{"ndim": 3, "ignore_region": [[4, 0, 10], [8, 6, 16]]}', encoding="utf-8"
    )
    return masks, predictions


def test_ignore_region_of_the_data_set_removes_its_false_positives(tmp_path):
    masks, predictions = ignored_block_case(tmp_path)
    scores, _ = evaluate.score_folders(masks, predictions, objects_tau=0.5)
    at = scores.set_index("tau").loc[0.5]
    assert (at.tp, at.fp, at.fn, at.ap) == (2, 0, 0, 1.0)
    unmasked, _ = evaluate.score_folders(masks, predictions, ignore_region=None)
    assert unmasked.set_index("tau").loc[0.5].fp == 3
    box = evaluate.parse_ignore_region("4 0 10 8 6 16")
    assert evaluate.score_folders(masks, predictions, ignore_region=box)[0].equals(scores)


def test_ignore_region_as_a_mask_file_and_on_the_command_line(tmp_path):
    masks, predictions = ignored_block_case(tmp_path)
    region = np.zeros((10, 12, 20), np.uint8)
    region[4:8, 0:6, 10:16] = 1
    write(tmp_path, "region.tif", region)
    out = tmp_path / "scores.csv"
    for region, false_positives in ((str(tmp_path / "region.tif"), 0), ("none", 3)):
        args = ["evaluate", str(masks), str(predictions), "--out", str(out), "--force", "--ignore-region", region]
        assert cli.main(args) == 0
        assert pd.read_csv(out).set_index("tau").loc[0.5].fp == false_positives
    with pytest.raises(evaluate.DataError, match="--ignore-region"):
        evaluate.parse_ignore_region("1 2 3")
