"""Inference copy of a Branched ERF-Net with its BatchNorms folded into the convolutions.

In eval mode a BatchNorm is a fixed per-channel affine map y = s·x + t (s = γ/√(var + ε),
t = β − s·mean), so the convolution in front of it can absorb it: W' = s·W, b' = s·b + t. The
network then skips 2 of the 4 passes over every feature map of a residual block. In the
downsampler the BatchNorm also covers the max-pooled input channels, which have no convolution:
those keep the affine map (:class:`FoldedDownsampler`). The same for 2-D and 3-D networks.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .erfnet import BranchedERFNet, DownsamplerBlock, NonBottleneck1d, UpsamplerBlock


def bn_affine(bn: nn.BatchNorm2d | nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel, in float64, of `bn` in eval mode."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - scale * bn.running_mean.double()


def fold_into(conv: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make `conv` compute scale·conv(x) + shift (per output channel), in place.

    Output channels are axis 0 of a ConvNd weight and axis 1 of a ConvTransposeNd weight; every
    convolution of the ERF-Net has a bias. The products are formed in float64, then rounded once.
    """
    axis = 1 if isinstance(conv, (nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    shape = [1] * conv.weight.dim()
    shape[axis] = -1
    with torch.no_grad():
        conv.weight.copy_(conv.weight.double() * scale.view(shape))
        conv.bias.copy_(scale * conv.bias.double() + shift)


class FoldedDownsampler(nn.Module):
    """:class:`DownsamplerBlock` in eval mode with the convolution's share of the BatchNorm folded
    into it; the max-pooled channels keep theirs as a per-channel affine map."""

    def __init__(self, block: DownsamplerBlock) -> None:
        super().__init__()
        scale, shift = bn_affine(block.bn)
        n_conv = block.conv.out_channels
        self.conv = block.conv
        self.pool = block.pool
        fold_into(self.conv, scale[:n_conv], shift[:n_conv])
        dtype = block.conv.weight.dtype
        shape = (1, -1) + (1,) * (block.conv.weight.dim() - 2)  # (1, C, 1, 1[, 1]): per channel
        self.register_buffer("pool_scale", scale[n_conv:].to(dtype).view(shape))
        self.register_buffer("pool_shift", shift[n_conv:].to(dtype).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.addcmul(self.pool_shift, self.pool(x), self.pool_scale)
        return F.relu(torch.cat([self.conv(x), pooled], dim=1), inplace=True)


def _fold_block(module: nn.Module) -> nn.Module:
    """The folded replacement of one ERF-Net block (the same object, changed, where possible)."""
    if isinstance(module, DownsamplerBlock):
        return FoldedDownsampler(module)
    if isinstance(module, NonBottleneck1d):
        # Each half's last one-axis convolution feeds its BatchNorm.
        for names, bn_name in zip(module.conv_names, ("bn1", "bn2")):
            fold_into(getattr(module, names[-1]), *bn_affine(getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
        module.dropout = nn.Identity()  # eval mode: dropout is the identity anyway
        return module
    if isinstance(module, UpsamplerBlock):
        fold_into(module.conv, *bn_affine(module.bn))
        module.bn = nn.Identity()
        return module
    for name, child in module.named_children():
        module._modules[name] = _fold_block(child)
    return module


def fold_batchnorm(model: BranchedERFNet) -> BranchedERFNet:
    """An eval-mode copy of `model` (left unchanged) with every BatchNorm folded into a convolution.

    For inference only: the copy's parameters do not require gradients and its state dict
    differs from the trained model's. Outputs equal the eval-mode model's up to float rounding
    (tests: ≤ 1e-5 on a random network with non-trivial BatchNorm statistics).
    """
    folded = copy.deepcopy(model).eval()
    _fold_block(folded)
    return folded.requires_grad_(False)
