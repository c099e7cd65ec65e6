"""Cost per image of every method: inference seconds per megapixel and peak memory of its
prediction jobs, from the rules' Snakemake benchmark files (:func:`embedseg.layout.job_benchmark`).

The "train or zero-shot" decision needs the cost beside the score: a generalist with a ViT-L
encoder may cost far more per image than a trained U-Net. Seconds are the job's wall time
(start-up and model loading included) over the test images' megapixels, averaged over runs;
peak memory is the largest resident set (max_rss) of any run's prediction job, in GiB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout
from .budget import Unavailable, testset_megapixels

COLUMNS = ["infer_s_per_mp", "infer_peak_rss_gib"]
HEADERS = ["Inference (s/MP)", "Peak RSS (GiB)"]


def _benchmark(results: Path, dataset: str, method: str, seed: int) -> pd.DataFrame | None:
    for step in layout.PREDICT_BENCHMARKS:
        path = layout.job_benchmark(results, step, dataset, method, layout.seed_dir(seed))
        if path.is_file():
            return pd.read_csv(path, sep="\t")
    return None


def method_cost(results: Path, dataset: str, method: str, seeds: list[int]) -> dict[str, float]:
    """{infer_s_per_mp, infer_peak_rss_gib} of one method on one data set (NaN where no
    benchmark file or no test set tells)."""
    tables = [t for t in (_benchmark(results, dataset, method, s) for s in seeds) if t is not None]
    if not tables:
        return dict.fromkeys(COLUMNS, np.nan)
    try:
        megapixels = testset_megapixels(results, dataset)
    except Unavailable:
        megapixels = np.nan
    seconds = [pd.to_numeric(t.get("s"), errors="coerce").mean() for t in tables]
    rss = [pd.to_numeric(t.get("max_rss"), errors="coerce").max() for t in tables]  # MB
    return {
        "infer_s_per_mp": float(np.nanmean(seconds)) / megapixels if np.isfinite(seconds).any() else np.nan,
        "infer_peak_rss_gib": float(np.nanmax(rss)) * 1e6 / 2**30 if np.isfinite(rss).any() else np.nan,
    }


def cell_text(value: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
