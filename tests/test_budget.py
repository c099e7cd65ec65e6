"""The budget companion of Table 1 and the convergence flag, from a hand-made run folder whose
numbers are worked out by hand: steps, patches, seconds per megapixel, time to target, n/a."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedseg.baselines.configs import UNetTrainConfig
from embedseg.baselines.unet3class import UNet, save_model
from embedseg.io import write_json, write_labels
from embedseg.layout import VAL_OBJECT_IOU, VAL_PIXEL_MIOU, job_benchmark, model_dir, seed_dir
from embedseg.report.budget import CONVERGENCE_RISE, convergence, run_budget
from embedseg.report.paper import load_paper
from embedseg.report.results import TAUS, collect, read_log
from embedseg.report.tables import write_tables

PAPER = Path(__file__).resolve().parents[1] / "config" / "paper_results.yaml"
DS = "synthetic-nuclei"
EMBEDSEG, UNET, CELLPOSE = "embedseg-medoid-tta", "3class-unet", "cellpose-trained"
OWN = "otsu-watershed"  # a method of one's own without training
# Test masks of 100 × 200 and 50 × 40 pixels: 0.022 megapixels.
TEST_MPX = (100 * 200 + 50 * 40) / 1e6
# Seed 1 levels off (flat over its last 2 of 10 epochs); seed 2 still climbs 0.05 per epoch.
SATURATING = [0.1, 0.3, 0.5, 0.7, 0.75, 0.78, 0.8, 0.8, 0.8, 0.8]
RISING = [0.3 + 0.05 * e for e in range(10)]
# EmbedSeg's train.json: 65 crops in batches of 2 → 32 batches (drop_last), a step every 4.
EMBEDSEG_ARGS = {"train_size": 65, "batch_size": 2, "virtual_batch": 4, "epochs": 10}
STEPS_PER_EPOCH, PATCHES_PER_EPOCH = 8, 64


def write_log(path: Path, scores: list[float], metric: str = VAL_OBJECT_IOU, seconds: float = 2.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = np.arange(len(scores))
    frame = {"epoch": epochs, "lr": 5e-4, "train_loss": 1.0, "val_loss": 1.0, metric: scores, "seconds": seconds}
    pd.DataFrame(frame).to_csv(path, index=False)


def write_benchmark(path: Path, seconds: float, cpu_time: float | str) -> None:
    """A Snakemake benchmark TSV (its columns, one row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    path.write_text(f"{header}\n{seconds}\t0:00:00\t100\t200\t90\t95\t0\t1\t80\t{cpu_time}\n")


def write_scores(path: Path) -> None:
    rows = [dict(image="a.tif", tau=t, tp=1, fp=0, fn=0, ap=0.5) for t in TAUS]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "demo"
    for name, shape in (("a.tif", (100, 200)), ("b.tif", (50, 40))):
        write_labels(run / "data" / DS / "test" / "masks" / name, np.ones(shape, np.uint16))
    for seed, scores in ((1, SATURATING), (2, RISING)):
        folder = model_dir(run, DS, EMBEDSEG, seed)
        write_log(folder / "log.csv", scores)
        write_json(folder / "train.json", {"args": EMBEDSEG_ARGS})
        write_json(folder / "memory.json", {"peak_bytes": 1, "kind": "cpu_peak_rss", "device": "cpu"})
        write_scores(run / "scores" / DS / EMBEDSEG / f"seed{seed}.csv")
    write_benchmark(job_benchmark(run, "train", DS, "embedseg-medoid", seed_dir(1)), 120.5, 230.0)  # seed 2: none
    write_benchmark(job_benchmark(run, "predict", DS, EMBEDSEG, seed_dir(1)), 0.44, 0.5)
    write_benchmark(job_benchmark(run, "predict", DS, EMBEDSEG, seed_dir(2)), 0.66, 0.7)
    # The U-Net records its options in model.pt: 10 patches in batches of 4 → 3 steps per epoch.
    unet_dir = model_dir(run, DS, UNET, 1)
    unet_dir.mkdir(parents=True)
    config = UNetTrainConfig(train_size=10, batch_size=4, depth=1, filters=2)
    save_model(unet_dir / "model.pt", UNet(1, config.depth, config.filters), 0, 0.5, config)
    write_log(unet_dir / "log.csv", [0.5, 0.6, 0.6, 0.6], VAL_PIXEL_MIOU)
    write_json(unet_dir / "memory.json", {"peak_bytes": 1, "kind": "cuda_max_allocated", "device": "cuda:0"})
    write_benchmark(job_benchmark(run, "baseline_train", DS, UNET, seed_dir(1)), 50.0, "NA")
    write_scores(run / "scores" / DS / UNET / "seed1.csv")
    # Cellpose logs epochs but keeps no record of its batch size.
    write_log(model_dir(run, DS, CELLPOSE, 1) / "log.csv", [np.nan] * 3)
    write_scores(run / "scores" / DS / CELLPOSE / "seed1.csv")
    write_scores(run / "scores" / DS / OWN / "seed1.csv")
    write_benchmark(job_benchmark(run, "method_predict", DS, OWN, seed_dir(1)), 0.11, 0.1)
    return run


def make_tables(results: Path, out: Path) -> Path:
    write_tables(results, load_paper(PAPER), out, collect(results))
    return out


def test_budget_table_numbers(results: Path, tmp_path: Path) -> None:
    out = make_tables(results, tmp_path / "tables")
    table = pd.read_csv(out / "budget.csv").set_index(["dataset", "method"])
    ours = table.loc[(DS, EMBEDSEG)]
    assert ours["runs"] == 2 and ours["epochs"] == 10
    assert ours["steps"] == 10 * STEPS_PER_EPOCH and ours["patches"] == 10 * PATCHES_PER_EPOCH
    assert ours["inference_s_per_mpx"] == pytest.approx(np.mean([0.44, 0.66]) / TEST_MPX)  # 20 and 30 s/Mpx
    assert ours["train_wall_s"] == 120.5 and ours["train_device_s"] == 230.0  # CPU: cpu_time; seed 2 has none
    assert ours["converged"] == "no" and ours["not_converged_runs"] == 1
    unet = table.loc[(DS, UNET)]
    assert (unet["steps"], unet["patches"]) == (4 * 3, 4 * 12)
    assert unet["train_device_s"] == 50.0  # on the GPU: wall time × 1 GPU, whatever cpu_time says
    assert unet["converged"] == "yes" and unet["target_epochs"] == 2  # 0.6 ≥ 0.9 × 0.6 at epoch 2
    assert np.isnan(unet["inference_s_per_mpx"])  # no prediction benchmark: empty, never invented
    assert table.loc[(DS, OWN), "inference_s_per_mpx"] == pytest.approx(5.0)  # 0.11 s / 0.022 Mpx
    assert np.isnan(table.loc[(DS, OWN), "steps"])
    md = (out / "budget.md").read_text()
    embedseg_row = next(line for line in md.splitlines() if line.startswith("| EmbedSeg"))
    assert "| 80 |" in embedseg_row and "| 640 |" in embedseg_row and "| 25 |" in embedseg_row
    assert "120 (1/2 runs)" in embedseg_row and "no (1/2 runs)" in embedseg_row
    assert "≥ 230 (1/2 runs)" in embedseg_row  # CPU time of a 2-minute job: Snakemake's samples miss some
    assert f"more than {CONVERGENCE_RISE}" in md and "last 20 % of the validated epochs" in md


def test_missing_facts_are_na_with_their_reason(results: Path, tmp_path: Path) -> None:
    md = (make_tables(results, tmp_path / "tables") / "budget.md").read_text()
    cellpose_row = next(line for line in md.splitlines() if line.startswith("| Cellpose (trained)"))
    unet_row = next(line for line in md.splitlines() if line.startswith("| 3-Class U-Net"))
    notes = dict(line[1:].split("] ", 1) for line in md.splitlines() if line.startswith("["))
    letters = {reason.rstrip("."): letter for letter, reason in notes.items()}
    batch = letters["Cellpose's model folder does not record its training batch size"]
    assert f"n/a [{batch}]" in cellpose_row  # steps and patches
    assert f"n/a [{letters['no validation score in log.csv']}]" in cellpose_row  # converged
    no_benchmark = letters["no Snakemake benchmark of the job (run outside the workflow?)"]
    assert f"n/a [{no_benchmark}]" in cellpose_row and f"n/a [{no_benchmark}]" in unet_row
    own_row = next(line for line in md.splitlines() if line.startswith(f"| {OWN}"))
    assert f"n/a [{letters['no model folder: the method trains nothing here (or elsewhere)']}]" in own_row
    table = pd.read_csv(tmp_path / "tables" / "budget.csv").set_index("method")
    assert np.isnan(table.loc[CELLPOSE, "steps"]) and table.loc[CELLPOSE, "epochs"] == 3


def test_convergence_json_has_time_to_target_per_run(results: Path, tmp_path: Path) -> None:
    record = json.loads((make_tables(results, tmp_path / "tables") / "convergence.json").read_text())
    assert "90 %" in record["definitions"]["time_to_target"]
    runs = {(r["model"], r["seed"]): r for r in record["runs"]}
    saturating, rising = runs[("embedseg-medoid", 1)], runs[("embedseg-medoid", 2)]
    # 0.9 × 0.8 = 0.72: first reached by 0.75 at the 5th epoch; 5 × 8 steps, 5 × 2 s.
    assert saturating["convergence"]["target_epochs"] == 5 and saturating["target_steps"] == 40
    assert saturating["convergence"]["target_seconds"] == pytest.approx(10.0)
    assert saturating["convergence"]["converged"] is True
    # 0.9 × 0.75 = 0.675: first reached by 0.70 at the 9th epoch.
    assert rising["convergence"]["target_epochs"] == 9 and rising["convergence"]["converged"] is False
    assert rising["convergence"]["rise"] == pytest.approx(0.05)
    assert rising["steps"] == 80 and rising["patches"] == 640


def test_table1_marks_the_not_converged_method(results: Path, tmp_path: Path) -> None:
    out = make_tables(results, tmp_path / "tables")
    md = (out / "table1.md").read_text()
    assert "| EmbedSeg (not converged) |" in md and "| 3-Class U-Net |" in md
    assert "budget.md" in md.split("\n\n")[-1]  # named in the note
    table = pd.read_csv(out / "table1.csv").set_index("method")
    assert table.loc[EMBEDSEG, "converged"] == "no" and table.loc[UNET, "converged"] == "yes"
    assert "EmbedSeg (not converged)" in (out / "table1.tex").read_text()


@pytest.mark.parametrize(
    ("scores", "converged"),
    [
        (RISING, False),
        (SATURATING, True),
        ([0.5] * 20, True),
        # Noise around a plateau: the line through the last 4 epochs rises 0.009, though the
        # last epoch is 0.02 above the first of the window.
        ([0.5] * 16 + [0.49, 0.52, 0.49, 0.51], True),
        # A slow climb of 0.004 per epoch: 0.012 across the last 4 of 20 epochs.
        ([0.5 + 0.004 * e for e in range(20)], False),
    ],
)
def test_convergence_flag(tmp_path: Path, scores: list[float], converged: bool) -> None:
    write_log(tmp_path / "log.csv", scores)
    assert convergence(read_log(tmp_path / "log.csv")).converged is converged


def test_convergence_needs_two_validated_epochs(tmp_path: Path) -> None:
    write_log(tmp_path / "log.csv", [0.4])
    result = convergence(read_log(tmp_path / "log.csv"))
    assert result.converged is None and result.reason == "fewer than 2 validated epochs"
    assert result.target_epochs == 1


def test_run_budget_of_a_run_without_workflow_files(results: Path) -> None:
    """A model trained by hand (no benchmarks, no memory.json): its steps, and why the rest is missing."""
    (model_dir(results, DS, EMBEDSEG, 1) / "memory.json").unlink()
    budget = run_budget(results, DS, EMBEDSEG, 1)
    assert budget.steps == 80 and budget.convergence.converged is True
    assert budget.train_device_s is None and "memory.json" in budget.missing["train_device_s"]
    assert budget.inference_s_per_mpx == pytest.approx(20.0)


@pytest.mark.parametrize("method", ["cellpose-public", "cellpose-sam", "micro-sam-ais", "micro-sam-apg", "instanseg"])
def test_a_zero_shot_model_has_no_training_budget(results: Path, method: str) -> None:
    """Even with a model folder (the runner records its weights there), a published model's
    training facts are n/a, for that reason; the fine-tuned Cellpose-SAM keeps them."""
    model_dir(results, DS, method, 1).mkdir(parents=True)
    budget = run_budget(results, DS, method, 1)
    assert budget.trained is False and budget.steps is None
    assert "published model" in budget.missing["steps"]
    assert run_budget(results, DS, "cellpose-sam-trained", 1).trained is True
