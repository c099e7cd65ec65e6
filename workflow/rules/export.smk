# bioimage.io packages (`embedseg export`, docs/export.md): per data set, the EmbedSeg model
# (medoid centres, TTA, when the config trains and predicts them) of the seed with the best
# validation IoU; `embedseg export` picks that seed, and its card gives the test AP_dsb of the
# model and the mean ± sd over all seeds. Target `export`; part of `all` when config `export` is true.
EXPORT_CENTER = "medoid" if "medoid" in CENTERS else CENTERS[0]
EXPORT_TTA = "tta" if "tta" in TTA else TTA[0]
EXPORT_METHOD = f"embedseg-{EXPORT_CENTER}-{EXPORT_TTA}"
EXPORTED_PACKAGES = [f"{RESULTS}/export/{ds}/{EXPORT_METHOD}.zip" for ds in DATASETS]


localrules:
    export,


rule export:
    input:
        EXPORTED_PACKAGES,


rule export_package:
    input:
        # every seed's model and test scores, in the same order
        models=lambda wildcards: [model_marker(wildcards.ds, wildcards.center, seed) for seed in SEEDS],
        scores=lambda wildcards: [
            scores_file(wildcards.ds, f"embedseg-{wildcards.center}-{wildcards.tta}", seed) for seed in SEEDS
        ],
        data=f"{RESULTS}/data/{{ds}}",
    output:
        f"{RESULTS}/export/{{ds}}/embedseg-{{center}}-{{tta}}.zip",
    log:
        f"{RESULTS}/logs/export/{{ds}}/embedseg-{{center}}-{{tta}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export/{{ds}}/embedseg-{{center}}-{{tta}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("export")["threads"]
    resources:
        mem_mb=step_resources("export")["mem_mb"],
        runtime=step_resources("export")["runtime"],
    params:
        # the model folders (best.pt) of the train.json markers
        models=lambda wildcards, input: " ".join(str(Path(marker).parent) for marker in input.models),
        options=clustering_options,
    shell:
        "run-embedseg export {params.models} --scores {input.scores} --sample {input.data}/test/images"
        " --out {output} {params.options} > {log} 2>&1"
