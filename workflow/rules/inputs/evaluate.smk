# Input functions of rule evaluate (rules/evaluate.smk).


def scores_file(ds: str, method: str, seed) -> str:
    return str(layout.scores_file(RESULTS, ds, method, seed))


def embedseg_scores() -> list[str]:
    return [scores_file(ds, m, s) for ds in DATASETS for m in EMBEDSEG_METHODS for s in SEEDS]


def prediction_input(wildcards) -> str:
    """What `evaluate` waits for: a predictions folder (ours, a command method's), or a
    baseline's 'predicted' flag."""
    if Variant.parse(wildcards.method) or wildcards.method in COMMAND_METHODS:
        return str(layout.predictions_dir(RESULTS, wildcards.ds, wildcards.method, wildcards.seed))
    return checkpoints.baseline_predict.get(ds=wildcards.ds, baseline=wildcards.method, seed=wildcards.seed).output[0]
