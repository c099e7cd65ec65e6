# Data sets: prepared (downloaded, synthesised or read from one's own source, then split) and cut
# into training crops.


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


def prepare_dataset(wildcards) -> str:
    """The positional data set of `embedseg prepare`: a registry name (embedseg/data/names.py),
    or `folder` for one's own data."""
    return wildcards.ds if wildcards.ds in dataset_names.DATASETS else dataset_names.FOLDER


def source_input(wildcards) -> list[str]:
    """A local source as the input of `prepare`, so that changing the data re-runs it."""
    source = workflow_args.local_source(config["datasets"][wildcards.ds].get("source"))
    return [] if source is None else [str(source)]


def dataset_options(wildcards) -> str:
    """Options of `embedseg prepare` from config `datasets.<ds>` (unset keys: its defaults)."""
    return workflow_args.prepare_options(config["datasets"][wildcards.ds])


def run_data(wildcards) -> str:
    """Prepared data a run trains on: one folder per data set, or with `resplit: true` one per
    run (`prepare_resplit`, its validation split drawn with seed split_seed + run)."""
    if config["resplit"]:
        return str(layout.resplit_data_dir(RESULTS, wildcards.ds, wildcards.seed))
    return str(layout.data_dir(RESULTS, wildcards.ds))


def run_crops(wildcards) -> str:
    """Crops a run trains on: one folder per data set and centre, or with `resplit: true` one
    per run (rule crops_resplit)."""
    if config["resplit"]:
        return str(layout.resplit_crops_dir(RESULTS, wildcards.ds, wildcards.center, wildcards.seed))
    return str(layout.crops_dir(RESULTS, wildcards.ds, wildcards.center))


def prepared_data() -> list[str]:
    """The prepared folder of every data set (figures draws its test images and masks)."""
    return [str(layout.data_dir(RESULTS, ds)) for ds in DATASETS]


def crops_output(path) -> str:
    """crops/ of a data set: a temp() folder (deleted once its trainings are done, re-made when
    needed) where config `temp_crops` asks for it; nothing else reads it."""
    return temp(directory(str(path))) if config["temp_crops"] else directory(str(path))


DATA = str(layout.data_dir(RESULTS, "{ds}"))


rule prepare:
    input:
        source_input,
    output:
        directory(DATA),
    log:
        str(layout.job_log(RESULTS, "prepare", "{ds}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "prepare", "{ds}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("prepare")["threads"]
    resources:
        mem_mb=step_resources("prepare")["mem_mb"],
        runtime=step_resources("prepare")["runtime"],
    params:
        cache=config["cache"],
        seed=config["split_seed"],
        dataset=prepare_dataset,
        options=dataset_options,
    shell:
        "run-embedseg prepare {params.dataset:q} --out {output:q} --cache {params.cache:q}"
        " --seed {params.seed} {params.options} > {log:q} 2>&1"


rule crops:
    input:
        DATA,
    output:
        crops_output(layout.crops_dir(RESULTS, "{ds}", "{center}")),
    log:
        str(layout.job_log(RESULTS, "crops", "{ds}", "{center}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "crops", "{ds}", "{center}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("crops")["threads"]
    resources:
        mem_mb=step_resources("crops")["mem_mb"],
        runtime=step_resources("crops")["runtime"],
    params:
        seed=config["split_seed"],
    shell:
        "run-embedseg crops {input:q} --out {output:q} --center {wildcards.center} --seed {params.seed} > {log:q} 2>&1"


# With `resplit: true` every run trains on its own train/val split: run k draws its validation
# images (BBBC010: validation crops) with seed split_seed + k; the test split keeps split_seed,
# so all runs are scored on the prepared data set's test images.
use rule prepare as prepare_resplit with:
    output:
        directory(str(layout.resplit_data_dir(RESULTS, "{ds}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "prepare", "{ds}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "prepare", "{ds}", layout.seed_dir("{seed}")))
    params:
        cache=config["cache"],
        seed=config["split_seed"],
        dataset=prepare_dataset,
        options=lambda wildcards: f"{dataset_options(wildcards)} --resplit-run {wildcards.seed}",


use rule crops as crops_resplit with:
    input:
        str(layout.resplit_data_dir(RESULTS, "{ds}", "{seed}")),
    output:
        directory(str(layout.resplit_crops_dir(RESULTS, "{ds}", "{center}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "crops", "{ds}", "{center}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "crops", "{ds}", "{center}", layout.seed_dir("{seed}")))
    params:
        seed=lambda wildcards: config["split_seed"] + int(wildcards.seed),
