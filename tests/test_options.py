"""Options declared once: each step's parser is generated from its Config dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from embedseg import export, predict, train
from embedseg.baselines import configs
from embedseg.cli import build_parser
from embedseg.core.cluster import ClusterParams
from embedseg.crops import check_crop_size
from embedseg.data import prepare
from embedseg.dataset_settings import DatasetSettings
from embedseg.inference import ClusteringConfig
from embedseg.io import DataError
from embedseg.options import HelpFormatter, add_options, fingerprint_fields, from_args, nested, option, option_fields

STEP_CONFIGS = [
    (train, train.TrainConfig),
    (predict, predict.PredictConfig),
    (prepare, prepare.PrepareConfig),
    (export, ClusteringConfig),
]


def step_parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser


def defaults(parser: argparse.ArgumentParser) -> dict:
    return {action.dest: action.default for action in parser._actions}


def flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize(("module", "config"), STEP_CONFIGS, ids=lambda x: getattr(x, "__name__", ""))
def test_every_field_is_an_option_with_its_default_and_help(module, config) -> None:
    parser = step_parser(module)
    by_flag = flags(parser)
    instance = config()
    for f in option_fields(config):
        action = by_flag[f"--{f.name.replace('_', '-')}"]  # flag = field name with dashes
        assert action.dest == f.name
        assert action.default == f.default
        assert action.help == f.metadata["help"] and action.help
    # parsing no options gives the Config's defaults
    required = {"train": ["crops", "--out", "m"], "predict": ["m.pt", "--images", "i", "--out", "o"]}
    required |= {"prepare": ["folder", "--out", "d"], "export": ["m", "--out", "p.zip", "--sample", "s"]}
    args = parser.parse_args(required[module.__name__.rsplit(".", 1)[-1]])
    assert from_args(config, args) == instance


def test_fingerprint_is_field_metadata() -> None:
    assert fingerprint_fields(train.TrainConfig) == (
        "lr_horizon",
        "batch_size",
        "virtual_batch",
        "train_size",
        "val_size",
        "val_batch_size",
        "variance_loss",
        "seed",
    )
    assert "epochs" not in fingerprint_fields(train.TrainConfig)


def test_clustering_options_are_declared_once_for_predict_and_export() -> None:
    predict_flags, export_flags = flags(step_parser(predict)), flags(step_parser(export))
    for f in option_fields(ClusteringConfig):
        flag = f"--{f.name.replace('_', '-')}"
        assert predict_flags[flag].help == export_flags[flag].help
        assert predict_flags[flag].default == export_flags[flag].default
    assert ClusteringConfig().seed_thresh == ClusterParams().seed_thresh
    assert predict.PredictConfig().cluster == ClusteringConfig()


def test_clustering_config_resolves_the_preset() -> None:
    settings = DatasetSettings(name="x", min_object_size=50)
    assert ClusteringConfig().params(settings) == ClusterParams()
    current = ClusteringConfig(clustering="current").params(settings)
    assert (current.min_mask_sum, current.min_object_size) == (0, 50)
    assert ClusteringConfig(clustering="current", min_object_size=7).params(settings).min_object_size == 7
    with pytest.raises(DataError, match="--seed-thresh 1.5"):
        ClusteringConfig(seed_thresh=1.5)


def test_nested_configs_parse_flat_and_multi_values_as_tuples() -> None:
    @dataclasses.dataclass(frozen=True)
    class Inner:
        level: float = option(0.5, "a level")

    @dataclasses.dataclass(frozen=True)
    class Outer:
        sizes: tuple[int, ...] = option((1, 2), "sizes")
        on: bool = option(True, "switch")
        inner: Inner = nested(Inner)

    parser = argparse.ArgumentParser()
    add_options(parser, Outer)
    args = parser.parse_args(["--sizes", "3", "4", "5", "--no-on", "--level", "0.25"])
    assert from_args(Outer, args) == Outer(sizes=(3, 4, 5), on=False, inner=Inner(0.25))


def test_help_shows_no_none_default() -> None:
    for module, _ in STEP_CONFIGS:
        step = module.__name__.rsplit(".", 1)[-1]
        text = build_parser(step)._subparsers._group_actions[0].choices[step].format_help()
        assert "(default: None)" not in text, step
        force = flags(step_parser(module))["--force"]
        assert HelpFormatter("x")._get_help_string(force) == force.help  # a flag off unless given
    assert "(default: 8)" in build_parser("train")._subparsers._group_actions[0].choices["train"].format_help()


def test_baseline_configs_use_the_shared_machinery() -> None:
    assert configs.option is option


def test_options_module_is_standard_library_only() -> None:
    code = (
        "import sys, embedseg.options, embedseg.baselines.configs; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_crop_size_rule() -> None:
    assert check_crop_size([16]) == 16
    assert check_crop_size([8, 16, 16]) == (8, 16, 16)
    with pytest.raises(DataError, match="e.g. 24 instead of 30"):
        check_crop_size([30])
    with pytest.raises(DataError, match="not 4"):
        check_crop_size([8, 8, 8, 8])
    with pytest.raises(DataError, match="--crop-size 20"):
        prepare.PrepareConfig(crop_size=(20,))


def test_prepare_is_callable_without_argparse(tmp_path) -> None:
    config = prepare.PrepareConfig(n_images=6, image_size=32, seed=3)
    settings = prepare.prepare("synthetic-nuclei", tmp_path / "data", config)
    assert settings == DatasetSettings.load(tmp_path / "data")
    assert settings.crop_size == 32  # the set's 64 shrunk to the generated images
    extra = json.loads((tmp_path / "data" / "dataset.json").read_text())["extra"]
    assert (extra["n_images"], extra["image_size"], extra["split_seed"]) == (6, 32, 3)
    assert sum(extra["counts"].values()) == 6
