"""benchmarks/gpu_bench.sh without a GPU: help, the dry-run plan of the paper config, a clean
refusal without CUDA, and its measuring path on the CPU on a tiny config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_bench.sh"


def gpu_bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


def test_help_and_dry_run_plan_the_paper_config() -> None:
    done = gpu_bench("--help")
    assert done.returncode == 0 and "--dry-run" in done.stdout and "GPU-hours" in done.stdout
    done = gpu_bench("--dry-run")
    assert done.returncode == 0, done.stderr
    # The three paper data sets: crops 256², 512², 256²; 9 seeds x 2 centre types each.
    for line in (
        "bbbc010-2012: crop 256^2, batch 1",
        "usiigaci-2017: crop 512^2, batch 2",
        "dsb-2018: crop 256^2, batch 2",
    ):
        assert line in done.stdout
    assert done.stdout.count("18 trainings") == 3
    assert "would measure ours --amp --compile at crop 512^2, batch 2, val batch 6" in done.stdout


def test_refuses_cleanly_without_cuda_and_on_bad_arguments(tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run its benchmark")
    done = gpu_bench("--steps", "1")
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--dry-run" in done.stderr and "Traceback" not in done.stderr
    done = gpu_bench("--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml: no such config file" in done.stderr
    done = gpu_bench("--steps", "0")
    assert done.returncode == 2 and "--steps must be at least 1" in done.stderr
    missing_python = subprocess.run(
        ["bash", str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(tmp_path / "python")},
    )
    assert missing_python.returncode == 2 and "set PYTHON" in missing_python.stderr


def test_measures_and_projects_a_tiny_config_on_the_cpu(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "run_name: tiny\nseeds: [1, 2]\ncenters: [medoid]\ntta: [true]\ndatasets:\n"
        "  synthetic-nuclei:\n    train: {epochs: 2, batch_size: 2, virtual_batch: 1,"
        " train_size: 4, val_size: 4, val_batch_size: 2}\n"
    )
    done = gpu_bench("--config", str(config), "--device", "cpu", "--steps", "1", "--variants", "ours", "ours --amp")
    assert done.returncode == 0, done.stderr
    assert "| ours | 64^2 | 2 |" in done.stdout and "| ours --amp | 64^2 | 2 |" in done.stdout
    assert "GPU-h  (synthetic-nuclei" in done.stdout and "failed" not in done.stdout
