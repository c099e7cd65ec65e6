"""Table 1, Table 2, their statistics and the paper comparison from hand-made score files with
hand-computed results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedseg.cli import main
from embedseg.core.metrics import EVALUATION_THRESHOLDS
from embedseg.evaluate import COLUMNS
from embedseg.io import DataError, write_json
from embedseg.report.paper import load_paper
from embedseg.report.render import Cell, rank_columns
from embedseg.report.results import TAUS, collect
from embedseg.report.tables import METRICS, write_tables

PAPER = Path(__file__).resolve().parents[1] / "config" / "paper_results.yaml"
DS = "bbbc010-2012"  # a paper data set, so reported rows and the comparison apply
# Per-image ap at τ = 0.50 for images a and b; at τ it is that minus (τ − 0.50).
RUNS = {
    "embedseg-medoid-tta": {0: (0.9, 0.7), 1: (0.8, 0.8), 2: (1.0, 0.8)},  # run APs 0.8, 0.8, 0.9
    "embedseg-centroid-notta": {0: (0.7, 0.7), 1: (0.6, 0.8), 2: (0.9, 0.7)},  # 0.7, 0.7, 0.8
    "embedseg-centroid-tta": {0: (0.8, 0.7), 1: (0.8, 0.8), 2: (0.9, 0.8)},  # 0.75, 0.8, 0.85
    "3class-unet": {0: (0.5, 0.3), 1: (0.6, 0.4)},  # 0.4, 0.5
}
SD_EMBEDSEG = np.std([0.8, 0.8, 0.9], ddof=1)  # 0.0577


def write_scores(path: Path, ap_at_050: tuple[float, ...]) -> None:
    """Scores as `evaluate` writes them (τ = 0.10 … 0.90); F1 = AP + 0.05, the other scores 0."""
    rows = [
        dict(
            image=f"img{i}.tif",
            tau=tau,
            tp=1,
            fp=0,
            fn=0,
            ap=ap - (tau - 0.5),
            precision=0,
            recall=0,
            f1=ap - (tau - 0.5) + 0.05,
            mean_matched_iou=0,
            sq=0,
            rq=0,
            pq=0,
            seg=0,
        )
        for i, ap in enumerate(ap_at_050)
        for tau in EVALUATION_THRESHOLDS
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "demo"
    for method, seeds in RUNS.items():
        for seed, aps in seeds.items():
            write_scores(run / "scores" / DS / method / f"seed{seed}.csv", aps)
    for seed, peak in enumerate([1 << 30, 3 << 30, 2 << 30]):
        write_json(
            run / "models" / DS / "embedseg-medoid" / f"seed{seed}" / "memory.json",
            {"peak_bytes": peak, "kind": "cuda_max_allocated", "device": "cuda:0"},
        )
    marker = run / "predictions" / DS / "stardist" / "NOT_RUN.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("stardist is not installed\n")
    write_scores(run / "scores" / "synthetic-cells" / "embedseg-medoid-tta" / "seed0.csv", (0.5, 0.5))
    return run


def make_tables(results: Path, out: Path, paper: Path = PAPER, **kwargs) -> Path:
    write_tables(results, load_paper(paper), out, collect(results), **kwargs)
    return out


def test_table1_means_sds_memory_and_rows(results: Path, tmp_path: Path) -> None:
    table = pd.read_csv(make_tables(results, tmp_path / "t") / "table1.csv").set_index(["dataset", "method"])
    ours = table.loc[(DS, "embedseg-medoid-tta")]
    assert ours["runs"] == 3 and ours["status"] == "measured"
    assert ours["ap_0.50"] == pytest.approx(0.8 + 1 / 30)
    assert ours["ap_0.70"] == pytest.approx(0.8 + 1 / 30 - 0.2)
    assert ours["sd_0.50"] == pytest.approx(SD_EMBEDSEG) and ours["sd_0.90"] == pytest.approx(SD_EMBEDSEG)
    # Runs 0.8, 0.8, 0.9: a bootstrap mean is 0.8 with probability (2/3)³ = 0.30 and 0.9 with
    # 1/27 = 0.037, both > 2.5 %, so the 95 % percentile interval is [0.8, 0.9].
    assert (ours["ci_low_0.50"], ours["ci_high_0.50"]) == pytest.approx((0.8, 0.9))
    assert ours["memory_gib"] == pytest.approx(3.0) and ours["memory_kind"] == "cuda_max_allocated"
    unet = table.loc[(DS, "3class-unet")]
    assert (unet["ap_0.50"], unet["sd_0.50"]) == pytest.approx((0.45, np.std([0.4, 0.5], ddof=1)))
    assert np.isnan(unet["memory_gib"])  # no memory.json: left empty, never invented
    assert table.loc[(DS, "stardist"), "status"] == "not run"
    assert table.loc[(DS, "stardist"), "note"] == "stardist is not installed"
    harmonic = table.loc[(DS, "harmonic-embeddings")]
    assert harmonic["status"] == "reported" and "Kulikov" in harmonic["note"] and harmonic["ap_0.75"] == 0.723
    # The ablation-only variant belongs to Table 2; the data set not in the paper gets no reported rows.
    assert (DS, "embedseg-centroid-tta") not in table.index
    assert set(table.loc["synthetic-cells"].index) == {"embedseg-medoid-tta"}
    assert np.isnan(table.loc[("synthetic-cells", "embedseg-medoid-tta"), "sd_0.50"])  # one run: no sd


def test_best_and_second_best_marked_among_measured_rows(results: Path, tmp_path: Path) -> None:
    out = make_tables(results, tmp_path / "t")
    md, tex = (out / "table1.md").read_text(), (out / "table1.tex").read_text()
    # EmbedSeg best, Neven et al. second at every τ; PatchPerPix's reported 0.930 is higher but not ranked.
    assert md.count("**0.833 ± 0.058 [0.800, 0.900]**") == 1 and md.count("<u>0.733 ± 0.058 [0.700, 0.800]</u>") == 1
    bbbc = md.split("### synthetic-cells")[0]
    assert bbbc.count("**") == 2 * len(TAUS) and bbbc.count("<u>") == len(TAUS)
    assert "| PatchPerPix | reported | 0.930 |" in md
    assert "not run: stardist is not installed" in md
    assert (
        r"\shortstack{$\mathbf{0.833}$\\{\scriptsize $\pm 0.058$}\\{\scriptsize $[0.800, 0.900]$}}" in tex
        and r"$\underline{0.733}$" in tex
    )
    assert r"PatchPerPix\textsuperscript{c}" in tex and r"\textsuperscript{c}reported: Hirsch" in tex
    assert (
        tex.split("synthetic-cells")[0].count(r"\mathbf{") == len(TAUS) and "\\toprule" in tex and "\\bottomrule" in tex
    )


def test_table2_paired_deltas_intervals_and_sign_flip_p(results: Path, tmp_path: Path) -> None:
    out = make_tables(results, tmp_path / "t")
    frame = pd.read_csv(out / "table2.csv")
    table = frame[~frame.quantity.str.endswith("_seed")].set_index(["dataset", "method"])
    neven = table.loc[(DS, "embedseg-centroid-notta")]
    assert neven["quantity"] == "delta_AP" and neven["runs"] == 3
    assert neven["value_0.50"] == pytest.approx(-0.1) and neven["sd_0.50"] == pytest.approx(0.0, abs=1e-12)
    # Three differences of −0.1: 2 of the 2³ sign patterns reach |mean| 0.1, so p = 1/4 exactly.
    assert neven["p_0.50"] == pytest.approx(0.25) and neven["ci_low_0.50"] == pytest.approx(-0.1)
    centroid = table.loc[(DS, "embedseg-centroid-tta")]  # paired differences −0.05, 0, −0.05
    assert centroid["value_0.80"] == pytest.approx(-1 / 30) and centroid["sd_0.80"] == pytest.approx(
        np.std([-0.05, 0, -0.05], ddof=1)
    )
    assert centroid["p_0.80"] == pytest.approx(0.5)  # the 0 flips to itself: 4 of 8 patterns reach |mean| 1/30
    assert (centroid["ci_low_0.80"], centroid["ci_high_0.80"]) == pytest.approx((-0.05, 0.0))
    seeds = frame[(frame.method == "embedseg-centroid-tta") & (frame.quantity == "delta_AP_seed")]
    assert seeds.set_index("seed")["value_0.50"].to_dict() == pytest.approx({0: -0.05, 1: 0.0, 2: -0.05})
    assert table.loc[(DS, "embedseg-medoid-tta"), "value_0.50"] == pytest.approx(0.8 + 1 / 30)
    assert "synthetic-cells" not in table.index.get_level_values("dataset")  # no ablation runs there
    assert "| both (= Neven et al.) | 3 | -0.100 ± 0.000 [-0.100, -0.100] p = 0.25 |" in (out / "table2.md").read_text()
    again = make_tables(results, tmp_path / "again")
    assert (again / "table2.csv").read_text() == (out / "table2.csv").read_text()  # seeded: deterministic


def test_comparison_verdicts_use_the_standard_error_of_the_difference(results: Path, tmp_path: Path) -> None:
    text = (make_tables(results, tmp_path / "t") / "comparison_to_paper.md").read_text()
    bbbc, synthetic = text.split("## synthetic-cells")
    # 3-Class U-Net: n = 2, sd 0.0707, SE = 0.0707·√(1/2 + 1/9) = 0.055: |0.45 − 0.521| = 0.071 ≤ 1.96 SE,
    # but at τ = 0.65 |0.30 − 0.44| = 0.14 > 0.108 (± 2 sd = 0.141 of single runs would have accepted it).
    assert (
        "Verdict: not consistent with the paper — within 1.96 standard errors of the difference in "
        "13 of 45 cells" in bbbc
    )
    assert "3-Class U-Net (6/9 τ), Neven et al. (8/9 τ), EmbedSeg (9/9 τ), ΔAP both (= Neven et al.) (9/9 τ)." in bbbc
    assert "| 3-Class U-Net | ours (n = 2) | 0.450 ± 0.071 [0.400, 0.500] |" in bbbc
    assert "|  | difference | -0.071 |" in bbbc and "|  | SE of difference | 0.055 |" in bbbc
    assert "|  | consistent (≤ 1.96 SE) | yes | yes | yes | NO |" in bbbc
    assert "Not in the paper" in synthetic and "Verdict" not in synthetic
    flagged = (make_tables(results, tmp_path / "f", not_comparable="demo data") / "comparison_to_paper.md").read_text()
    assert "Not comparable to the paper: demo data" in flagged and "Verdict" not in flagged


@pytest.mark.parametrize("offset, consistent", [(0.07, True), (0.08, False)])
def test_comparison_consistent_within_196_standard_errors(
    results: Path, tmp_path: Path, offset: float, consistent: bool
) -> None:
    # EmbedSeg: n = 3, sd 0.0577: 1.96 · 0.0577 · √(1/3 + 1/9) = 0.0754 (+ 0.0005 rounding).
    paper = tmp_path / "paper.yaml"
    ours = [round(float(0.8 + 1 / 30 - (t - 0.5) + offset), 3) for t in TAUS]
    paper.write_text(
        f"runs: 9\ntaus: {[float(t) for t in TAUS]}\ntable1:\n  {DS}:\n    embedseg-medoid-tta:\n"
        f"      ap: {ours}\n      gpu_memory: '<1 GB'\n"
        "table2: {}\n"
    )
    text = (make_tables(results, tmp_path / "t", paper=paper) / "comparison_to_paper.md").read_text()
    expected = (
        f"Verdict: consistent with the paper — within 1.96 standard errors of the difference in all {len(TAUS)} cells"
    )
    assert (expected in text) == consistent


def test_rows_the_paper_took_from_published_models_are_trained_here(tmp_path: Path) -> None:
    run = tmp_path / "results" / "dsb"
    for method in ("stardist", "cellpose-public", "embedseg-medoid-tta"):
        for seed in (0, 1):
            write_scores(run / "scores" / "dsb-2018" / method / f"seed{seed}.csv", (0.8, 0.7 + 0.1 * seed))
    text = (make_tables(run, tmp_path / "t") / "comparison_to_paper.md").read_text()
    assert "| StarDist | ours, trained here (n = 2) |" in text
    assert "| Cellpose (public) | ours (n = 2) |" in text and "| EmbedSeg | ours (n = 2) |" in text
    paper = load_paper(PAPER).table1["dsb-2018"]
    assert {m for m, row in paper.items() if row.trained_here} == {"stardist", "maskrcnn"}


def test_any_metric_can_be_tabulated(results: Path, tmp_path: Path) -> None:
    assert set(METRICS) == set(COLUMNS[COLUMNS.index("ap") :])  # every per-τ score of `evaluate`
    out = tmp_path / "f1"
    assert main(["tables", str(results), "--paper", str(PAPER), "--out", str(out), "--metric", "f1"]) == 0
    table = pd.read_csv(out / "table1.csv").set_index(["dataset", "method"])
    assert table.loc[(DS, "embedseg-medoid-tta"), "f1_0.50"] == pytest.approx(0.8 + 1 / 30 + 0.05)
    assert "status" in table.columns and "reported" not in set(table["status"])  # literature rows report AP only
    assert (out / "table1.md").read_text().startswith("# F1 of every method")
    assert "delta_F1" in set(pd.read_csv(out / "table2.csv")["quantity"])
    assert "the paper reports AP_dsb only" in (out / "comparison_to_paper.md").read_text()


def test_missing_run_and_nan_score_name_the_file(results: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"3class-unet/seed2\.csv"):
        collect(results, datasets=[DS], seeds=[0, 1, 2])
    bad = results / "scores" / DS / "3class-unet" / "seed1.csv"
    frame = pd.read_csv(bad)
    row = frame.index[(frame.image == "img0.tif") & (frame.tau.round(2) == 0.6)][0]
    frame.loc[row, "ap"] = np.nan
    frame.to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"seed1\.csv: NaN"):
        collect(results)
    frame.drop(index=row).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"seed1\.csv: image 'img0\.tif' has thresholds"):
        collect(results)
    with pytest.raises(DataError, match=r"scores/bbbc010-2012/maskrcnn: no seed\*\.csv scores"):
        collect(results, datasets=[DS], methods=["maskrcnn"])


def test_cli_writes_every_output_and_reports_errors(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tables"
    assert (
        main(
            [
                "tables",
                str(results),
                "--paper",
                str(PAPER),
                "--out",
                str(out),
                "--datasets",
                DS,
                "--methods",
                "embedseg-medoid-tta",
                "stardist",
                "--seeds",
                "0",
                "1",
                "2",
            ]
        )
        == 0
    )
    names = {p.name for p in out.iterdir()}
    tables = {f"table{i}.{ext}" for i in (1, 2) for ext in ("csv", "md", "tex")}
    assert names == tables | {"comparison_to_paper.md", "budget.csv", "budget.md", "convergence.json"}
    assert "No data set has EmbedSeg together with an ablation variant" in (out / "table2.md").read_text()
    assert main(["tables", str(tmp_path / "nowhere"), "--paper", str(PAPER), "--out", str(out)]) == 2
    assert "results folder not found" in capsys.readouterr().err


def test_paper_results_are_complete() -> None:
    paper = load_paper(PAPER)
    assert set(paper.table1) == {"bbbc010-2012", "usiigaci-2017", "dsb-2018"} and paper.runs == 9
    for rows in paper.table1.values():
        assert {"embedseg-medoid-tta", "embedseg-centroid-notta", "3class-unet", "cellpose-public"} <= set(rows)
        assert all(row.citation for row in rows.values() if row.reported)
        assert all(np.isfinite(row.ap).all() for row in rows.values() if not row.reported)
    for rows in paper.table2.values():
        assert set(rows) == {"embedseg-centroid-tta", "embedseg-medoid-notta", "embedseg-centroid-notta"}
    # BBBC010's "both" row is exactly Neven et al. − EmbedSeg of Table 1: a check on the transcription.
    bbbc = paper.table1["bbbc010-2012"]
    np.testing.assert_allclose(
        paper.table2["bbbc010-2012"]["embedseg-centroid-notta"],
        bbbc["embedseg-centroid-notta"].ap - bbbc["embedseg-medoid-tta"].ap,
        atol=1e-9,
    )


def test_ties_share_a_rank_and_signed_zero_has_no_sign() -> None:
    rows = [[Cell(v)] for v in (0.8004, 0.7996, 0.7, 0.6)]  # the first two print as 0.800
    rank_columns(rows, range(1))
    assert [row[0].rank for row in rows] == [1, 1, 2, 0]
    flat = [[Cell(0.0)], [Cell(0.0)]]
    rank_columns(flat, range(1))
    assert [row[0].rank for row in flat] == [0, 0]  # all equal: nothing is best
    assert [Cell(v, signed=True).number() for v in (-0.0002, 0.0, 0.012, -0.012)] == [
        "0.000",
        "0.000",
        "+0.012",
        "-0.012",
    ]


def test_paper_file_without_run_count_is_refused(tmp_path: Path) -> None:
    paper = tmp_path / "paper.yaml"
    paper.write_text(f"taus: {[float(t) for t in TAUS]}\ntable1: {{}}\ntable2: {{}}\n")
    with pytest.raises(DataError, match=r"paper\.yaml: `runs`.*positive integer"):
        load_paper(paper)
