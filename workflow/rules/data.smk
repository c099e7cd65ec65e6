rule prepare:
    input:
        source_input,
    output:
        directory(f"{RESULTS}/data/{{ds}}"),
    params:
        cache=config["cache"],
        seed=config["split_seed"],
        dataset=prepare_dataset,
        options=dataset_options,
    log:
        f"{RESULTS}/logs/prepare/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare/{{ds}}.tsv"
    threads: step_resources("prepare")["threads"]
    resources:
        mem_mb=step_resources("prepare")["mem_mb"],
        runtime=step_resources("prepare")["runtime"],
    conda:
        conda_env("embedseg")
    shell:
        "run-embedseg prepare {params.dataset} --out {output} --cache {params.cache}"
        " --seed {params.seed} {params.options} > {log} 2>&1"


rule crops:
    input:
        f"{RESULTS}/data/{{ds}}",
    output:
        crops_output(f"{RESULTS}/crops/{{ds}}/{{center}}"),
    params:
        seed=config["split_seed"],
    log:
        f"{RESULTS}/logs/crops/{{ds}}/{{center}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/crops/{{ds}}/{{center}}.tsv"
    threads: step_resources("crops")["threads"]
    resources:
        mem_mb=step_resources("crops")["mem_mb"],
        runtime=step_resources("crops")["runtime"],
    conda:
        conda_env("embedseg")
    shell:
        "run-embedseg crops {input} --out {output} --center {wildcards.center}"
        " --seed {params.seed} > {log} 2>&1"
