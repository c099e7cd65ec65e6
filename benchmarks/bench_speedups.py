"""A/B of the speed options in one process: BatchNorm folding, mixed precision, torch.compile.

    .venv/bin/python benchmarks/bench_speedups.py [--cases fold amp compile] [--size 512] [--rounds 5]

Every case alternates its two variants (A, B, A, B, …) for `--rounds` rounds after one warm-up
each, so that load on a shared machine hits both alike, and prints the medians and B/A. Inputs
are those of the README's cases (one-channel image, batch-2 training crops of 20 discs).

- fold: 8-fold TTA of a `--size`² image, the trained model (channels_last, as `predict_raw`
  runs it) vs :func:`embedseg.acceleration.inference_model` (BatchNorm folded); max |A − B|.
- amp: one training step (batch 2 × 256²) in float32 vs under autocast (bfloat16 on the CPU,
  float16 + gradient scaling on CUDA); both losses.
- compile: the same training step eager vs compiled; the first compiled call (the compilation)
  is reported apart, with the number of steps after which it has paid for itself.
- compile_tta: the same for 8-fold TTA of a `--size`² image (folded model eager vs compiled):
  compilation time and the number of images after which it has paid for itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import disc_batch  # noqa: E402 (benchmarks/ is not a package)
from machine import describe_machine  # noqa: E402

from embedseg.acceleration import Precision, inference_model, maybe_compile  # noqa: E402
from embedseg.core.losses import SpatialEmbLoss  # noqa: E402
from embedseg.inference import predict_raw  # noqa: E402
from embedseg.models import BranchedERFNet  # noqa: E402
from embedseg.runtime import resolve_device  # noqa: E402


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def alternate(
    a: Callable[[], object], b: Callable[[], object], rounds: int, device: torch.device
) -> tuple[float, float, object, object]:
    """Medians of A and B over `rounds` alternating calls after one warm-up call each; last results."""
    a(), b()
    seconds: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(rounds):
        t, result_a = timed(a, device)
        seconds["a"].append(t)
        t, result_b = timed(b, device)
        seconds["b"].append(t)
    return statistics.median(seconds["a"]), statistics.median(seconds["b"]), result_a, result_b


def trained_model(device: torch.device) -> BranchedERFNet:
    """An ERF-Net with non-trivial BatchNorm statistics (as after training)."""
    torch.manual_seed(0)
    model = BranchedERFNet()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model.to(device).eval()


def training_step(
    model: BranchedERFNet, forward: Callable, precision: Precision, batch: tuple[torch.Tensor, ...]
) -> Callable[[], float]:
    criterion = SpatialEmbLoss(variance_loss="fixed", foreground_weight=10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)
    image, instances, centres = batch

    def step() -> float:
        optimizer.zero_grad()
        with precision.autocast():
            prediction = forward(image)
        loss, _ = criterion(prediction.float(), instances, centres)
        precision.backward(loss)
        precision.step(optimizer)
        return loss.item()

    return step


def case_fold(args: argparse.Namespace, device: torch.device) -> None:
    model = trained_model(device)
    folded = inference_model(model)
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    plain_s, folded_s, a, b = alternate(
        lambda: predict_raw(model, image), lambda: predict_raw(folded, image), args.rounds, device
    )
    print(
        f"fold     TTA {args.size}^2: plain {plain_s:.3f} s, folded {folded_s:.3f} s, "
        f"speed-up {plain_s / folded_s:.2f}x, max |A-B| {float((a - b).abs().max()):.1e}"
    )


def case_amp(args: argparse.Namespace, device: torch.device) -> None:
    batch = tuple(t.to(device) for t in disc_batch(256, 20))
    steps = []
    for enabled in (False, True):
        torch.manual_seed(1)
        model = BranchedERFNet().to(device).train()
        dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if enabled else None
        steps.append(training_step(model, model, Precision(dtype, device), batch))
    fp32_s, amp_s, loss_a, loss_b = alternate(*steps, args.rounds, device)
    print(
        f"amp      training step 2 x 256^2: float32 {fp32_s:.3f} s, autocast {amp_s:.3f} s, "
        f"speed-up {fp32_s / amp_s:.2f}x, last losses {loss_a:.5f} / {loss_b:.5f}"
    )


def case_compile(args: argparse.Namespace, device: torch.device) -> None:
    batch = tuple(t.to(device) for t in disc_batch(256, 20))
    precision = Precision(None, device)
    torch.manual_seed(1)
    eager_model = BranchedERFNet().to(device).train()
    compiled_model = BranchedERFNet().to(device).train()
    compiled_model.load_state_dict(eager_model.state_dict())
    eager = training_step(eager_model, eager_model, precision, batch)
    compiled = training_step(compiled_model, maybe_compile(compiled_model, True), precision, batch)
    compile_s, _ = timed(compiled, device)
    eager_s, compiled_s, _, _ = alternate(eager, compiled, args.rounds, device)
    gain = eager_s - compiled_s
    pays_off = f"after {compile_s / gain:.0f} steps" if gain > 0 else "never (not faster)"
    print(
        f"compile  training step 2 x 256^2: first compiled call {compile_s:.1f} s; then eager "
        f"{eager_s:.3f} s, compiled {compiled_s:.3f} s, speed-up {eager_s / compiled_s:.2f}x; "
        f"compilation pays off {pays_off}"
    )


def case_compile_tta(args: argparse.Namespace, device: torch.device) -> None:
    model = trained_model(device)
    eager, compiled = inference_model(model), inference_model(model, compile=True)
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    compile_s, _ = timed(lambda: predict_raw(compiled, image), device)
    eager_s, compiled_s, a, b = alternate(
        lambda: predict_raw(eager, image), lambda: predict_raw(compiled, image), args.rounds, device
    )
    gain = eager_s - compiled_s
    pays_off = f"after {compile_s / gain:.0f} images" if gain > 0 else "never (not faster)"
    print(
        f"compile  TTA {args.size}^2 (folded): first compiled call {compile_s:.1f} s; then eager "
        f"{eager_s:.3f} s, compiled {compiled_s:.3f} s, speed-up {eager_s / compiled_s:.2f}x, max |A-B| "
        f"{float((a - b).abs().max()):.1e}; compilation pays off {pays_off} of this size"
    )


CASES = {"fold": case_fold, "amp": case_amp, "compile": case_compile, "compile_tta": case_compile_tta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--size", type=int, default=512, help="image side of the TTA case (multiple of 8)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {args.threads} threads, medians of {args.rounds} alternating rounds; {describe_machine()}")
    for name in args.cases:
        CASES[name](args, device)


if __name__ == "__main__":
    main()
