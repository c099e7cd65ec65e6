"""`--use-conda` runs, emulated by a `conda` stub (tests/conda_stub.py) because this machine and CI
have no conda: each rule's environment is a venv with the third-party packages but without
`embedseg`, Snakemake strips PYTHONPATH from the jobs as it does under conda, and the workflow
runs from a working directory outside the checkout (`--directory`, `-s <repo>/workflow/Snakefile`),
as it does when deployed with snakedeploy or used as a module. Jobs must still find the package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from conda_stub import conda_calls, install_conda_stub

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"

# The smallest run through every EmbedSeg rule: one data set, centre, seed and epoch (EmbedSeg: medoid + TTA).
TINY = {
    "run_name": "conda",
    "device": "cpu",
    "seeds": [1],
    "centers": ["medoid"],
    "tta": [True],
    "datasets": {
        "synthetic-nuclei": {
            "n_images": 8,
            "image_size": 48,
            "crop_size": 32,
            "train": {
                "epochs": 1,
                "batch_size": 2,
                "virtual_batch": 1,
                "train_size": 4,
                "val_size": 2,
                "val_batch_size": 2,
            },
        }
    },
    # a method of one's own: its command imports `embedseg` too, in an env that lacks it
    "methods": {"otsu-watershed": {"predict": "python -m embedseg.examples.otsu_watershed {images} {out}"}},
    "report": {"not_comparable": "conda test run"},
    "temp_crops": True,  # every reader of crops/ is declared, so Snakemake may delete it
}


def test_conda_stub_env_lacks_the_package(tmp_path: Path) -> None:
    """The stub is faithful where it matters: its envs import numpy/torch but not embedseg."""
    env = install_conda_stub(tmp_path / "stub")
    spec = tmp_path / "env.yaml"
    spec.write_text(yaml.safe_dump({"channels": ["conda-forge"], "dependencies": ["python=3.11"]}))
    subprocess.run(
        ["conda", "env", "create", "--quiet", "--file", str(spec), "--prefix", str(tmp_path / "env")],
        env=env,
        check=True,
    )
    python = str(tmp_path / "env" / "bin" / "python")
    assert subprocess.run([python, "-c", "import numpy, torch"], cwd=tmp_path).returncode == 0
    # Without PYTHONPATH, as Snakemake runs its conda jobs (a checkout on PYTHONPATH is not the env).
    bare = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    missing = subprocess.run([python, "-c", "import embedseg"], cwd=tmp_path, env=bare, capture_output=True, text=True)
    assert "No module named 'embedseg'" in missing.stderr


def test_a_pin_file_beside_an_env_file_is_what_conda_installs(tmp_path: Path) -> None:
    """docs/cluster.md's lockfiles: Snakemake builds `<env>.<platform>.pin.txt` (as written by
    `snakedeploy pin-conda-envs`) instead of the YAML beside it, without any setting."""
    env = install_conda_stub(tmp_path / "stub")
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "tool.yaml").write_text("channels: [conda-forge, nodefaults]\ndependencies: [python=3.11]\n")
    (tmp_path / "envs" / "tool.linux-64.pin.txt").write_text("@EXPLICIT\n")
    (tmp_path / "Snakefile").write_text(
        'rule a:\n    output:\n        "a.txt"\n    conda:\n        "envs/tool.yaml"\n'
        '    shell:\n        "python -c pass > {output}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--use-conda", "--cores", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using pinnings from" in result.stderr
    # `conda create --file <env>.pin.txt` (a copy of the pin file), not `conda env create` of the YAML
    calls = conda_calls(tmp_path / "stub")
    assert [call.split()[0] for call in calls if "--prefix" in call] == ["create"]
    assert ".pin.txt" in next(call for call in calls if "--prefix" in call)


def test_conda_run_from_another_directory_finds_the_package(tmp_path: Path) -> None:
    env = install_conda_stub(tmp_path / "stub")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "all",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(workdir),
            "--use-conda",
            "--cores",
            "2",
            "--configfile",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env | {"PYTHONPATH": str(REPO)},
    )
    logs = "\n".join(
        f"--- {log}\n{log.read_text()[-1500:]}" for log in sorted(workdir.glob("results/conda/logs/**/*.log"))
    )
    assert result.returncode == 0, f"{result.stderr[-5000:]}\n{logs}"
    assert any(call.startswith("env create") for call in conda_calls(tmp_path / "stub"))
    assert "Activating conda environment" in result.stderr
    table1 = pd.read_csv(workdir / "results" / "conda" / "tables" / "table1.csv")
    assert list(table1["method"]) == ["otsu-watershed", "embedseg-medoid-tta"]
    assert (workdir / "results" / "conda" / "data" / "synthetic-nuclei").is_dir()
    assert not (workdir / "results" / "conda" / "crops" / "synthetic-nuclei" / "medoid").exists()
    assert not (REPO / "results" / "conda").exists()
