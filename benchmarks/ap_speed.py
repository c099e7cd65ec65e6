"""Speed of the AP_dsb evaluation: ours (embedseg.core.metrics) against StarDist's matching and the
official EmbedSeg 0.2.5 way of calling it, on the same label images, with identical numbers.

    bash benchmarks/official_env.sh        # once: .venv-official also holds stardist (no TensorFlow)
    .venv/bin/python benchmarks/ap_speed.py [--pairs 50] [--size 512] [--objects 100] [--rounds 3]

AP_dsb(τ) = mean over images of TP/(TP+FP+FN) at τ ∈ {0.50, 0.55, …, 0.90}, i.e.
``stardist.matching.matching_dataset(gt, pred, thresh=τ, by_image=True).accuracy``. Peers:

- ``ours``: all 9 thresholds in one call of our metric;
- ``stardist``: ``matching_dataset(..., thresh=[9 τ], by_image=True)``, one call for all τ
  (StarDist's fastest use; the speed target ≥ 5 is against this one);
- ``official``: EmbedSeg 0.2.5's test loop, ``EmbedSeg.utils.metrics.matching_dataset`` once
  per image and τ, averaged over images.

Every peer runs in its own fresh process (alternating, `rounds` times); one warm-up evaluation
of two pairs first, so numba compilation is not timed (it is reported separately).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from compare_official import OFFICIAL_PYTHON, blob_labels, random_labels, worker_env
from machine import describe_machine

THRESHOLDS = tuple(np.round(np.arange(0.5, 0.901, 0.05), 2).tolist())
PEERS = ("ours", "stardist", "official")


def predicted_labels(truth: np.ndarray, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction of `truth`: centres moved by ~2 px, radii scaled by 0.7–1.2,
    one object in 20 missed and one in 20 added (false positives)."""
    n = len(centres)
    keep = rng.random(n) > 0.05
    radii = np.sqrt(np.bincount(truth.ravel(), minlength=n + 1)[1:] / np.pi) * rng.uniform(0.7, 1.2, n)
    extra = rng.uniform((0, 0), truth.shape, size=(n // 20, 2))
    moved = np.concatenate([centres[keep] + 2.0 * rng.standard_normal((keep.sum(), 2)), extra])
    sizes = np.concatenate([radii[keep], rng.uniform(10, 20, len(extra))])
    return blob_labels(truth.shape, moved, sizes)


def write_pairs(path: Path, n_pairs: int, size: int, n_objects: int, seed: int = 0) -> None:
    """``truth`` and ``prediction`` stacks (n_pairs, size, size) uint16 in one .npz."""
    rng = np.random.default_rng(seed)
    truths, predictions = [], []
    for _ in range(n_pairs):
        truth, centres = random_labels((size, size), n_objects, (8, 20), rng)
        truths.append(truth)
        predictions.append(predicted_labels(truth, centres, rng))
    np.savez(path, truth=np.stack(truths), prediction=np.stack(predictions))


def evaluate(peer: str, truths: list[np.ndarray], predictions: list[np.ndarray]) -> list[float]:
    """AP_dsb at every τ of THRESHOLDS with `peer`'s code."""
    if peer == "ours":
        from embedseg.core.metrics import match_labels

        per_image = [match_labels(t, p, np.asarray(THRESHOLDS)).ap for t, p in zip(truths, predictions)]
        return np.mean(per_image, axis=0).tolist()
    if peer == "stardist":
        from stardist.matching import matching_dataset

        stats = matching_dataset(truths, predictions, thresh=list(THRESHOLDS), by_image=True, show_progress=False)
        return [float(s.accuracy) for s in stats]
    from EmbedSeg.utils.metrics import matching_dataset

    return [
        float(
            np.mean(
                [
                    matching_dataset([t], [p], thresh=tau, show_progress=False).accuracy
                    for t, p in zip(truths, predictions)
                ]
            )
        )
        for tau in THRESHOLDS
    ]


def run_worker(peer: str, pairs: Path, repeats: int, out: Path) -> None:
    """Warm up on two pairs (compilation), then time `repeats` full evaluations; write JSON."""
    data = np.load(pairs)
    truths, predictions = list(data["truth"]), list(data["prediction"])
    start = time.perf_counter()
    evaluate(peer, truths[:2], predictions[:2])
    warm_up = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        ap = evaluate(peer, truths, predictions)
        seconds.append(time.perf_counter() - start)
    out.write_text(json.dumps({"peer": peer, "seconds": seconds, "warm_up": warm_up, "ap": ap}))


def run_peer(peer: str, pairs: Path, repeats: int, official_python: Path) -> dict:
    python = sys.executable if peer == "ours" else str(official_python)
    out = pairs.with_name(f"ap-{peer}.json")
    command = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        peer,
        "--pairs-file",
        str(pairs),
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run(command, env=worker_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{peer} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50, help="label image pairs")
    parser.add_argument("--size", type=int, default=512, help="image side (px)")
    parser.add_argument("--objects", type=int, default=100, help="objects per ground-truth image")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the peers (fresh processes)")
    parser.add_argument("--repeats", type=int, default=2, help="timed evaluations per process")
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.pairs_file, args.repeats, args.pairs_file.with_name(f"ap-{args.worker}.json"))
        return 0
    if not args.official_python.exists():
        parser.error(f"{args.official_python} not found: run `bash benchmarks/official_env.sh` first")
    with tempfile.TemporaryDirectory(prefix="ap-speed-") as scratch:
        pairs = Path(scratch) / "pairs.npz"
        write_pairs(pairs, args.pairs, args.size, args.objects)
        print(
            f"{args.pairs} pairs of {args.size}^2, ~{args.objects} objects each, {len(THRESHOLDS)} thresholds; "
            f"before: {describe_machine()}"
        )
        results: dict[str, dict] = {}
        for _ in range(args.rounds):
            for peer in PEERS:
                record = run_peer(peer, pairs, args.repeats, args.official_python)
                entry = results.setdefault(peer, {"seconds": [], "warm_up": [], "ap": record["ap"]})
                entry["seconds"] += record["seconds"]
                entry["warm_up"].append(record["warm_up"])
        print(f"load after: {os.getloadavg()[0]:.2f}; medians over {args.rounds} rounds x {args.repeats} calls\n")

    ours = statistics.median(results["ours"]["seconds"])
    print(f"| {'peer':<44} | {'seconds':>8} | {'peer/ours':>9} | {'warm-up s':>9} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 11}|{'-' * 11}|")
    labels = {
        "ours": "ours (embedseg.core.metrics), all tau at once",
        "stardist": "stardist matching_dataset, all tau at once",
        "official": "official EmbedSeg, one call per image and tau",
    }
    for peer in PEERS:
        median = statistics.median(results[peer]["seconds"])
        print(
            f"| {labels[peer]:<44} | {median:>8.3f} | {median / ours:>9.1f} | "
            f"{statistics.median(results[peer]['warm_up']):>9.2f} |"
        )
    target = statistics.median(results["stardist"]["seconds"]) / ours
    print(f"\ntarget stardist/ours >= 5: {'ok' if target >= 5 else 'MISS'} ({target:.1f})")
    print("AP_dsb per tau:", " ".join(f"{v:.6f}" for v in results["ours"]["ap"]))
    ours_ap = np.array(results["ours"]["ap"])
    identical = results["stardist"]["ap"] == results["ours"]["ap"]
    # The official loop averages the same per-image values in another order: last-bit differences.
    close = np.allclose(results["official"]["ap"], ours_ap, rtol=1e-12, atol=0)
    print(f"{'PASS' if identical else 'FAIL'}  ours == stardist, bit for bit, at all 9 thresholds")
    print(
        f"{'PASS' if close else 'FAIL'}  ours == official EmbedSeg within 1e-12 relative "
        f"(max difference {np.abs(np.array(results['official']['ap']) - ours_ap).max():.1e})"
    )
    identical = identical and close
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
