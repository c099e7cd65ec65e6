"""Statistics of the tables, honest about small numbers of runs.

A run (seed) contributes one score per τ: the mean over the test images of the per-image
score. Over n runs a summary (:func:`summarise`) is

- n = 1: the value;
- n = 2 … 4: the mean and every run's value, marked † ("n < 5: no interval, no test"): an
  interval from so few runs would either be [min, max] (the percentile bootstrap: 50 % coverage
  at n = 2) or hugely wide (t with 1 degree of freedom: ± 12.7 standard errors);
- n ≥ 5: mean ± sample sd (ddof = 1) and the 95 % t-interval of the mean, mean ± t(0.975, n − 1) ·
  sd / √n (exact coverage for normal run-to-run scatter).

The interval covers the variance over training seeds on one fixed test set, not the sampling of
the test images. Paired run differences are tested with the exact two-sided sign-flip test of
their mean, whose smallest p is 2/2^n: a p-value is given only where that is below ALPHA (n ≥ 6),
otherwise the cell says "not testable". A mean is consistent with the paper's mean of its runs
when they differ by at most t(0.975, n − 1) standard errors of that difference, sd · √(1/n_ours +
1/n_paper) (our sd standing in for the paper's unpublished one); no verdict below 3 runs.

Per-image paired comparisons (:func:`paired_images`) of two methods on the same test images:
the difference per (seed, image, τ); its mean and median over images with a 95 % two-level
bootstrap interval (resample the runs, then the images: the training variance stays in; runs
of the same model, TTA on/off, are resampled as pairs), the Wilcoxon signed-rank p of the
per-image differences averaged over seeds (the image is the unit; given only where the number
of non-zero differences can reach ALPHA), and P(A > B) over (image, seed) pairs.
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
ALPHA = 0.05  # the tables' significance level: a test is shown only where it can reach it
CONFIDENCE = 0.95
MIN_INTERVAL_RUNS = 5  # below, no interval and no test: the values themselves are shown
MIN_VERDICT_RUNS = 3  # below, no verdict on consistency with the paper
MAX_EXACT_PAIRS = 16
STATISTICS_SEED = 0  # of random sign flips above MAX_EXACT_PAIRS and of the bootstrap resamples
SMALL_N_NOTE = "† n < 5: no interval, no test; in parentheses each run's value."
INTERVAL_NOTE = "[95 % t-interval of the mean, n − 1 degrees of freedom; from 5 runs on]"
VARIANCE_NOTE = "The interval covers the variance over training seeds on the fixed test set, not test-image sampling."


def t_quantile(n: int) -> float:
    """Two-sided CONFIDENCE quantile of Student's t with n − 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def sign_flip_testable(n: int) -> bool:
    """Whether the exact sign-flip test of n pairs can reach ALPHA: its smallest p is 2/2^n."""
    return n >= 1 and 2 / 2**n < ALPHA


@dataclass
class Summary:
    """Per τ (`taus`) over n runs (or paired differences): mean, sample sd (NaN for one run),
    the 95 % t-interval of the mean (NaN below MIN_INTERVAL_RUNS) and the values themselves
    (n, len(taus))."""

    n: int
    mean: np.ndarray
    sd: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    values: np.ndarray
    taus: tuple[float, ...] = TAUS

    def cells(self, signed: bool = False, p: np.ndarray | None = None) -> list[Cell]:
        """One cell per τ: n ≥ 5 mean ± sd [interval] (p, or "not testable at n" where `p` is
        asked for but NaN); n 2 … 4 the mean† and each run's value; n = 1 the value."""
        cells = []
        for i, mean in enumerate(self.mean):
            if self.n >= MIN_INTERVAL_RUNS:
                cell = Cell(mean, self.sd[i], signed=signed, ci=(self.ci_low[i], self.ci_high[i]))
                if p is not None:
                    cell.p = p[i]
                    cell.remark = "" if np.isfinite(p[i]) else f"not testable at n = {self.n}"
            elif self.n >= 2:
                cell = Cell(mean, signed=signed, runs=tuple(self.values[:, i]))
            else:
                cell = Cell(mean, signed=signed)
            cells.append(cell)
        return cells

    def record(self, name: str) -> dict[str, float]:
        """CSV fields {name}_{τ} (means), sd_{τ}, ci_low_{τ} and ci_high_{τ}."""
        parts = {name: self.mean, "sd": self.sd, "ci_low": self.ci_low, "ci_high": self.ci_high}
        return {f"{part}_{h}": v for part, values in parts.items() for h, v in zip(tau_headers(self.taus), values)}


def summarise(runs: pd.DataFrame) -> Summary:
    """Mean, sample sd (ddof = 1; NaN for one run) and, from MIN_INTERVAL_RUNS runs on, the
    95 % t-interval of the mean. runs: (n_runs, n_taus), columns = the τ."""
    values = runs.to_numpy(dtype=float)
    taus = tuple(runs.columns)
    n = len(values)
    nan = np.full(values.shape[1], np.nan)
    mean = values.mean(axis=0) if n else nan
    sd = values.std(axis=0, ddof=1) if n >= 2 else nan
    if n < MIN_INTERVAL_RUNS:
        return Summary(n, mean, sd, nan, nan, values, taus)
    half = t_quantile(n) * sd / np.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half, values, taus)


def sign_flip_p(differences: pd.DataFrame) -> np.ndarray:
    """Two-sided p-value per τ of the mean paired difference under the null hypothesis of
    differences symmetric around 0: over all 2^n sign flips (exact) up to MAX_EXACT_PAIRS pairs,
    over 2^MAX_EXACT_PAIRS seeded random ones above; NaN where the test cannot reach ALPHA
    (:func:`sign_flip_testable`). differences: (n_pairs, n_taus)."""
    from scipy.stats import permutation_test

    values = differences.to_numpy(dtype=float)
    if not sign_flip_testable(len(values)):
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
    paper's number lies within t(0.975, n − 1) of these (plus its rounding) of ours: 1.0/0.0,
    NaN where undefined (fewer than MIN_VERDICT_RUNS runs here, or the paper leaves the cell empty)."""
    se = ours.sd * math.sqrt(1 / max(ours.n, 1) + 1 / paper_runs)
    if ours.n < MIN_VERDICT_RUNS:
        return se, np.full(len(ours.mean), np.nan)
    inside = (np.abs(ours.mean - theirs) <= t_quantile(ours.n) * se + PAPER_ROUNDING).astype(float)
    inside[np.isnan(se) | np.isnan(theirs) | np.isnan(ours.mean)] = np.nan
    return se, inside


BOOTSTRAP_RESAMPLES = 9999
PAIRED_PARTS = ("median", "median_low", "median_high", "prob")  # CSV columns beside value/ci/p
BOOTSTRAP_CHUNK = 500  # resamples per vectorised block: bounds memory at chunk × images × τ


@dataclass
class Paired:
    """A − B on the same test images, per τ (each array (len(taus),)).

    mean / median: of the per-image differences D_i (each image's A − B, averaged over the
    seeds), with the 95 % percentile two-level bootstrap interval (`*_low`, `*_high`: resample
    the runs, then the images; NaN where :attr:`no_interval`); p: Wilcoxon signed-rank p of the D_i (NaN where the number of
    non-zero D_i cannot reach ALPHA); prob: P(A > B) over (image, seed) pairs, ties counting ½.
    same_model: the runs are paired by seed (the same trained model, e.g. TTA on/off) rather
    than resampled separately (separately trained models).
    """

    n_seeds: int  # of A; as many as B's where `same_model`
    n_seeds_b: int
    n_images: int
    same_model: bool
    mean: np.ndarray
    mean_low: np.ndarray
    mean_high: np.ndarray
    median: np.ndarray
    median_low: np.ndarray
    median_high: np.ndarray
    p: np.ndarray
    prob: np.ndarray
    n_nonzero: np.ndarray  # images with D_i ≠ 0, the sample size of the Wilcoxon test
    taus: tuple[float, ...] = TAUS

    def record(self) -> dict[str, float]:
        """CSV fields {part}_{τ} of :data:`PAIRED_PARTS` (the mean Δ as value_, its interval as
        ci_low_/ci_high_, the Wilcoxon p as p_)."""
        columns = {"value": self.mean, "ci_low": self.mean_low, "ci_high": self.mean_high, "p": self.p}
        columns |= {part: getattr(self, part) for part in PAIRED_PARTS}
        return {f"{part}_{h}": v for part, values in columns.items() for h, v in zip(tau_headers(self.taus), values)}

    def seeds_text(self) -> str:
        """ "3 seeds" for runs paired by seed, "3 + 2 seeds" for separately trained models."""
        return f"{self.n_seeds} seeds" if self.same_model else f"{self.n_seeds} + {self.n_seeds_b} seeds"

    @property
    def no_interval(self) -> str:
        """Why there is no interval (and no verdict), or "" if there is one: a bootstrap over
        fewer than MIN_INTERVAL_RUNS images, or over fewer runs of separately trained models (the
        training variance of 2 runs is no estimate), cannot cover 95 %."""
        if self.n_images < MIN_INTERVAL_RUNS:
            return f"no interval: {self.n_images} images"
        if not self.same_model and min(self.n_seeds, self.n_seeds_b) < MIN_INTERVAL_RUNS:
            return f"no interval: {self.seeds_text()}"
        return ""

    def verdicts(self) -> np.ndarray:
        """Per τ +1 (win: the mean's interval lies above 0), −1 (loss: below 0), 0 (tie: it
        contains 0) or NaN (no interval: :attr:`no_interval`)."""
        if self.no_interval:
            return np.full(len(self.mean), np.nan)
        return np.where(self.mean_low > 0, 1.0, np.where(self.mean_high < 0, -1.0, 0.0))


def wilcoxon_testable(n: int) -> bool:
    """Whether the exact two-sided Wilcoxon signed-rank test of n non-zero differences can
    reach ALPHA: its smallest p (all of one sign) is 2/2^n, as for the sign-flip test."""
    return sign_flip_testable(n)


def _wilcoxon_p(differences: np.ndarray) -> np.ndarray:
    """Per column of (n_images, n_taus) differences: the two-sided Wilcoxon signed-rank p
    (zeros dropped), NaN where not testable (:func:`wilcoxon_testable`)."""
    from scipy.stats import wilcoxon

    p = np.full(differences.shape[1], np.nan)
    for j, column in enumerate(differences.T):
        nonzero = column[column != 0]
        if wilcoxon_testable(len(nonzero)):
            p[j] = wilcoxon(nonzero).pvalue
    return p


def _seed_weights(rng: np.random.Generator, n_resamples: int, n_seeds: int) -> np.ndarray:
    """(n_resamples, n_seeds) weights of a resample of the seeds with replacement (rows sum to 1)."""
    picks = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    return (picks[:, :, None] == np.arange(n_seeds)).sum(axis=1) / n_seeds


def paired_images(a: np.ndarray, b: np.ndarray, same_model: bool, taus: tuple[float, ...] = TAUS) -> Paired:
    """Per-image paired comparison of method A with method B (:class:`Paired`).

    a: (n_seeds_a, n_images, n_taus), b: (n_seeds_b, n_images, n_taus), the same images in the
    same order; with `same_model` the same seeds in the same order too. Each bootstrap resample
    draws the seeds (once for both methods when `same_model`, else independently for each, so
    that the variance of training stays in) and then the images, and takes the mean and median
    over images of the resampled per-image difference.
    """
    n_images = a.shape[1]
    per_image = a.mean(axis=0) - b.mean(axis=0)  # D_i: (n_images, n_taus)
    if same_model:
        pairs = a - b  # the same (seed, image)
    else:
        pairs = (a[:, None] - b[None]).reshape(-1, *a.shape[1:])  # every (seed_a, seed_b, image)
    prob = (pairs > 0).mean(axis=(0, 1)) + 0.5 * (pairs == 0).mean(axis=(0, 1))
    rng = np.random.default_rng(STATISTICS_SEED)
    means, medians = [], []
    for start in range(0, BOOTSTRAP_RESAMPLES, BOOTSTRAP_CHUNK):
        r = min(BOOTSTRAP_CHUNK, BOOTSTRAP_RESAMPLES - start)
        wa = _seed_weights(rng, r, len(a))
        wb = wa if same_model else _seed_weights(rng, r, len(b))
        d = np.einsum("rs,sik->rik", wa, a) - np.einsum("rs,sik->rik", wb, b)  # (r, n_images, n_taus)
        images = rng.integers(0, n_images, size=(r, n_images))
        d = np.take_along_axis(d, images[:, :, None], axis=1)
        means.append(d.mean(axis=1))
        medians.append(np.median(d, axis=1))
    tail = 100 * (1 - CONFIDENCE) / 2
    mean_ci = np.percentile(np.concatenate(means), [tail, 100 - tail], axis=0)
    median_ci = np.percentile(np.concatenate(medians), [tail, 100 - tail], axis=0)
    paired = Paired(
        n_seeds=len(a),
        n_seeds_b=len(b),
        n_images=n_images,
        same_model=same_model,
        mean=per_image.mean(axis=0),
        mean_low=mean_ci[0],
        mean_high=mean_ci[1],
        median=np.median(per_image, axis=0),
        median_low=median_ci[0],
        median_high=median_ci[1],
        p=_wilcoxon_p(per_image),
        prob=prob,
        n_nonzero=(per_image != 0).sum(axis=0),
        taus=taus,
    )
    if paired.no_interval:
        for part in ("mean_low", "mean_high", "median_low", "median_high"):
            setattr(paired, part, np.full(len(taus), np.nan))
    return paired
