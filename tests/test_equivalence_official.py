"""Same weights and inputs → the same numbers as the official EmbedSeg 0.2.5 package.

The official code runs in .venv-official (built by `make venv-official`, i.e.
benchmarks/official_env.sh), ours in a second worker process of the test's own Python; both
through benchmarks/compare_official.py on small inputs, without timing. Skipped when
.venv-official is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import compare_official

pytestmark = pytest.mark.skipif(
    not compare_official.OFFICIAL_PYTHON.exists(),
    reason=f"{compare_official.OFFICIAL_PYTHON} absent: build it with `make venv-official`",
)

NETWORK_CASES = ["train_step", "forward", "tta", "cluster"]


def tie_shapes() -> dict[str, np.ndarray]:
    """Objects whose exact medoid is tied between symmetric pixels, so only the official
    summation order picks the official pixel: a square, an even disc, a ring and a C-shape."""
    y, x = np.indices((64, 64)) - 31.5
    radius = np.hypot(y, x)
    square = np.zeros((64, 64), dtype=bool)
    square[12:52, 12:52] = True
    c_shape = (radius < 28) & (radius > 14) & ~((x > 0) & (np.abs(y) < 8))
    return {
        "medoid_square": square,
        "medoid_disc": radius < 25,
        "medoid_ring": (radius < 30) & (radius > 20),
        "medoid_c": c_shape,
    }


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Both peers' outputs for every case, on a 256² image with 12 objects and 64² crops."""
    folder = tmp_path_factory.mktemp("official")
    compare_official.write_inputs(folder, size=256, crop=64, n_objects=12, medoid_areas=(300, 3000))
    with np.load(folder / "inputs.npz") as inputs:
        arrays = dict(inputs)
    arrays.update(tie_shapes())
    np.savez(folder / "inputs.npz", **arrays)
    cases = NETWORK_CASES + sorted(key for key in arrays if key.startswith("medoid_"))
    compare_official.run_peer(compare_official.OFFICIAL_PYTHON, "official", cases, folder, repeats=0)
    compare_official.run_peer(Path(sys.executable), "ours", cases, folder, repeats=0)
    return folder, cases


@pytest.mark.parametrize("case", NETWORK_CASES)
def test_network_loss_tta_and_clustering_match_official(outputs: tuple[Path, list[str]], case: str) -> None:
    folder, _ = outputs
    ((check, passed, detail),) = compare_official.equivalence(folder, [case])
    assert passed, f"{check}: {detail}"


def test_clustering_finds_the_objects(outputs: tuple[Path, list[str]]) -> None:
    """Guards the check above against a trivial pass (both returning an empty image)."""
    folder, _ = outputs
    labels = np.load(folder / "output-ours-cluster.npy")
    assert len(np.unique(labels)) - 1 >= 10


def test_medoid_is_the_official_pixel(outputs: tuple[Path, list[str]]) -> None:
    """Ours reproduces the official summation order, so even tied medoids are the same pixel."""
    folder, cases = outputs
    for case in (c for c in cases if c.startswith("medoid_")):
        official = np.load(folder / f"output-official-{case}.npy")
        ours = np.load(folder / f"output-ours-{case}.npy")
        assert official.tolist() == ours.tolist(), case
