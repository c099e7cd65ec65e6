"""The option strings the workflow passes to each `embedseg` step (embedseg/workflow_args.py):
plain functions, tested without Snakemake; and the config schema checked against the steps'
command lines, so that neither can gain a key the other lacks."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from embedseg import layout, workflow_args
from embedseg.cli import build_parser
from embedseg.methods import Variant

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
AWKWARD = ["cache dir", "$HOME", "it's", "a;b", "*"]  # each must reach the step as one word


def test_config_keys_become_flags() -> None:
    assert workflow_args.options({"train_size": 8, "variance_loss": "paper"}) == "--train-size 8 --variance-loss paper"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "--amp"),
        (False, "--no-amp"),
        (3, "--amp 3"),
        ([16, 48, 48], "--amp 16 48 48"),
        (0.5, "--amp 0.5"),
    ],
)
def test_one_option_per_value_kind(value: object, expected: str) -> None:
    assert workflow_args.option("--amp", value) == expected


def test_unset_keys_leave_the_steps_default() -> None:
    assert workflow_args.options({"tile_size": None, "min_object_size": None}) == ""


@pytest.mark.parametrize("value", AWKWARD)
def test_every_value_is_one_shell_word(value: str) -> None:
    words = shlex.split(workflow_args.options({"cache": value, "voxel_size": [value, value]}))
    assert words == ["--cache", value, "--voxel-size", value, value]


def test_prepare_options_rename_and_skip_the_workflows_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = {
        "source": "~/my data.zip",
        "test": 0.2,
        "crop_size": [16, 64, 64],
        "train": {"epochs": 1},
        "baselines": [],
    }
    words = shlex.split(workflow_args.prepare_options(settings))
    assert words == [
        "--source",
        str(tmp_path / "my data.zip"),
        "--test-fraction",
        "0.2",
        "--crop-size",
        "16",
        "64",
        "64",
    ]


def test_a_url_source_is_passed_as_it_is() -> None:
    url = "https://example.org/data.zip"
    assert workflow_args.local_source(url) is None
    assert workflow_args.prepare_options({"source": url}) == f"--source {url}"


def test_train_options_join_the_data_sets_and_the_global_keys() -> None:
    options = workflow_args.train_options({"epochs": 2, "batch_size": 1}, {"workers": 0, "amp": False})
    assert options == "--epochs 2 --batch-size 1 --workers 0 --no-amp"


def test_tta_comes_from_the_variant_clustering_from_the_config() -> None:
    predict = {"clustering": "paper", "seed_thresh": 0.9, "fg_thresh": 0.5, "tile_size": [64, 64], "compile": True}
    clustering = workflow_args.clustering_options(predict, Variant("centroid", tta=False))
    assert clustering == "--no-tta --clustering paper --seed-thresh 0.9 --fg-thresh 0.5"
    full = workflow_args.predict_options(predict, Variant("medoid", tta=True))
    assert full == "--tta --clustering paper --seed-thresh 0.9 --fg-thresh 0.5 --tile-size 64 64 --compile"


@pytest.mark.parametrize(
    ("device", "gpu", "expected"), [("auto", False, "auto"), ("auto", True, "cuda"), ("cuda:1", True, "cuda:1")]
)
def test_gpu_jobs_use_their_gpu(device: str, gpu: bool, expected: str) -> None:
    assert workflow_args.job_device(device, gpu) == expected


def test_a_gpu_job_on_the_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="device: cpu"):
        workflow_args.job_device("cpu", True)


def test_job_logs_keep_dots_in_names() -> None:
    assert layout.job_log("r", "evaluate", "ds", "my.method", "seed1") == Path("r/logs/evaluate/ds/my.method/seed1.log")
    assert layout.job_benchmark("r", "prepare", "v1.2") == Path("r/benchmarks/prepare/v1.2.tsv")


def test_the_workflows_modules_need_only_the_standard_library() -> None:
    """What the Snakefile imports loads without site-packages (`python -S`: no NumPy, no torch)."""
    code = (
        "import sys; import embedseg.workflow_args, embedseg.layout, embedseg.methods, embedseg.data.names; "
        "print(*sorted({name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["embedseg"]


# --- The schema against the steps' command lines ------------------------------------------------


def step_options(step: str) -> set[str]:
    """Every option string of `embedseg <step>` (imports the step's module)."""
    parser = build_parser(step)
    steps = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {flag for action in steps.choices[step]._actions for flag in action.option_strings}


def schema_keys(properties: dict, skip: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    return [(key, spec) for key, spec in properties.items() if key not in skip]


def flags_of(key: str, spec: dict, renames: dict[str, str] | None = None) -> list[str]:
    """The options a schema key becomes: a boolean both of its switches."""
    flag = (renames or {}).get(key) or workflow_args.cli_flag(key)
    return [flag, f"--no-{flag[2:]}"] if spec.get("type") == "boolean" else [flag]


@pytest.mark.parametrize(
    ("step", "keys", "renames"),
    [
        (
            "prepare",
            schema_keys(SCHEMA["$defs"]["dataset"]["properties"], workflow_args.WORKFLOW_DATASET_KEYS),
            workflow_args.PREPARE_FLAGS,
        ),
        (
            "train",
            schema_keys(SCHEMA["$defs"]["dataset"]["properties"]["train"]["properties"])
            + schema_keys(SCHEMA["properties"]["train"]["properties"]),
            None,
        ),
        ("predict", schema_keys(SCHEMA["properties"]["predict"]["properties"]), None),
        (
            "export",
            [(key, SCHEMA["properties"]["predict"]["properties"][key]) for key in workflow_args.CLUSTERING_KEYS],
            None,
        ),
    ],
    ids=["prepare", "train", "predict", "export"],
)
def test_every_schema_key_is_an_option_of_its_step(step: str, keys: list, renames: dict | None) -> None:
    known = step_options(step)
    missing = [flag for key, spec in keys for flag in flags_of(key, spec, renames) if flag not in known]
    assert keys and not missing, f"config keys without an `embedseg {step}` option: {missing}"


def test_source_files_lists_a_folders_files_and_a_zip_itself(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "images" / "a.tif").write_bytes(b"")
    (tmp_path / "src" / ".hidden").write_bytes(b"")
    assert workflow_args.source_files(tmp_path / "src") == [str(tmp_path / "src" / "images" / "a.tif")]
    assert workflow_args.source_files(tmp_path / "data.zip") == [str(tmp_path / "data.zip")]


def test_variants_no_table_shows_are_named():
    from embedseg.methods import Variant

    assert workflow_args.unshown_variants([Variant("medoid", False)]) == ["embedseg-medoid-notta"]
    assert workflow_args.unshown_variants([Variant("medoid", True), Variant("medoid", False)]) == []
    assert workflow_args.unshown_variants([Variant("centroid", False)]) == []  # Neven et al.: Table 1
