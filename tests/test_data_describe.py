"""`embedseg describe-data` and the synthetic sets held to the real sets' bands (docs/data.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedseg import cli
from embedseg.data.describe import REFERENCE_BANDS, describe_image, describe_samples, in_bands, read_samples
from embedseg.data.synthetic import disc_labels, generate

# Images per synthetic set in the band checks (docs/data.md's table uses the same).
N_IMAGES = {"synthetic-cells": 6, "synthetic-nuclei": 24, "synthetic-worms": 16}


def synthetic_summary(name: str) -> dict:
    reference = REFERENCE_BANDS[name]
    return describe_samples(generate(name, N_IMAGES[name], reference["image_size"], seed=0))["set"]


def test_describe_image_counts_contacts_contrast_and_overlap():
    labels = disc_labels((64, 64), [(20, 20, 8), (20, 35, 8), (48, 48, 6)], first_on_top=True)
    image = np.where(labels > 0, 100.0, 10.0) + np.random.default_rng(0).normal(0, 2, labels.shape)
    stats = describe_image(image, labels)
    assert stats["count"] == 3
    assert stats["touching"] == pytest.approx(2 / 3)
    assert stats["fg_bg_contrast"] == pytest.approx(90 / 110, abs=0.01)
    assert stats["snr"] == pytest.approx(45, rel=0.15)
    assert abs(stats["contact_contrast"]) < 1  # no seam: contacts look like the interior
    assert np.isnan(stats["overlap"])
    stack = np.stack([disc_labels((64, 64), [d]) > 0 for d in [(30, 25, 10), (30, 40, 10)]]).astype(np.uint8)
    overlap = describe_image(image, stack)["overlap"]
    both, either = (stack.sum(0) == 2).sum(), (stack.sum(0) > 0).sum()
    assert overlap == pytest.approx(both / either)


@pytest.mark.parametrize("name", sorted(REFERENCE_BANDS))
def test_synthetic_sets_stay_in_the_stored_real_bands(name):
    summary = synthetic_summary(name)
    inside = in_bands(summary, REFERENCE_BANDS[name]["bands"])
    outside = {k: summary[k]["p50"] for k, ok in inside.items() if not ok}
    assert not outside, f"{name}: outside the real bands {REFERENCE_BANDS[name]['bands']}: {outside}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic-cells", "synthetic-nuclei"])
def test_synthetic_sets_stay_in_the_real_data_bands(shared_data, name):
    """The bands measured again on ../shared/data: the stored ones still hold, and so does the set."""
    reference = REFERENCE_BANDS[name]
    real = describe_samples(read_samples(shared_data / reference["real"]))["set"]
    summary = synthetic_summary(name)
    for statistic, (low, high) in reference["bands"].items():
        assert real[statistic]["p10"] == pytest.approx(low, rel=1e-3, abs=1e-6), statistic
        assert real[statistic]["p90"] == pytest.approx(high, rel=1e-3, abs=1e-6), statistic
        assert real[statistic]["p10"] <= summary[statistic]["p50"] <= real[statistic]["p90"], statistic


def test_describe_data_command_writes_per_image_and_set_statistics(tmp_path, capsys):
    from conftest import make_nuclei_split

    data = make_nuclei_split(tmp_path / "data")
    assert cli.main(["describe-data", str(data), "--out", str(tmp_path / "d.json"), "--max-images", "3"]) == 0
    description = json.loads((tmp_path / "d.json").read_text())
    assert len(description["images"]) == 3
    assert description["set"]["count"]["p50"] > 0
    assert "touching" in capsys.readouterr().out
