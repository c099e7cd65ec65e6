TABLES = layout.tables_dir(RESULTS)
FIGURES = layout.figures_dir(RESULTS)


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
        reported=REPORTED_RESULTS,
    output:
        report(
            multiext(str(TABLES / "table1"), ".csv", ".md", ".tex"),
            caption="../report/table1.rst",
            category="Tables",
        ),
        report(
            multiext(str(TABLES / "table2"), ".csv", ".md", ".tex"),
            caption="../report/table2.rst",
            category="Tables",
        ),
        report(
            str(TABLES / "comparison_to_paper.md"),
            caption="../report/comparison.rst",
            category="Tables",
        ),
        # budget and convergence of every trained run (embedseg/report/budget.py), from the
        # train and predict jobs' benchmark files, which exist once their outputs above do
        report(
            multiext(str(TABLES / "budget"), ".csv", ".md"),
            caption="../report/budget.rst",
            category="Tables",
        ),
        str(TABLES / "convergence.json"),
    log:
        str(layout.job_log(RESULTS, "tables")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "tables"))
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
        not_comparable=workflow_args.option("--not-comparable", config["report"]["not_comparable"]),
    shell:
        "run-embedseg tables {params.results:q} --paper {input.paper:q} --reported {input.reported:q}"
        " --out {params.out_dir:q}"
        " {params.selection} {params.not_comparable} > {log:q} 2>&1"


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
            [str(FIGURES / f"fig1_{ds}.png") for ds in DATASETS],
            caption="../report/fig1.rst",
            category="Figures",
        ),
        report(str(FIGURES / "ap_curves.png"), caption="../report/ap_curves.rst", category="Figures"),
        report(
            str(FIGURES / "training_curves.png"),
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        [str(FIGURES / f"{name}.pdf") for name in [*(f"fig1_{ds}" for ds in DATASETS), "ap_curves", "training_curves"]],
    log:
        str(layout.job_log(RESULTS, "figures")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "figures"))
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
        "run-embedseg figures {params.results:q} --out {params.out_dir:q} {params.selection} > {log:q} 2>&1"


# One page per data set: every test image with every method's masks (embedseg/report/gallery.py).
rule gallery:
    input:
        embedseg_scores(),
        baseline_flags(),
        baseline_results,
        command_scores(),
        data=prepared_data(),
        predictions=embedseg_predictions() + command_predictions(),
    output:
        gallery=directory(str(layout.gallery_dir(RESULTS) / "{ds}")),
        page=report(
            str(layout.gallery_report_page(RESULTS, "{ds}")),
            caption="../report/gallery.rst",
            category="Gallery",
        ),
    log:
        str(layout.job_log(RESULTS, "gallery", "{ds}")),
    benchmark:
        str(layout.job_benchmark(RESULTS, "gallery", "{ds}"))
    conda:
        conda_env("embedseg")
    threads: step_resources("report")["threads"]
    resources:
        mem_mb=step_resources("report")["mem_mb"],
        runtime=step_resources("report")["runtime"],
    params:
        results=lambda wildcards, output: Path(output.gallery).parent.parent,
    shell:
        "(run-embedseg gallery {params.results:q} --dataset {wildcards.ds:q} --out {output.gallery:q}"
        " && cp {output.gallery:q}/index.html {output.page:q}) > {log:q} 2>&1"


# The run's provenance, written last: it hashes every output above.
rule crate:
    input:
        rules.tables.output,
        rules.figures.output,
        expand(rules.gallery.output, ds=DATASETS),
        data=prepared_data(),
    output:
        str(layout.crate_file(RESULTS)),
    log:
        str(layout.job_log(RESULTS, "crate")),
    conda:
        conda_env("embedseg")
    params:
        results=lambda wildcards, output: Path(output[0]).parent,
        config=workflow.configfiles[-1] if workflow.configfiles else "",
        seeds=" ".join(map(str, SEEDS)),
    shell:
        "run-embedseg crate {params.results:q} --config {params.config:q} --seeds {params.seeds} > {log:q} 2>&1"
