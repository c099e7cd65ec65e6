# Scores of every method's predictions, one CSV per run (docs/interfaces.md).


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
