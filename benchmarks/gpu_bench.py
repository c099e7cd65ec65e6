"""Training speed and peak GPU memory of the paper's crop sizes, official EmbedSeg 0.2.5 vs ours
(plain, --amp, --compile, both), and the GPU-hours config/config.yaml would take.

    bash benchmarks/gpu_bench.sh [--steps 20] [--config config/config.yaml] [--dry-run]

Per data set of the config: its crop size (config, else the registry) and its training batch
size; each (shape, variant) runs in a fresh process (clean peak memory; official with
.venv-official's Python) on synthetic crops of 20 objects: one warm-up step — for --compile
its time is the compilation, reported apart — then `--steps` timed training steps (forward,
loss, backward, Adam) and as many validation forwards at the validation batch size. Peak memory
is ``torch.cuda.max_memory_allocated`` of the process.

The projection: per training, epochs × (train_size / batch_size training steps + ⌈val_size /
val_batch_size⌉ validation batches), times the trainings of the config (seeds × centre types),
assuming the data loader keeps up (workers) and adding one compilation per training for
--compile. Official 0.2.5 has neither AMP nor compile; it is measured plain.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = REPO / ".venv-official" / "bin" / "python"
VARIANTS = ("official", "ours", "ours --amp", "ours --compile", "ours --amp --compile")
N_OBJECTS = 20


@dataclass(frozen=True)
class Shape:
    """Training and validation batches of one data set of the config, and its budget."""

    dataset: str
    crop: int
    batch: int
    val_batch: int
    steps_per_epoch: int  # training mini-batches
    val_batches_per_epoch: int
    epochs: int
    trainings: int


def config_shapes(config_path: Path) -> list[Shape]:
    """One :class:`Shape` per data set of the config (crop size: config key, else the registry)."""
    import yaml

    from embedseg.data.registry import get_spec

    config = yaml.safe_load(config_path.read_text())
    trainings = len(config["seeds"]) * len(config["centers"])
    shapes = []
    for name, settings in config["datasets"].items():
        train = settings["train"]
        crop = settings.get("crop_size") or get_spec(name).settings["crop_size"]
        steps = train["train_size"] // train["batch_size"]
        val_batches = math.ceil(train["val_size"] / train["val_batch_size"])
        shapes.append(
            Shape(
                name,
                int(crop),
                train["batch_size"],
                train["val_batch_size"],
                steps,
                val_batches,
                train["epochs"],
                trainings,
            )
        )
    return shapes


# ----------------------------------------------------------------------------------------------
# Worker: one (shape, variant) in this process


def synthetic_batch(crop: int, batch: int, device):
    """Image (B, 1, S, S), instance ids (B, S, S) and centre images of random blobs."""
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_official import centre_image, random_labels, synthetic_image

    rng = np.random.default_rng(0)
    crops = [random_labels((crop, crop), N_OBJECTS, (8, 20), rng) for _ in range(batch)]
    image = np.stack([synthetic_image(labels, rng) for labels, _ in crops])[:, None]
    instances = np.stack([labels for labels, _ in crops]).astype(np.int64)
    centres = np.stack([centre_image(labels.shape, c) for labels, c in crops])
    return tuple(torch.from_numpy(a).to(device) for a in (image, instances, centres))


def official_step(device, crop: int):
    """Model and a loss closure of official EmbedSeg 0.2.5, as its train.py builds them."""
    from EmbedSeg.criterions.my_loss import SpatialEmbLoss
    from EmbedSeg.models import BranchedERFNet

    model = BranchedERFNet(num_classes=[4, 1], input_channels=1)
    model.init_output(n_sigma=2)
    grid = max(1024, crop)
    criterion = SpatialEmbLoss(grid_y=grid, grid_x=grid, pixel_y=1, pixel_x=1, n_sigma=2, foreground_weight=10).to(
        device
    )

    def loss(prediction, instances, centres):
        return criterion(prediction, instances, instances > 0, centres, w_inst=1, w_var=10, w_seed=1).mean()

    if device.type == "cpu":  # its loss moves tensors with `.cuda()`; a no-op for the CPU check
        import torch

        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    return model.to(device), loss


def ours_step(device, amp: bool, compile: bool):
    """Model, loss closure, the callable that runs the model (compiled or not) and the precision."""
    from embedseg.acceleration import Precision, maybe_compile
    from embedseg.core.losses import SpatialEmbLoss
    from embedseg.models import BranchedERFNet

    model = BranchedERFNet().to(device)
    criterion = SpatialEmbLoss(variance_loss="fixed", foreground_weight=10.0)

    def loss(prediction, instances, centres):
        return criterion(prediction.float(), instances, centres)[0]

    return model, loss, maybe_compile(model, compile), Precision.named("fp16" if amp else "fp32", device)


def run_worker(variant: str, crop: int, batch: int, val_batch: int, steps: int, device_name: str) -> dict:
    import torch

    device = torch.device(device_name)
    torch.manual_seed(0)
    if variant == "official":
        model, loss_fn = official_step(device, crop)
        forward, precision = model, None
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)
    else:
        from embedseg.train import make_optimizer

        model, loss_fn, forward, precision = ours_step(device, "--amp" in variant, "--compile" in variant)
        optimizer = make_optimizer(model)
    train_batch = synthetic_batch(crop, batch, device)
    val_input = synthetic_batch(crop, val_batch, device)[0]

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def train_step() -> None:
        image, instances, centres = train_batch
        optimizer.zero_grad()
        if precision is None:
            loss_fn(forward(image), instances, centres).backward()
            optimizer.step()
        else:
            with precision.autocast():
                prediction = forward(image)
            precision.backward(loss_fn(prediction, instances, centres))
            precision.step(optimizer)

    def val_step() -> None:
        with torch.no_grad():
            if precision is None:
                forward(val_input)
            else:
                with precision.autocast():
                    forward(val_input)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = {}
    for name, step, mode in (("train", train_step, model.train), ("val", val_step, model.eval)):
        mode()
        start = sync()
        step()  # warm-up: for --compile, the compilation of this mode
        timings[f"{name}_first_s"] = sync() - start
        seconds = []
        for _ in range(steps):
            start = sync()
            step()
            seconds.append(sync() - start)
        timings[f"{name}_step_s"] = statistics.median(seconds)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {
        "variant": variant,
        "crop": crop,
        "batch": batch,
        "val_batch": val_batch,
        **timings,
        "peak_gpu_mb": peak / 2**20,
    }


# ----------------------------------------------------------------------------------------------
# Driver


def plan(shapes: list[Shape]) -> list[tuple[int, int, int]]:
    """Distinct (crop, batch, validation batch) to measure."""
    return sorted({(s.crop, s.batch, s.val_batch) for s in shapes})


def measure(variant: str, key: tuple[int, int, int], steps: int, device: str, official_python: Path) -> dict:
    python = official_python if variant == "official" else Path(sys.executable)
    crop, batch, val_batch = key
    command = [
        str(python),
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--crop",
        str(crop),
        "--batch",
        str(batch),
        "--val-batch",
        str(val_batch),
        "--steps",
        str(steps),
        "--device",
        device,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        last_line = done.stderr.strip().splitlines()[-1:]
        return {"variant": variant, "crop": crop, "batch": batch, "error": last_line}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpu_hours(shape: Shape, record: dict) -> float:
    """GPU-hours of all trainings of one data set at the measured step times."""
    per_epoch = shape.steps_per_epoch * record["train_step_s"] + shape.val_batches_per_epoch * record["val_step_s"]
    compiled = "--compile" in record["variant"]
    compile_once = record["train_first_s"] + record["val_first_s"] if compiled else 0.0
    return shape.trainings * (shape.epochs * per_epoch + compile_once) / 3600


def report(shapes: list[Shape], records: list[dict]) -> None:
    from machine import describe_machine  # imports torch, which --dry-run and --help do without

    by_key = {(r["variant"], r["crop"], r["batch"]): r for r in records}
    print(describe_machine())
    print("| variant | crop | batch | train steps/s | val s/batch | peak GPU MB | first step s (compile) |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        if "error" in r:
            print(f"| {r['variant']} | {r['crop']}^2 | {r['batch']} | failed: {' '.join(r['error'])} | | | |")
            continue
        print(
            f"| {r['variant']} | {r['crop']}^2 | {r['batch']} | {1 / r['train_step_s']:.2f} "
            f"| {r['val_step_s']:.3f} | {r['peak_gpu_mb']:.0f} "
            f"| {r['train_first_s']:.1f} + {r['val_first_s']:.1f} |"
        )
    print()
    print("Projected GPU-hours of the config (trainings x epochs x (train steps + val batches)):")
    for variant in VARIANTS:
        parts = [(s, by_key.get((variant, s.crop, s.batch))) for s in shapes]
        if any(r is None or "error" in r for _, r in parts):
            continue
        hours = {s.dataset: gpu_hours(s, r) for s, r in parts}
        detail = ", ".join(f"{name} {h:.1f}" for name, h in hours.items())
        print(f"  {variant:22s} {sum(hours.values()):8.1f} GPU-h  ({detail})")


def cuda_problem(device: str) -> str | None:
    """Why `device` cannot be benchmarked, or None."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return (
            f"no CUDA device visible to {sys.executable} (torch {torch.__version__}, "
            "torch.cuda.is_available() is False); run this on a GPU machine, "
            "or use --dry-run to see the plan"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpu_bench.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=REPO / "config" / "config.yaml",
        help="workflow config whose data sets and budget are measured and projected",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per (shape, variant), after one warm-up")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"subset of: {', '.join(repr(v) for v in VARIANTS)}",
    )
    parser.add_argument(
        "--official-python",
        type=Path,
        default=OFFICIAL_PYTHON,
        help="Python of the official EmbedSeg 0.2.5 environment (benchmarks/official_env.sh)",
    )
    parser.add_argument(
        "--device", default="cuda", help="cuda or cuda:N; cpu only to check this script (no GPU figures)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be measured, measure nothing")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--val-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.worker:
        record = run_worker(args.worker, args.crop, args.batch, args.val_batch, args.steps, args.device)
        print(json.dumps(record))
        return 0
    if not args.config.is_file():
        parser.error(f"{args.config}: no such config file")
    problem = None if args.dry_run else cuda_problem(args.device)
    if problem:
        print(f"gpu_bench.sh: error: {problem}", file=sys.stderr)
        return 2
    shapes = config_shapes(args.config)
    keys = plan(shapes)
    variants = [v for v in args.variants if v != "official" or args.official_python.is_file()]
    if "official" in args.variants and "official" not in variants:
        print(
            f"note: {args.official_python} missing (bash benchmarks/official_env.sh); official is skipped",
            file=sys.stderr,
        )
    for s in shapes:
        print(
            f"{s.dataset}: crop {s.crop}^2, batch {s.batch}, val batch {s.val_batch}, {s.epochs} epochs x "
            f"({s.steps_per_epoch} steps + {s.val_batches_per_epoch} val batches), {s.trainings} trainings"
        )
    print(f"{len(keys)} shapes x {len(variants)} variants, {args.steps} timed steps each, device {args.device}")
    if args.dry_run:
        for key in keys:
            for variant in variants:
                print(f"  would measure {variant} at crop {key[0]}^2, batch {key[1]}, val batch {key[2]}")
        return 0
    records = [
        measure(variant, key, args.steps, args.device, args.official_python) for key in keys for variant in variants
    ]
    report(shapes, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
