# Data sets: prepared (downloaded, synthesised or read from one's own source, then split) and cut
# into training crops.


rule prepare:
    input:
        source_input,
    output:
        directory(DATA),
    log:
        str(layout.job_log(RESULTS, "prepare", "{ds}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "prepare", "{ds}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("prepare")["threads"]
    resources:
        mem_mb=step_resources("prepare")["mem_mb"],
        runtime=step_resources("prepare")["runtime"],
    params:
        cache=config["cache"],
        seed=seed_option(),
        dataset=prepare_dataset,
        options=dataset_options,
    shell:
        "run-embedseg prepare {params.dataset:q} --out {output:q} --cache {params.cache:q}"
        " {params.seed} {params.options} > {log:q} 2>&1"


rule crops:
    input:
        DATA,
    output:
        crops_output(layout.crops_dir(RESULTS, "{ds}", "{center}")),
    log:
        str(layout.job_log(RESULTS, "crops", "{ds}", "{center}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "crops", "{ds}", "{center}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("crops")["threads"]
    resources:
        mem_mb=step_resources("crops")["mem_mb"],
        runtime=step_resources("crops")["runtime"],
    params:
        seed=seed_option(),
    shell:
        "run-embedseg crops {input:q} --out {output:q} --center {wildcards.center} {params.seed} > {log:q} 2>&1"


# With `resplit: true` every run trains on its own train/val split: run k draws its validation
# images (BBBC010: validation crops) with seed split_seed + k; the test split keeps split_seed,
# so all runs are scored on the prepared data set's test images.
use rule prepare as prepare_resplit with:
    output:
        directory(str(layout.resplit_data_dir(RESULTS, "{ds}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "prepare", "{ds}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "prepare", "{ds}", layout.seed_dir("{seed}")))
    params:
        cache=config["cache"],
        seed=seed_option(),
        dataset=prepare_dataset,
        options=lambda wildcards: f"{dataset_options(wildcards)} --resplit-run {wildcards.seed}",


use rule crops as crops_resplit with:
    input:
        str(layout.resplit_data_dir(RESULTS, "{ds}", "{seed}")),
    output:
        directory(str(layout.resplit_crops_dir(RESULTS, "{ds}", "{center}", "{seed}"))),
    log:
        str(layout.job_log(RESULTS, "crops", "{ds}", "{center}", layout.seed_dir("{seed}"))),
    benchmark:
        str(layout.job_benchmark(RESULTS, "crops", "{ds}", "{center}", layout.seed_dir("{seed}")))
    params:
        seed=lambda wildcards: seed_option(int(wildcards.seed)),
