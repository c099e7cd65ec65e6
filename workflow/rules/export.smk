# bioimage.io packages (`embedseg export`, docs/export.md): per data set, the EmbedSeg model
# (medoid centres, TTA, when the config trains and predicts them) of the seed with the best
# validation IoU; `embedseg export` picks that seed, and its card gives the test AP_dsb of the
# model and the mean ± sd over all seeds. Target `export`; part of `all` when config `export` is true.
EXPORT_VARIANT = Variant(
    "medoid" if "medoid" in CENTERS else CENTERS[0],
    True if True in config["tta"] else config["tta"][0],
)
EXPORTED_PACKAGES = [str(layout.export_package(RESULTS, ds, EXPORT_VARIANT.name)) for ds in DATASETS]


localrules:
    export,


rule export:
    input:
        EXPORTED_PACKAGES,


rule export_package:
    input:
        # every seed's model and test scores, in the same order
        models=lambda wildcards: [model_marker(wildcards.ds, wildcards.variant, seed) for seed in SEEDS],
        scores=lambda wildcards: [scores_file(wildcards.ds, wildcards.variant, seed) for seed in SEEDS],
        data=DATA,
    output:
        str(layout.export_package(RESULTS, "{ds}", "{variant}")),
    log:
        str(layout.job_log(RESULTS, "export", "{ds}", "{variant}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "export", "{ds}", "{variant}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("export")["threads"]
    resources:
        mem_mb=step_resources("export")["mem_mb"],
        runtime=step_resources("export")["runtime"],
    params:
        # the model folders (best.pt) of the train.json markers
        models=lambda wildcards, input: [str(Path(marker).parent) for marker in input.models],
        sample=lambda wildcards, input: layout.test_images(input.data),
        options=variant_options(workflow_args.clustering_options),
    shell:
        "run-embedseg export {params.models:q} --scores {input.scores:q} --sample {params.sample:q}"
        " --out {output:q} {params.options} > {log:q} 2>&1"
