# Each rule declares all it reads, so that --summary and --report are complete: train.json stands
# for its model folder (memory.json, log.csv: see model_marker), a baseline's flags for its
# model and predictions.
rule tables:
    input:
        embedseg_scores(),
        baseline_flags(),
        baseline_results,
        command_scores(),
        trained_models(),
        data=prepared_data(),  # dataset.json: a 3-D data set is reported at τ 0.1 … 0.9
        paper=PAPER_RESULTS,
    output:
        report(
            multiext(f"{RESULTS}/tables/table1", ".csv", ".md", ".tex"),
            caption="../report/table1.rst",
            category="Tables",
        ),
        report(
            multiext(f"{RESULTS}/tables/table2", ".csv", ".md", ".tex"),
            caption="../report/table2.rst",
            category="Tables",
        ),
        report(
            f"{RESULTS}/tables/comparison_to_paper.md",
            caption="../report/comparison.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("report")["threads"]
    resources:
        mem_mb=step_resources("report")["mem_mb"],
        runtime=step_resources("report")["runtime"],
    params:
        results=lambda wildcards, output: Path(output[0]).parent.parent,
        out_dir=lambda wildcards, output: Path(output[0]).parent,
        selection=selection_options(),
        not_comparable=optional_flag("--not-comparable", config["report"]["not_comparable"]),
    shell:
        "run-embedseg tables {params.results} --paper {input.paper} --out {params.out_dir}"
        " {params.selection} {params.not_comparable} > {log} 2>&1"


rule figures:
    input:
        embedseg_scores(),
        baseline_flags(),
        baseline_results,
        command_scores(),
        trained_models(),
        data=prepared_data(),
        predictions=embedseg_predictions() + command_predictions(),
    output:
        report(
            expand(f"{RESULTS}/figures/fig1_{{ds}}.png", ds=DATASETS),
            caption="../report/fig1.rst",
            category="Figures",
        ),
        report(f"{RESULTS}/figures/ap_curves.png", caption="../report/ap_curves.rst", category="Figures"),
        report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        expand(
            f"{RESULTS}/figures/{{name}}.pdf",
            name=[f"fig1_{ds}" for ds in DATASETS] + ["ap_curves", "training_curves"],
        ),
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        conda_env("embedseg")
    threads: step_resources("report")["threads"]
    resources:
        mem_mb=step_resources("report")["mem_mb"],
        runtime=step_resources("report")["runtime"],
    params:
        results=lambda wildcards, output: Path(output[0]).parent.parent,
        out_dir=lambda wildcards, output: Path(output[0]).parent,
        selection=selection_options(),
    shell:
        "run-embedseg figures {params.results} --out {params.out_dir} {params.selection} > {log} 2>&1"
