"""3-D network and loss: same weights and inputs → the same numbers as official EmbedSeg 0.2.5
(BranchedERFNet_3d, SpatialEmbLoss_3d).

The official code runs in .venv-official (`make venv-official`), ours in a worker process of the
test's own Python, both through benchmarks/official3d_network.py on a 16×64×64 volume of six
ellipsoids with anisotropy 2. Skipped when .venv-official is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import compare_official, official3d_network

Comparison = tuple[Path, dict[str, Any]]  # scratch folder, figures of official3d_network.compare

pytestmark = pytest.mark.skipif(
    not compare_official.OFFICIAL_PYTHON.exists(),
    reason=f"{compare_official.OFFICIAL_PYTHON} absent: build it with `make venv-official`",
)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    folder = tmp_path_factory.mktemp("official3d")
    official3d_network.write_inputs(folder, shape=(16, 64, 64), anisotropy=2.0, n_objects=6)
    return folder, official3d_network.run_both(folder, compare_official.OFFICIAL_PYTHON)


def test_same_parameter_count_and_initialisation(comparison: Comparison) -> None:
    _, figures = comparison
    assert figures["n_parameters_ours"] == figures["n_parameters_official"] == 3_690_146
    if not figures["same_torch"]:
        pytest.skip("different torch versions initialise layers differently")
    assert figures["same_init"], "seeded initial weights differ from the official network's"


def test_same_network_output(comparison: Comparison) -> None:
    folder, figures = comparison
    assert figures["output_shape"] == [1, 7, 16, 64, 64]
    assert figures["output_error"] < official3d_network.OUTPUT_TOLERANCE
    output = np.load(folder / "ours-output.npy")
    assert output[0, :3].std() > 0 and output[0, 3:6].std() > 0  # offsets and σ vary: a real check


def test_same_first_step_loss_and_gradients(comparison: Comparison) -> None:
    folder, figures = comparison
    assert figures["loss_error"] < official3d_network.LOSS_TOLERANCE, figures
    assert figures["same_gradient_names"] and figures["n_gradients"] == 368
    assert figures["gradient_error"] < official3d_network.GRADIENT_TOLERANCE, figures
    with np.load(folder / "ours-gradients.npz") as gradients:
        assert all(np.abs(gradients[name]).max() > 0 for name in gradients.files if name.endswith("weight"))


def test_inputs_hold_several_objects_and_the_centroid_fallback(comparison: Comparison) -> None:
    """Guards the checks above against a trivial pass (an empty or one-object volume)."""
    folder, figures = comparison
    with np.load(folder / "inputs.npz") as inputs:
        ids = np.unique(inputs["instances"])[1:]
        n_centres = int(inputs["centres"].sum())
    assert len(ids) >= 4 and n_centres < len(ids)
    assert figures["loss_official"] > 0.1
