# Configuration check, paths and input functions: the only Python of the workflow.
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


def checkout_root() -> Path:
    """The repository this rule file belongs to (not the working directory, which differs under
    --directory, snakedeploy or `module`): its `embedseg` package is what the jobs run."""
    root = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1]
    if not (root / "embedseg" / "__init__.py").is_file():
        raise WorkflowError(
            f"the workflow runs the `embedseg` package of its own repository, but {root} is not a local "
            "checkout of it: clone the repository and load the workflow (`snakefile:` of a module) from the clone"
        )
    return root


REPO = checkout_root()
sys.path.insert(0, str(REPO))  # result layout and method registry of this checkout (standard library only)
from embedseg import layout, methods

methods.check_baselines(
    [name for ds in config["datasets"].values() for name in ds.get("baselines", [])]
    + [*config["baselines"]["train_args"], *config["baselines"]["predict_args"]],
    "config keys datasets.*.baselines, baselines.train_args and baselines.predict_args",
)
RESULTS = f"results/{config['run_name']}"
DATASETS = list(config["datasets"])


def command_methods() -> dict:
    """Registry entries of config `methods:` (embedseg/methods.py checks names and placeholders),
    after checking what only the workflow knows: its data sets and files."""
    try:
        found = methods.command_methods(config.get("methods", {}), "config methods")
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None
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
SEEDS = config["seeds"]
CENTERS = config["centers"]
TTA = ["tta" if on else "notta" for on in config["tta"]]
# EmbedSeg = embedseg-medoid-tta, Neven et al. = embedseg-centroid-notta (docs/interfaces.md).
EMBEDSEG_METHODS = [methods.Variant(center, tta).name for center in CENTERS for tta in config["tta"]]
BASELINE_SEEDS = config["baselines"]["seeds"]
BASELINE_ENVS = {name: method.env for name, method in methods.BASELINES.items()}  # conda env names
DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 4000, "runtime": 60}
# The paper's numbers ship with the workflow, not with the working directory.
PAPER_RESULTS = config["report"]["paper_results"] or str(REPO / "config" / "paper_results.yaml")
GPUS = int(config["gpu"])  # resource gpu=1 makes cluster profiles request a GPU for the job


# --- Software: conda environments and the package ---------------------------------------------

# Conda environment name -> file (relative to this file). Snakemake builds an env from
# `<name>.<platform>.pin.txt` beside the file when there is one (docs/cluster.md, lockfiles).
CONDA_ENVS = {name: f"../envs/{name}.yaml" for name in ("embedseg", "stardist", "cellpose", "maskrcnn")}


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


# --- Devices ----------------------------------------------------------------------------------


def job_device() -> str:
    """`--device` of training and prediction. `gpu: true` gives each such job a GPU, so it must use
    it: `cuda`, which fails without one (CPU build of PyTorch, node without driver) instead of
    silently training for days on the CPU as `auto` would."""
    device = config["device"]
    if not config["gpu"]:
        return device
    if device == "cpu":
        raise WorkflowError("config: `gpu: true` asks for a GPU per job but `device: cpu` would not use it; set one")
    return "cuda" if device == "auto" else device


DEVICE = job_device()
# Said at every start, dry runs included, because it decides whether jobs share a GPU.
GPU_LIMIT = workflow.global_resources.get("gpu").value
logger.info(
    f"GPU jobs at once on this machine: {GPU_LIMIT} (resource gpu; --resources gpu=N changes it)"
    if GPU_LIMIT is not None
    else "GPU jobs at once on this machine: unlimited, they may share a GPU (set --resources gpu=N)"
)


wildcard_constraints:
    ds="|".join(map(re.escape, DATASETS)),
    center="|".join(CENTERS),
    tta="tta|notta",
    seed=r"\d+",
    baseline="|".join(BASELINE_ENVS),
    # (?!) matches nothing: without config `methods` the jobs of methods.smk match no file
    command="|".join(map(re.escape, COMMAND_METHODS)) or "(?!)",
    method="|".join(EMBEDSEG_METHODS + list(BASELINE_ENVS) + list(map(re.escape, COMMAND_METHODS))),


# --- Data sets ------------------------------------------------------------------------------

# Data sets `embedseg prepare` knows by name (embedseg/data/registry.py; tests/test_workflow.py
# keeps both lists equal). Any other name in `datasets:` is the user's own data, prepared as the
# registry's `folder` set from its `source`.
REGISTRY_DATASETS = {
    "bbbc010-2012",
    "usiigaci-2017",
    "dsb-2018",
    "synthetic-worms",
    "synthetic-cells",
    "synthetic-nuclei",
    "synthetic-nuclei-3d",
    "Mouse-Organoid-Cells-CBG",
    "Platynereis-Nuclei-CBG",
    "Mouse-Skull-Nuclei-CBG",
    "Platynereis-ISH-Nuclei-CBG",
    "folder",
}
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_source(ds: str) -> Path | None:
    """The data set's `source` when it is a local zip or folder (not a URL, not unset)."""
    source = config["datasets"][ds].get("source")
    return None if source is None or URL.match(source) else Path(source).expanduser()


def check_sources() -> None:
    """Stop at start-up, naming the config key, when a data set has no source it could be read
    from, instead of failing later inside its `prepare` job."""
    for ds, settings in config["datasets"].items():
        key = f"datasets.{ds}.source"
        if settings.get("source") is None and (ds not in REGISTRY_DATASETS or ds == "folder"):
            raise WorkflowError(
                f"config {key} is missing: {ds!r} is not a data set `embedseg prepare` can download or "
                "synthesise, so give the zip file or folder (images/ and masks/) it is read from"
            )
        source = local_source(ds)
        if source is not None and not source.exists():
            raise WorkflowError(
                f"config {key}: {source} does not exist (relative paths are read from the working "
                f"directory {os.getcwd()}); fix the path or copy the data there"
            )


check_sources()


def prepare_dataset(wildcards) -> str:
    """The positional data set of `embedseg prepare`: its own name, or `folder` for own data."""
    return wildcards.ds if wildcards.ds in REGISTRY_DATASETS else "folder"


def source_input(wildcards) -> list[str]:
    """A local source as the input of `prepare`, so that changing the data re-runs it."""
    source = local_source(wildcards.ds)
    return [] if source is None else [str(source)]


def step_resources(step: str) -> dict:
    """threads, mem_mb and runtime (minutes) of one step: config `resources.<step>` over defaults."""
    return {**DEFAULT_RESOURCES, **config["resources"].get(step, {})}


def optional_flag(flag: str, value) -> str:
    """`--flag value` (a list: `--flag v1 v2 …`), or nothing when the config leaves the value
    unset (the step's default)."""
    if value is None:
        return ""
    values = value if isinstance(value, list) else [value]
    return " ".join([flag, *(shlex.quote(str(v)) for v in values)])


def switch_flag(name: str, on: bool) -> str:
    """`--name` or `--no-name` for a boolean option of a step."""
    return f"--{name}" if on else f"--no-{name}"


def dataset_options(wildcards) -> str:
    """Options of `embedseg prepare` taken from config `datasets.<ds>` (unset keys: its defaults).
    The crop size goes into dataset.json, so crops and the U-Net baseline both use it."""
    settings = config["datasets"][wildcards.ds]
    source = local_source(wildcards.ds)
    flags = {
        "--source": settings.get("source") if source is None else source,
        "--layout": settings.get("layout"),
        "--normalization": settings.get("normalization"),
        "--test-fraction": settings.get("test"),
        "--limit": settings.get("limit"),
        "--crop-size": settings.get("crop_size"),
        "--ndim": settings.get("ndim"),
        "--voxel-size": settings.get("voxel_size"),
        "--n-images": settings.get("n_images"),
        "--image-size": settings.get("image_size"),
        "--image-depth": settings.get("image_depth"),
    }
    return " ".join(filter(None, (optional_flag(flag, value) for flag, value in flags.items())))


def run_data(wildcards) -> str:
    """Prepared data a run trains on: one folder per data set, or with `resplit: true` one per
    run (`prepare_resplit`, its validation split drawn with seed split_seed + run)."""
    if config["resplit"]:
        return f"{RESULTS}/data-resplit/{wildcards.ds}/seed{wildcards.seed}"
    return f"{RESULTS}/data/{wildcards.ds}"


def run_crops(wildcards) -> str:
    """Crops a run trains on: one folder per data set and centre, or with `resplit: true` one
    per run (rule crops_resplit)."""
    if config["resplit"]:
        return f"{RESULTS}/crops-resplit/{wildcards.ds}/{wildcards.center}/seed{wildcards.seed}"
    return f"{RESULTS}/crops/{wildcards.ds}/{wildcards.center}"


def train_options(wildcards) -> str:
    """`embedseg train` options: the data set's batch/epoch sizes plus the global training keys."""
    train = config["datasets"][wildcards.ds]["train"]
    flags = {
        "--epochs": train["epochs"],
        "--batch-size": train["batch_size"],
        "--virtual-batch": train["virtual_batch"],
        "--train-size": train["train_size"],
        "--val-size": train["val_size"],
        "--val-batch-size": train["val_batch_size"],
        "--variance-loss": config["train"]["variance_loss"],
        "--workers": config["train"]["workers"],
    }
    switches = [switch_flag(key, config["train"][key]) for key in ("compile", "amp")]
    return " ".join([f"{flag} {value}" for flag, value in flags.items()] + switches)


def clustering_options(wildcards) -> str:
    """TTA from the method name and clustering from config `predict`: what turns the network's
    output into labels, shared by `embedseg predict` and `embedseg export` (the package's card)."""
    predict = config["predict"]
    return " ".join(
        [
            "--tta" if wildcards.tta == "tta" else "--no-tta",
            f"--clustering {predict['clustering']}",
            f"--seed-thresh {predict['seed_thresh']}",
            f"--fg-thresh {predict['fg_thresh']}",
            optional_flag("--min-object-size", predict["min_object_size"]),
        ]
    )


def predict_options(wildcards) -> str:
    """`embedseg predict` options: the clustering options plus tiles and compile/AMP from config
    `predict`."""
    predict = config["predict"]
    return " ".join(
        [
            clustering_options(wildcards),
            optional_flag("--tile-size", predict["tile_size"]),
            switch_flag("compile", predict["compile"]),
            switch_flag("amp", predict["amp"]),
        ]
    )


def baseline_args(action: str):
    """Input function: config `baselines.<action>_args.<method>`, passed verbatim."""

    def args(wildcards) -> str:
        return config["baselines"][f"{action}_args"].get(wildcards.baseline, "")

    return args


def baseline_env(wildcards) -> str:
    return conda_env(BASELINE_ENVS[wildcards.baseline])


def baseline_runs() -> list[tuple[str, str, int]]:
    """(data set, baseline, seed) for every baseline the config switches on."""
    return [
        (ds, method, seed)
        for ds, settings in config["datasets"].items()
        for method in settings.get("baselines", [])
        for seed in BASELINE_SEEDS
    ]


def command_runs() -> list[tuple[str, str, int]]:
    """(data set, method, seed) for every run of the config's `methods:` (default: every data
    set, the baselines' seeds)."""
    return [
        (ds, name, seed)
        for name, entry in config.get("methods", {}).items()
        for ds in entry.get("datasets") or DATASETS
        for seed in entry.get("seeds") or BASELINE_SEEDS
    ]


def command_template(action: str):
    """Input function: the method's `action` template, shell-quoted for `embedseg command`."""

    def template(wildcards) -> str:
        return shlex.quote(getattr(COMMAND_METHODS[wildcards.command], f"{action}_command"))

    return template


def command_env(wildcards) -> str:
    """The method's conda file (absolute: relative paths are the working directory's), or the
    embedseg environment, which has NumPy, SciPy, scikit-image and tifffile."""
    env_file = COMMAND_METHODS[wildcards.command].env_file
    return conda_env("embedseg") if env_file is None else str(Path(env_file).expanduser().resolve())


def command_resources(action: str, key: str):
    """Input function: config `methods.<name>.resources.<action>.<key>` over the defaults."""

    def value(wildcards) -> int:
        own = config["methods"][wildcards.command].get("resources", {}).get(action, {})
        return {**DEFAULT_RESOURCES, **own}[key]

    return value


def command_gpu(wildcards) -> int:
    """One GPU for a method with `gpu: true` when the config hands out GPUs (`gpu: true`)."""
    return GPUS if COMMAND_METHODS[wildcards.command].gpu else 0


def command_device(wildcards) -> str:
    return DEVICE if COMMAND_METHODS[wildcards.command].gpu else "cpu"


def command_model(wildcards) -> list[str]:
    """The model folder a method's predictions read, if it has a train command."""
    if COMMAND_METHODS[wildcards.command].train_command is None:
        return []
    return [str(layout.model_dir(RESULTS, wildcards.ds, wildcards.command, wildcards.seed))]


def command_models() -> list[str]:
    """Model folders of every command method that trains (targets of `all`, like our models)."""
    return [
        str(layout.model_dir(RESULTS, ds, name, seed))
        for ds, name, seed in command_runs()
        if COMMAND_METHODS[name].train_command is not None
    ]


def command_predictions() -> list[str]:
    """Prediction folders of every command method run (figures draws them)."""
    return [str(layout.predictions_dir(RESULTS, ds, name, seed)) for ds, name, seed in command_runs()]


def command_scores() -> list[str]:
    return [scores_file(ds, name, seed) for ds, name, seed in command_runs()]


def model_marker(ds: str, center: str, seed) -> str:
    """`train.json` of an EmbedSeg model: the train rule's only declared output. Snakemake deletes
    a failed job's outputs, so best.pt, last.pt, log.csv and memory.json, which a preempted job
    needs to resume, must not be declared; train.json is rewritten whenever training (re)starts,
    so even a resumed job with no epochs left produces it."""
    return str(layout.model_dir(RESULTS, ds, methods.embedseg_model(center), seed) / layout.TRAIN_JSON)


def trained_models() -> list[str]:
    """Markers of every EmbedSeg/Neven model the config trains."""
    return [model_marker(ds, center, seed) for ds in DATASETS for center in CENTERS for seed in SEEDS]


def scores_file(ds: str, method: str, seed) -> str:
    return str(layout.scores_file(RESULTS, ds, method, seed))


def not_run_file(ds: str, method: str) -> str:
    return str(layout.not_run_file(RESULTS, ds, method))


def prediction_input(wildcards) -> str:
    """What `evaluate` waits for: a predictions folder (ours, a command method's), or a
    baseline's 'predicted' flag."""
    if methods.embedseg_variant(wildcards.method) or wildcards.method in COMMAND_METHODS:
        return str(layout.predictions_dir(RESULTS, wildcards.ds, wildcards.method, wildcards.seed))
    return checkpoints.baseline_predict.get(ds=wildcards.ds, baseline=wildcards.method, seed=wildcards.seed).output[0]


def embedseg_predictions() -> list[str]:
    """Prediction folders of every EmbedSeg/Neven model (figures draws them)."""
    return [
        str(layout.predictions_dir(RESULTS, ds, method, seed))
        for ds in DATASETS
        for method in EMBEDSEG_METHODS
        for seed in SEEDS
    ]


def prepared_data() -> list[str]:
    """The prepared folder of every data set (figures draws its test images and masks)."""
    return [f"{RESULTS}/data/{ds}" for ds in DATASETS]


def crops_output(path: str):
    """crops/ of a data set: a temp() folder (deleted once its trainings are done, re-made when
    needed) where config `temp_crops` asks for it; nothing else reads it."""
    return temp(directory(path)) if config["temp_crops"] else directory(path)


def embedseg_scores() -> list[str]:
    return [scores_file(ds, m, s) for ds in DATASETS for m in EMBEDSEG_METHODS for s in SEEDS]


def baseline_flag(ds: str, method: str, seed, step: str) -> str:
    """Empty file marking that a baseline's `step` (trained | predicted) has finished."""
    return str(layout.status_flag(RESULTS, ds, method, seed, step))


def baseline_flags() -> list[str]:
    """'predicted' flags of every baseline run; listed as plain inputs so that a dry run shows
    all baseline jobs, not only the first checkpoint it meets."""
    return [baseline_flag(ds, method, seed, "predicted") for ds, method, seed in baseline_runs()]


def baseline_results(wildcards) -> list[str]:
    """Scores of each baseline run, or its NOT_RUN.txt when it declined to run (known only once
    its prediction job, a checkpoint, has finished)."""
    results = []
    for ds, method, seed in baseline_runs():
        checkpoints.baseline_predict.get(ds=ds, baseline=method, seed=seed)
        not_run = not_run_file(ds, method)
        results.append(not_run if os.path.exists(not_run) else scores_file(ds, method, seed))
    return results


def selection_options() -> str:
    """`--datasets` of `embedseg tables|figures`. Methods and seeds are found from the scores
    folders, because the baselines differ per data set and run fewer seeds than our network."""
    return "--datasets " + " ".join(DATASETS)
