# Methods of one's own: the config check and the input functions of rules/methods.smk.


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
