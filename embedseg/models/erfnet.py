"""Branched ERF-Net (Romera et al. 2018) as used by Neven et al. 2019 and EmbedSeg (docs/method.md §2).

One shared encoder (1/8 resolution) and two decoders: branch 0 predicts the offsets and
bandwidths ``[o_x, o_y, σ_x, σ_y]``, branch 1 the seed logit. Module and attribute names follow
the official code so that its state dicts load unchanged (including the encoder's
``output_conv``, which the forward pass never uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3


class DownsamplerBlock(nn.Module):
    """Halve H and W: concat[3×3 stride-2 conv (n_in → n_out − n_in), 2×2 max-pool] → BN → ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out - n_in, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(n_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)), inplace=True)


class NonBottleneck1d(nn.Module):
    """Residual block of factorised (3×1, 1×3) convolutions; the second pair is dilated by `dilation`."""

    def __init__(self, channels: int, dropout: float, dilation: int) -> None:
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1), bias=True)
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation), bias=True)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLUs and sum: no layer's backward needs the tensors they overwrite, and on
        # the CPU allocating fresh full-size maps cost ~30 % of a 1024² TTA forward.
        out = F.relu(self.conv3x1_1(x), inplace=True)
        out = F.relu(self.bn1(self.conv1x3_1(out)), inplace=True)
        out = F.relu(self.conv3x1_2(out), inplace=True)
        out = self.dropout(self.bn2(self.conv1x3_2(out)))
        return F.relu(out.add_(x), inplace=True)


class UpsamplerBlock(nn.Module):
    """Double H and W: 3×3 stride-2 transposed conv → BN → ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn = nn.BatchNorm2d(n_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Encoder(nn.Module):
    """(B, C_in, H, W) → (B, 128, H/8, W/8)."""

    def __init__(self, in_channels: int, n_outputs: int) -> None:
        super().__init__()
        self.initial_block = DownsamplerBlock(in_channels, 16)
        layers: list[nn.Module] = [DownsamplerBlock(16, 64)]
        layers += [NonBottleneck1d(64, 0.03, 1) for _ in range(5)]
        layers.append(DownsamplerBlock(64, 128))
        layers += [NonBottleneck1d(128, 0.3, d) for _ in range(2) for d in (2, 4, 8, 16)]
        self.layers = nn.ModuleList(layers)
        # Never used in forward; kept so that official checkpoints load with strict=True.
        self.output_conv = nn.Conv2d(128, n_outputs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial_block(x)
        for layer in self.layers:
            x = layer(x)
        return x


class Decoder(nn.Module):
    """(B, 128, H/8, W/8) → (B, n_out, H, W)."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                UpsamplerBlock(128, 64),
                NonBottleneck1d(64, 0, 1),
                NonBottleneck1d(64, 0, 1),
                UpsamplerBlock(64, 16),
                NonBottleneck1d(16, 0, 1),
                NonBottleneck1d(16, 0, 1),
            ]
        )
        self.output_conv = nn.ConvTranspose2d(16, n_out, 2, stride=2, padding=0, output_padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.output_conv(x)


class BranchedERFNet(nn.Module):
    """Shared ERF-Net encoder with an embedding branch and a seed branch.

    Input (B, in_channels, H, W) with H, W multiples of 8. Output (B, 2 + n_sigma + n_seed, H, W)
    raw values in the order ``[o_x, o_y, σ_1..σ_n_sigma, seed_1..seed_n_seed]``; tanh/exp/sigmoid
    are applied by the loss and the clustering, not here.
    """

    def __init__(self, in_channels: int = 1, n_sigma: int = 2, n_seed: int = 1) -> None:
        super().__init__()
        self.in_channels, self.n_sigma, self.n_seed = in_channels, n_sigma, n_seed
        branch_outputs = (2 + n_sigma, n_seed)
        self.encoder = Encoder(in_channels, sum(branch_outputs))
        self.decoders = nn.ModuleList([Decoder(n) for n in branch_outputs])
        self.init_output()

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments, as stored in checkpoints under ``model_config``."""
        return {"in_channels": self.in_channels, "n_sigma": self.n_sigma, "n_seed": self.n_seed}

    def init_output(self) -> None:
        """Start from zero offsets and σ_raw = 1 everywhere (s = e^10, φ=0.5 radius ≈ 5.7 px).

        ConvTranspose weights are laid out (in, out, kh, kw), so outputs are indexed on axis 1.
        """
        conv = self.decoders[0].output_conv
        with torch.no_grad():
            conv.weight[:, : 2 + self.n_sigma].zero_()
            conv.bias[:2].zero_()
            conv.bias[2 : 2 + self.n_sigma].fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        return torch.cat([decoder(features) for decoder in self.decoders], dim=1)
