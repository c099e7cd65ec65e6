"""`embedseg compare A B`: the per-image paired comparison of two methods from score files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_tables import DS, write_scores

from embedseg.cli import main

# Per image AP at τ = 0.50 of two seeds; TTA adds 0.02 on every image but the last (+0).
NOTTA = {0: (0.60, 0.70, 0.50, 0.80, 0.65, 0.55, 0.75), 1: (0.62, 0.68, 0.52, 0.78, 0.66, 0.57, 0.73)}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "demo"
    for seed, aps in NOTTA.items():
        write_scores(run / "scores" / DS / "embedseg-medoid-notta" / f"seed{seed}.csv", aps)
        tta = tuple(a + 0.02 for a in aps[:-1]) + aps[-1:]
        write_scores(run / "scores" / DS / "embedseg-medoid-tta" / f"seed{seed}.csv", tta)
        write_scores(run / "scores" / "synthetic-cells" / "embedseg-medoid-tta" / f"seed{seed}.csv", (0.5,))
    return run


def test_compare_tta_against_no_tta_pairs_by_seed(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "compare.csv"
    args = ["compare", "embedseg-medoid-tta", "embedseg-medoid-notta", "--results", str(results), "--out", str(out)]
    assert main(args) == 0
    frame = pd.read_csv(out)
    assert set(frame.dataset) == {DS}  # synthetic-cells has one method only
    row = frame[frame.tau == 0.5].iloc[0]
    assert row["pairing"] == "by seed (same model)" and (row["n_seeds_a"], row["n_images"]) == (2, 7)
    # Per image Δ: 0.02 on 6 images, 0 on the last: mean 6·0.02/7, median 0.02.
    assert (row["mean"], row["median"]) == pytest.approx((6 * 0.02 / 7, 0.02), rel=1e-5)  # CSV: 6 digits
    # P(A > B) over the 14 (seed, image) pairs: 12 wins, 2 ties; Wilcoxon of 6 non-zero Δ: 2/2⁶.
    assert row["prob"] == pytest.approx(13 / 14, rel=1e-5) and row["p"] == pytest.approx(2 / 2**6, rel=1e-5)
    assert row["verdict"] == "win" and row["mean_low"] > 0
    assert len(frame) == 9 and np.isfinite(frame["mean_high"]).all()
    printed = capsys.readouterr().out
    assert "|   per image: mean Δ | 2 seeds × 7 images | +0.017 [" in printed and "p = 0.031" in printed
    assert "|   verdict |  | win |" in printed


def test_compare_refuses_a_missing_method_and_its_inputs_as_out(results: Path, capsys) -> None:
    assert main(["compare", "embedseg-medoid-tta", "3class-unet", "--results", str(results)]) == 2
    assert "no data set has scores of both" in capsys.readouterr().err
    scores = results / "scores" / DS / "embedseg-medoid-tta" / "seed0.csv"
    before = scores.read_text()
    argv = ["compare", "embedseg-medoid-tta", "embedseg-medoid-notta", "--results", str(results)]
    assert main([*argv, "--out", str(scores), "--force"]) == 2
    assert "RESULTS_DIR/scores" in capsys.readouterr().err and scores.read_text() == before
