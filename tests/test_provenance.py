"""`embedseg crate`: the run's RO-Crate reads back with rocrate, carries the Workflow Run Crate
profile's entities and checksums, and a re-run with another seed says so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from embedseg.cli import main
from embedseg.layout import crate_file
from embedseg.report.provenance import PROFILES

rocrate = pytest.importorskip("rocrate.rocrate")


def fake_run(root: Path, seed: int) -> tuple[Path, Path]:
    results = root / "results" / "test"
    for name, text in {
        "data/ds/test/images/a.tif": "image",
        f"scores/ds/m/seed{seed}.csv": f"image,tau,ap\na.tif,0.5,0.{seed}\n",
        "tables/table1.csv": "x\n",
    }.items():
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_text(text)
    config = root / "config.yaml"
    config.write_text(f"seeds: [{seed}]\n")
    assert main(["crate", str(results), "--config", str(config), "--seeds", str(seed)]) == 0
    return results, config


def entities(results: Path) -> dict[str, dict]:
    graph = json.loads(crate_file(results).read_text())["@graph"]
    return {e["@id"]: e for e in graph}


def test_crate_follows_the_workflow_run_profile(tmp_path: Path) -> None:
    results, config = fake_run(tmp_path, 1)
    crate = rocrate.ROCrate(results)  # rocrate's own reader
    assert crate.mainEntity is not None and crate.mainEntity.id == "workflow/Snakefile"
    graph = entities(results)
    root = graph["./"]
    conforms = {p["@id"] for p in root["conformsTo"]}
    assert set(PROFILES.values()) <= conforms and "https://w3id.org/workflowhub/workflow-ro-crate/1.1" in conforms
    assert all(url in graph for url in PROFILES.values())
    assert "ComputationalWorkflow" in graph["workflow/Snakefile"]["@type"]
    action = graph["#run"]
    assert action["@type"] == "CreateAction" and action["instrument"]["@id"] == "workflow/Snakefile"
    objects = {o["@id"] for o in action["object"]}
    assert {"config.yaml", "#seed-1", "data/ds/test/images/a.tif"} <= objects
    assert graph["config.yaml"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    results_ids = {o["@id"] for o in action["result"]}
    assert {"scores/ds/m/seed1.csv", "tables/table1.csv"} <= results_ids
    image = results / "data/ds/test/images/a.tif"
    assert graph["data/ds/test/images/a.tif"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    software = {graph[s["@id"]]["name"] for s in graph["workflow/Snakefile"]["softwareRequirements"]}
    assert {"conda environment embedseg", "embedseg", "torch"} <= software


def test_a_rerun_with_another_seed_says_so(tmp_path: Path) -> None:
    first = entities(fake_run(tmp_path / "a", 1)[0])
    second = entities(fake_run(tmp_path / "b", 2)[0])
    assert "#seed-1" in first and "#seed-2" in second and "#seed-1" not in second
    assert first["config.yaml"]["sha256"] != second["config.yaml"]["sha256"]


def test_commit_of_a_checkout_a_deployed_copy_and_a_folder_inside_another_repository(tmp_path: Path) -> None:
    import subprocess

    from embedseg.layout import deployed_commit_file
    from embedseg.report.provenance import git_commit

    outer = tmp_path / "analysis"  # a user's own repository, with a deployed copy inside it
    copy = outer / ".snakemake" / "embedseg-package" / "abc"
    copy.mkdir(parents=True)
    identity = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    subprocess.run(["git", *identity, "-C", str(outer), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(outer), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit(outer) == head
    assert git_commit(copy) is None  # the user's HEAD is not the workflow's commit
    deployed_commit_file(copy).write_text("0123abcd\n")
    assert git_commit(copy) == "0123abcd"
