rule prepare:
    input:
        source_input,
    output:
        directory(f"{RESULTS}/data/{{ds}}"),
    log:
        f"{RESULTS}/logs/prepare/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare/{{ds}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("prepare")["threads"]
    resources:
        mem_mb=step_resources("prepare")["mem_mb"],
        runtime=step_resources("prepare")["runtime"],
    params:
        cache=config["cache"],
        seed=config["split_seed"],
        dataset=prepare_dataset,
        options=dataset_options,
    shell:
        "run-embedseg prepare {params.dataset} --out {output} --cache {params.cache}"
        " --seed {params.seed} {params.options} > {log} 2>&1"


rule crops:
    input:
        f"{RESULTS}/data/{{ds}}",
    output:
        crops_output(f"{RESULTS}/crops/{{ds}}/{{center}}"),
    log:
        f"{RESULTS}/logs/crops/{{ds}}/{{center}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crops/{{ds}}/{{center}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("crops")["threads"]
    resources:
        mem_mb=step_resources("crops")["mem_mb"],
        runtime=step_resources("crops")["runtime"],
    params:
        seed=config["split_seed"],
    shell:
        "run-embedseg crops {input} --out {output} --center {wildcards.center}" " --seed {params.seed} > {log} 2>&1"


# With `resplit: true` every run trains on its own train/val split: run k draws its validation
# images (BBBC010: validation crops) with seed split_seed + k; the test split keeps split_seed,
# so all runs are scored on the prepared data set's test images.
use rule prepare as prepare_resplit with:
    output:
        directory(f"{RESULTS}/data-resplit/{{ds}}/seed{{seed}}"),
    log:
        f"{RESULTS}/logs/prepare/{{ds}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare/{{ds}}/seed{{seed}}.tsv"
    params:
        cache=config["cache"],
        seed=config["split_seed"],
        dataset=prepare_dataset,
        options=lambda wildcards: f"{dataset_options(wildcards)} --resplit-run {wildcards.seed}",


use rule crops as crops_resplit with:
    input:
        f"{RESULTS}/data-resplit/{{ds}}/seed{{seed}}",
    output:
        directory(f"{RESULTS}/crops-resplit/{{ds}}/{{center}}/seed{{seed}}"),
    log:
        f"{RESULTS}/logs/crops/{{ds}}/{{center}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crops/{{ds}}/{{center}}/seed{{seed}}.tsv"
    params:
        seed=lambda wildcards: config["split_seed"] + int(wildcards.seed),
