"""Real data: EmbedSeg and the 3-class U-Net trained with one budget on DSB 2018 greyscale 256²
nuclei (48 train / 8 val / 40 test images, split seed 1234; benchmarks/realdata_check.py says
how the images are chosen and runs the longer budgets).

Marked `slow` (5.4 minutes on an idle 2-core machine). The image is the unit: each method's
mean AP@0.5 over the test images has a standard error (sd / √n). The check fails when a mean
leaves the band of ± 3 standard errors around the value measured with this budget, or when the
paired per-image difference EmbedSeg − U-Net falls more than 3 of its standard errors below its
measured value. With SEs of about 0.03, a fall of 12 % fails; a broken loss (the seed term
dropped) gives AP 0. Values, SEs and image counts are printed (run with `-s`).
"""

from __future__ import annotations

import pytest

from benchmarks.realdata_check import Budget, report, run_check

# Measured 2026-12-07 with Budget() (fp32, AVX-512 CPU): (mean, standard error) of AP@0.5 over the
# 40 test images, and of the paired per-image difference EmbedSeg − U-Net. The bands use these
# SEs, not the run's own: a run that finds nothing has SE 0 and would get a band of zero width.
MEASURED = {"embedseg": (0.692, 0.027), "unet": (0.690, 0.034), "difference": (0.002, 0.034)}
BAND_SE = 3


@pytest.mark.slow
def test_embedseg_and_3class_unet_with_the_same_budget_on_dsb(shared_data, tmp_path):
    budget = Budget()
    counts, estimates, seconds = run_check(shared_data, tmp_path, budget)
    print("\n" + report(counts, estimates, seconds, budget))
    assert counts == {"train": budget.n_train, "val": budget.n_val, "test": budget.n_test}
    for method in ("embedseg", "unet"):
        mean, se = MEASURED[method]
        low, high = mean - BAND_SE * se, mean + BAND_SE * se
        assert low <= estimates[method].mean <= high, (
            f"{method}: AP@0.5 {estimates[method]} outside [{low:.3f}, {high:.3f}]"
        )
    mean, se = MEASURED["difference"]
    floor = mean - BAND_SE * se
    assert estimates["difference"].mean >= floor, f"EmbedSeg − U-Net {estimates['difference']} below {floor:.3f}"
