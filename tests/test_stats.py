"""The statistics of the tables (embedseg.report.stats): small-n rules, t-intervals and their
coverage, the sign-flip and Wilcoxon tests only where they can reach α, the per-image paired
comparison, checked by hand and by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t, wilcoxon

from embedseg.report import stats


def test_coverage_of_the_printed_interval_on_simulated_normal_runs() -> None:
    rng = np.random.default_rng(2024)
    for n in (5, 9):
        # 4000 simulated experiments of n runs each (a column each): the SE of the coverage is 0.34 %.
        runs = pd.DataFrame(rng.normal(0.7, 0.05, size=(n, 4000)))
        summary = stats.summarise(runs)
        covered = (summary.ci_low <= 0.7) & (0.7 <= summary.ci_high)
        assert covered.mean() == pytest.approx(0.95, abs=0.02), n


def test_nine_runs_give_a_t_interval_and_two_to_four_give_the_values() -> None:
    values = pd.DataFrame({0.5: [0.70, 0.72, 0.69, 0.75, 0.71, 0.68, 0.74, 0.70, 0.73]})
    summary = stats.summarise(values)
    half = t.ppf(0.975, 8) * values[0.5].std(ddof=1) / 3
    assert (summary.ci_low[0], summary.ci_high[0]) == pytest.approx(
        (values[0.5].mean() - half, values[0.5].mean() + half)
    )
    cell = summary.cells(p=np.array([0.01]))[0]
    assert (
        cell.plain()
        == f"0.713 ± {values[0.5].std(ddof=1):.3f} [{summary.ci_low[0]:.3f}, {summary.ci_high[0]:.3f}] p = 0.01"
    )
    few = stats.summarise(values.iloc[:3])
    assert np.isnan(few.ci_low[0]) and few.sd[0] == pytest.approx(values[0.5].iloc[:3].std(ddof=1))
    assert few.cells(p=np.array([np.nan]))[0].plain() == "0.703† (0.700, 0.720, 0.690)"
    assert stats.summarise(values.iloc[:1]).cells()[0].plain() == "0.700"
    five = stats.summarise(values.iloc[:5]).cells(p=np.array([np.nan]))[0].plain()
    assert five.startswith("0.714 ± ") and "[" in five and five.endswith("not testable at n = 5")


def test_sign_flip_p_only_where_it_can_reach_alpha() -> None:
    assert [stats.sign_flip_testable(n) for n in (1, 5, 6)] == [False, False, True]  # 2/2⁵ = 0.0625, 2/2⁶ = 0.031
    assert np.isnan(stats.sign_flip_p(pd.DataFrame({0.5: [-0.1] * 5}))).all()
    assert stats.sign_flip_p(pd.DataFrame({0.5: [-0.1] * 6}))[0] == pytest.approx(2 / 2**6)
    assert stats.wilcoxon_testable(6) and not stats.wilcoxon_testable(5)


def test_consistent_uses_the_t_quantile_and_needs_three_runs() -> None:
    runs = pd.DataFrame({0.5: [0.8, 0.8, 0.9]})
    summary = stats.summarise(runs)
    se = runs[0.5].std(ddof=1) * np.sqrt(1 / 3 + 1 / 9)
    limit = t.ppf(0.975, 2) * se + stats.PAPER_ROUNDING  # 4.30 SE: 0.1661
    for paper, expected in ((summary.mean[0] - limit + 1e-4, 1.0), (summary.mean[0] + limit + 1e-4, 0.0)):
        got_se, inside = stats.consistent(summary, np.array([paper]), 9)
        assert got_se[0] == pytest.approx(se) and inside[0] == expected
    _, inside = stats.consistent(stats.summarise(runs.iloc[:2]), np.array([0.8]), 9)
    assert np.isnan(inside).all()  # 2 runs: no verdict


def test_paired_images_of_the_same_model_by_hand() -> None:
    # 2 seeds × 8 images × 1 τ; A = B + 0.1 on every (seed, image): a sure, exactly known win.
    rng = np.random.default_rng(0)
    b = rng.uniform(0.3, 0.7, size=(2, 8, 1))
    paired = stats.paired_images(b + 0.1, b, same_model=True, taus=(0.5,))
    assert (paired.mean[0], paired.median[0], paired.prob[0]) == pytest.approx((0.1, 0.1, 1.0))
    assert (paired.mean_low[0], paired.mean_high[0]) == pytest.approx((0.1, 0.1))
    assert paired.p[0] == pytest.approx(2 / 2**8) and paired.verdicts()[0] == 1
    assert paired.seeds_text() == "2 seeds" and paired.n_images == 8


def test_paired_images_wilcoxon_and_probability_by_hand() -> None:
    # One seed, per-image differences known: Wilcoxon on them; P(A > B) counts ties as ½.
    d = np.array([0.3, -0.1, 0.2, 0.0, 0.25, 0.15, 0.05, 0.1])
    b = np.full((1, 8, 1), 0.5)
    paired = stats.paired_images(b + d[None, :, None], b, same_model=True, taus=(0.5,))
    assert paired.p[0] == pytest.approx(wilcoxon(d[d != 0]).pvalue)
    assert paired.prob[0] == pytest.approx((6 + 0.5) / 8)
    assert paired.mean[0] == pytest.approx(d.mean()) and paired.median[0] == pytest.approx(np.median(d))
    few = stats.paired_images(b[:, :5] + 0.1, b[:, :5], same_model=True, taus=(0.5,))
    assert np.isnan(few.p[0])  # 5 images: 2/2⁵ > α, not testable


def test_two_level_bootstrap_keeps_the_training_variance() -> None:
    # Separately trained: A's seeds scatter by ± 0.1, images by 0.01. The interval of the
    # separately trained comparison must be much wider than that of a same-model pairing of the
    # same numbers, where the seed offsets cancel out.
    rng = np.random.default_rng(1)
    images = rng.uniform(0.4, 0.6, size=(1, 30, 1))
    offsets = np.array([-0.1, 0.0, 0.1, 0.05, -0.05])[:, None, None]
    a = images + offsets + 0.02 + 0.01 * rng.standard_normal((5, 30, 1))
    b = images + offsets
    separate = stats.paired_images(a, b, same_model=False, taus=(0.5,))
    same = stats.paired_images(a, b, same_model=True, taus=(0.5,))
    assert separate.mean[0] == pytest.approx(same.mean[0])
    width = separate.mean_high[0] - separate.mean_low[0]
    assert width > 5 * (same.mean_high[0] - same.mean_low[0])
    assert separate.verdicts()[0] == 0 and same.verdicts()[0] == 1
    # P(A > B) of separately trained models over every seed pair (5 × 5) and image.
    assert separate.prob[0] == pytest.approx(((a[:, None] - b[None]) > 0).mean())
    assert separate.seeds_text() == "5 + 5 seeds"


def test_no_interval_from_too_few_images_or_runs() -> None:
    rng = np.random.default_rng(4)
    b = rng.uniform(0.3, 0.7, size=(5, 8, 1))
    few_images = stats.paired_images(b[:, :4] + 0.1, b[:, :4], same_model=True, taus=(0.5,))
    assert few_images.no_interval == "no interval: 4 images" and np.isnan(few_images.mean_low).all()
    assert np.isnan(few_images.verdicts()).all() and few_images.mean[0] == pytest.approx(0.1)
    # Two runs of separately trained models say nothing about the training variance; of the
    # same model (TTA on/off) they are paired, and the images carry the interval.
    separate = stats.paired_images(b[:2] + 0.1, b[:2], same_model=False, taus=(0.5,))
    assert separate.no_interval == "no interval: 2 + 2 seeds" and np.isnan(separate.median_high).all()
    assert stats.paired_images(b[:2] + 0.1, b[:2], same_model=True, taus=(0.5,)).verdicts()[0] == 1


def test_a_row_says_why_it_has_no_test() -> None:
    from embedseg.report.comparison import paired_rows

    b = np.full((1, 8, 1), 0.5)
    d = np.array([0.1, 0.2, 0.1, 0, 0, 0, 0, 0])  # 3 of 8 images differ: 2/2³ > α
    paired = stats.paired_images(b + d[None, :, None], b, same_model=True, taus=(0.5,))
    assert paired.n_nonzero[0] == 3 and np.isnan(paired.p[0])
    mean_row = paired_rows(paired, "A", "B")[0]
    assert mean_row[2].plain().endswith("not testable (3 of 8 images differ)") and "[" in mean_row[2].plain()
