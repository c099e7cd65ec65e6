# EmbedSeg and Neven et al.: one network, trained per centre type, predicted with or without TTA.


rule train:
    input:
        run_crops,
    output:
        # train.json only: a preempted job must keep last.pt etc. to resume (see model_marker)
        model_marker("{ds}", "{center}", "{seed}"),
    log:
        f"{RESULTS}/logs/train/{{ds}}/embedseg-{{center}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{ds}}/embedseg-{{center}}/seed{{seed}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("train")["threads"]
    resources:
        mem_mb=step_resources("train")["mem_mb"],
        runtime=step_resources("train")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=f"{RESULTS}/models/{{ds}}/embedseg-{{center}}/seed{{seed}}",
        options=train_options,
    shell:
        "run-embedseg train {input} --out {params.model_dir} --seed {wildcards.seed}"
        " --device {params.device} {params.options} --resume > {log} 2>&1"


rule predict:
    input:
        model=model_marker("{ds}", "{center}", "{seed}"),
        data=f"{RESULTS}/data/{{ds}}",
    output:
        directory(f"{RESULTS}/predictions/{{ds}}/embedseg-{{center}}-{{tta}}/seed{{seed}}"),
    log:
        f"{RESULTS}/logs/predict/{{ds}}/embedseg-{{center}}-{{tta}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{{ds}}/embedseg-{{center}}-{{tta}}/seed{{seed}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("predict")["threads"]
    resources:
        mem_mb=step_resources("predict")["mem_mb"],
        runtime=step_resources("predict")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        checkpoint=f"{RESULTS}/models/{{ds}}/embedseg-{{center}}/seed{{seed}}/best.pt",
        options=predict_options,
    shell:
        "run-embedseg predict {params.checkpoint} --images {input.data}/test/images --out {output}"
        " --device {params.device} {params.options} > {log} 2>&1"
