# The competing methods of Table 1, each in its own conda environment. A baseline may decline to
# run (missing weights offline, …) by writing predictions/{ds}/{method}/NOT_RUN.txt instead of a
# seed folder, so these jobs finish with empty flag files under status/ and the prediction job is
# a checkpoint: only once it has run does the workflow know whether there is anything to score.


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
