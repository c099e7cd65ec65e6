"""The generalists in the tables: "not run: no weights" rows with the fix command, the published
mSA beside ours marked "reported (their split)", the contamination marker, the cost per image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_tables import PAPER, write_scores

from embedseg import layout
from embedseg.baselines.common import write_not_run
from embedseg.baselines.weights import missing_reason
from embedseg.io import DataError, write_labels
from embedseg.report import contamination
from embedseg.report.generalists import load_reported
from embedseg.report.paper import load_paper
from embedseg.report.results import collect
from embedseg.report.tables import write_tables

REPORTED = Path(__file__).resolve().parents[1] / "config" / "generalist_results.yaml"
DSB = "dsb-2018"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """DSB with EmbedSeg and micro-sam-ais measured (two seeds, benchmark files, two 100×100 test
    masks), Cellpose-SAM offline without weights."""
    import numpy as np

    run = tmp_path / "results" / "run"
    for method in ("embedseg-medoid-tta", "micro-sam-ais"):
        for seed, (s, rss) in enumerate([(2.0, 500.0), (4.0, 1000.0)]):
            write_scores(layout.scores_file(run, DSB, method, seed), (0.9, 0.7))
            bench = layout.job_benchmark(run, "baseline_predict", DSB, method, layout.seed_dir(seed))
            bench.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{"s": s, "max_rss": rss, "cpu_time": s}]).to_csv(bench, sep="\t", index=False)
    for name in ("a.tif", "b.tif"):
        write_labels(layout.test_masks(layout.data_dir(run, DSB)) / name, np.zeros((100, 100), np.uint16))
    write_not_run(layout.not_run_file(run, DSB, "cellpose-sam"), missing_reason("cellpose-sam", Path("/cache/cpsam")))
    return run


def test_tables_show_no_weights_reported_msa_contamination_and_cost(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    write_tables(results, load_paper(PAPER), out, collect(results), reported=load_reported(REPORTED))
    table1 = (out / "table1.md").read_text()
    assert "not run: no weights (fix: `embedseg fetch-weights cellpose-sam`)" in table1
    assert f"µSAM AIS (zero-shot) {contamination.MARKER}" in table1  # trained on the StarDist DSB subset
    assert f"EmbedSeg {contamination.MARKER}" not in table1
    frame = pd.read_csv(out / "table1.csv").set_index("method")
    assert frame.loc["micro-sam-ais", "training_data"] == contamination.CONTAINS
    assert "lm_v4.md" in frame.loc["micro-sam-ais", "training_data_source"]
    assert (
        frame.loc["cellpose-sam", "note"].startswith("no weights")
        and "fetch-weights" in frame.loc["cellpose-sam", "note"]
    )
    # 0.02 MP of test images; 2 s and 4 s -> 150 s/MP; the largest RSS 1000 MB
    assert frame.loc["micro-sam-ais", "infer_s_per_mp"] == pytest.approx(150)
    assert frame.loc["micro-sam-ais", "infer_peak_rss_gib"] == pytest.approx(1000e6 / 2**30)
    comparison = (out / "comparison_to_paper.md").read_text()
    section = comparison[comparison.index("## Generalists") :]
    assert "| Cellpose-SAM (zero-shot) | 0 | not run: no weights | 0.656 | ‡ trained on it |" in section
    assert "| µSAM AIS (zero-shot) | 2 | 0.575† (0.575, 0.575) | 0.654 | ‡ trained on it | 150.00 | 0.93 |" in section
    assert "| CellSAM | reported (their split) | – | 0.634 |" in section
    assert "Archit & Pape (2026)" in section and "arXiv 2603.17845" in section


def test_unknown_training_data_is_not_clean() -> None:
    assert contamination.status("instanseg", DSB)[0] == contamination.UNKNOWN
    assert contamination.status("cellpose-sam", "usiigaci-2017")[0] == contamination.UNKNOWN
    assert contamination.status("micro-sam-apg", "Platynereis-Nuclei-CBG")[0] == contamination.CONTAINS
    assert contamination.status("stardist", DSB) == ("", "")  # trained here from scratch
    assert contamination.text("instanseg", DSB) == "unknown"


def test_reported_file_errors_name_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "reported.yaml"
    bad.write_text("source: x\nmsa:\n  dsb-2018:\n    m: {label: M, value: 1.5}\n")
    with pytest.raises(DataError, match=r"msa\.dsb-2018\.m\.value"):
        load_reported(bad)
