"""Device choice, seeding, peak-memory bookkeeping and progress bars shared by every step."""

from __future__ import annotations

import os
import random
import resource
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .io import UserError, write_json

T = TypeVar("T")

if TYPE_CHECKING:  # torch is imported inside the functions: the StarDist env has none
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` → CUDA if available, else CPU; `cpu`, `cuda`, `cuda:N` (or another torch device
    name) must exist on this machine, else a :class:`UserError` naming the choices.

    The environment variable ``EMBEDSEG_DEVICE`` overrides `auto` (handy on shared clusters).
    """
    import torch

    if name == "auto":
        name = os.environ.get("EMBEDSEG_DEVICE", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's parse error lists every backend it knows; users need four
        raise UserError(f"--device {name!r} unknown; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0; use --device cuda:0"
            )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask cuDNN for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: derive NumPy/Python seeds from torch's per-worker seed."""
    import torch

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def peak_memory(device: torch.device | None = None) -> dict[str, Any]:
    """Peak memory of this process: CUDA max allocated on a CUDA device, else peak RSS.

    Returns ``{"peak_bytes": int, "kind": "cuda_max_allocated" | "cpu_peak_rss", "device": str}``.
    """
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        return {
            "peak_bytes": int(torch.cuda.max_memory_allocated(device)),
            "kind": "cuda_max_allocated",
            "device": str(device),
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = rss if sys.platform == "darwin" else rss * 1024
    return {"peak_bytes": int(peak), "kind": "cpu_peak_rss", "device": str(device or "cpu")}


def write_memory_json(path: str | os.PathLike, device: torch.device | None = None) -> dict[str, Any]:
    """Record :func:`peak_memory` to `path` (the `memory.json` every training step writes)."""
    record = peak_memory(device)
    write_json(Path(path), record)
    return record


# Seconds between progress lines when the output is a log file, not a terminal.
LOG_INTERVAL_S = float(os.environ.get("EMBEDSEG_PROGRESS_INTERVAL", "10"))


class LineStream:
    """A text stream for tqdm that writes each status as one plain line: a log file gets no
    carriage returns (which glue the updates into one line), no cursor-up escapes of nested
    bars and no padding spaces."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for line in text.replace("\x1b[A", "").replace("\r", "\n").split("\n"):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Iterator[T]:
    """`tqdm(iterable, **kwargs)` that suits log files: when its stream (``file``, default
    stderr) is not a terminal, a plain line at most every :data:`LOG_INTERVAL_S` seconds
    (``EMBEDSEG_PROGRESS_INTERVAL``) and the final one; on a terminal tqdm's usual bar.
    Nested bars (``leave=False``) are left out of logs: they would add a line per update."""
    from tqdm import tqdm

    stream = kwargs.get("file") or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        if not kwargs.get("leave", True):
            kwargs["disable"] = True
        kwargs.update(file=LineStream(stream), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, ascii=True)
        kwargs.setdefault("ncols", 100)
        kwargs["dynamic_ncols"] = False
    return tqdm(iterable, **kwargs)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run draws from, as tensors and plain values (safe to torch.load)."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (name, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        **{key: generator.get_state() for key, generator in generators.items()},
    }


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Undo :func:`rng_state`: every generator continues exactly where the saved run stopped."""
    import torch

    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for key, generator in generators.items():
        generator.set_state(state[key].cpu())


def sampler_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent train/val draw streams derived from `seed`."""
    import torch

    train_seed, val_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    return {
        "train_sampler": torch.Generator().manual_seed(train_seed),
        "val_sampler": torch.Generator().manual_seed(val_seed),
    }
