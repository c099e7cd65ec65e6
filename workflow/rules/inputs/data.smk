# Input functions of the data rules (rules/data.smk).

# The prepared data set, input of most rules.
DATA = str(layout.data_dir(RESULTS, "{ds}"))


def prepare_dataset(wildcards) -> str:
    """The positional data set of `embedseg prepare`: a registry name (embedseg/data/names.py),
    or `folder` for one's own data."""
    return wildcards.ds if wildcards.ds in dataset_names.DATASETS else dataset_names.FOLDER


def source_input(wildcards) -> list[str]:
    """A local source's files as the inputs of `prepare`, so that changing the data re-runs it."""
    source = workflow_args.local_source(config["datasets"][wildcards.ds].get("source"))
    return [] if source is None else workflow_args.source_files(source)


def dataset_options(wildcards) -> str:
    """Options of `embedseg prepare` from config `datasets.<ds>` (unset keys: its defaults)."""
    return workflow_args.prepare_options(config["datasets"][wildcards.ds])


def run_data(wildcards) -> str:
    """Prepared data a run trains on: one folder per data set, or with `resplit: true` one per
    run (`prepare_resplit`, its validation split drawn with seed split_seed + run)."""
    if config["resplit"]:
        return str(layout.resplit_data_dir(RESULTS, wildcards.ds, wildcards.seed))
    return str(layout.data_dir(RESULTS, wildcards.ds))


def run_crops(wildcards) -> str:
    """Crops a run trains on: one folder per data set and centre, or with `resplit: true` one
    per run (rule crops_resplit)."""
    if config["resplit"]:
        return str(layout.resplit_crops_dir(RESULTS, wildcards.ds, wildcards.center, wildcards.seed))
    return str(layout.crops_dir(RESULTS, wildcards.ds, wildcards.center))


def prepared_data() -> list[str]:
    """The prepared folder of every data set (figures draws its test images and masks)."""
    return [str(layout.data_dir(RESULTS, ds)) for ds in DATASETS]


def crops_output(path) -> str:
    """crops/ of a data set: a temp() folder (deleted once its trainings are done, re-made when
    needed) where config `temp_crops` asks for it; nothing else reads it."""
    return temp(directory(str(path))) if config["temp_crops"] else directory(str(path))


def seed_option(offset=0):
    """`--seed` of prepare/crops: split_seed (+ offset), none for `auto` (the data set's seed)."""
    seed = config["split_seed"]
    return "" if seed == "auto" else f"--seed {seed + offset}"
