"""Rotations and flips for TTA in 2D and 3D: the transform sets (official 3D order), round trips on
NumPy and torch, and undoing a transform on a network output incl. its vector components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cluster import ANISOTROPIC, SIX_NUCLEI, synthetic_raw

from embedseg.core import dihedral
from embedseg.core.embedding import GRID_SPACING
from embedseg.data.synthetic import disc_labels


def distinct(x: np.ndarray) -> bytes:
    """Values and shape of an array, as a hashable key."""
    return x.tobytes() + bytes(x.shape)


def test_2d_set_is_the_eight_dihedral_transforms_in_the_old_order():
    assert dihedral.transforms(2) == dihedral.TRANSFORMS
    assert dihedral.TRANSFORMS[:3] == ((0, False), (0, True), (1, False))
    x = np.arange(12).reshape(3, 4)
    assert len({distinct(dihedral.forward(x, t)) for t in dihedral.TRANSFORMS}) == 8


def test_3d_set_is_the_official_tta_set_in_its_index_order():
    """EmbedSeg 0.2.5 ``apply_tta_3d(im, model, i)``: rot90 by i % 4 in (Y, X), then flip Z for
    i ≥ 8 and flip Y for i in 4..7 and 12..15."""
    x = np.random.default_rng(0).random((2, 3, 4, 5))  # (C, Z, Y, X)
    transforms = dihedral.transforms(3)
    assert len(transforms) == 16
    for i, t in enumerate(transforms):
        expected = np.rot90(x, i % 4, axes=(2, 3))
        if i >= 8:
            expected = np.flip(expected, 1)
        if i % 8 >= 4:
            expected = np.flip(expected, 2)
        assert np.array_equal(dihedral.forward(x, t), expected), (i, t)
    assert len({distinct(dihedral.forward(x, t)) for t in transforms}) == 16
    with pytest.raises(ValueError, match="ndim=4"):
        dihedral.transforms(4)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)], ids=["2d", "3d"])
def test_inverse_undoes_forward_on_numpy_and_torch_alike(shape):
    ndim = 2 if len(shape) == 2 else 3
    x = np.arange(np.prod(shape)).reshape(shape)
    for t in dihedral.transforms(ndim):
        y = dihedral.forward(x, t)
        assert np.array_equal(dihedral.inverse(y, t), x)
        assert np.array_equal(dihedral.forward(torch.from_numpy(x), t).numpy(), y)
        assert np.array_equal(dihedral.inverse(torch.from_numpy(y.copy()), t).numpy(), x)


CASES = {
    "2d": (disc_labels((24, 32), [(8, 9, 6), (15, 22, 6)]), GRID_SPACING),
    "3d": (SIX_NUCLEI[:, :32, :48], ANISOTROPIC),  # Y ≠ X: odd rotations change the shape
}


@pytest.mark.parametrize("case", CASES)
def test_invert_output_brings_a_known_embedding_back(case):
    """The ideal output for a transformed label image (offsets to its objects' centroids) is,
    once inverted, the ideal output for the label image itself: for every transform."""
    labels, spacing = CASES[case]
    ndim = labels.ndim
    expected = synthetic_raw(labels, radius_px=4, spacing=spacing)
    for t in dihedral.transforms(ndim):
        moved = np.ascontiguousarray(dihedral.forward(labels, t))
        transformed = synthetic_raw(moved, radius_px=4, spacing=spacing)
        back = dihedral.invert_output(transformed, t, ndim)
        torch.testing.assert_close(back, expected, rtol=0, atol=1e-6, msg=f"transform {t}")
        # NumPy arrays go through the same mapping.
        assert np.allclose(dihedral.invert_output(transformed.numpy(), t, ndim), back.numpy(), rtol=0, atol=0)


class MomentsToy(torch.nn.Module):
    """An exactly equivariant "network": offsets point to the intensity centroid, σ_d is the
    intensity variance along axis d (so σ_x ≠ σ_y and rotations must swap them), seed = image.
    Input (B, 1, *spatial), output (B, 2D+1, *spatial) in channel order (x, y[, z])."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        spatial = image.shape[2:]
        weights = image[:, 0].double()
        axes = tuple(range(1, weights.dim()))
        weights = weights / weights.sum(dim=axes, keepdim=True)
        grids = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in spatial), indexing="ij")[::-1]
        offsets, sigmas = [], []
        for grid in grids:  # x, y[, z]
            mean = (weights * grid).sum(dim=axes, keepdim=True)
            variance = (weights * (grid - mean) ** 2).sum(dim=axes, keepdim=True)
            offsets.append((mean - grid) * GRID_SPACING)
            sigmas.append(variance.expand_as(weights) / 100)
        return torch.stack(offsets + sigmas + [image[:, 0].double()], dim=1).float()


@pytest.mark.parametrize("shape", [(16, 24), (6, 10, 14)], ids=["2d", "3d"])
def test_tta_of_an_equivariant_network_equals_its_plain_output(shape):
    ndim = len(shape)
    image = torch.from_numpy(np.random.default_rng(1).random(shape).astype(np.float32))[None]
    toy = MomentsToy()
    plain = toy(image[None])[0]
    assert not torch.allclose(plain[ndim], plain[ndim + 1])  # σ_x ≠ σ_y: the swap matters
    transforms = dihedral.transforms(ndim)
    outputs = [dihedral.invert_output(toy(dihedral.forward(image, t)[None])[0], t, ndim) for t in transforms]
    for t, output in zip(transforms, outputs):
        torch.testing.assert_close(output, plain, rtol=0, atol=1e-6, msg=f"transform {t}")
    torch.testing.assert_close(torch.stack(outputs).mean(0), plain, rtol=0, atol=1e-6)


def test_invert_output_rejects_a_transform_of_the_other_dimension():
    with pytest.raises(ValueError, match="3D"):
        dihedral.invert_output(torch.zeros(7, 2, 4, 4), (1, True), 3)
