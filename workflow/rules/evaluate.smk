rule evaluate:
    input:
        data=f"{RESULTS}/data/{{ds}}",
        predictions=prediction_input,
    output:
        scores_file("{ds}", "{method}", "{seed}"),
    log:
        f"{RESULTS}/logs/evaluate/{{ds}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{ds}}/{{method}}/seed{{seed}}.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("evaluate")["threads"]
    resources:
        mem_mb=step_resources("evaluate")["mem_mb"],
        runtime=step_resources("evaluate")["runtime"],
    params:
        predictions=f"{RESULTS}/predictions/{{ds}}/{{method}}/seed{{seed}}",
    shell:
        "run-embedseg evaluate {input.data}/test/masks {params.predictions} --out {output} > {log} 2>&1"
