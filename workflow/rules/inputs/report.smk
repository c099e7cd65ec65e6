# Input functions of the report rules (rules/report.smk).


def selection_options() -> str:
    """`--datasets` of `embedseg tables|figures`. Methods and seeds are found from the scores
    folders, because the baselines differ per data set and run fewer seeds than our network."""
    return workflow_args.option("--datasets", DATASETS)
