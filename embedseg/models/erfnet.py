"""Branched ERF-Net (Romera et al. 2018) as used by Neven et al. 2019 and EmbedSeg (docs/method.md §2),
for 2-D images and 3-D volumes.

One shared encoder (1/8 resolution) and two decoders: branch 0 predicts the offsets and
bandwidths ``[o_x, o_y(, o_z), σ_1..σ_n]``, branch 1 the seed logit. ``ndim`` picks the layer
family (Conv2d/Conv3d, BatchNorm, max-pool, channel dropout); the topology is the same, except
that a residual block factorises its 3^D kernel into D one-axis convolutions per half (3×1, 1×3
in 2-D; 3×1×1, 1×3×1, 1×1×3 in 3-D), as the official ``erfnet.py`` / ``erfnet_3d.py`` do. Module
and attribute names follow the official code so that its state dicts load unchanged (including
the encoder's ``output_conv``, which the forward pass never uses).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Three DownsamplerBlocks halve every spatial axis (also Z in 3-D): inputs, crops and tiles must
# be multiples of 2³ along every axis, and only shifts by multiples of it leave outputs unchanged.
NETWORK_MULTIPLE = 2**3

BN_EPS = 1e-3
NDIMS = (2, 3)


@dataclass(frozen=True)
class Layers:
    """The layer classes of one spatial dimension."""

    conv: type[nn.Module]
    conv_transpose: type[nn.Module]
    batch_norm: type[nn.Module]
    max_pool: type[nn.Module]
    dropout: type[nn.Module]


LAYERS = {
    2: Layers(nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Dropout2d),
    3: Layers(nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.MaxPool3d, nn.Dropout3d),
}


def layers_for(ndim: int) -> Layers:
    """Layer classes for `ndim` spatial axes (2 or 3)."""
    if ndim not in LAYERS:
        raise ValueError(f"ndim must be one of {NDIMS}, got {ndim!r}")
    return LAYERS[ndim]


class DownsamplerBlock(nn.Module):
    """Halve every spatial axis: concat[3^D stride-2 conv (n_in → n_out − n_in), 2^D max-pool] → BN → ReLU."""

    def __init__(self, n_in: int, n_out: int, ndim: int = 2) -> None:
        super().__init__()
        kind = layers_for(ndim)
        self.conv = kind.conv(n_in, n_out - n_in, 3, stride=2, padding=1, bias=True)
        self.pool = kind.max_pool(2, stride=2)
        self.bn = kind.batch_norm(n_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)), inplace=True)


def axis_kernel_name(axis: int, ndim: int, half: int) -> str:
    """Official attribute name of the one-axis convolution: ``conv3x1_1``, ``conv1x1x3_2``, …"""
    return "conv" + "x".join("3" if a == axis else "1" for a in range(ndim)) + f"_{half}"


class NonBottleneck1d(nn.Module):
    """Residual block: two halves of D factorised one-axis convolutions (3 taps along each spatial
    axis in turn, ReLU between them), each half ending in BN; the second half is dilated by
    `dilation`, followed by channel dropout. Shape-preserving: (B, C, *S) → (B, C, *S)."""

    def __init__(self, channels: int, dropout: float, dilation: int, ndim: int = 2) -> None:
        super().__init__()
        kind = layers_for(ndim)
        # Names per half, in application order (the official order: first axis first); the last
        # of each half feeds its BatchNorm (what models/fold.py needs).
        self.conv_names: tuple[tuple[str, ...], ...] = tuple(
            tuple(axis_kernel_name(axis, ndim, half) for axis in range(ndim)) for half in (1, 2)
        )
        for half, names in zip((1, 2), self.conv_names):
            dil = 1 if half == 1 else dilation
            for axis, name in enumerate(names):
                kernel = tuple(3 if a == axis else 1 for a in range(ndim))
                padding = tuple(dil if a == axis else 0 for a in range(ndim))
                dilations = tuple(dil if a == axis else 1 for a in range(ndim))
                conv = kind.conv(channels, channels, kernel, padding=padding, dilation=dilations, bias=True)
                setattr(self, name, conv)
            setattr(self, f"bn{half}", kind.batch_norm(channels, eps=BN_EPS))
        self.dropout = kind.dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The layers are called by their official names, one branch per D: TorchScript (used by
        # `embedseg export`) has no getattr by computed name, and resolves hasattr() when it
        # compiles, so each network compiles only its own branch.
        # In-place ReLUs and sum: no layer's backward needs the tensors they overwrite, and on
        # the CPU allocating fresh full-size maps cost ~30 % of a 1024² TTA forward.
        if hasattr(self, "conv1x1x3_1"):
            out = self.conv1x3x1_1(F.relu(self.conv3x1x1_1(x), inplace=True))
            out = self.conv1x1x3_1(F.relu(out, inplace=True))
            out = F.relu(self.bn1(out), inplace=True)
            out = self.conv1x3x1_2(F.relu(self.conv3x1x1_2(out), inplace=True))
            out = self.bn2(self.conv1x1x3_2(F.relu(out, inplace=True)))
        else:
            out = self.conv1x3_1(F.relu(self.conv3x1_1(x), inplace=True))
            out = F.relu(self.bn1(out), inplace=True)
            out = self.bn2(self.conv1x3_2(F.relu(self.conv3x1_2(out), inplace=True)))
        return F.relu(self.dropout(out).add_(x), inplace=True)


class UpsamplerBlock(nn.Module):
    """Double every spatial axis: 3^D stride-2 transposed conv → BN → ReLU."""

    def __init__(self, n_in: int, n_out: int, ndim: int = 2) -> None:
        super().__init__()
        kind = layers_for(ndim)
        self.conv = kind.conv_transpose(n_in, n_out, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = kind.batch_norm(n_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Encoder(nn.Module):
    """(B, C_in, *S) → (B, 128, *S/8)."""

    def __init__(self, in_channels: int, n_outputs: int, ndim: int = 2) -> None:
        super().__init__()
        self.initial_block = DownsamplerBlock(in_channels, 16, ndim)
        layers: list[nn.Module] = [DownsamplerBlock(16, 64, ndim)]
        layers += [NonBottleneck1d(64, 0.03, 1, ndim) for _ in range(5)]
        layers.append(DownsamplerBlock(64, 128, ndim))
        layers += [NonBottleneck1d(128, 0.3, d, ndim) for _ in range(2) for d in (2, 4, 8, 16)]
        self.layers = nn.ModuleList(layers)
        # Never used in forward; kept so that official checkpoints load with strict=True.
        self.output_conv = layers_for(ndim).conv(128, n_outputs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial_block(x)
        for layer in self.layers:
            x = layer(x)
        return x


class Decoder(nn.Module):
    """(B, 128, *S/8) → (B, n_out, *S)."""

    def __init__(self, n_out: int, ndim: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                UpsamplerBlock(128, 64, ndim),
                NonBottleneck1d(64, 0, 1, ndim),
                NonBottleneck1d(64, 0, 1, ndim),
                UpsamplerBlock(64, 16, ndim),
                NonBottleneck1d(16, 0, 1, ndim),
                NonBottleneck1d(16, 0, 1, ndim),
            ]
        )
        self.output_conv = layers_for(ndim).conv_transpose(
            16, n_out, 2, stride=2, padding=0, output_padding=0, bias=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.output_conv(x)


class BranchedERFNet(nn.Module):
    """Shared ERF-Net encoder with an embedding branch and a seed branch, in 2-D or 3-D.

    Input (B, in_channels, H, W) or (B, in_channels, Z, Y, X), every spatial size a multiple
    of :data:`NETWORK_MULTIPLE` (8). Output (B, D + n_sigma + n_seed, *spatial) raw values in the order
    ``[o_x, o_y(, o_z), σ_1..σ_n_sigma, seed_1..seed_n_seed]`` (D = ndim; n_sigma defaults to D:
    one bandwidth per axis); tanh/exp/sigmoid are applied by the loss and the clustering, not
    here. ``ndim=3`` is the official BranchedERFNet_3d (num_classes [6, 1] for n_sigma 3).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_sigma: int | None = None,
        n_seed: int = 1,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        layers_for(ndim)  # rejects an unsupported ndim before anything is built
        n_sigma = ndim if n_sigma is None else n_sigma
        self.in_channels, self.n_sigma, self.n_seed, self.ndim = in_channels, n_sigma, n_seed, ndim
        branch_outputs = (ndim + n_sigma, n_seed)
        self.encoder = Encoder(in_channels, sum(branch_outputs), ndim)
        self.decoders = nn.ModuleList([Decoder(n, ndim) for n in branch_outputs])
        self.init_output()

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in checkpoints under ``model_config`` (without
        ``ndim``, older checkpoints load as 2-D)."""
        return {
            "in_channels": self.in_channels,
            "n_sigma": self.n_sigma,
            "n_seed": self.n_seed,
            "ndim": self.ndim,
        }

    def init_output(self) -> None:
        """Start from zero offsets and σ_raw = 1 everywhere (s = e^10, φ=0.5 radius ≈ 5.7 px),
        as the official ``init_output`` in 2-D and 3-D.

        ConvTranspose weights are laid out (in, out, *kernel), so outputs are indexed on axis 1.
        """
        conv = self.decoders[0].output_conv
        n_offsets = self.ndim
        with torch.no_grad():
            conv.weight[:, : n_offsets + self.n_sigma].zero_()
            conv.bias[:n_offsets].zero_()
            conv.bias[n_offsets : n_offsets + self.n_sigma].fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        return torch.cat([decoder(features) for decoder in self.decoders], dim=1)


def receptive_radius(model: nn.Module) -> int:
    """Half-width (input pixels) of the receptive field of one output pixel of a
    :class:`BranchedERFNet`, the largest over the axes: the output at p depends only on inputs
    within p ± this, so a tile predicts p as the whole image does (to float rounding) when p lies
    at least this far inside every cut tile border.

    Walked from the layers themselves (kernel, dilation, stride per axis; the encoder in order,
    then the wider decoder), each layer's reach rounded up, so it is an upper bound: 628 px for
    the paper's network, whose measured input-gradient support is ± 615 px (tests/test_bigimage.py).
    """

    def walk(modules: Iterable[nn.Module], axis: int, radius: float, jump: float) -> tuple[float, float]:
        for module in modules:
            if isinstance(module, nn.modules.conv._ConvNd):
                kernel, dilation, stride = module.kernel_size[axis], module.dilation[axis], module.stride[axis]
                if module.transposed:  # an output pixel reads the inputs within ((k - 1) d / 2) / s of it
                    radius += math.ceil((kernel - 1) * dilation / (2 * stride)) * jump
                    jump /= stride
                else:
                    radius += math.ceil((kernel - 1) * dilation / 2) * jump
                    jump *= stride
        return radius, jump

    # A DownsamplerBlock's max-pool runs beside its stride-2 convolution, which reaches farther.
    encoder = [m for m in model.encoder.modules() if m is not model.encoder.output_conv]
    radii = []
    for axis in range(model.ndim):
        radius, jump = walk(encoder, axis, 0.0, 1.0)
        radii.append(max(walk(decoder.modules(), axis, radius, jump)[0] for decoder in model.decoders))
    return int(math.ceil(max(radii)))
