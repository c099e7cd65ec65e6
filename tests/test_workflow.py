"""The Snakemake workflow: job counts of the paper's configuration, config validation, and a real
run of config/test.yaml end to end (every `embedseg` step, no conda), then its incremental
behaviour: a second run does nothing, a deleted model re-runs only what depends on it.

Snakemake runs as a subprocess in a temporary working directory that links the repository's
config/, so nothing is written into the checkout, with `--workflow-profile none`: the project
venv runs every job (tests/test_conda_workflow.py covers the conda route).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from browser import check_in_chromium, chromium
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TAUS = [f"{0.50 + 0.05 * i:.2f}" for i in range(9)]
EMBEDSEG_VARIANTS = {"embedseg-medoid-tta", "embedseg-medoid-notta", "embedseg-centroid-tta", "embedseg-centroid-notta"}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's workflow in `workdir` (which sees the repo's config/)."""
    config_link = workdir / "config"
    if not config_link.exists():
        config_link.symlink_to(REPO / "config")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(SNAKEFILE),
            "--directory",
            str(workdir),
            "--workflow-profile",
            "none",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}\n{failed_logs(workdir)}"
        )
    return result


def failed_logs(workdir: Path) -> str:
    """Tails of the step logs that mention an error: which `embedseg` step failed and why."""
    tails = []
    for log in sorted(workdir.glob("results/*/logs/**/*.log")):
        text = log.read_text(errors="replace")
        if re.search(r"error|Traceback", text, re.IGNORECASE):
            tails.append(f"--- {log.relative_to(workdir)}\n{text[-1500:]}")
    return "\n".join(tails)


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table a (dry) run prints (the first table only)."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "test.yaml"])
def test_shipped_configs_pass_the_schema(name: str) -> None:
    validate(load_config(name), str(SCHEMA))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["datasets"]["synthetic-nuclei"]["train"].update(epoch=3), "'epoch' was unexpected"),  # typo
        (lambda c: c.update(seed=[1]), "'seed' was unexpected"),  # typo of `seeds`
        (lambda c: c.update(seeds="nine"), r"On instance\['seeds'\]"),  # wrong type
        (lambda c: c["predict"].update(clustering="fast"), r"On instance\['predict'\]\['clustering'\]"),  # no choice
    ],
)
def test_schema_rejects_typos_and_wrong_types(edit, named: str) -> None:
    config = load_config("test.yaml")
    config.setdefault("predict", {})
    edit(config)
    with pytest.raises(WorkflowError, match=named):
        validate(config, str(SCHEMA))


def test_a_typo_stops_the_workflow_naming_the_key(tmp_path: Path) -> None:
    config = load_config("test.yaml")
    config["datasets"]["synthetic-nuclei"]["train"]["epoch"] = 3
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "typo.yaml"), check=False)
    assert result.returncode != 0
    assert "'epoch' was unexpected" in result.stdout + result.stderr


def test_paper_config_plans_54_trainings_and_108_evaluations(tmp_path: Path) -> None:
    """Dry run of config/config.yaml: needs no downloaded data."""
    config = load_config("config.yaml")
    baseline_runs = sum(len(ds.get("baselines", [])) for ds in config["datasets"].values()) * len(
        config["baselines"]["seeds"]
    )
    counts = job_counts(snakemake(tmp_path, "-n", "--quiet", "rules").stdout)
    assert counts["prepare"] == 3
    assert counts["crops"] == 3 * 2
    assert counts["train"] == 3 * 2 * 9
    assert counts["predict"] == 3 * 2 * 9 * 2
    # Baselines' scoring jobs join once their prediction checkpoints have run.
    assert counts["evaluate"] == 108
    assert counts["baseline_train"] == counts["baseline_predict"] == baseline_runs == 12
    assert counts["tables"] == counts["figures"] == counts["all"] == 1


def write_own_dataset(folder: Path, n_images: int = 6) -> Path:
    """A data set of one's own in the `folder` layout: images/ and masks/ matched by file stem."""
    rng = np.random.default_rng(0)
    for i in range(n_images):
        labels = np.zeros((48, 48), np.uint16)
        labels[8:20, 8:20], labels[28:40, 24:44] = 1, 2
        image = (labels > 0) * 150 + rng.integers(0, 50, labels.shape)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "images" / f"img{i}.tif", image.astype(np.uint8))
        tifffile.imwrite(folder / "masks" / f"img{i}.tif", labels)
    return folder


def own_dataset_config(tmp_path: Path, source: str) -> Path:
    """config/test.yaml with its data set replaced by `mydata`, read from `source`."""
    config = load_config("test.yaml")
    train = config["datasets"]["synthetic-nuclei"]["train"]
    config["datasets"] = {
        "mydata": {
            "source": source,
            "layout": "folder",
            "normalization": "percentile",
            "crop_size": 32,
            "test": 0.25,
            "train": train,
            "baselines": ["3class-unet"],
        },
    }
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_own_dataset_is_planned_from_its_source(tmp_path: Path) -> None:
    """Any data set name with a source: prepared as the `folder` set with the configured options,
    then cropped, trained, predicted and scored like the registry's; config/test.yaml's own
    method otsu-watershed predicts its test images and is scored too (no training step)."""
    source = write_own_dataset(tmp_path / "my images")
    result = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(own_dataset_config(tmp_path, str(source))))
    counts = job_counts(result.stdout)
    assert counts["prepare"] == 1 and counts["train"] == 2 and counts["predict"] == 4
    assert counts["baseline_train"] == 1 and counts["method_predict"] == 1 and "method_train" not in counts
    assert counts["evaluate"] == 4 + 1  # our four variants, the method (the baseline's joins after its checkpoint)
    predict = re.search(r"^Shell command: (run-embedseg command predict .*)$", result.stdout, re.MULTILINE)[1]
    assert predict.startswith(
        "run-embedseg command predict 'python -m embedseg.examples.otsu_watershed {images} {out}'"
        " --data results/test/data/mydata --images results/test/data/mydata/test/images"
    )
    assert "--out results/test/predictions/mydata/otsu-watershed/seed1 --seed 1 --device cpu" in predict
    assert "results/test/scores/mydata/otsu-watershed/seed1.csv" in result.stdout
    prepare = re.search(r"^Shell command: (.* prepare .*)$", result.stdout, re.MULTILINE)[1]
    assert "prepare folder --out results/test/data/mydata" in prepare
    for option in (f"--source '{source}'", "--layout folder", "--normalization percentile", "--test-fraction 0.25"):
        assert option in prepare


def test_values_with_spaces_and_dollars_reach_their_step_as_one_word(tmp_path: Path) -> None:
    """Every path and value a rule passes is shell-quoted: the download cache and the paper's
    numbers in folders with a space and a `$` in their names."""
    paper = tmp_path / "my dir" / "paper $x.yaml"
    paper.parent.mkdir()
    paper.write_text((REPO / "config" / "paper_results.yaml").read_text())
    config = {**load_config("test.yaml"), "cache": "cache dir $HOME", "report": {"paper_results": str(paper)}}
    (tmp_path / "awkward.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(tmp_path / "awkward.yaml"))
    commands = [shlex.split(m) for m in re.findall(r"^Shell command: (run-embedseg .*)$", result.stdout, re.MULTILINE)]
    prepare = next(words for words in commands if words[1] == "prepare")
    tables = next(words for words in commands if words[1] == "tables")
    assert prepare[prepare.index("--cache") + 1] == "cache dir $HOME"
    assert tables[tables.index("--paper") + 1] == str(paper)


@pytest.mark.slow
def test_checkout_and_cache_with_spaces_and_dollars_run_every_job(tmp_path: Path) -> None:
    """Issue 26, cases 6 and 7: config/test.yaml run for real from a checkout whose path has a
    space, with `cache:` a folder named with a space and `$x`: every job succeeds."""
    checkout = tmp_path / "my check out"
    for part in ("embedseg", "workflow", "config"):
        shutil.copytree(REPO / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work dir"
    work.mkdir()
    config = {**load_config("test.yaml"), "cache": str(tmp_path / "cache dir $x")}
    (work / "awkward.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "workflow" / "Snakefile")]
        + [
            "--directory",
            str(work),
            "--workflow-profile",
            "none",
            "--cores",
            "2",
            "--configfile",
            str(work / "awkward.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{failed_logs(work)}"
    assert (work / "results" / "test" / "tables" / "table1.csv").is_file()
    assert not (work / "x").exists() and not list(tmp_path.glob("cache dir")), "$x was expanded by the shell"


def test_variants_no_table_shows_are_named_at_start(tmp_path: Path) -> None:
    """`centers: [medoid]` with `tta: [false]`: trained and scored, in neither table; say so."""
    config = {**load_config("test.yaml"), "centers": ["medoid"], "tta": [False]}
    (tmp_path / "unshown.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "all", "--configfile", str(tmp_path / "unshown.yaml"))
    assert "embedseg-medoid-notta will be trained and scored but shown in no table" in result.stderr + result.stdout


def test_own_dataset_and_own_method_run_into_table1(tmp_path: Path) -> None:
    """A real run of `mydata` (folder layout, a source the test writes) with config/test.yaml's
    methods: the own data set and the own method otsu-watershed both reach Table 1."""
    source = write_own_dataset(tmp_path / "my images", n_images=8)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(own_dataset_config(tmp_path, str(source))))
    table1 = pd.read_csv(tmp_path / "results" / "test" / "tables" / "table1.csv")
    rows = table1[table1["dataset"] == "mydata"]
    assert set(rows["method"]) == {"3class-unet", "otsu-watershed", "embedseg-centroid-notta", "embedseg-medoid-tta"}
    otsu = rows[rows["method"] == "otsu-watershed"]
    # scored for real: Otsu finds the bright objects (its watershed splits the 12 x 20 one: 0.17)
    assert float(otsu[f"ap_{TAUS[0]}"].iloc[0]) > 0


def test_ome_zarr_images_run_through_the_workflow_into_table1(tmp_path: Path) -> None:
    """Issue 27, item 4: a `folder` data set whose images are OME-Zarr. prepare keeps the test
    images as OME-Zarr, EmbedSeg predicts them out of core into OME-Zarr label groups, the
    baseline reads them whole, and evaluate scores both against the TIFF masks."""
    from embedseg.zarr_io import write_image

    source = write_own_dataset(tmp_path / "zarr images", n_images=8)
    for tiff in sorted((source / "images").glob("*.tif")):
        write_image(tiff.with_name(tiff.stem + ".ome.zarr"), tifffile.imread(tiff), "yx", (32, 32))
        tiff.unlink()
    config_path = own_dataset_config(tmp_path, str(source))
    config = yaml.safe_load(config_path.read_text())
    del config["methods"]  # the example method reads TIFFs only
    config_path.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config_path))
    results = tmp_path / "results" / "test"
    assert len(list((results / "data" / "mydata" / "test" / "images").glob("*.ome.zarr"))) == 2
    assert not list((results / "data" / "mydata" / "train" / "images").glob("*.ome.zarr"))  # cropped from TIFFs
    predicted = results / "predictions" / "mydata" / "embedseg-medoid-tta" / "seed1"
    assert len(list(predicted.glob("*.ome.zarr/labels"))) == 2
    table1 = pd.read_csv(results / "tables" / "table1.csv")
    rows = table1[table1["dataset"] == "mydata"]
    assert set(rows["method"]) == {"3class-unet", "embedseg-centroid-notta", "embedseg-medoid-tta"}


def test_own_dataset_test_fraction_is_held_out(tmp_path: Path) -> None:
    """The `test:` key's `embedseg prepare --test-fraction`: that share of the images is the test set."""
    source = write_own_dataset(tmp_path / "mine", n_images=8)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "embedseg",
            "prepare",
            "folder",
            "--source",
            str(source),
            "--test-fraction",
            "0.5",
            "--out",
            str(tmp_path / "data"),
        ],
        check=True,
        capture_output=True,
    )
    assert len(list((tmp_path / "data" / "test" / "images").glob("*.tif"))) == 4
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedseg",
            "prepare",
            "folder",
            "--source",
            str(source),
            "--test-fraction",
            "1.5",
            "--out",
            str(tmp_path / "bad"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "--test-fraction 1.5" in bad.stderr and "Traceback" not in bad.stderr


def test_added_image_or_edited_mask_re_prepares_the_data_set(tmp_path: Path) -> None:
    """Issue 26, case 3: an image and mask added to a `folder` source, or a mask edited in
    place, after a run: `prepare` runs again (it read 'Nothing to be done' before)."""
    source = write_own_dataset(tmp_path / "mine", n_images=4)
    config = str(own_dataset_config(tmp_path, str(source)))
    data = tmp_path / "results" / "test" / "data" / "mydata"
    prepared = lambda: sum(len(list((data / split / "images").glob("*.tif"))) for split in ("train", "val", "test"))  # noqa: E731
    target = "results/test/data/mydata"
    snakemake(tmp_path, "--cores", "1", target, "--configfile", config)
    assert prepared() == 4
    assert "Nothing to be done" in snakemake(tmp_path, "-n", target, "--configfile", config).stdout
    write_own_dataset(tmp_path / "more", n_images=5)
    for kind in ("images", "masks"):
        (tmp_path / "more" / kind / "img4.tif").rename(source / kind / "img4.tif")
    snakemake(tmp_path, "--cores", "1", target, "--configfile", config)
    assert prepared() == 5
    mask = source / "masks" / "img0.tif"
    edited = tifffile.imread(mask)
    edited[edited == 2] = 0
    time.sleep(0.01)
    tifffile.imwrite(mask, edited)
    assert job_counts(snakemake(tmp_path, "-n", target, "--configfile", config).stdout) == {"prepare": 1}


@pytest.mark.parametrize("source", [None, "no/such/folder"])
def test_own_dataset_without_its_source_stops_at_start_naming_the_key(tmp_path: Path, source) -> None:
    result = snakemake(tmp_path, "-n", "--configfile", str(own_dataset_config(tmp_path, source)), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config datasets.mydata.source" in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"predict": "segment {image} {out}"}, "config methods.mine.predict: unknown placeholder(s) {image}"),
        ({"predict": "segment {images} {out}", "datasets": ["other"]}, "config methods.mine.datasets: ['other']"),
        ({"predict": "segment {images} {out}", "conda": "no/env.yaml"}, "config methods.mine.conda: no/env.yaml"),
    ],
)
def test_bad_own_method_stops_at_start_naming_the_key(tmp_path: Path, entry: dict, named: str) -> None:
    config = load_config("test.yaml")
    config["methods"]["mine"] = entry
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and named in output and "Traceback" not in output


def test_own_method_with_a_builtin_name_stops_at_start(tmp_path: Path) -> None:
    config = load_config("test.yaml")
    config["methods"] = {"3class-unet": {"predict": "segment {images} {out}"}}
    (tmp_path / "clash.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "clash.yaml"), check=False)
    assert (
        result.returncode != 0 and "config methods.3class-unet: '3class-unet' is taken" in result.stdout + result.stderr
    )


def test_own_method_trains_on_its_seeds_with_its_resources(tmp_path: Path) -> None:
    """A train command: one model folder per seed of the entry, read by its predictions; the
    entry's resources, conda file and GPU (config `gpu: true` gives it `--device cuda`)."""
    config = load_config("test.yaml") | {"gpu": True, "device": "auto"}
    (tmp_path / "mine.yaml").write_text("dependencies: [python=3.11]\n")
    config["methods"] = {
        "mine": {
            "train": "fit {data} {model} --seed {seed}",
            "predict": "apply {model} {images} {out} --device {device}",
            "seeds": [4, 5],
            "gpu": True,
            "conda": "mine.yaml",
            "resources": {"train": {"mem_mb": 12000, "runtime": 90}},
        }
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(tmp_path / "own.yaml"))
    counts = job_counts(result.stdout)
    assert counts["method_train"] == counts["method_predict"] == 2
    model = "results/test/models/synthetic-nuclei/mine/seed5"
    assert (
        f"run-embedseg command train 'fit {{data}} {{model}} --seed {{seed}}' --data results/test/data/synthetic-nuclei"
        f" --out {model} --seed 5 --device cuda" in result.stdout
    )
    assert f"--model {model} --out results/test/predictions/synthetic-nuclei/mine/seed5" in result.stdout
    train_job = result.stdout.split("rule method_train:", 1)[1].split("Shell command", 1)[0]
    assert "gpu=1" in train_job and "mem_mb=12000" in train_job and "runtime=90" in train_job


@pytest.mark.parametrize(
    ("device", "expected"), [("auto", "--device cuda"), ("cuda:1", "--device cuda:1"), ("cpu", None)]
)
def test_gpu_jobs_must_use_their_gpu(tmp_path: Path, device: str, expected: str | None) -> None:
    """`gpu: true`: training and prediction get `--device cuda` (which fails without a GPU), not
    `auto`'s silent CPU fallback; `device: cpu` beside it is a contradiction stopped at start-up."""
    config = load_config("test.yaml") | {"gpu": True, "device": device}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(tmp_path / "gpu.yaml"), check=False)
    if expected is None:
        assert result.returncode != 0 and "`gpu: true`" in result.stdout + result.stderr
        return
    assert result.returncode == 0, result.stderr[-3000:]
    job = re.compile(r"Shell command: run-embedseg (train|predict|baseline)")
    lines = [line for line in result.stdout.splitlines() if job.match(line)]
    assert len(lines) >= 4 and all(f"{expected} " in line for line in lines)  # train, predict x2, U-Net train


def test_workflow_runs_as_a_module_of_another_workflow(tmp_path: Path) -> None:
    """Loaded with `module` from a project elsewhere: the package, the conda files and the
    paper's numbers come from this repository, results go to the project."""
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{REPO / "config" / "test.yaml"}"\n\n\n'
        f'module embedseg:\n    snakefile:\n        "{SNAKEFILE}"\n    config:\n        config\n\n\n'
        "use rule * from embedseg as embedseg_*\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--workflow-profile", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout)["embedseg_train"] == 2
    assert f"--paper {REPO / 'config' / 'paper_results.yaml'}" in result.stdout
    prepare = "Shell command: run-embedseg prepare synthetic-nuclei --out results/test/data/synthetic-nuclei"
    assert prepare in result.stdout


def test_workflow_knows_the_registry_data_sets() -> None:
    """The names the workflow imports (embedseg/data/names.py) are the registry's, in its order."""
    from embedseg.data import names
    from embedseg.data.registry import REGISTRY

    assert tuple(REGISTRY) == names.DATASETS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config/test.yaml run to `all`; returns its working directory."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--cores", "2", "--configfile", "config/test.yaml")
    return workdir


def test_tiny_run_writes_table1_and_table2(tiny_run: Path) -> None:
    tables = tiny_run / "results" / "test" / "tables"
    for name in ("table1", "table2"):
        for ext in ("csv", "md", "tex"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    table1 = pd.read_csv(tables / "table1.csv")
    ours = table1[table1["dataset"] == "synthetic-nuclei"]
    # The baseline, the method of one's own (config/test.yaml's otsu-watershed), Neven et al. and
    # EmbedSeg (the other two variants are Table 2's), once each, in the report's order
    assert list(ours["method"]) == ["3class-unet", "otsu-watershed", "embedseg-centroid-notta", "embedseg-medoid-tta"]
    assert list(ours["label"])[:2] == ["3-Class U-Net", "otsu-watershed"]
    assert (ours["status"] == "measured").all()
    ap = ours[[f"ap_{tau}" for tau in TAUS]]
    # scored for real, not only well-formed: empty predictions would give 0 everywhere
    assert float(ours.set_index("method").loc["otsu-watershed", f"ap_{TAUS[0]}"]) > 0
    # each cell is the mean over seeds of the per-image mean of the method's scores files, whose
    # rows cover τ = 0.10 … 0.90 (Table 1 shows 0.50 … 0.90)
    scores = tiny_run / "results" / "test" / "scores" / "synthetic-nuclei"
    for method, row in zip(ours["method"], ap.to_numpy(float)):
        runs = [
            pd.read_csv(path).round({"tau": 2}).groupby("tau")["ap"].mean().loc[[float(t) for t in TAUS]]
            for path in sorted((scores / method).glob("seed*.csv"))
        ]
        assert runs and row == pytest.approx(pd.concat(runs, axis=1).mean(axis=1).to_numpy(), rel=1e-5, abs=1e-6), (
            method
        )
    table2 = pd.read_csv(tables / "table2.csv")
    assert set(table2["method"]) == EMBEDSEG_VARIANTS
    assert table2[[f"value_{tau}" for tau in TAUS]].notna().all().all()
    figures = tiny_run / "results" / "test" / "figures"
    for name in ("fig1_synthetic-nuclei", "ap_curves", "training_curves"):
        assert (figures / f"{name}.png").stat().st_size > 0


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_tiny_run_gallery_shows_every_test_image_in_chromium(tiny_run: Path, tmp_path: Path) -> None:
    results = tiny_run / "results" / "test"
    n_images = len(list((results / "data" / "synthetic-nuclei" / "test" / "masks").iterdir()))
    methods = json.loads(
        re.search(r'"methods": (\[.*?\])', (results / "gallery" / "synthetic-nuclei" / "index.html").read_text())[1]
    )
    assert len(methods) >= 4  # our four variants, the baseline and otsu-watershed where they ran
    # one epoch of training: the scores may tie, so sorting is checked by name here (and by
    # score in tests/test_gallery.py)
    check_in_chromium(results / "gallery" / "synthetic-nuclei", n_images, len(methods), tmp_path, scores_differ=False)


def test_html_report_holds_tables_and_figures(tiny_run: Path) -> None:
    report = tiny_run / "report.html"
    snakemake(tiny_run, "--configfile", "config/test.yaml", "--report", str(report))
    text = report.read_text(errors="replace")
    for name in ("table1.csv", "table2.csv", "comparison_to_paper.md", "ap_curves.png", "training_curves.png"):
        assert name in text
    assert "Gallery" in text


def test_second_run_has_nothing_to_do(tiny_run: Path) -> None:
    result = snakemake(tiny_run, "--cores", "2", "--configfile", "config/test.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleted_model_reruns_only_its_dependents(tiny_run: Path) -> None:
    model = tiny_run / "results" / "test" / "models" / "synthetic-nuclei" / "embedseg-medoid" / "seed1"
    assert (model / "best.pt").is_file() and (model / "last.pt").is_file()
    for path in sorted(model.iterdir(), reverse=True):
        path.unlink()
    model.rmdir()
    plan = snakemake(tiny_run, "-n", "--quiet", "rules", "--configfile", "config/test.yaml").stdout
    # the model, its two predictions (TTA and not) and their scores, then the report
    assert job_counts(plan) == {
        **{"train": 1, "predict": 2, "evaluate": 2, "tables": 1, "figures": 1},
        **{"gallery": 1, "crate": 1, "all": 1},
    }


def test_interrupted_training_resumes_from_last_checkpoint(tiny_run: Path) -> None:
    """The train rule declares only train.json, so a killed job (whose declared outputs Snakemake
    deletes) keeps last.pt, log.csv and memory.json, and the re-run resumes instead of starting
    over, even when the kill came after the last epoch: the epoch history survives."""
    model = tiny_run / "results" / "test" / "models" / "synthetic-nuclei" / "embedseg-centroid" / "seed1"
    history = (model / "log.csv").read_text()
    (model / "train.json").unlink()  # the state a kill after the last epoch leaves behind
    target = str((model / "train.json").relative_to(tiny_run))
    result = snakemake(tiny_run, target, "--cores", "1", "--configfile", "config/test.yaml")
    assert job_counts(result.stdout + result.stderr) == {"train": 1}
    assert (model / "train.json").is_file() and (model / "memory.json").is_file()
    assert (model / "log.csv").read_text() == history
    train_log = (
        tiny_run / "results" / "test" / "logs" / "train" / "synthetic-nuclei" / "embedseg-centroid" / "seed1.log"
    )
    assert "resuming" in train_log.read_text()
