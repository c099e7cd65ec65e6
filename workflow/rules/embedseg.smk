# EmbedSeg and Neven et al.: one network, trained per centre type, predicted with or without TTA
# (each (centre, TTA) pair is a methods.Variant, wildcard {variant}).


wildcard_constraints:
    center="|".join(CENTERS),
    # both TTA settings of every centre: a variant's predictions can be asked for by name
    variant="|".join(re.escape(Variant(center, tta).name) for center in CENTERS for tta in (True, False)),


def model_marker(ds: str, method: str, seed) -> str:
    """`train.json` of the EmbedSeg model of `method` (a variant or its model folder): the train
    rule's only declared output. Snakemake deletes a failed job's outputs, so best.pt, last.pt,
    log.csv and memory.json, which a preempted job needs to resume, must not be declared;
    train.json is rewritten whenever training (re)starts, so even a resumed job with no epochs
    left produces it."""
    return str(layout.model_dir(RESULTS, ds, method, seed) / layout.TRAIN_JSON)


def trained_models() -> list[str]:
    """Markers of every EmbedSeg/Neven model the config trains."""
    return [
        model_marker(ds, methods.embedseg_model(center), seed)
        for ds in DATASETS
        for center in CENTERS
        for seed in SEEDS
    ]


def embedseg_predictions() -> list[str]:
    """Prediction folders of every EmbedSeg/Neven model (figures draws them)."""
    return [
        str(layout.predictions_dir(RESULTS, ds, method, seed))
        for ds in DATASETS
        for method in EMBEDSEG_METHODS
        for seed in SEEDS
    ]


def variant_options(build):
    """Input function: `build(config predict, the wildcard's Variant)` of workflow_args."""
    return lambda wildcards: build(config["predict"], Variant.parse(wildcards.variant))


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
