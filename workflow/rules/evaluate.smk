# Scores of every method's predictions, one CSV per run (docs/interfaces.md).


wildcard_constraints:
    method="|".join(map(re.escape, EMBEDSEG_METHODS + list(BASELINE_ENVS) + list(COMMAND_METHODS))),


def scores_file(ds: str, method: str, seed) -> str:
    return str(layout.scores_file(RESULTS, ds, method, seed))


def embedseg_scores() -> list[str]:
    return [scores_file(ds, m, s) for ds in DATASETS for m in EMBEDSEG_METHODS for s in SEEDS]


def prediction_input(wildcards) -> str:
    """What `evaluate` waits for: a predictions folder (ours, a command method's), or a
    baseline's 'predicted' flag."""
    if Variant.parse(wildcards.method) or wildcards.method in COMMAND_METHODS:
        return str(layout.predictions_dir(RESULTS, wildcards.ds, wildcards.method, wildcards.seed))
    return checkpoints.baseline_predict.get(ds=wildcards.ds, baseline=wildcards.method, seed=wildcards.seed).output[0]


rule evaluate:
    input:
        data=DATA,
        predictions=prediction_input,
    output:
        scores_file("{ds}", "{method}", "{seed}"),
    log:
        str(layout.job_log(RESULTS, "evaluate", "{ds}", "{method}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "evaluate", "{ds}", "{method}", layout.seed_dir("{seed}")))
    conda:
        conda_env("embedseg")
    threads: step_resources("evaluate")["threads"]
    resources:
        mem_mb=step_resources("evaluate")["mem_mb"],
        runtime=step_resources("evaluate")["runtime"],
    params:
        masks=lambda wildcards, input: layout.test_masks(input.data),
        predictions=str(layout.predictions_dir(RESULTS, "{ds}", "{method}", "{seed}")),
    shell:
        "run-embedseg evaluate {params.masks:q} {params.predictions:q} --out {output:q} > {log:q} 2>&1"
