"""The vectorised spatial-embedding loss equals a plain per-object loop written as in the paper code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedseg.core import losses
from embedseg.core.embedding import (
    GRID_SPACING,
    bandwidth,
    coordinate_grid,
    gaussian_score,
    grid_spacing,
    spatial_embedding,
    spatial_embedding_at,
)
from embedseg.core.losses import SpatialEmbLoss, object_centers, object_pixels
from embedseg.data.synthetic import disc_centers, disc_labels, disc_stack

SIZE = 48
# Disc 2 has no stored centre and disc 3 holds two (its own and a stray one) → centroid fallback.
DISCS = [(12, 12, 7), (30, 14, 6), (20, 34, 9), (38, 36, 5)]
STRAY_CENTER = (20, 30)


def reference_lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Berman et al.'s binary Lovász hinge of one flat image, step by step."""
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, descending=True)
    gt_sorted = labels[order]
    n_positive = gt_sorted.sum()
    intersection = n_positive - gt_sorted.cumsum(0)
    union = n_positive + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    grad = jaccard.clone()
    grad[1:] = jaccard[1:] - jaccard[:-1]
    return torch.dot(torch.relu(errors_sorted), grad)


def official_grid(
    shape: tuple[int, ...],
    anisotropy: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(D, *shape) grid built as the official losses build theirs: ``linspace(0, pixel, grid)`` per
    axis with grid 1024 and pixel 1 in x and y, and in 3-D pixel_z = (n_z − 1)/(n_x − 1)·anisotropy
    (``create_dicts``), here with n_z = 2·Z (any n_z ≥ Z gives the same δ_z), cut to `shape`."""
    axes = [torch.linspace(0, 1, 1024, dtype=dtype)[:n] for n in shape[-2:]]  # y, x
    if len(shape) == 3:
        n_z = 2 * shape[0]
        axes.insert(0, torch.linspace(0, (n_z - 1) / 1023 * anisotropy, n_z, dtype=dtype)[: shape[0]])
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1])  # channel order x, y(, z)


def reference_loss(
    prediction: torch.Tensor,
    masks_per_image: list[list[torch.Tensor]],
    center_images: torch.Tensor,
    variance_loss: str,
    anisotropy: float = 1.0,
) -> tuple[torch.Tensor, list[float]]:
    """Loss of docs/method.md §4 with one Python iteration per object (boolean masks (*S) per
    object), for D = 2 or 3 as the official my_loss.py / my_loss_3d.py."""
    total, ious = 0.0, []
    for pred, masks, center_image in zip(prediction, masks_per_image, center_images):
        ndim = pred.dim() - 1
        spatial = pred.shape[1:]
        point = (ndim,) + (1,) * ndim  # shape of one grid coordinate, broadcast over the image
        grid = official_grid(tuple(spatial), anisotropy, pred.dtype)
        embeddings = torch.tanh(pred[0:ndim]) + grid
        sigma, seed = pred[ndim : 2 * ndim], torch.sigmoid(pred[2 * ndim])
        foreground = torch.zeros(spatial, dtype=torch.bool)
        for mask in masks:
            foreground |= mask
        seed_loss = seed[~foreground].pow(2).sum()
        instance_loss = variance = 0.0
        for mask in masks:
            centers_inside = mask & center_image.bool()
            if centers_inside.sum() == 1:
                center = grid[:, centers_inside].view(point)
            else:
                center = grid[:, mask].mean(dim=1).view(point)
            sigma_in = sigma[:, mask]  # (D, N)
            sigma_mean = sigma_in.mean(dim=1).view(ndim, 1, 1)
            if variance_loss == "paper":
                variance = variance + torch.mean((sigma_in - sigma_mean.detach()) ** 2)  # (D, D, N)
            else:
                variance = variance + torch.mean((sigma_in - sigma_mean[..., 0].detach()) ** 2)
            s = torch.exp(10 * sigma_mean).view(point)
            phi = torch.exp(-torch.sum((embeddings - center) ** 2 * s, dim=0))
            instance_loss = instance_loss + reference_lovasz_hinge(2 * phi.flatten() - 1, mask.flatten().to(pred.dtype))
            seed_loss = seed_loss + 10 * torch.sum((seed[mask] - phi[mask].detach()) ** 2)
            predicted = phi > 0.5
            ious.append(float((predicted & mask).sum() / (predicted | mask).sum()))
        if masks:
            instance_loss, variance = instance_loss / len(masks), variance / len(masks)
        total = total + instance_loss + 10 * variance + seed_loss / spatial.numel()
    return total / len(prediction), ious


def random_prediction(batch: int, seed: int = 0) -> torch.Tensor:
    """Raw outputs whose scores stay far from underflow, so no two sort keys tie (float64)."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(batch, 5, SIZE, SIZE, generator=g, dtype=torch.float64)
    pred[:, :2] *= 0.01  # offsets of about ±10 px
    pred[:, 2:4] = 0.6 + 0.05 * pred[:, 2:4]  # s ≈ e^6: φ = 0.5 at ≈ 30 px
    return pred.requires_grad_(True)


def label_batch() -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.stack([disc_labels((SIZE, SIZE), DISCS), disc_labels((SIZE, SIZE), DISCS[::-1])])
    labels[1][labels[1] == 2] = 40  # ids need not be consecutive
    centers = np.stack([disc_centers((SIZE, SIZE), [DISCS[i] for i in (0, 2, 3)])] * 2)
    centers[:, STRAY_CENTER[0], STRAY_CENTER[1]] = 1
    return torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(centers.astype(bool))


@pytest.mark.parametrize("variance_loss", ["paper", "fixed"])
@pytest.mark.parametrize("objects_per_block", [1, 3, 100])
def test_label_images_match_per_object_reference(variance_loss: str, objects_per_block: int, monkeypatch) -> None:
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", objects_per_block * SIZE * SIZE)
    instances, centers = label_batch()
    masks = [[inst == i for i in torch.unique(inst) if i != 0] for inst in instances]
    pred = random_prediction(2)
    loss, ious = SpatialEmbLoss(variance_loss=variance_loss)(pred, instances, centers)
    (grad,) = torch.autograd.grad(loss, pred)
    expected, expected_ious = reference_loss(pred, masks, centers, variance_loss)
    (expected_grad,) = torch.autograd.grad(expected, pred)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-15)
    assert ious.tolist() == pytest.approx(expected_ious, abs=0)
    assert 0 < ious.min() and ious.max() < 1


def test_one_hot_overlapping_masks_match_reference() -> None:
    stack = disc_stack((SIZE, SIZE), DISCS + [(16, 18, 8)])  # the last disc overlaps the first
    padded = np.concatenate([stack, np.zeros_like(stack[:2])])  # batch padding: empty slices
    centers = torch.from_numpy(disc_centers((SIZE, SIZE), DISCS + [(16, 18, 8)]).astype(bool))[None]
    pred = random_prediction(1, seed=1)
    for variance_loss in ("paper", "fixed"):
        loss, ious = SpatialEmbLoss(variance_loss=variance_loss)(pred, torch.from_numpy(padded)[None], centers)
        expected, expected_ious = reference_loss(
            pred, [[torch.from_numpy(m > 0) for m in stack]], centers, variance_loss
        )
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
        assert ious.tolist() == pytest.approx(expected_ious, abs=0)


def test_variance_variants_differ_only_with_anisotropic_sigma() -> None:
    instances, centers = label_batch()
    pred = random_prediction(2).detach()
    paper, fixed = (SpatialEmbLoss(variance_loss=v)(pred, instances, centers)[0] for v in ("paper", "fixed"))
    assert paper > fixed  # the broadcast adds the spread between the channels' means
    pred[:, 3] = pred[:, 2]
    paper, fixed = (SpatialEmbLoss(variance_loss=v)(pred, instances, centers)[0] for v in ("paper", "fixed"))
    torch.testing.assert_close(paper, fixed)


def autograd_object_hinges(
    embeddings: torch.Tensor, centers: torch.Tensor, s: torch.Tensor, masks: torch.Tensor, rows: int
) -> torch.Tensor:
    """Hinges (K,) of `rows` objects at a time as plain autograd differentiates them: φ, then the
    Lovász hinge through torch.sort (the graph that keeps every (K, P) intermediate)."""
    hinges = []
    for center, s_block, mask in zip(centers.split(rows), s.split(rows), masks.split(rows)):
        phi = gaussian_score(embeddings, center.T, s_block.T)
        labels = mask.to(phi.dtype)
        errors = 1.0 - (2.0 * phi - 1.0) * (2.0 * labels - 1.0)
        errors_sorted, order = torch.sort(errors, dim=1, descending=True)
        hinges.append((torch.relu(errors_sorted) * losses.lovasz_grad(labels.gather(1, order))).sum(dim=1))
    return torch.cat(hinges)


@pytest.mark.parametrize("rows", [1, 3, 4])
def test_object_hinges_equal_plain_autograd_bit_for_bit(rows: int) -> None:
    """ObjectHinges keeps one (K, P) tensor for backward instead of autograd's dozen; its hinges, φ
    and gradients must be the very same float32 numbers."""
    instances, centers = label_batch()
    pred = random_prediction(1).detach().float()[0]
    object_index, pixel_index, n_objects = object_pixels(instances[0])
    masks = torch.zeros((n_objects, SIZE * SIZE), dtype=torch.bool)
    masks[object_index, pixel_index] = True
    grid = coordinate_grid(SIZE, SIZE).reshape(2, -1)
    object_centres = object_centers(grid, centers[0].reshape(-1), object_index, pixel_index, n_objects)
    weights = torch.rand(n_objects, generator=torch.Generator().manual_seed(1))  # unequal upstream gradients
    results = []
    for use_function in (True, False):
        embeddings = spatial_embedding(pred[:2]).reshape(2, 1, -1).requires_grad_(True)
        sigma_mean = (0.3 + 0.01 * torch.arange(2 * n_objects, dtype=torch.float32)).reshape(n_objects, 2)
        s = bandwidth(sigma_mean.requires_grad_(True))
        if use_function:
            hinges, phi = losses.ObjectHinges.apply(embeddings, object_centres, s, masks, rows, True)
            assert not phi.requires_grad
            torch.testing.assert_close(phi, gaussian_score(embeddings, object_centres.T, s.T), rtol=0, atol=0)
        else:
            hinges = autograd_object_hinges(embeddings, object_centres, s, masks, rows)
        results.append((hinges, *torch.autograd.grad((hinges * weights).sum(), (embeddings, sigma_mean))))
    for got, expected in zip(*results):
        assert got.abs().sum() > 0
        assert torch.equal(got, expected)


def test_object_centers_fall_back_to_centroid() -> None:
    instances, centers = label_batch()
    object_index, pixel_index, n_objects = object_pixels(instances[0])
    grid = coordinate_grid(SIZE, SIZE, dtype=torch.float64).reshape(2, -1)
    got = object_centers(grid, centers[0].reshape(-1), object_index, pixel_index, n_objects)
    spacing = 1 / 1023
    torch.testing.assert_close(got[0], torch.tensor([12.0, 12.0], dtype=torch.float64) * spacing)  # its stored centre
    for k in (1, 2):  # no centre / two centres: mean grid coordinate
        ys, xs = np.nonzero(instances[0].numpy() == k + 1)
        torch.testing.assert_close(got[k], torch.tensor([xs.mean(), ys.mean()]) * spacing)


def test_gradient_reaches_every_output_channel_at_init_values() -> None:
    instances, centers = label_batch()
    pred = torch.zeros(2, 5, SIZE, SIZE)
    pred[:, 2:4] = 1.0  # the network's output at step 0
    pred.requires_grad_(True)
    loss, _ = SpatialEmbLoss()(pred, instances, centers)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(pred.grad[:, c].abs().sum() > 0 for c in range(5))


def test_image_without_objects_gives_background_seed_loss_only() -> None:
    pred = random_prediction(1)
    empty = torch.zeros(1, SIZE, SIZE, dtype=torch.int64)
    loss, ious = SpatialEmbLoss()(pred, empty, torch.zeros(1, SIZE, SIZE, dtype=torch.bool))
    torch.testing.assert_close(loss, torch.sigmoid(pred[0, 4]).pow(2).mean())
    assert ious.numel() == 0
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_unknown_variance_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="variance_loss"):
        SpatialEmbLoss(variance_loss="broadcast")


def test_float32_scores_that_underflow_do_not_change_the_loss() -> None:
    """φ is floored at 3e-38 instead of underflowing (a CPU fast path); the loss is unaffected."""
    instances, centers = label_batch()
    masks = [[inst == i for i in torch.unique(inst) if i != 0] for inst in instances]
    pred = random_prediction(2).detach().float()
    pred[:, 2:4] = 1.2  # s = e^12: φ < 1e-38 beyond ~24 px from a centre
    loss, ious = SpatialEmbLoss()(pred, instances, centers)
    expected, expected_ious = reference_loss(pred, masks, centers, "paper")
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert ious.tolist() == pytest.approx(expected_ious, abs=0)


# ----------------------------------------------------------------------------------------------
# 3-D: the grid of the official my_loss_3d.py and the loss on ellipsoids

VOLUME = (8, 24, 32)  # (Z, Y, X)
# (centre z, y, x, semi-axes z, y, x); the second has no stored centre, the third two.
ELLIPSOIDS = [(3, 7, 8, 2.5, 5, 6), (4, 16, 10, 3, 6, 5), (4, 12, 23, 3.5, 7, 6)]
STRAY_CENTER_3D = (4, 12, 20)


def ellipsoid_volume() -> tuple[torch.Tensor, torch.Tensor]:
    """Instance ids (1, Z, Y, X) of three ellipsoids (ids 1, 7, 3: need not be consecutive) and
    their centre image (1, Z, Y, X)."""
    zz, yy, xx = np.indices(VOLUME)
    labels = np.zeros(VOLUME, np.int64)
    centers = np.zeros(VOLUME, bool)
    for object_id, (cz, cy, cx, az, ay, ax) in zip((1, 7, 3), ELLIPSOIDS):
        labels[((zz - cz) / az) ** 2 + ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1] = object_id
        if object_id != 7:
            centers[cz, cy, cx] = True
    centers[STRAY_CENTER_3D] = True
    return torch.from_numpy(labels)[None], torch.from_numpy(centers)[None]


def random_prediction_3d(seed: int = 0) -> torch.Tensor:
    """Raw 3-D outputs (1, 7, Z, Y, X) in float64, offsets of about ±10 voxels, s ≈ e^6."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(1, 7, *VOLUME, generator=g, dtype=torch.float64)
    pred[:, :3] *= 0.01
    pred[:, 3:6] = 0.6 + 0.05 * pred[:, 3:6]
    return pred.requires_grad_(True)


@pytest.mark.parametrize("anisotropy", [1.0, 2.0, 4.5])
def test_3d_grid_is_the_official_linspace_grid(anisotropy: float) -> None:
    spacing = grid_spacing(3, anisotropy)
    assert spacing == (GRID_SPACING, GRID_SPACING, anisotropy * GRID_SPACING)
    grid = coordinate_grid(*VOLUME, spacing=spacing, dtype=torch.float64)
    torch.testing.assert_close(grid, official_grid(VOLUME, anisotropy), rtol=1e-12, atol=1e-15)


def test_grid_spacing_rejects_what_has_no_meaning() -> None:
    assert grid_spacing(2) == (GRID_SPACING, GRID_SPACING)
    for ndim, anisotropy in ((2, 2.0), (3, 0.0), (4, 1.0)):
        with pytest.raises(ValueError):
            grid_spacing(ndim, anisotropy)


def test_3d_embedding_at_voxels_equals_the_full_embedding() -> None:
    offsets = 0.01 * torch.randn(3, *VOLUME, generator=torch.Generator().manual_seed(0))
    voxels = torch.tensor([0, 1, 31, 32, 24 * 32 - 1, 24 * 32, 5 * 24 * 32 + 77, offsets[0].numel() - 1])
    spacing = grid_spacing(3, 2.0)
    full = spatial_embedding(offsets, spacing)
    assert torch.equal(spatial_embedding_at(offsets, voxels, spacing), full.flatten(1)[:, voxels])
    # voxel (z=1, y=0, x=0): its z coordinate is δ_z = 2δ
    assert full[2, 1, 0, 0] - torch.tanh(offsets[2, 1, 0, 0]) == pytest.approx(2 * GRID_SPACING, rel=1e-6)


@pytest.mark.parametrize("variance_loss", ["paper", "fixed"])
@pytest.mark.parametrize("objects_per_block", [1, 100])
def test_3d_loss_matches_per_object_reference(
    variance_loss: str, objects_per_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", objects_per_block * int(np.prod(VOLUME)))
    instances, centers = ellipsoid_volume()
    masks = [[instances[0] == i for i in (1, 3, 7)]]  # ascending id: the loss's object order
    pred = random_prediction_3d()
    spacing = grid_spacing(3, 2.0)
    criterion = SpatialEmbLoss(variance_loss=variance_loss, spacing=spacing, foreground_weight=10)
    loss, ious = criterion(pred, instances, centers)
    (grad,) = torch.autograd.grad(loss, pred)
    expected, expected_ious = reference_loss(pred, masks, centers, variance_loss, anisotropy=2.0)
    (expected_grad,) = torch.autograd.grad(expected, pred)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-15)
    assert ious.tolist() == pytest.approx(expected_ious, abs=0)
    assert len(ious) == 3 and 0 < ious.min() and ious.max() < 1


def test_3d_loss_depends_on_anisotropy_and_foreground_weight() -> None:
    instances, centers = ellipsoid_volume()
    pred = random_prediction_3d(1).detach()
    loss = {
        (a, w): SpatialEmbLoss(spacing=grid_spacing(3, a), foreground_weight=w)(pred, instances, centers)[0]
        for a in (1.0, 3.0)
        for w in (1.0, 10.0)
    }
    assert loss[1.0, 1.0] != loss[3.0, 1.0]
    assert loss[1.0, 1.0] < loss[1.0, 10.0]  # the foreground seed term is positive
    # a float spacing is the same δ on every axis
    isotropic = SpatialEmbLoss(spacing=GRID_SPACING, foreground_weight=1.0)(pred, instances, centers)[0]
    assert isotropic == loss[1.0, 1.0]
