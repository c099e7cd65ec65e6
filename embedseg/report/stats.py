"""Summary statistics of the tables: per-τ mean, sd and 95 % bootstrap interval over runs, the
sign-flip permutation test of paired differences, and the check of a mean against the paper's.

Per run (seed), a score at τ is the mean over test images of the per-image score; a summary is
the mean ± sample standard deviation (ddof = 1) of that over the runs, with a 95 % bootstrap
confidence interval of the mean (percentile method, 9999 resamples, seeded: the same numbers on
every run). Paired differences are tested with the two-sided sign-flip permutation p-value of
their mean (exact: all 2^n sign patterns, up to MAX_EXACT_PAIRS pairs). A mean is consistent
with the paper's mean of its runs when they differ by at most 1.96 standard errors of that
difference, sd · √(1/n_ours + 1/n_paper), our sd standing in for the paper's unpublished one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .render import Cell
from .results import TAUS


def tau_headers(taus: tuple[float, ...] = TAUS) -> list[str]:
    return [f"{t:.2f}" for t in taus]


# The paper prints three decimals: its number is "within" our interval up to that rounding.
PAPER_ROUNDING = 0.0005
BOOTSTRAP_RESAMPLES = 9999
STATISTICS_SEED = 0  # of the bootstrap resamples (and of random sign flips above MAX_EXACT_PAIRS)
MAX_EXACT_PAIRS = 16
Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal distribution


@dataclass
class Summary:
    """Per τ (`taus`) over n runs (or paired differences): mean, sample sd, 95 % bootstrap interval."""

    n: int
    mean: np.ndarray
    sd: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    taus: tuple[float, ...] = TAUS

    def cells(self, signed: bool = False, p: np.ndarray | None = None) -> list[Cell]:
        p = np.full(len(self.mean), np.nan) if p is None else p
        return [
            Cell(m, s, signed=signed, ci=(lo, hi), p=pv)
            for m, s, lo, hi, pv in zip(self.mean, self.sd, self.ci_low, self.ci_high, p)
        ]

    def record(self, name: str) -> dict[str, float]:
        """CSV fields {name}_{τ} (means), sd_{τ}, ci_low_{τ} and ci_high_{τ}."""
        parts = {name: self.mean, "sd": self.sd, "ci_low": self.ci_low, "ci_high": self.ci_high}
        return {f"{part}_{h}": v for part, values in parts.items() for h, v in zip(tau_headers(self.taus), values)}


def summarise(runs: pd.DataFrame) -> Summary:
    """Mean, sample sd (ddof = 1) and the seeded 95 % percentile bootstrap interval of the mean
    over runs; sd and interval are NaN for one run. runs: (n_runs, n_taus), columns = the τ."""
    from scipy.stats import bootstrap

    values = runs.to_numpy(dtype=float)
    taus = tuple(runs.columns)
    nan = np.full(values.shape[1], np.nan)
    if len(values) < 2:
        return Summary(len(values), values.mean(axis=0) if len(values) else nan, nan, nan, nan, taus)
    interval = bootstrap(
        (values,),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        axis=0,
        rng=np.random.default_rng(STATISTICS_SEED),
    ).confidence_interval
    return Summary(len(values), values.mean(axis=0), values.std(axis=0, ddof=1), interval.low, interval.high, taus)


def sign_flip_p(differences: pd.DataFrame) -> np.ndarray:
    """Two-sided p-value per τ of the mean paired difference under the null hypothesis of
    differences symmetric around 0: over all 2^n sign flips (exact) up to MAX_EXACT_PAIRS pairs,
    over 2^MAX_EXACT_PAIRS seeded random ones above; NaN for fewer than two pairs.
    differences: (n_pairs, len(TAUS))."""
    from scipy.stats import permutation_test

    values = differences.to_numpy(dtype=float)
    if len(values) < 2:
        return np.full(values.shape[1], np.nan)
    return permutation_test(
        (values,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        axis=0,
        n_resamples=2**MAX_EXACT_PAIRS,
        rng=np.random.default_rng(STATISTICS_SEED),
    ).pvalue


def consistent(ours: Summary, theirs: np.ndarray, paper_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per τ: the standard error of the difference between our mean (n runs) and the paper's
    mean of `paper_runs` runs, sd · √(1/n + 1/paper_runs) with our sd for both, and whether the
    paper's number lies within 1.96 of these (plus its rounding) of ours: 1.0/0.0, NaN where
    undefined (fewer than two runs here, or the paper leaves the cell empty)."""
    se = ours.sd * math.sqrt(1 / max(ours.n, 1) + 1 / paper_runs)
    inside = (np.abs(ours.mean - theirs) <= Z_95 * se + PAPER_ROUNDING).astype(float)
    inside[np.isnan(se) | np.isnan(theirs) | np.isnan(ours.mean)] = np.nan
    return se, inside
