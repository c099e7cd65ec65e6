"""One line describing the machine behind a benchmark's figures, printed by every script with
its figures: the CPU instruction set torch dispatches to, since the same demo or step time
differs by ~2x between AVX-512 and AVX2-only machines of the same kind."""

from __future__ import annotations

import os
import statistics
import time

import torch


def describe_machine() -> str:
    """'CPU capability AVX512 (oneDNN ISA limit: none), torch 2.13.0, 2 CPUs, load 1.20 (1-min)'.

    The capability is what torch uses after ``ATEN_CPU_CAPABILITY`` (set it to ``avx2`` to
    emulate an AVX2-only machine; ``ONEDNN_MAX_CPU_ISA=AVX2`` does the same for oneDNN's
    convolutions, which read it themselves, so it is reported as set).
    """
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    return (
        f"CPU capability {torch.backends.cpu.get_cpu_capability()} (oneDNN ISA limit: {onednn}), "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} (1-min)"
    )


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Float32 GFLOP/s of a (size × size) matrix product on `threads` threads: the rate this CPU
    reaches on the most favourable dense kernel, a practical ceiling for convolutions (median of
    `repeats` after one warm-up; the thread count is restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / statistics.median(seconds) / 1e9
