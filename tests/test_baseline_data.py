"""The tiny prepared data set of the baseline tests (conftest.make_nuclei_split) is what the
baselines are promised (docs/interfaces.md), and `embedseg baseline --help` stays light."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import subprocess
import sys

import numpy as np

from embedseg import methods
from embedseg.baseline import add_arguments
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import read_labels
from embedseg.options import from_args


def test_split_has_paired_images_and_masks(nuclei_split, tmp_path):
    root = nuclei_split(tmp_path)
    assert DatasetSettings.load(root).name == "tiny-nuclei"
    for subset in ("train", "val", "test"):
        images = sorted(p.name for p in (root / subset / "images").iterdir())
        assert images == sorted(p.name for p in (root / subset / "masks").iterdir())
        labels = read_labels(root / subset / "masks" / images[0])
        assert labels.shape == (64, 64) and 3 <= len(np.unique(labels)) - 1 <= 6


def test_baseline_help_is_quick_and_light(repo_root):
    """`embedseg baseline --help` must not import torch/TensorFlow/Cellpose (other envs lack them)."""
    code = (
        "import sys; from embedseg.cli import build_parser; build_parser('baseline');"
        "print(sorted(m for m in ('torch', 'tensorflow', 'cellpose') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, check=True)
    assert result.stdout.strip() == "[]"


def test_every_registered_baseline_has_its_runner_and_options(repo_root):
    """Each registry entry names a runner module with its functions, and its configs' fields are
    the command-line options (parsed back into the same dataclass)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for name, method in methods.BASELINES.items():
        # The runner's source, not an import: StarDist's and Cellpose's need their own venvs.
        path = repo_root.joinpath(*method.runner.split(".")).with_suffix(".py")
        functions = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
        assert {method.train, method.predict} <= functions, name
        args = parser.parse_args([name, "train", "DATA", "--out", "MODEL", "--seed", "3"])
        config = from_args(method.train_config, args)
        assert config == dataclasses.replace(method.train_config(), seed=3)
        args = parser.parse_args([name, "predict", "MODEL", "--images", "IMAGES", "--out", "PRED"])
        assert from_args(method.predict_config, args) == method.predict_config()
