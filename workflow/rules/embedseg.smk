# EmbedSeg and Neven et al.: one network, trained per centre type, predicted with or without TTA
# (each (centre, TTA) pair is a methods.Variant, wildcard {variant}).


EMBEDSEG_MODEL = methods.embedseg_model("{center}")


rule train:
    input:
        run_crops,
    output:
        # train.json only: a preempted job must keep last.pt etc. to resume (see model_marker)
        model_marker("{ds}", EMBEDSEG_MODEL, "{seed}"),
    log:
        str(layout.job_log(RESULTS, "train", "{ds}", EMBEDSEG_MODEL, layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "train", "{ds}", EMBEDSEG_MODEL, layout.seed_dir("{seed}")))
    conda:
        conda_env("embedseg")
    threads: step_resources("train")["threads"]
    resources:
        mem_mb=step_resources("train")["mem_mb"],
        runtime=step_resources("train")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        model_dir=str(layout.model_dir(RESULTS, "{ds}", EMBEDSEG_MODEL, "{seed}")),
        options=lambda wildcards: workflow_args.train_options(
            config["datasets"][wildcards.ds]["train"], config["train"]
        ),
    shell:
        "run-embedseg train {input:q} --out {params.model_dir:q} --seed {wildcards.seed}"
        " --device {params.device:q} {params.options} --resume > {log:q} 2>&1"


rule predict:
    input:
        model=lambda wildcards: model_marker(wildcards.ds, wildcards.variant, wildcards.seed),
        data=DATA,
    output:
        directory(str(layout.predictions_dir(RESULTS, "{ds}", "{variant}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "predict", "{ds}", "{variant}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "predict", "{ds}", "{variant}", layout.seed_dir("{seed}")))
    conda:
        conda_env("embedseg")
    threads: step_resources("predict")["threads"]
    resources:
        mem_mb=step_resources("predict")["mem_mb"],
        runtime=step_resources("predict")["runtime"],
        gpu=GPUS,
    params:
        device=DEVICE,
        checkpoint=lambda wildcards, input: Path(input.model).with_name(layout.BEST_PT),
        images=lambda wildcards, input: layout.test_images(input.data),
        options=variant_options(workflow_args.predict_options),
    shell:
        "run-embedseg predict {params.checkpoint:q} --images {params.images:q} --out {output:q}"
        " --device {params.device:q} {params.options} > {log:q} 2>&1"
