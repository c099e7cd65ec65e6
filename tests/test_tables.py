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
    """Scores as `evaluate` writes them (τ = 0.10 … 0.95); F1 = AP + 0.05, mSA the mean of AP
    over τ = 0.50 … 0.95 (AP at 0.50 − 0.225), the other scores 0."""
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
            msa=ap - 0.225,
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
    assert np.isnan(ours["ci_low_0.50"]) and np.isnan(ours["ci_high_0.50"])  # 3 runs: no interval
    # The scores of the current literature: τ = 0.95, mSA and F1@0.5, with their sd over runs.
    assert ours["ap_0.95"] == pytest.approx(0.8 + 1 / 30 - 0.45)
    assert (ours["msa"], ours["sd_msa"]) == pytest.approx((0.8 + 1 / 30 - 0.225, SD_EMBEDSEG))
    assert ours["f1_0.50"] == pytest.approx(0.8 + 1 / 30 + 0.05) and np.isnan(ours["ci_low_msa"])
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
    # 3 runs: the mean, marked †, and each run's value; no interval, no p-value in any row.
    assert md.count("**0.833† (0.800, 0.800, 0.900)**") == 1 and md.count("<u>0.733† (0.700, 0.700, 0.800)</u>") == 1
    assert "| 3-Class U-Net | 2 | 0.450† (0.400, 0.500) |" in md
    assert "† n < 5: no interval, no test" in md and "t-interval of the mean, n − 1 degrees of freedom" in md
    assert "training seeds on the fixed test set" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert not any("[" in line or "p =" in line or " ± " in line for line in rows)
    bbbc = md.split("### synthetic-cells")[0]
    ranked = len(TAUS) + 2  # the τ columns, mSA and F1@0.5
    assert bbbc.count("**") == 2 * ranked and bbbc.count("<u>") == ranked
    assert "| mSA | F1@0.5 |" in md and "| **0.608† (0.575, 0.575, 0.675)** |" in md
    assert "| PatchPerPix | reported | 0.930 |" in md
    assert "not run: stardist is not installed" in md
    assert (
        r"\shortstack{$\mathbf{0.833}^{\dagger}$\\{\scriptsize $(0.800, 0.800, 0.900)$}}" in tex
        and r"$\underline{0.733}^{\dagger}$" in tex
    )
    assert r"PatchPerPix\textsuperscript{c}" in tex and r"\textsuperscript{c}reported: Hirsch" in tex
    assert tex.split("synthetic-cells")[0].count(r"\mathbf{") == ranked and "\\toprule" in tex and "\\bottomrule" in tex


def test_table2_paired_deltas_and_per_image_rows(results: Path, tmp_path: Path) -> None:
    out = make_tables(results, tmp_path / "t")
    frame = pd.read_csv(out / "table2.csv")
    runs = frame[frame.quantity == "delta_AP"].set_index(["dataset", "method"])
    neven = runs.loc[(DS, "embedseg-centroid-notta")]
    assert neven["runs"] == 3 and neven["value_0.50"] == pytest.approx(-0.1)
    assert neven["sd_0.50"] == pytest.approx(0.0, abs=1e-12)
    # 3 pairs: the sign-flip test's smallest p is 2/2³ = 0.25 > α, so no p and no interval.
    assert np.isnan(neven["p_0.50"]) and np.isnan(neven["ci_low_0.50"])
    centroid = runs.loc[(DS, "embedseg-centroid-tta")]  # paired differences −0.05, 0, −0.05
    assert centroid["value_0.80"] == pytest.approx(-1 / 30)
    assert centroid["sd_0.80"] == pytest.approx(np.std([-0.05, 0, -0.05], ddof=1))
    seeds = frame[(frame.method == "embedseg-centroid-tta") & (frame.quantity == "delta_AP_seed")]
    assert seeds.set_index("seed")["value_0.50"].to_dict() == pytest.approx({0: -0.05, 1: 0.0, 2: -0.05})
    assert frame.set_index(["method", "quantity"]).loc[("embedseg-medoid-tta", "AP"), "value_0.50"] == pytest.approx(
        0.8 + 1 / 30
    )
    assert "synthetic-cells" not in set(frame.dataset)  # no ablation runs there
    # Per image (Neven − EmbedSeg): image a 0.733 − 0.9, image b 0.733 − 0.767 over the seeds:
    # mean and median −0.1; separately trained models: every one of the 3 × 3 seed pairs per image.
    image = frame[frame.quantity == "delta_AP_image"].set_index("method").loc["embedseg-centroid-notta"]
    assert (image["runs"], image["n_seeds_embedseg"], image["n_images"]) == (3, 3, 2)
    assert image["pairing"] == "two-level bootstrap"
    assert (image["value_0.50"], image["median_0.50"]) == pytest.approx((-0.1, -0.1))
    # P(Neven > EmbedSeg) over (image, seed pair), ties ½: image a, 0.7/0.6/0.9 against 0.9/0.8/1.0,
    # 1 win and 1 tie; image b, 0.7/0.8/0.7 against 0.7/0.8/0.8, 1 win and 4 ties: (2.5 + 3) / 18.
    assert image["prob_0.50"] == pytest.approx(4.5 / 18)
    # 2 images (and 3 runs of separately trained models): no interval, no test.
    assert np.isnan(image["ci_low_0.50"]) and np.isnan(image["median_low_0.50"]) and np.isnan(image["p_0.50"])
    md = (out / "table2.md").read_text()
    assert "| both (= Neven et al.) | 3 | -0.100† (-0.100, -0.100, -0.100) |" in md
    assert "|   per image: mean Δ | 3 + 3 seeds × 2 images | -0.100 no interval, no test: 2 images |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert not any("p =" in line for line in rows)
    tex = (out / "table2.tex").read_text()
    assert r"3 + 3 seeds $\times$ 2 images" in tex and all(ord(c) < 128 for c in tex)  # pdflatex-safe
    again = make_tables(results, tmp_path / "again")
    assert (again / "table2.csv").read_text() == (out / "table2.csv").read_text()  # seeded: deterministic


def nine_runs(run: Path, images: int = 6) -> None:
    """EmbedSeg and Neven et al. over 9 seeds on `images` test images; Neven et al. is worse
    on every image of every seed."""
    rng = np.random.default_rng(3)
    for seed in range(9):
        ours = 0.7 + 0.05 * rng.standard_normal() + 0.02 * np.arange(images)
        write_scores(run / "scores" / DS / "embedseg-medoid-tta" / f"seed{seed}.csv", tuple(ours))
        worse = ours - 0.05 - 0.01 * rng.random(images)
        write_scores(run / "scores" / DS / "embedseg-centroid-notta" / f"seed{seed}.csv", tuple(worse))


def test_nine_runs_give_t_intervals_and_p_values(tmp_path: Path) -> None:
    from scipy.stats import t

    run = tmp_path / "results" / "nine"
    nine_runs(run)
    out = make_tables(run, tmp_path / "t")
    table1 = pd.read_csv(out / "table1.csv").set_index("method")
    ours = table1.loc["embedseg-medoid-tta"]
    half = t.ppf(0.975, 8) * ours["sd_0.50"] / 3
    assert (ours["ci_low_0.50"], ours["ci_high_0.50"]) == pytest.approx(
        (ours["ap_0.50"] - half, ours["ap_0.50"] + half)
    )
    md1 = (out / "table1.md").read_text()
    assert f"[{ours['ap_0.50'] - half:.3f}, {ours['ap_0.50'] + half:.3f}]" in md1 and "†" not in md1.split("\n\n")[2]
    frame = pd.read_csv(out / "table2.csv").set_index("quantity")
    # Every one of the 9 differences is negative: exact sign-flip p = 2/2⁹.
    assert frame.loc["delta_AP", "p_0.50"] == pytest.approx(2 / 2**9)
    # 6 images, each worse under Neven et al.: exact Wilcoxon p = 2/2⁶ < 0.05, so it is printed.
    assert frame.loc["delta_AP_image", "p_0.50"] == pytest.approx(2 / 2**6)
    md = (out / "table2.md").read_text()
    rows = "\n".join(line for line in md.splitlines() if line.startswith("| "))
    assert "p = 0.0039" in rows and "p = 0.031" in rows and "not testable" not in rows and "no interval" not in rows
    # 9 + 9 runs × 6 images: the two-level bootstrap interval of EmbedSeg − Neven lies above 0 at every τ.
    assert "| both (= Neven et al.) | 9–0–0 | 9–0–0 |" in (out / "comparison_to_paper.md").read_text()


def test_five_runs_have_an_interval_but_no_test(tmp_path: Path) -> None:
    run = tmp_path / "results" / "five"
    nine_runs(run)
    for method in ("embedseg-medoid-tta", "embedseg-centroid-notta"):
        for seed in range(5, 9):
            (run / "scores" / DS / method / f"seed{seed}.csv").unlink()
    md = (make_tables(run, tmp_path / "t") / "table2.md").read_text()
    # 2/2⁵ = 0.0625 ≥ α: the interval is shown, the p-value is not.
    assert "not testable at n = 5" in md and "p = 0.062" not in md
    row = next(line for line in md.splitlines() if line.startswith("| both"))
    assert "[" in row and "†" not in row


def test_comparison_verdicts_use_the_t_quantile(results: Path, tmp_path: Path) -> None:
    text = (make_tables(results, tmp_path / "t") / "comparison_to_paper.md").read_text()
    bbbc, synthetic = text.split("## synthetic-cells")
    # EmbedSeg: n = 3, sd 0.0577, SE = 0.0577·√(1/3 + 1/9) = 0.0385, t(0.975, 2) = 4.30: at τ = 0.50
    # |0.833 − 0.962| = 0.129 ≤ 0.166 (1.96 SE = 0.075 would have said no), at 0.55 0.169 > 0.166.
    # The 3-Class U-Net has 2 runs: no verdict, so 4 rows × 9 τ are compared.
    assert (
        "Verdict: not consistent with the paper — within t(0.975, n − 1) standard errors of the difference "
        "in 14 of 36 cells" in bbbc
    )
    assert "Neven et al. (7/9 τ), EmbedSeg (6/9 τ), ΔAP both (= Neven et al.) (9/9 τ)." in bbbc
    assert "3-Class U-Net (" not in bbbc.split("Verdict")[1].split("\n")[0]
    assert "| 3-Class U-Net | ours (n = 2) | 0.450† (0.400, 0.500) |" in bbbc
    assert "|  | consistent (≤ t SE) | yes | NO | NO |" in bbbc
    assert "|  | consistent (≤ t SE) |  |  |" in bbbc  # the U-Net's row: no verdict from 2 runs
    assert "Not in the paper" in synthetic and "Verdict" not in synthetic.split("## EmbedSeg against")[0]
    # The win/tie/loss summary: 2 test images give no interval, so no verdict.
    assert "| 3-Class U-Net | 0–0–0, no verdict at 9 τ | 0–0–0, no verdict at 9 τ |" in text
    flagged = (make_tables(results, tmp_path / "f", not_comparable="demo data") / "comparison_to_paper.md").read_text()
    assert "Not comparable to the paper: demo data" in flagged and "Verdict" not in flagged


@pytest.mark.parametrize("offset, consistent", [(0.16, True), (0.17, False)])
def test_comparison_consistent_within_t_standard_errors(
    results: Path, tmp_path: Path, offset: float, consistent: bool
) -> None:
    # EmbedSeg: n = 3, sd 0.0577: t(0.975, 2) · 0.0577 · √(1/3 + 1/9) = 0.1656 (+ 0.0005 rounding).
    paper = tmp_path / "paper.yaml"
    ours = [round(float(0.8 + 1 / 30 - (t - 0.5) + offset), 3) for t in TAUS]
    paper.write_text(
        f"runs: 9\ntaus: {[float(t) for t in TAUS]}\ntable1:\n  {DS}:\n    embedseg-medoid-tta:\n"
        f"      ap: {ours}\n      gpu_memory: '<1 GB'\n"
        "table2: {}\n"
    )
    text = (make_tables(results, tmp_path / "t", paper=paper) / "comparison_to_paper.md").read_text()
    expected = (
        "Verdict: consistent with the paper — within t(0.975, n − 1) standard errors of the difference in all "
        f"{len(TAUS)} cells"
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
    assert set(METRICS) == set(COLUMNS[COLUMNS.index("ap") :])  # every score of `evaluate`
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
