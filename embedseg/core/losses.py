"""Spatial-embedding loss of Neven et al. 2019 as used by EmbedSeg (docs/method.md §4), vectorised over
objects, for 2-D images and 3-D volumes (a "pixel" below is a voxel in 3-D).

Per image: every object k pulls the embeddings of its pixels towards its centre C_k through a
Gaussian score φ_k with the object's mean bandwidth (Lovász hinge on 2φ_k − 1 against the object
mask), keeps its raw σ smooth (variance term) and teaches the seed map to predict φ_k on its
pixels and 0 on the background. Objects are handled all at once: memberships are (object, pixel)
index pairs, per-object means are segment sums (``index_add``) and the K Lovász hinges are one
row-wise sort of a (K, P) matrix — identical to the per-object loop of the official code
(``my_loss.py`` in 2-D, ``my_loss_3d.py`` in 3-D, which differ only in the number of axes).
The hinges' gradient is taken at the sort (:class:`ObjectHinges`), so the backward pass keeps one
(K, P) tensor per image instead of autograd's dozen, with bit-identical gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .embedding import (
    GRID_SPACING,
    Spacing,
    axis_spacing,
    bandwidth,
    coordinate_grid,
    gaussian_score,
    spatial_embedding,
)

VARIANCE_LOSSES = ("paper", "fixed")


def object_pixels(instances: torch.Tensor, ndim: int = 2) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every (object, pixel) membership of one `ndim`-dimensional image.

    instances: (*S) integer ids, 0 = background; or (K, *S) one-hot stack of possibly
    overlapping objects (empty slices are dropped). Returns (object_index (M,), pixel_index (M,)
    into the flattened image of P = prod(S) pixels, K) with objects numbered 0..K−1 in
    ascending id / slice order.
    """
    if instances.dim() == ndim:
        flat = instances.reshape(-1)
        pixel_index = torch.nonzero(flat, as_tuple=True)[0]
        ids = flat[pixel_index]
    else:
        ids, pixel_index = torch.nonzero(instances.reshape(instances.shape[0], -1), as_tuple=True)
    unique_ids, object_index = torch.unique(ids, return_inverse=True)
    return object_index, pixel_index, len(unique_ids)


def segment_sum(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum rows of `values` (M, ...) into `n_segments` bins given by `segment` (M,). Differentiable."""
    out = values.new_zeros((n_segments,) + values.shape[1:])
    return out.index_add(0, segment, values)


def object_centers(
    grid: torch.Tensor,
    center_image: torch.Tensor,
    object_index: torch.Tensor,
    pixel_index: torch.Tensor,
    n_objects: int,
) -> torch.Tensor:
    """Centre of each object in grid coordinates, (K, D) as (x, y[, z]).

    grid: (D, P); center_image: (P,) bool. The stored centre pixel when exactly one lies inside
    the object; otherwise (none, or two objects' centres in one object) the mean grid coordinate.
    """
    coords = grid[:, pixel_index].T
    on_center = center_image[pixel_index].to(grid.dtype)
    n_pixels = segment_sum(torch.ones_like(on_center), object_index, n_objects)
    n_centers = segment_sum(on_center, object_index, n_objects)
    # With exactly one centre pixel this sum is that pixel's coordinate (all other terms are 0).
    center_pixel = segment_sum(coords * on_center[:, None], object_index, n_objects)
    centroid = segment_sum(coords, object_index, n_objects) / n_pixels[:, None]
    return torch.where((n_centers == 1)[:, None], center_pixel, centroid)


BLOCK_ELEMENTS = 2**18  # ≈ 1 MB of float32 per (objects × pixels) temporary: fits a CPU core's L2 cache


def lovasz_grad(labels_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss for labels sorted by descending error.

    labels_sorted: (K, P) in {0, 1}. Returns (K, P): g_j = J_j − J_{j−1} with J_0 = 0, where
    J_j = 1 − (G − fg_j) / (G + j − fg_j), G = positives of the row, fg_j = positives among the first j.
    """
    n_positive = labels_sorted.sum(dim=1, keepdim=True)
    positives_so_far = labels_sorted.cumsum(dim=1)
    rank = torch.arange(1, labels_sorted.shape[1] + 1, device=labels_sorted.device, dtype=labels_sorted.dtype)
    jaccard = 1.0 - (n_positive - positives_so_far) / (n_positive + rank - positives_so_far)
    return torch.diff(jaccard, dim=1, prepend=torch.zeros_like(jaccard[:, :1]))


def lovasz_hinge_rows(
    logits: torch.Tensor, labels: torch.Tensor, with_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Binary Lovász hinge (Berman et al. 2018) of each row as one image, and its gradient.

    logits, labels: (K, P). Returns (hinges (K,), d hinge_k / d logits (K, P), or None without
    `with_grad`). The gradient is the
    one autograd derives through the sort (relu' · Lovász weights, put back in pixel order, times
    ∂errors/∂logits = −(2·label − 1)); every factor but the Lovász weight is ±1 or 0, so it carries
    no rounding of its own.
    """
    signs = 2.0 * labels.to(logits.dtype) - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    weights = lovasz_grad(labels.gather(1, order).to(logits.dtype))
    hinges = (F.relu(errors_sorted) * weights).sum(dim=1)
    if not with_grad:
        return hinges, None
    grad_sorted = torch.where(errors_sorted > 0, weights, 0.0)
    grad = torch.empty_like(errors).scatter_(1, order, grad_sorted)
    return hinges, grad.mul_(signs).neg_()


class ObjectHinges(torch.autograd.Function):
    """Lovász hinges of K objects' Gaussian scores φ_k = gaussian_score(e, C_k, s_k) (K,), and φ.

    The sort of the Lovász hinge makes autograd keep about a dozen (K, P) tensors per image until
    the backward pass (≈ 150 MB for a batch of 2 × 256² with 20 objects each). Here the forward
    keeps one: ∂hinge/∂φ, taken from the sorted order right away. The backward recomputes φ block
    by block (cheap elementwise work, no sort) and lets autograd differentiate that part, so the
    gradients are the ones the plain autograd graph gives. Differentiable in `embeddings` and `s`
    once (no double backward); the centres get no gradient (they come from the grid).
    """

    @staticmethod
    def forward(
        ctx: Any,
        embeddings: torch.Tensor,
        centers: torch.Tensor,
        s: torch.Tensor,
        masks: torch.Tensor,
        rows: int,
        with_grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """embeddings (D, 1, P), centers (K, D), s (K, n_sigma), masks (K, P) bool; objects scored
        `rows` at a time. Returns (hinges (K,), φ (K, P), not differentiable). Without `with_grad`
        (validation: grad mode is off outside, which the forward cannot see) nothing is kept."""
        if centers.requires_grad:
            raise ValueError("ObjectHinges gives the object centres no gradient; pass them detached")
        phi_blocks, hinges, grads = [], [], []
        for center, s_block, mask in zip(centers.split(rows), s.split(rows), masks.split(rows)):
            phi_blocks.append(gaussian_score(embeddings, center.T, s_block.T))  # (rows, P)
            hinge, grad_logits = lovasz_hinge_rows(2.0 * phi_blocks[-1] - 1.0, mask, with_grad)
            hinges.append(hinge)
            if with_grad:
                grads.append(grad_logits.mul_(2.0))  # logits = 2φ − 1: exact
        phi = torch.cat(phi_blocks)
        ctx.mark_non_differentiable(phi)
        if with_grad:
            ctx.save_for_backward(embeddings, centers, s, torch.cat(grads))
        ctx.rows = rows
        return torch.cat(hinges), phi

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_hinges: torch.Tensor, _grad_phi: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None, None, None]:
        embeddings, centers, s, grad_phi = ctx.saved_tensors
        rows = ctx.rows
        blocks = list(zip(centers.split(rows), s.split(rows), grad_phi.split(rows), grad_hinges.split(rows)))
        grad_embeddings, grad_s = None, []
        # Last block first, summed in that order: the order in which autograd accumulates the
        # blocks' contributions to the shared embeddings, so the sum rounds as it did there.
        for center, s_block, grad_phi_block, grad_hinge in reversed(blocks):
            with torch.enable_grad():
                e = embeddings.detach().requires_grad_()
                s_leaf = s_block.detach().requires_grad_()
                phi = gaussian_score(e, center.T, s_leaf.T)
            grad_e, grad_s_block = torch.autograd.grad(phi, (e, s_leaf), grad_hinge[:, None] * grad_phi_block)
            grad_embeddings = grad_e if grad_embeddings is None else grad_embeddings + grad_e
            grad_s.append(grad_s_block)
        return grad_embeddings, None, torch.cat(grad_s[::-1]), None, None, None


def rows_per_block(n_rows: int, row_length: int, device: torch.device) -> int:
    """Objects scored together: on CPU about BLOCK_ELEMENTS values, so that the temporaries of
    φ and the Lovász sort stay in cache (1.3–1.6× faster than one (K, P) pass for 20–60 objects
    in a 256² crop); a GPU takes every object at once."""
    return n_rows if device.type == "cuda" else max(1, BLOCK_ELEMENTS // row_length)


def iou_rows(predicted: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """IoU of boolean rows (K, P) vs (K, P) → (K,), 0 where the union is empty."""
    intersection = (predicted & masks).sum(dim=1)
    union = (predicted | masks).sum(dim=1)
    return intersection / union.clamp(min=1)  # an empty union has an empty intersection: IoU 0


class SpatialEmbLoss(nn.Module):
    """w_inst·Lovász + w_var·variance + w_seed·seed loss, averaged over the batch (docs/method.md §4).

    The dimension D comes from the prediction (``prediction.dim()`` − 2). n_sigma: σ channels,
    default D. variance_loss: ``paper`` reproduces the broadcast of the paper code (every σ channel
    is pulled towards every channel's object mean: mean over D×D×N); ``fixed`` is EmbedSeg ≥ 0.2's
    per-channel variance (mean over D×N), also that of the official 3-D loss. spacing: grid δ
    per embedding channel (x, y[, z]) as :func:`embedding.grid_spacing` gives it, or one float
    for all axes. foreground_weight: weight of the seed term on object pixels (official: 10 in
    2-D, mean #background/#foreground voxels of the training masks in 3-D).
    """

    def __init__(
        self,
        n_sigma: int | None = None,
        w_inst: float = 1.0,
        w_var: float = 10.0,
        w_seed: float = 1.0,
        foreground_weight: float = 10.0,
        variance_loss: str = "paper",
        spacing: Spacing = GRID_SPACING,
    ) -> None:
        super().__init__()
        if variance_loss not in VARIANCE_LOSSES:
            raise ValueError(f"variance_loss {variance_loss!r} unknown; choose one of {VARIANCE_LOSSES}")
        self.n_sigma, self.variance_loss, self.spacing = n_sigma, variance_loss, spacing
        self.w_inst, self.w_var, self.w_seed, self.foreground_weight = w_inst, w_var, w_seed, foreground_weight

    def forward(
        self, prediction: torch.Tensor, instances: torch.Tensor, center_images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of a batch and the validation IoU of every object.

        prediction: (B, D + n_sigma + 1, *S) raw network output, S = (H, W) or (Z, Y, X);
        instances: (B, *S) ids or (B, K, *S) one-hot stacks (zero slices allowed, for padding);
        center_images: (B, *S) bool, True at stored object centres. Returns (scalar loss, ious (N,)
        detached) where ious[k] = IoU(φ_k > 0.5, M_k) for all N objects of the batch, in image order.
        """
        losses, ious = zip(*(self.image_loss(p, i, c) for p, i, c in zip(prediction, instances, center_images)))
        return torch.stack(losses).mean(), torch.cat(ious)

    def image_loss(
        self, prediction: torch.Tensor, instances: torch.Tensor, center_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and object IoUs of one image: prediction (C, *S), instances (*S) or (K, *S)."""
        ndim = prediction.dim() - 1
        spatial = prediction.shape[1:]
        n_pixels = spatial.numel()
        n_sigma = ndim if self.n_sigma is None else self.n_sigma
        spacing = axis_spacing(self.spacing, ndim)
        embeddings = spatial_embedding(prediction[:ndim], spacing).reshape(ndim, 1, n_pixels)
        sigma = prediction[ndim : ndim + n_sigma].reshape(n_sigma, n_pixels)
        seed = torch.sigmoid(prediction[ndim + n_sigma]).reshape(n_pixels)

        object_index, pixel_index, n_objects = object_pixels(instances, ndim)
        background = torch.ones(n_pixels, dtype=torch.bool, device=prediction.device)
        background[pixel_index] = False
        seed_loss = seed[background].pow(2).sum()
        if n_objects == 0:
            return self.w_seed * seed_loss / n_pixels, prediction.new_zeros(0)

        sigma_pixels = sigma[:, pixel_index].T  # (M, n_sigma)
        n_object_pixels = segment_sum(torch.ones_like(sigma_pixels[:, 0]), object_index, n_objects)
        sigma_mean = segment_sum(sigma_pixels, object_index, n_objects) / n_object_pixels[:, None]
        variance = self.variance_per_object(sigma_pixels, sigma_mean.detach(), object_index, n_object_pixels)

        grid = coordinate_grid(*spatial, spacing=spacing, device=prediction.device, dtype=prediction.dtype)
        grid, on_center = grid.reshape(ndim, n_pixels), center_image.reshape(n_pixels).bool()
        centers = object_centers(grid, on_center, object_index, pixel_index, n_objects)
        masks = torch.zeros((n_objects, n_pixels), dtype=torch.bool, device=prediction.device)
        masks[object_index, pixel_index] = True
        rows = rows_per_block(n_objects, n_pixels, prediction.device)
        with_grad = torch.is_grad_enabled() and prediction.requires_grad
        hinges, phi = ObjectHinges.apply(embeddings, centers, bandwidth(sigma_mean), masks, rows, with_grad)
        instance_loss = hinges.mean()
        # Overlapping one-hot objects give a pixel one seed target per object, as the official loop does.
        # φ leaves ObjectHinges without a gradient: the seed target is detached, as in the official loss.
        seed_loss = (
            seed_loss + self.foreground_weight * (seed[pixel_index] - phi[object_index, pixel_index]).pow(2).sum()
        )
        loss = self.w_inst * instance_loss + self.w_var * variance.mean() + self.w_seed * seed_loss / n_pixels
        return loss, iou_rows(phi > 0.5, masks)

    def variance_per_object(
        self,
        sigma_pixels: torch.Tensor,
        sigma_mean: torch.Tensor,
        object_index: torch.Tensor,
        n_object_pixels: torch.Tensor,
    ) -> torch.Tensor:
        """Per-object smoothness of raw σ, (K,): sigma_pixels (M, D), sigma_mean (K, D) detached."""
        means = sigma_mean[object_index]
        if self.variance_loss == "paper":
            # (D, N) − (D, 1, 1) broadcasts to (D, D, N) in the paper code: all channel pairs.
            squared = (sigma_pixels[:, None, :] - means[:, :, None]).pow(2).mean(dim=(1, 2))
        else:
            squared = (sigma_pixels - means).pow(2).mean(dim=1)
        return segment_sum(squared, object_index, len(n_object_pixels)) / n_object_pixels
