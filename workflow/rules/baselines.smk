# The competing methods of Table 1, each in its own conda environment. A baseline may decline to
# run (missing weights offline, …) by writing predictions/{ds}/{method}/NOT_RUN.txt instead of a
# seed folder, so these jobs finish with empty flag files under status/ and the prediction job is
# a checkpoint: only once it has run does the workflow know whether there is anything to score.


rule baseline_train:
    input:
        run_data,
    output:
        touch(baseline_flag("{ds}", "{baseline}", "{seed}", "trained")),
    log:
        f"{RESULTS}/logs/baseline_train/{{ds}}/{{baseline}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline_train/{{ds}}/{{baseline}}/seed{{seed}}.tsv"
    conda:
        baseline_env
    threads: step_resources("baseline_train")["threads"]
    resources:
        mem_mb=step_resources("baseline_train")["mem_mb"],
        runtime=step_resources("baseline_train")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=f"{RESULTS}/models/{{ds}}/{{baseline}}/seed{{seed}}",
        options=baseline_args("train"),
    shell:
        "run-embedseg baseline {wildcards.baseline} train {input} --out {params.model_dir}"
        " --seed {wildcards.seed} --device {params.device} {params.options} > {log} 2>&1"


checkpoint baseline_predict:
    input:
        trained=rules.baseline_train.output[0],
        data=f"{RESULTS}/data/{{ds}}",
    output:
        touch(baseline_flag("{ds}", "{baseline}", "{seed}", "predicted")),
    log:
        f"{RESULTS}/logs/baseline_predict/{{ds}}/{{baseline}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline_predict/{{ds}}/{{baseline}}/seed{{seed}}.tsv"
    conda:
        baseline_env
    threads: step_resources("baseline_predict")["threads"]
    resources:
        mem_mb=step_resources("baseline_predict")["mem_mb"],
        runtime=step_resources("baseline_predict")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=f"{RESULTS}/models/{{ds}}/{{baseline}}/seed{{seed}}",
        predictions=f"{RESULTS}/predictions/{{ds}}/{{baseline}}/seed{{seed}}",
        options=baseline_args("predict"),
    shell:
        "run-embedseg baseline {wildcards.baseline} predict {params.model_dir} --images {input.data}/test/images"
        " --out {params.predictions} --device {params.device} {params.options} > {log} 2>&1"
