"""Seconds per training step (batch 2 × 256², loss and Adam step included) and the loss's share.

    .venv/bin/python benchmarks/bench_train.py [--threads 2] [--objects 20] [--steps 10] [--device cpu]
        [--optimizer make_optimizer|torch-adam]

Prints the median over `--steps` steps after two warm-up steps, split into network forward,
loss forward, backward and optimiser step, then the loss alone (forward + backward on a fixed
prediction). The batch matches benchmarks/compare_official.py's training case: two crops with
`--objects` discs of radius 8–20 px each. Reference: official EmbedSeg 0.2.5 takes ≈ 0.88 s per
step on the 2-core development machine (2 threads).

The network's forward and backward take about 3/4 of a step on CPU and are the same
computation as the official network, so the step gains only what the loss and the optimiser
save (the loss alone is ≈ 1.5× faster than the official per-object loop; `make_optimizer`'s
ChunkedAdam vs `--optimizer torch-adam`: the same numbers, ≈ 1.5× less optimiser time). The
last line gives the process's peak RSS. Timings with 2 threads are meaningful
only on an otherwise idle machine: under contention OpenMP threads spin-wait and a step can
take 10× longer; compare with `--threads 1` there.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch
from machine import describe_machine

from embedseg.core.losses import SpatialEmbLoss
from embedseg.data.synthetic import disc_labels, random_discs
from embedseg.models import BranchedERFNet
from embedseg.runtime import resolve_device
from embedseg.schedule import BASE_LR, WEIGHT_DECAY
from embedseg.train import make_optimizer

OFFICIAL_SECONDS_PER_STEP = 0.88


def disc_batch(size: int, n_objects: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image (2, 1, S, S), instance ids (2, S, S) and centre images (2, S, S) of random discs
    (radius 8–20 px, later ones covering earlier ones)."""
    rng = np.random.default_rng(seed)
    labels = np.stack(
        [disc_labels((size, size), random_discs(rng, size, n_objects, radius=(8, 20), integer=False)) for _ in range(2)]
    ).astype(np.int64)
    centers = np.zeros((2, size, size), bool)
    for b in range(2):
        for k in np.unique(labels[b])[1:]:  # a centre inside every (possibly covered) object
            ys, xs = np.nonzero(labels[b] == k)
            centers[b, ys[len(ys) // 2], xs[len(xs) // 2]] = True
    image = (labels > 0) * 0.6 + rng.normal(0.2, 0.05, labels.shape)
    return torch.from_numpy(image[:, None].astype(np.float32)), torch.from_numpy(labels), torch.from_numpy(centers)


def time_steps(model, criterion, optimizer, batch, steps: int, device) -> dict[str, float]:
    """Median seconds of each phase of a training step."""
    image, instances, centers = (t.to(device) for t in batch)
    phases: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "optimizer": [], "step": []}

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    for i in range(steps + 2):
        t0 = now()
        prediction = model(image)
        t1 = now()
        loss, _ = criterion(prediction, instances, centers)
        t2 = now()
        loss.backward()
        t3 = now()
        optimizer.step()
        optimizer.zero_grad()
        t4 = now()
        if i >= 2:  # warm-up: allocator, oneDNN primitive caches
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                phases[name].append(seconds)
    return {name: statistics.median(values) for name, values in phases.items()}


def time_loss(criterion, batch, steps: int, device) -> float:
    """Median seconds of loss forward + backward on a fixed prediction at the network's init values."""
    _, instances, centers = (t.to(device) for t in batch)
    prediction = torch.zeros((2, 5) + instances.shape[-2:], device=device)
    prediction[:, 2:4] = 1.0
    prediction += 0.01 * torch.randn_like(prediction)
    prediction.requires_grad_(True)
    seconds = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        criterion(prediction, instances, centers)[0].backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--objects", type=int, default=20, help="discs per crop")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variance-loss", choices=("paper", "fixed"), default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--optimizer",
        choices=("make_optimizer", "torch-adam"),
        default="make_optimizer",
        help="embedseg.train.make_optimizer (ChunkedAdam) or plain torch.optim.Adam with the same settings",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    model = BranchedERFNet().to(device).train()
    criterion = SpatialEmbLoss(variance_loss=args.variance_loss)
    if args.optimizer == "torch-adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=BASE_LR, weight_decay=WEIGHT_DECAY)
    else:
        optimizer = make_optimizer(model)
    batch = disc_batch(args.size, args.objects)
    n_objects = sum(len(torch.unique(labels)) - 1 for labels in batch[1])

    phases = time_steps(model, criterion, optimizer, batch, args.steps, device)
    loss_seconds = time_loss(criterion, batch, args.steps, device)
    print(describe_machine())
    print(
        f"device {device}, {args.threads} CPU threads, batch 2 x {args.size}^2, {n_objects} objects, "
        f"optimiser {args.optimizer}, median of {args.steps} steps"
    )
    print("  " + "  ".join(f"{name} {seconds:.3f} s" for name, seconds in phases.items()))
    print(f"  loss alone (forward + backward): {loss_seconds:.3f} s")
    if device.type == "cpu" and args.size == 256:
        print(
            f"  official EmbedSeg 0.2.5: {OFFICIAL_SECONDS_PER_STEP:.2f} s/step -> speed-up "
            f"{OFFICIAL_SECONDS_PER_STEP / phases['step']:.2f}x"
        )
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
