# Configuration check, paths and input functions: the only Python of the workflow.
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO))  # result layout and method registry of this checkout (standard library only)
from embedseg import layout, methods

methods.check_baselines(
    [name for ds in config["datasets"].values() for name in ds.get("baselines", [])]
    + [*config["baselines"]["train_args"], *config["baselines"]["predict_args"]],
    "config keys datasets.*.baselines, baselines.train_args and baselines.predict_args",
)
RESULTS = f"results/{config['run_name']}"
DATASETS = list(config["datasets"])
SEEDS = config["seeds"]
CENTERS = config["centers"]
TTA = ["tta" if on else "notta" for on in config["tta"]]
# EmbedSeg = embedseg-medoid-tta, Neven et al. = embedseg-centroid-notta (docs/interfaces.md).
EMBEDSEG_METHODS = [methods.embedseg_name(center, tta) for center in CENTERS for tta in TTA]
BASELINE_SEEDS = config["baselines"]["seeds"]
BASELINE_ENVS = {name: f"../../envs/{method.env}.yaml" for name, method in methods.BASELINES.items()}
DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 4000, "runtime": 60}
GPUS = int(config["gpu"])  # resource gpu=1 makes cluster profiles request a GPU for the job


# Jobs run `python -m embedseg` from this checkout: with --use-conda the rule's environment's
# Python (conda puts it first on PATH), otherwise the Python running Snakemake (the project venv).
os.environ.update(
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
)


wildcard_constraints:
    ds="|".join(map(re.escape, DATASETS)),
    center="|".join(CENTERS),
    tta="tta|notta",
    seed=r"\d+",
    baseline="|".join(BASELINE_ENVS),
    method="|".join(EMBEDSEG_METHODS + list(BASELINE_ENVS)),


def step_resources(step: str) -> dict:
    """threads, mem_mb and runtime (minutes) of one step: config `resources.<step>` over defaults."""
    return {**DEFAULT_RESOURCES, **config["resources"].get(step, {})}


def optional_flag(flag: str, value) -> str:
    """`--flag value`, or nothing when the config leaves the value unset (the step's default)."""
    return "" if value is None else f"{flag} {shlex.quote(str(value))}"


def dataset_options(wildcards) -> str:
    """Options of `embedseg prepare` taken from config `datasets.<ds>` (unset keys: its defaults).
    The crop size goes into dataset.json, so crops and the U-Net baseline both use it."""
    settings = config["datasets"][wildcards.ds]
    flags = {
        "--source": settings.get("source"),
        "--limit": settings.get("limit"),
        "--crop-size": settings.get("crop_size"),
        "--n-images": settings.get("n_images"),
        "--image-size": settings.get("image_size"),
    }
    return " ".join(filter(None, (optional_flag(flag, value) for flag, value in flags.items())))


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
    return " ".join(f"{flag} {value}" for flag, value in flags.items())


def predict_options(wildcards) -> str:
    """`embedseg predict` options: TTA from the method name, clustering from config `predict`."""
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


def baseline_args(action: str):
    """Input function: config `baselines.<action>_args.<method>`, passed verbatim."""

    def args(wildcards) -> str:
        return config["baselines"][f"{action}_args"].get(wildcards.baseline, "")

    return args


def baseline_env(wildcards) -> str:
    return BASELINE_ENVS[wildcards.baseline]


def baseline_runs() -> list[tuple[str, str, int]]:
    """(data set, baseline, seed) for every baseline the config switches on."""
    return [
        (ds, method, seed)
        for ds, settings in config["datasets"].items()
        for method in settings.get("baselines", [])
        for seed in BASELINE_SEEDS
    ]


def model_marker(ds: str, center: str, seed) -> str:
    """`train.json` of an EmbedSeg model: the train rule's only declared output. Snakemake deletes
    a failed job's outputs, so best.pt, last.pt, log.csv and memory.json, which a preempted job
    needs to resume, must not be declared; train.json is rewritten whenever training (re)starts,
    so even a resumed job with no epochs left produces it."""
    return str(layout.model_dir(RESULTS, ds, layout.embedseg_model(center), seed) / layout.TRAIN_JSON)


def trained_models() -> list[str]:
    """Markers of every EmbedSeg/Neven model the config trains."""
    return [model_marker(ds, center, seed) for ds in DATASETS for center in CENTERS for seed in SEEDS]


def scores_file(ds: str, method: str, seed) -> str:
    return str(layout.scores_file(RESULTS, ds, method, seed))


def not_run_file(ds: str, method: str) -> str:
    return str(layout.not_run_file(RESULTS, ds, method))


def prediction_input(wildcards) -> str:
    """What `evaluate` waits for: our predictions folder, or a baseline's 'predicted' flag."""
    if methods.embedseg_variant(wildcards.method):
        return str(layout.predictions_dir(RESULTS, wildcards.ds, wildcards.method, wildcards.seed))
    return checkpoints.baseline_predict.get(ds=wildcards.ds, baseline=wildcards.method, seed=wildcards.seed).output[0]


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
