"""A tiny prepared data set (`{train,val,test}/{images,masks}` + dataset.json) for the baseline tests.

Other test_baseline_* files import :func:`make_nuclei_split`; the test here checks that the
data it makes is what the baselines are promised (docs/interfaces.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from embedseg.dataset_settings import DatasetSettings
from embedseg.io import read_labels, write_labels, write_tiff

REPO = Path(__file__).resolve().parents[1]


def nuclei_image(rng: np.random.Generator, size: int, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs (radius 5–8 px, some touching) on a dark noisy background: uint8 image, uint16 labels."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for object_id in range(1, n_objects + 1):
        radius = rng.uniform(5, 8)
        cy, cx = rng.uniform(radius, size - radius, 2)
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) & (labels == 0)] = object_id
    image = 30 + 150 * (labels > 0) + rng.normal(0, 10, labels.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def make_nuclei_split(root: Path, size: int = 64, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write a prepared split of synthetic nuclei under `root` and return it."""
    rng = np.random.default_rng(seed)
    for subset, count in (counts or {"train": 4, "val": 2, "test": 2}).items():
        for index in range(count):
            image, labels = nuclei_image(rng, size, n_objects=6)
            write_tiff(root / subset / "images" / f"img{index}.tif", image)
            write_labels(root / subset / "masks" / f"img{index}.tif", labels)
    DatasetSettings(name="tiny-nuclei", crop_size=size, min_object_size=37).save(root)
    return root


def run_embedseg(python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `embedseg …` with the given interpreter (main venv or a baseline venv); fail loudly."""
    env = dict(os.environ, EMBEDSEG_DEVICE="cpu")
    result = subprocess.run([str(python), "-m", "embedseg", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=REPO)
    assert result.returncode == 0, f"embedseg {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def baseline_python(venv: str, modules: str, make_target: str) -> Path:
    """Interpreter of a baseline venv that can import `modules`; skip the test (with the reason) otherwise."""
    import pytest

    python = REPO / venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} missing: build it with `make {make_target}`")
    probe = subprocess.run([str(python), "-c", f"import {modules}, embedseg.baselines.common"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"{modules} not importable in {python}: {probe.stderr.strip().splitlines()[-1]}")
    return python


def score_predictions(gt_dir: Path, pred_dir: Path, out_csv: Path) -> list[dict[str, str]]:
    """Score predictions with `embedseg evaluate` (in this process) and return the CSV rows."""
    import csv

    from embedseg.cli import main

    assert main(["evaluate", str(gt_dir), str(pred_dir), "--out", str(out_csv)]) == 0
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    n_images = len(list(gt_dir.iterdir()))
    assert len(rows) == 9 * n_images and all(0 <= float(row["ap"]) <= 1 for row in rows)
    return rows


def test_split_has_paired_images_and_masks(tmp_path):
    root = make_nuclei_split(tmp_path)
    assert DatasetSettings.load(root).name == "tiny-nuclei"
    for subset in ("train", "val", "test"):
        images = sorted(p.name for p in (root / subset / "images").iterdir())
        assert images == sorted(p.name for p in (root / subset / "masks").iterdir())
        labels = read_labels(root / subset / "masks" / images[0])
        assert labels.shape == (64, 64) and 3 <= len(np.unique(labels)) - 1 <= 6


def test_baseline_help_is_quick_and_light():
    """`embedseg baseline --help` must not import torch/TensorFlow/Cellpose (other envs lack them)."""
    code = ("import sys; from embedseg.cli import build_parser; build_parser('baseline');"
            "print(sorted(m for m in ('torch', 'tensorflow', 'cellpose') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
