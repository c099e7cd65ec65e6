"""The embedded demo data sets: deterministic, the right kinds of objects, and prepared end to end."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from embedseg.cli import main
from embedseg.data.synthetic import (
    SYNTHETIC_SETS,
    disc_centers,
    disc_image,
    disc_labels,
    disc_stack,
    generate,
    random_discs,
)
from embedseg.dataset_settings import DatasetSettings


@pytest.mark.parametrize("name", SYNTHETIC_SETS)
def test_deterministic_for_a_seed(name):
    first, again, other = (list(generate(name, 3, 96, seed)) for seed in (0, 0, 1))
    for (stem_a, image_a, labels_a), (stem_b, image_b, labels_b) in zip(first, again):
        assert stem_a == stem_b
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(first[0][1], other[0][1])
    # image i depends on (seed, i) only: asking for more images keeps the first ones
    np.testing.assert_array_equal(list(generate(name, 1, 96, 0))[0][1], first[0][1])


def test_worms_centroid_often_outside_and_overlaps_kept():
    worms = list(generate("synthetic-worms", 12, 128, 0))
    outside, total, overlapping = 0, 0, 0
    for _, image, stack in worms:
        assert image.dtype == np.uint16 and stack.ndim == 3 and stack.shape[1:] == image.shape
        assert set(np.unique(stack)) <= {0, 1}
        overlapping += int((stack.sum(axis=0) > 1).any())
        for mask in stack.astype(bool):
            y, x = np.round(ndimage.center_of_mass(mask)).astype(int)
            outside += not mask[y, x]
            total += 1
    assert total >= 24
    assert outside / total >= 0.3  # the case where a medoid centre differs from the centroid
    assert overlapping >= 2


def test_cells_touch_and_nuclei_vary():
    # at the real sets' pixel scale (docs/data.md): ~60 cells per 1024² field, DSB-sized nuclei
    _, cells_image, cells = next(generate("synthetic-cells", 1, 384, 0))
    assert cells_image.dtype == np.uint16 and cells.ndim == 2
    # touching cells: some pixel of one cell has a 4-neighbour of another cell
    a, b = cells[:, :-1], cells[:, 1:]
    assert ((a != b) & (a > 0) & (b > 0)).any()
    _, nuclei_image, nuclei = next(generate("synthetic-nuclei", 1, 256, 0))
    assert nuclei_image.dtype == np.uint8
    sizes = np.bincount(nuclei.ravel())[1:]
    assert len(sizes) >= 5 and sizes.max() > 3 * sizes.min()
    means = ndimage.mean(nuclei_image, nuclei, np.arange(1, len(sizes) + 1))
    assert np.ptp(means) > 40  # varied brightness


def tree_digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_prepare_synthetic_is_reproducible_and_replaces_atomically(tmp_path):
    out = tmp_path / "worms"
    args = ["prepare", "synthetic-worms", "--out", str(out), "--n-images", "8", "--image-size", "64"]
    assert main(args) == 0
    first = tree_digest(out)
    assert main(args) == 0
    assert tree_digest(out) == first  # same arguments, byte-identical files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worms"]  # no staging folders left behind
    settings = DatasetSettings.load(out)
    assert settings.one_hot and settings.val_split == "crop" and settings.crop_size == 64
    assert settings.min_object_size > 0 and settings.extra["counts"] == {"train": 6, "val": 0, "test": 2}
    # a failing run (unknown layout) leaves the earlier result untouched
    (tmp_path / "junk").mkdir()
    assert main(["prepare", "folder", "--source", str(tmp_path / "junk"), "--out", str(out)]) == 2
    assert tree_digest(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk", "worms"]


def test_discs_include_their_boundary_and_choose_who_stays_on_top():
    """The discs of the tests and benchmarks: radius 2 around (3, 3) is 13 pixels; where two
    overlap the later covers the earlier unless the first stays on top."""
    discs = [(3, 3, 2), (3, 5, 2)]
    assert np.count_nonzero(disc_labels((8, 8), discs[:1])) == 13
    assert disc_labels((8, 8), discs)[3, 4] == 2 and disc_labels((8, 8), discs, first_on_top=True)[3, 4] == 1
    stack = disc_stack((8, 8), discs)
    assert stack.shape == (2, 8, 8) and stack[:, 3, 4].tolist() == [1, 1]
    assert np.argwhere(disc_centers((8, 8), discs)).tolist() == [[3, 3], [3, 5]]
    image = disc_image(stack, np.random.default_rng(0), noise=0)
    assert image.dtype == np.uint8 and image[3, 4] == 190 and image[7, 7] == 40


@pytest.mark.parametrize("integer", [True, False])
def test_random_discs_lie_inside_the_image_and_repeat_for_a_seed(integer):
    discs = random_discs(np.random.default_rng(4), 40, 50, radius=(3, 9), integer=integer)
    assert discs == random_discs(np.random.default_rng(4), 40, 50, radius=(3, 9), integer=integer)
    for cy, cx, r in discs:
        assert 3 <= r < 9 and r <= cy < 40 - r and r <= cx < 40 - r
        assert isinstance(r, int) == integer
