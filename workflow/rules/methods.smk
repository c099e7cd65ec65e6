# Methods of one's own (config `methods:`): `embedseg command` fills a method's command template
# and runs it into a staging folder that becomes the declared output only when the command
# succeeded (embedseg/outputs.py); a failing command fails the job, its output is in the log.
# Predictions are scored by rule evaluate like every other method's.


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
    # (?!) matches nothing: without config `methods` the jobs of this file match no file
    command="|".join(map(re.escape, COMMAND_METHODS)) or "(?!)",


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
    return lambda wildcards: workflow_args.quote(getattr(COMMAND_METHODS[wildcards.command], f"{action}_command"))


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


COMMAND_RUN = ("{ds}", "{command}", layout.seed_dir("{seed}"))


rule method_train:
    input:
        run_data,
    output:
        directory(str(layout.model_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "method_train", *COMMAND_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "method_train", *COMMAND_RUN))
    conda:
        command_env
    threads: command_resources("train", "threads")
    resources:
        mem_mb=command_resources("train", "mem_mb"),
        runtime=command_resources("train", "runtime"),
        gpu=command_gpu,
    params:
        template=command_template("train"),
        device=command_device,
    shell:
        "run-embedseg command train {params.template} --data {input:q} --out {output:q}"
        " --seed {wildcards.seed} --device {params.device:q} > {log:q} 2>&1"


rule method_predict:
    input:
        data=DATA,
        model=command_model,
    output:
        directory(str(layout.predictions_dir(RESULTS, "{ds}", "{command}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "method_predict", *COMMAND_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "method_predict", *COMMAND_RUN))
    conda:
        command_env
    threads: command_resources("predict", "threads")
    resources:
        mem_mb=command_resources("predict", "mem_mb"),
        runtime=command_resources("predict", "runtime"),
        gpu=command_gpu,
    params:
        template=command_template("predict"),
        device=command_device,
        images=lambda wildcards, input: layout.test_images(input.data),
        model=lambda wildcards, input: workflow_args.option("--model", input.model or None),
    shell:
        "run-embedseg command predict {params.template} --data {input.data:q} --images {params.images:q}"
        " {params.model} --out {output:q} --seed {wildcards.seed} --device {params.device:q} > {log:q} 2>&1"
