"""Peak memory and time of tiled 3-D prediction (issue 16): a freshly initialised 3-D Branched
ERF-Net on a random 256 × 512 × 512 volume, as `embedseg predict` runs it (folded BatchNorm,
tiles with overlap, raw output stitched in float32), without and with 16-fold TTA.

Each configuration runs in a process of its own, so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which only grows) is its own. Printed per run:
seconds of `predict_raw` (network and stitching; clustering apart, it depends on the objects),
peak RSS of the process, the RSS before prediction (Python, torch, model, input volume) and the
size of the stitched output. Run:

    python benchmarks/predict3d_memory.py [--shape 256 512 512] [--tile 128 256 256] [--threads 2]
        [--tta both|off|on]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(shape: tuple[int, ...], tile: tuple[int, ...], tta: bool, threads: int) -> dict:
    """One prediction in this process; the figures as a dict."""
    from embedseg.acceleration import inference_model
    from embedseg.inference import predict_raw
    from embedseg.models import BranchedERFNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = inference_model(BranchedERFNet(in_channels=1, n_sigma=3, ndim=3).eval(), compile=False, precision="fp32")
    image = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    before = rss_gib()
    started = time.perf_counter()
    raw = predict_raw(model, image, tta=tta, tile_size=tile)
    seconds = time.perf_counter() - started
    return {
        "shape": list(shape),
        "tile": list(tile),
        "tta": tta,
        "threads": threads,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(rss_gib(), 2),
        "rss_before_gib": round(before, 2),
        "output_gib": round(raw.numel() * raw.element_size() / 2**30, 2),
        "output_dtype": str(raw.dtype),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--tile", type=int, nargs=3, default=[128, 256, 256], metavar=("Z", "Y", "X"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", choices=("both", "off", "on"), default="both")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one measurement
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(tuple(args.shape), tuple(args.tile), args.tta == "on", args.threads)))
        return
    for tta in ("off", "on") if args.tta == "both" else (args.tta,):
        command = [sys.executable, __file__, "--one", "--tta", tta, "--threads", str(args.threads)]
        command += ["--shape", *map(str, args.shape), "--tile", *map(str, args.tile)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"TTA {tta}: the measuring process failed:\n{result.stderr[-3000:]}")
        print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
