# The competing methods of Table 1, each in its own conda environment. A baseline may decline to
# run (missing weights offline, …) by writing predictions/{ds}/{method}/NOT_RUN.txt instead of a
# seed folder, so these jobs finish with empty flag files under status/ and the prediction job is
# a checkpoint: only once it has run does the workflow know whether there is anything to score.


wildcard_constraints:
    baseline="|".join(BASELINE_ENVS),


def baseline_args(action: str):
    """Input function: config `baselines.<action>_args.<method>`, passed verbatim (shell words)."""
    return lambda wildcards: config["baselines"][f"{action}_args"].get(wildcards.baseline, "")


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


BASELINE_RUN = ("{ds}", "{baseline}", layout.seed_dir("{seed}"))


rule baseline_train:
    input:
        run_data,
    output:
        touch(baseline_flag("{ds}", "{baseline}", "{seed}", "trained")),
    log:
        str(layout.job_log(RESULTS, "baseline_train", *BASELINE_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "baseline_train", *BASELINE_RUN))
    conda:
        baseline_env
    threads: step_resources("baseline_train")["threads"]
    resources:
        mem_mb=step_resources("baseline_train")["mem_mb"],
        runtime=step_resources("baseline_train")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=str(layout.model_dir(RESULTS, "{ds}", "{baseline}", "{seed}")),
        options=baseline_args("train"),
    shell:
        "run-embedseg baseline {wildcards.baseline} train {input:q} --out {params.model_dir:q}"
        " --seed {wildcards.seed} --device {params.device:q} {params.options} > {log:q} 2>&1"


checkpoint baseline_predict:
    input:
        trained=rules.baseline_train.output[0],
        data=DATA,
    output:
        touch(baseline_flag("{ds}", "{baseline}", "{seed}", "predicted")),
    log:
        str(layout.job_log(RESULTS, "baseline_predict", *BASELINE_RUN)),
    benchmark:
        str(layout.job_benchmark(RESULTS, "baseline_predict", *BASELINE_RUN))
    conda:
        baseline_env
    threads: step_resources("baseline_predict")["threads"]
    resources:
        mem_mb=step_resources("baseline_predict")["mem_mb"],
        runtime=step_resources("baseline_predict")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=str(layout.model_dir(RESULTS, "{ds}", "{baseline}", "{seed}")),
        images=lambda wildcards, input: layout.test_images(input.data),
        predictions=str(layout.predictions_dir(RESULTS, "{ds}", "{baseline}", "{seed}")),
        options=baseline_args("predict"),
    shell:
        "run-embedseg baseline {wildcards.baseline} predict {params.model_dir:q} --images {params.images:q}"
        " --out {params.predictions:q} --device {params.device:q} {params.options} > {log:q} 2>&1"
