"""3D clustering labels and 3D medoids are the official EmbedSeg 0.2.5 ones (issue 16, item 2).

Both sides run in worker processes of benchmarks/official3d_cluster.py on the same synthetic
inputs (a 7 × 16 × 64 × 64 raw output of six touching nuclei with z steps twice as long as x/y,
and 3D objects incl. tied medoids). Skipped when .venv-official is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import compare_official, official3d_cluster

pytestmark = pytest.mark.skipif(
    not compare_official.OFFICIAL_PYTHON.exists(),
    reason=f"{compare_official.OFFICIAL_PYTHON} absent: build it with `make venv-official`",
)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[bool, str]]]:
    folder = tmp_path_factory.mktemp("official3d")
    checks = official3d_cluster.compare(folder)
    return folder, {case: (passed, detail) for case, passed, detail in checks}


def test_3d_clustering_labels_are_the_official_ones(compared) -> None:
    folder, checks = compared
    passed, detail = checks[official3d_cluster.CLUSTER]
    assert passed, detail
    # Guards against a trivial pass: every nucleus of the synthetic truth is found, whole.
    labels = np.load(folder / "output-ours-cluster.npy")
    truth = np.load(folder / "inputs.npz")["truth"]
    assert len(np.unique(labels)) - 1 == len(np.unique(truth)) - 1 == 6
    for label_id in range(1, 7):
        values, counts = np.unique(labels[truth == label_id], return_counts=True)
        assert values[np.argmax(counts)] > 0 and counts.max() > 0.9 * counts.sum()


def test_3d_medoids_are_the_official_voxels(compared) -> None:
    """Including an even-sided box whose 8 central voxels tie exactly: only the official
    summation order picks the official one."""
    _, checks = compared
    medoids = {case: result for case, result in checks.items() if case.startswith("medoid_")}
    assert len(medoids) >= 5
    for case, (passed, detail) in medoids.items():
        assert passed, f"{case}: {detail}"
