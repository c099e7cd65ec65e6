# Input functions of our network's rules (rules/embedseg.smk).


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
