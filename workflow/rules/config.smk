# Configuration check, start-up checks and the constants every rule file uses. Option strings
# and other pure helpers live in embedseg/workflow_args.py (unit-tested without Snakemake).
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from snakemake import sourcecache
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


def checkout_root() -> tuple[Path, str | None]:
    """The folder whose `embedseg` package the jobs run: the checkout this rule file belongs to
    (not the working directory, which differs under --directory or `module`), or for a workflow
    deployed from git (snakedeploy's github()/gitlab() module, or gitfile()) the deployed commit's
    files; and that commit (None for a checkout: git knows it there)."""
    basedir = workflow.current_basedir
    commit = None
    if isinstance(basedir, sourcecache.LocalSourceFile):
        root = Path(basedir.get_path_or_uri(secret_free=True)).parents[1]
    elif isinstance(basedir, (sourcecache.LocalGitFile, sourcecache.HostingProviderFile)):
        root, commit = deployed_copy(basedir)
    else:
        raise WorkflowError(
            f"the workflow runs the `embedseg` package of its own repository, which cannot be read from "
            f"{basedir.get_path_or_uri(secret_free=True)}: load it from a clone, or as a module with "
            "github(), gitlab() or gitfile() (snakedeploy deploy-workflow writes one)"
        )
    if not (root / "embedseg" / "__init__.py").is_file():
        raise WorkflowError(f"{root} holds no `embedseg` package: load the workflow from its own repository")
    return root, commit


def deployed_copy(basedir) -> tuple[Path, str]:
    """The package, workflow and config of the deployed commit, extracted once (`git archive`)
    into .snakemake/embedseg-package/COMMIT of the working directory, where every job (on a
    cluster too: the working directory is shared) finds them. Snakemake itself reads the rule
    files from git; the jobs need a folder to import from."""
    if isinstance(basedir, sourcecache.LocalGitFile):
        git_dir = basedir.repo_path
    else:  # Snakemake's clone of the hosted repository, in its source cache
        basedir.cache_path = workflow.sourcecache.cache_path
        git_dir = basedir.hosted_repo.repo.git_dir

    def git(*args: str) -> bytes:
        done = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True)
        if done.returncode:
            raise WorkflowError(
                f"git {' '.join(args)} in {git_dir} failed ({done.stderr.decode().strip()}): the deployed "
                f"workflow's files could not be read; check the module's tag or commit {basedir.ref!r}"
            )
        return done.stdout

    commit = git("rev-parse", f"{basedir.ref}^{{commit}}").decode().strip()
    root = Path(".snakemake", "embedseg-package", commit).resolve()
    if not root.is_dir():  # complete once there: it is renamed into place
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{commit}.", dir=root.parent))
        archive = git("archive", commit, "embedseg", "workflow", "config", "LICENSE")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        try:
            os.rename(staging, root)
        except OSError:  # a run started beside this one extracted it first
            shutil.rmtree(staging)
        logger.info(f"deployed workflow: commit {commit} of {git_dir}, its package in {root}")
    return root, commit


REPO, DEPLOYED_COMMIT = checkout_root()
# Result layout, method registry, data-set names and option builders of this checkout (standard
# library only).
sys.path.insert(0, str(REPO))
from embedseg import layout, methods, workflow_args
from embedseg.data import names as dataset_names
from embedseg.methods import Variant

if DEPLOYED_COMMIT:  # a copy has no .git: the run's provenance (RO-Crate) reads the commit here
    layout.deployed_commit_file(REPO).write_text(f"{DEPLOYED_COMMIT}\n")


def startup_check(check, *args):
    """Run a check of the library; its ValueError (which names the config key) stops the workflow."""
    try:
        return check(*args)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None


startup_check(
    methods.check_baselines,
    [name for ds in config["datasets"].values() for name in ds.get("baselines", [])]
    + [*config["baselines"]["train_args"], *config["baselines"]["predict_args"], *config["baselines"]["weights"]],
    "config keys datasets.*.baselines, baselines.train_args, baselines.predict_args and baselines.weights",
)
RESULTS = f"results/{config['run_name']}"
DATASETS = list(config["datasets"])
SEEDS = config["seeds"]
CENTERS = config["centers"]
# EmbedSeg = embedseg-medoid-tta, Neven et al. = embedseg-centroid-notta (docs/interfaces.md).
VARIANTS = [Variant(center, tta) for center in CENTERS for tta in config["tta"]]
EMBEDSEG_METHODS = [variant.name for variant in VARIANTS]
BASELINE_SEEDS = config["baselines"]["seeds"]
BASELINE_ENVS = {name: method.env for name, method in methods.BASELINES.items()}  # conda env names
DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 4000, "runtime": 60}
# The paper's numbers ship with the workflow, not with the working directory.
PAPER_RESULTS = config["report"]["paper_results"] or str(REPO / "config" / "paper_results.yaml")
REPORTED_RESULTS = str(REPO / "config" / "generalist_results.yaml")  # the generalists' published mSA
GPUS = int(config["gpu"])  # resource gpu=1 makes cluster profiles request a GPU for the job
DEVICE = startup_check(workflow_args.job_device, config["device"], config["gpu"])


def step_resources(step: str) -> dict:
    """threads, mem_mb and runtime (minutes) of one step: config `resources.<step>` over defaults."""
    return {**DEFAULT_RESOURCES, **config["resources"].get(step, {})}


# --- Software: conda environments and the package ---------------------------------------------

# Conda environment name -> file (relative to this file). Snakemake builds an env from
# `<name>.<platform>.pin.txt` beside the file when there is one (docs/cluster.md, lockfiles).
CONDA_ENVS = {
    name: f"../envs/{name}.yaml"
    for name in ("embedseg", "stardist", "cellpose", "maskrcnn", "cellpose4", "micro-sam", "instanseg")
}


def conda_env(name: str) -> str:
    """The `conda:` file of environment `name` (a key of CONDA_ENVS)."""
    return CONDA_ENVS[name]


# Every job runs `run-embedseg <step> …` (workflow/bin/run-embedseg): `python -m embedseg` with
# this checkout first on the module path, set by the script itself because with conda Snakemake
# removes PYTHONPATH from the job's environment, and the working directory (which `python -m`
# searches) need not be the checkout. workflow/bin goes first on PATH, which conda activation
# keeps (it puts the environment's bin/ before it; the environments lack `embedseg`). Not
# `shell.prefix`: global to every workflow loaded with this one as a module, and it replaces
# Snakemake's `set -euo pipefail`. Not a copy installed into each env: the env's hash ignores the
# package's code, so the copy would go stale with every edit. Without conda, `python` is the
# interpreter running Snakemake (the project venv).
os.environ.update(
    PATH=os.pathsep.join([str(REPO / "workflow" / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)

# Said at every start, dry runs included, because it decides whether jobs share a GPU.
GPU_LIMIT = workflow.global_resources.get("gpu").value
logger.info(
    f"GPU jobs at once on this machine: {GPU_LIMIT} (resource gpu; --resources gpu=N changes it)"
    if GPU_LIMIT is not None
    else "GPU jobs at once on this machine: unlimited, they may share a GPU (set --resources gpu=N)"
)

if workflow_args.unshown_variants(VARIANTS):
    logger.warning(
        f"config centers {CENTERS} and tta {config['tta']}: {', '.join(workflow_args.unshown_variants(VARIANTS))} "
        f"will be trained and scored but shown in no table (Table 2 compares them with {methods.EMBEDSEG}); "
        "add medoid to centers and true to tta, or read their scores under results/"
    )


# --- Start-up checks of what only the workflow knows: its data sets, methods and files -------


def check_sources() -> None:
    """Stop at start-up, naming the config key, when a data set has no source it could be read
    from, instead of failing later inside its `prepare` job."""
    for ds, settings in config["datasets"].items():
        key = f"datasets.{ds}.source"
        if settings.get("source") is None and (ds not in dataset_names.DATASETS or ds == dataset_names.FOLDER):
            raise WorkflowError(
                f"config {key} is missing: {ds!r} is not a data set `embedseg prepare` can download or "
                "synthesise, so give the zip file or folder (images/ and masks/) it is read from"
            )
        source = workflow_args.local_source(settings.get("source"))
        if source is not None and not source.exists():
            raise WorkflowError(
                f"config {key}: {source} does not exist (relative paths are read from the working "
                f"directory {os.getcwd()}); fix the path or copy the data there"
            )


check_sources()


def command_methods() -> dict:
    """Registry entries of config `methods:` (embedseg/methods.py checks names and placeholders),
    after checking what only the workflow knows: its data sets and files."""
    found = startup_check(methods.command_methods, config.get("methods", {}), "config methods")
    for name, entry in config.get("methods", {}).items():
        unknown = [ds for ds in entry.get("datasets") or [] if ds not in DATASETS]
        if unknown:
            raise WorkflowError(f"config methods.{name}.datasets: {unknown} not in `datasets:` ({', '.join(DATASETS)})")
        env_file = entry.get("conda")
        if env_file is not None and not Path(env_file).expanduser().is_file():
            raise WorkflowError(
                f"config methods.{name}.conda: {env_file} does not exist (relative paths are read from the "
                f"working directory {os.getcwd()})"
            )
    return found


COMMAND_METHODS = command_methods()


wildcard_constraints:
    ds="|".join(map(re.escape, DATASETS)),
    seed=r"\d+",
    center="|".join(CENTERS),
    # both TTA settings of every centre: a variant's predictions can be asked for by name
    variant="|".join(re.escape(Variant(center, tta).name) for center in CENTERS for tta in (True, False)),
    baseline="|".join(BASELINE_ENVS),
    # (?!) matches nothing: without config `methods` the jobs of methods.smk match no file
    command="|".join(map(re.escape, COMMAND_METHODS)) or "(?!)",
    method="|".join(map(re.escape, EMBEDSEG_METHODS + list(BASELINE_ENVS) + list(COMMAND_METHODS))),
