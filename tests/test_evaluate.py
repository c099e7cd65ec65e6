"""`embedseg evaluate` end to end on small label folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from embedseg import cli, evaluate, metrics


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


def test_cli_writes_scores_and_prints_means(folders, capsys):
    out = folders / "scores" / "seed0.csv"
    assert cli.main(["evaluate", str(folders / "gt"), str(folders / "pred"), "--out", str(out)]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["image", "tau", "tp", "fp", "fn", "ap"]
    assert len(scores) == 2 * 9
    a = scores[scores.image == "a.tif"]
    assert (a.ap == 1).all() and (a.tp == 2).all()
    b = scores[scores.image == "b.tif"].set_index("tau")
    assert b.loc[0.5, "ap"] == pytest.approx(1 / 2) and b.loc[0.6, "tp"] == 1
    assert b.loc[0.65, "ap"] == 0 and b.loc[0.65, "fn"] == 2 and b.loc[0.65, "fp"] == 1
    printed = capsys.readouterr().out
    assert "tau 0.50: 0.7500" in printed and "tau 0.90: 0.5000" in printed


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
    scores = evaluate.score_folders(tmp_path / "gt", tmp_path / "pred")
    expected = metrics.match_one_hot(stack, pred)
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
    assert (evaluate.score_folders(tmp_path / "gt", tmp_path / "same").ap == 1).all()
    scores = evaluate.score_folders(tmp_path / "gt", tmp_path / "damaged")
    np.testing.assert_allclose(scores.ap, (n_cells - 1) / n_cells)
    assert (scores.fn == 1).all() and (scores.fp == 0).all()
