"""`embedseg crate`: the run's provenance as an RO-Crate (Workflow Run Crate profile 0.5).

ro-crate-metadata.json in the run folder names the workflow (workflow/Snakefile, with the git
commit of its checkout), the config and its sha256, the seeds, the input data and every output
with their sha256, and the software: each conda environment file with its hash and the versions
of the packages of the environment writing the crate. A re-run with other seeds gives a crate
whose seeds and config hash say so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..io import UserError
from ..layout import crate_file, deployed_commit_file

PROFILES = {
    "process": "https://w3id.org/ro/wfrun/process/0.5",
    "workflow": "https://w3id.org/ro/wfrun/workflow/0.5",
    "workflow-run": "https://w3id.org/ro/wfrun/workflow-run/0.5",
}  # rocrate adds Workflow RO-Crate's own (1.1) with the main workflow
OUTPUT_FOLDERS = ("scores", "tables", "figures", "gallery")  # what a run reports; data/ is its input
PACKAGES = ("torch", "numpy", "scipy", "scikit-image", "pandas", "snakemake", "rocrate")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(repo: Path) -> str | None:
    """The commit `repo` holds: a deployed copy's (:func:`embedseg.layout.deployed_commit_file`),
    else HEAD when `repo` is a git checkout itself, else None (an sdist, a folder inside another
    repository, whose HEAD is not ours)."""
    deployed = deployed_commit_file(repo)
    if deployed.is_file():
        return deployed.read_text().strip()
    try:
        top, head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return head if Path(top).resolve() == Path(repo).resolve() else None


def versions() -> dict[str, str]:
    found = {"embedseg": __version__}  # the package run from a checkout need not be installed
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def files_under(root: Path, folders: tuple[str, ...]) -> list[Path]:
    return sorted(p for folder in folders for p in (root / folder).rglob("*") if p.is_file())


def write_crate(results: Path, config: Path, repo: Path, seeds: list[int]) -> Path:
    """Write results/ro-crate-metadata.json; returns its path."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    results = Path(results)
    if not config.is_file():
        raise UserError(f"{config}: config file not found; pass the run's config with --config")
    crate = ROCrate()
    crate.root_dataset["name"] = f"EmbedSeg pipeline run {results.name}"
    for url in PROFILES.values():
        crate.add(ContextEntity(crate, url, properties={"@type": "CreativeWork", "version": url.rsplit("/", 1)[1]}))
    commit = git_commit(repo)
    snakefile = repo / "workflow" / "Snakefile"
    workflow = crate.add_workflow(
        snakefile,
        "workflow/Snakefile",
        main=True,
        lang="snakemake",
        properties={"name": "EmbedSeg pipeline", "version": __version__, **({"identifier": commit} if commit else {})},
    )
    software = []
    for env in sorted((repo / "workflow" / "envs").glob("*.yaml")):
        software.append(
            crate.add(
                ContextEntity(
                    crate,
                    f"#env-{env.stem}",
                    properties={
                        "@type": "SoftwareApplication",
                        "name": f"conda environment {env.stem}",
                        "sha256": sha256(env),
                        "description": env.read_text(),
                    },
                )
            )
        )
    software += [
        crate.add(
            ContextEntity(
                crate,
                f"#package-{name}",
                properties={
                    "@type": "SoftwareApplication",
                    "name": name,
                    "softwareVersion": version,
                },
            )
        )
        for name, version in versions().items()
    ]
    config_file = crate.add_file(
        config, "config.yaml", properties={"name": "run configuration", "sha256": sha256(config)}
    )
    seed_values = [
        crate.add(
            ContextEntity(crate, f"#seed-{seed}", properties={"@type": "PropertyValue", "name": "seed", "value": seed})
        )
        for seed in seeds
    ]
    inputs = [
        crate.add_file(p, str(p.relative_to(results)), properties={"sha256": sha256(p)})
        for p in files_under(results, ("data",))
    ]
    outputs = [
        crate.add_file(p, str(p.relative_to(results)), properties={"sha256": sha256(p)})
        for p in files_under(results, OUTPUT_FOLDERS)
    ]
    crate.add_action(
        workflow,
        identifier="#run",
        properties={
            "@type": "CreateAction",
            "name": f"run of the EmbedSeg pipeline, seeds {', '.join(map(str, seeds))}",
        },
    )
    action = crate.get("#run")
    action["object"] = [config_file, *seed_values, *inputs]
    action["result"] = outputs
    workflow["softwareRequirements"] = software
    crate.root_dataset["mentions"] = [action]
    # after add_workflow, which sets conformsTo to Workflow RO-Crate's profile
    conforms = crate.root_dataset.get("conformsTo") or []
    conforms = conforms if isinstance(conforms, list) else [conforms]
    crate.root_dataset["conformsTo"] = [*({"@id": url} for url in PROFILES.values()), *conforms]
    path = crate_file(results)
    metadata_json = crate.metadata.generate()
    path.write_text(json.dumps(metadata_json, indent=1))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="one workflow run: results/{run}")
    parser.add_argument("--config", type=Path, required=True, metavar="YAML", help="the run's config")
    parser.add_argument("--seeds", nargs="+", type=int, required=True, metavar="S", help="the run's seeds")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2], help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print(write_crate(args.results, args.config, args.repo, args.seeds))
    return 0
