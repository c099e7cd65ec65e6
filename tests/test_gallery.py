"""`embedseg gallery` on a hand-made run folder: one row per test image, outcome colours, and
the page in headless Chromium (images load, sorting reorders the rows, a screenshot kept)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import check_in_chromium, chromium

from embedseg.cli import main
from embedseg.data.synthetic import make_nuclei
from embedseg.io import write_labels, write_tiff
from embedseg.report.gallery import FP, MISSED, TP, merges_splits, overlay
from embedseg.report.results import TAUS

DS = "synthetic-nuclei"
METHODS = ("embedseg-medoid-tta", "3class-unet")
N_IMAGES = 3


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("results") / "demo"
    names = []
    for index in range(N_IMAGES):
        image, labels = make_nuclei(np.random.default_rng([3, index]), 64)
        name = f"nuclei_{index:03d}.tif"
        names.append(name)
        write_tiff(run / "data" / DS / "test" / "images" / name, image)
        write_labels(run / "data" / DS / "test" / "masks" / name, labels)
        write_labels(run / "predictions" / DS / METHODS[0] / "seed0" / name, np.where(labels == 1, 0, labels))
        write_labels(run / "predictions" / DS / METHODS[1] / "seed0" / name, np.where(labels == 2, 1, labels))
    for m, method in enumerate(METHODS):
        # AP rises with the image for one method and falls for the other: sorting must reorder
        rows = [
            dict(image=n, tau=t, tp=1, fp=0, fn=0, ap=0.5 + (0.1 * i if m == 0 else -0.1 * i), msa=0.6)
            for i, n in enumerate(names)
            for t in TAUS
        ]
        path = run / "scores" / DS / method / "seed0.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False)
    return run


def page_data(index: Path) -> dict:
    text = index.read_text()
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)[1])


def test_outcome_colours_and_merge_split_counts() -> None:
    gt = np.zeros((20, 30), dtype=np.uint16)
    gt[2:8, 2:8], gt[2:8, 12:18], gt[12:18, 2:8], gt[12:18, 12:18] = 1, 2, 3, 4  # 4: missed
    pred = np.zeros_like(gt)
    pred[2:8, 2:18] = 5  # merges GT 1 and 2
    pred[12:18, 2:8] = 7  # GT 3, matched
    pred[12:18, 22:28] = 9  # a false positive
    rgb = overlay(np.ones(gt.shape), gt, pred)
    assert tuple(rgb[12, 2]) == TP and tuple(rgb[12, 22]) == FP and tuple(rgb[12, 12]) == MISSED
    assert merges_splits(gt, pred) == (1, 0)
    assert merges_splits(pred, gt) == (0, 1)


def test_cli_writes_one_row_per_test_image(results: Path) -> None:
    assert main(["gallery", str(results), "--dataset", DS]) == 0
    out = results / "gallery" / DS
    data = page_data(out / "index.html")
    assert [r["image"] for r in data["rows"]] == [f"nuclei_{i:03d}.tif" for i in range(N_IMAGES)]
    assert sorted(data["methods"]) == sorted(METHODS)
    assert data["rows"][0]["scores"][METHODS[1]]["merges"] >= 1
    for row in data["rows"]:
        for picture in row["pictures"].values():
            assert picture["thumb"].startswith("data:image/png;base64,") and (out / picture["full"]).is_file()
    assert sum(p.stat().st_size for p in out.rglob("*")) < 1e6


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_renders_and_sorts_in_chromium(results: Path, tmp_path: Path) -> None:
    out = results / "gallery" / DS
    if not (out / "index.html").is_file():
        assert main(["gallery", str(results), "--dataset", DS]) == 0
    check_in_chromium(out, N_IMAGES, len(METHODS), tmp_path, scores_differ=True)
