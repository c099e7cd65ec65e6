"""Optional speed-ups around the network: torch.compile with an eager fallback, mixed precision,
and the one inference copy of a trained model (BatchNorm folded, channels_last).

Both are off by default and in the paper configuration (``--precision fp32``): reproduction
comes first (see benchmarks/README.md).

- ``compile``: :class:`CompiledModel` runs the network through ``torch.compile`` (inductor). If
  compilation is unavailable (no C++ compiler, unsupported Python) or fails, it logs one warning
  and runs eagerly from then on. Compiled and eager outputs agree to float rounding
  (:data:`COMPILE_TOLERANCE`); compiled training draws Dropout masks from inductor's own random
  stream, so a compiled run is not bit-identical to an eager one of the same seed.
- ``precision`` (``auto | fp32 | bf16 | fp16``): autocast of the network's forward, while the
  loss, the clustering and the metrics stay in float32 (:class:`Precision`). ``auto``
  (:func:`resolve_precision`) takes float16 with gradient scaling on CUDA, bfloat16 on CPUs
  with AMX-BF16 or AVX512-BF16 (where it measured 1.45x faster per training step than float32,
  benchmarks/README.md) and float32 on other CPUs, where bfloat16 is emulated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .io import UserError
from .models.erfnet import BranchedERFNet
from .models.fold import fold_batchnorm

log = logging.getLogger(__name__)

# Bound on |compiled − eager| relative to the output's scale that tests/test_acceleration.py
# holds compiled outputs to (seen: ~1e-7): inductor fuses and reorders float32 sums, so outputs
# agree to rounding, not bit for bit.
COMPILE_TOLERANCE = 1e-4


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot run here (e.g. an unsupported Python), or None."""
    try:
        torch._dynamo.eval_frame.check_if_dynamo_supported()
    except Exception as exc:  # the check raises RuntimeError with the reason
        return str(exc)
    return None


class CompiledModel(nn.Module):
    """`model` called through ``torch.compile``, falling back to the eager model, with one
    warning, the first time compilation fails (also when a later mode or shape recompiles).

    The wrapped model keeps its parameters and state dict: optimisers and checkpoints use
    `model` itself; only calls go through this wrapper. The first compilation also lowers the
    backward graph (inductor otherwise compiles it lazily inside ``loss.backward()``, outside
    the fallback).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        reason = compile_unavailable()
        if reason:
            log.warning(
                "torch.compile is unavailable (%s); running the model eagerly (without --compile, "
                "nothing is attempted)",
                reason,
            )
        # Kept out of the module registry: torch.compile returns a module that wraps `model`,
        # and registering it would list every parameter twice in the state dict.
        self.__dict__["compiled"] = None if reason else torch.compile(model)

    def forward(self, *args: Any) -> torch.Tensor:
        compiled = self.__dict__["compiled"]
        if compiled is None:
            return self.model(*args)
        try:
            with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                return compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "torch.compile failed (%s); running the model eagerly (without --compile, nothing is attempted)",
                first_line,
            )
            self.__dict__["compiled"] = None
            return self.model(*args)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """`model` itself, or a :class:`CompiledModel` of it when `enabled`."""
    return CompiledModel(model) if enabled else model


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = (
    "network arithmetic: fp32; bf16 or fp16 autocast (loss, clustering and metrics stay float32); "
    "auto: fp16 with gradient scaling on CUDA, bf16 on CPUs with AMX-BF16 or AVX512-BF16, else fp32"
)
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(name: str, device: torch.device, flags: Iterable[str] | None = None) -> tuple[str, str]:
    """(fp32 | bf16 | fp16, why) for the requested `name` on `device`; `flags` are the CPU's
    (default :func:`cpu_flags`). fp16 on the CPU is refused: torch emulates it there, slowly."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise UserError(f"--precision {name!r} unknown; use one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a CUDA device; use bf16, fp32 or auto on the CPU")
    if name != "auto":
        return name, "as requested"
    if device.type == "cuda":
        return "fp16", "auto: CUDA (float16 with gradient scaling)"
    fast = sorted(set(FAST_BF16_CPU_FLAGS) & set(cpu_flags() if flags is None else flags))
    if fast:
        return "bf16", f"auto: the CPU has {', '.join(fast)}"
    return "fp32", "auto: the CPU has no native bfloat16 (no amx_bf16 or avx512_bf16)"


@dataclass
class Precision:
    """Mixed precision of one device: what autocasts the forward and scales the gradients.

    `dtype` None is float32 (every method a no-op). float16 on CUDA needs gradient scaling
    (small gradients underflow); bfloat16 has float32's exponent range and needs none.
    """

    dtype: torch.dtype | None
    device: torch.device
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        scaled = self.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=scaled)

    @classmethod
    def named(cls, name: str, device: torch.device) -> Precision:
        """The Precision of a resolved name (fp32 | bf16 | fp16, see :func:`resolve_precision`)."""
        return cls(DTYPES.get(name), device)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> AbstractContextManager:
        """Context for the network's forward pass (not the loss)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimiser step with unscaled gradients (skipped by the scaler on inf/NaN gradients)."""
        self.scaler.step(optimizer)
        self.scaler.update()


class AutocastModel(nn.Module):
    """`model` run under autocast of `device`, its output returned in float32."""

    def __init__(self, model: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.model = model
        self.precision = precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(x).float()


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of `ndim`-D feature maps: torch has one per weight rank
    (4-D tensors for 2-D images, 5-D for volumes) and rejects the other."""
    return torch.channels_last_3d if ndim == 3 else torch.channels_last


def inference_model(model: BranchedERFNet, compile: bool = False, precision: str = "fp32") -> nn.Module:
    """The model every prediction runs: an eval-mode copy with BatchNorm folded into the
    convolutions, in channels_last (the fastest CPU layout, see ``inference.channels_last``),
    under autocast unless `precision` (see :func:`resolve_precision`) resolves to fp32, and
    compiled with `compile`. `model` is left unchanged."""
    folded = fold_batchnorm(model).to(memory_format=channels_last_format(model.ndim))
    device = next(folded.parameters()).device
    name, why = resolve_precision(precision, device)
    log.info("inference precision %s (%s)", name, why)
    autocast = Precision.named(name, device)
    wrapped: nn.Module = AutocastModel(folded, autocast) if autocast.enabled else folded
    return maybe_compile(wrapped, compile).eval()
