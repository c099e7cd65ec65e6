"""The workflow deployed as the Snakemake catalog describes: `snakedeploy deploy-workflow URL DEST
--tag vX`, then Snakemake in DEST, and `--directory .test`.

The repository is served from a local bare clone (a file:// URL whose path names GitHub, so that
snakedeploy writes the `github(...)` module a user gets). Snakemake resolves github() through its
own clone of the repository in its source cache; the test seeds that clone from the bare one
instead of letting Snakemake fetch it from github.com: everything after that fetch is real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OWNER_REPO = "embedseg/embedseg-pipeline"
TAG = "v0.0.0-deploytest"
DEPLOYED_VERSION = "0.0.0+deployed"  # the tagged commit's version: only its package says it


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=deploy test", "-c", "user.email=deploy@localhost", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def tagged_bare_clone(tmp: Path) -> Path:
    """A bare repository holding this checkout's files (tracked and new, as git sees them) as one
    tagged commit whose package version is DEPLOYED_VERSION."""
    source = tmp / "source"
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\0")
    for name in filter(None, files):
        path = REPO / name
        if path.is_file() or path.is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name, follow_symlinks=False)
    init = source / "embedseg" / "__init__.py"
    text = init.read_text()
    version_line = next(line for line in text.splitlines() if line.startswith("__version__"))
    init.write_text(text.replace(version_line, f'__version__ = "{DEPLOYED_VERSION}"'))
    git("init", "-q", cwd=source)
    git("add", "-A", cwd=source)
    git("commit", "-q", "-m", "release", cwd=source)
    git("tag", TAG, cwd=source)
    bare = tmp / "remote" / "github.com" / OWNER_REPO
    bare.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(source), str(bare), cwd=tmp)
    return bare


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(cwd.glob("results/*/logs/**/*.log")))
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}\n{logs}")
    return result


def test_snakedeploy_round_trip_runs_the_deployed_package(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    bare = tagged_bare_clone(tmp_path)
    dest = tmp_path / "my-analysis"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    run([str(BIN / "snakedeploy"), "deploy-workflow", f"file://{bare}", str(dest), "--tag", TAG], tmp_path, env)
    snakefile = (dest / "workflow" / "Snakefile").read_text()
    assert f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")' in snakefile
    assert (dest / "config" / "config.yaml").is_file() and (dest / "config" / "README.md").is_file()
    # What Snakemake's first github() access would clone from github.com (sourcecache.HostedGitRepo).
    hosted = tmp_path / "cache" / "snakemake" / "snakemake" / "source-cache" / "snakemake-git-cache" / "github.com"
    git("clone", "-q", "--bare", str(bare), str(hosted / OWNER_REPO), cwd=tmp_path)

    snakemake = [sys.executable, "-m", "snakemake", "--workflow-profile", "none"]
    paper = run([*snakemake, "-n"], dest, env)  # the deployed config: the paper's
    assert "train" in paper.stdout and "tables" in paper.stdout
    assert not (dest / "embedseg").exists()  # nothing of the repository lands beside the user's files
    (commit_dir,) = (dest / ".snakemake" / "embedseg-package").iterdir()
    assert (
        (commit_dir / "DEPLOYED_COMMIT").read_text().strip()
        == commit_dir.name
        == git("rev-parse", TAG, cwd=bare).strip()
    )

    # A tiny real run: jobs that import the package (prepare, the example method, evaluate).
    target = "results/test/scores/synthetic-nuclei/otsu-watershed/seed1.csv"
    run([*snakemake, target, "--cores", "2", "--configfile", "config/test.yaml"], dest, env)
    assert (dest / target).is_file()
    predictions = dest / "results/test/predictions/synthetic-nuclei/otsu-watershed/seed1/predictions.json"
    assert json.loads(predictions.read_text())["embedseg_version"] == DEPLOYED_VERSION


def test_the_catalog_test_folder_holds_the_tiny_config(tmp_path: Path) -> None:
    """`snakemake --directory .test` (the catalog's CI convention) plans config/test.yaml's run
    and runs its jobs (a cheap chain of them: prepare, the example method, evaluate)."""
    test_dir = tmp_path / ".test"
    shutil.copytree(REPO / ".test", test_dir)  # the symlinked config becomes a file: nothing writes into the repo
    assert (test_dir / "config" / "config.yaml").read_text() == (REPO / "config" / "test.yaml").read_text()
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow/Snakefile"),
        "--directory",
        str(test_dir),
    ]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    planned = run([*snakemake, "--workflow-profile", "none", "-n", "all"], tmp_path, env)
    assert "results/test/tables" in planned.stdout
    target = "results/test/scores/synthetic-nuclei/otsu-watershed/seed1.csv"
    run([*snakemake, "--workflow-profile", "none", "--cores", "2", target], tmp_path, env)
    assert (test_dir / target).is_file()
