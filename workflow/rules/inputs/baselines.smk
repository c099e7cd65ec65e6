# Input functions of the baselines' rules (rules/baselines.smk).


def baseline_args(action: str):
    """Input function: config `baselines.<action>_args.<method>`, passed verbatim (shell words),
    and `--weights` of config `baselines.weights.<method>` where the action takes weights."""
    return lambda wildcards: " ".join(
        filter(
            None,
            [
                config["baselines"][f"{action}_args"].get(wildcards.baseline, ""),
                workflow_args.weights_option(wildcards.baseline, action, config["baselines"]["weights"]),
            ],
        )
    )


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
        not_run = str(layout.not_run_file(RESULTS, ds, method))
        results.append(not_run if os.path.exists(not_run) else scores_file(ds, method, seed))
    return results
