"""Does bf16 (or `--precision auto`) train as well as fp32? Parity on real DSB (a benchmark, not a test)

    nice .venv/bin/python benchmarks/precision_parity.py [--seeds 1 2 3] [--precisions fp32 bf16]

Greyscale DSB from ../shared/data (the first 40 images, half held out for testing, crops of 64²),
EmbedSeg trained at the demo's budget (benchmarks/proxy_real.py's) once per seed and precision,
predicted at the same precision without TTA and scored with AP_dsb. Parity, the bar for letting
`auto` into a configuration: |Δ mean AP@0.5| ≤ max(0.02, the seeds' sd), with ≥ 3 seeds each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from machine import describe_machine
from proxy_real import EMBEDSEG_TRAIN, PAIRS, SHARED_DATA, embedseg, per_image_ap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--precisions", nargs=2, default=["fp32", "bf16"])
    parser.add_argument("--work", type=Path, help="keep the data, models and scores here (default: a temp folder)")
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)
    (name, options), crop_size = PAIRS["nuclei"][1], PAIRS["nuclei"][2]
    options = [str(SHARED_DATA / o) if p == "--source" else o for p, o in zip(["", *options], options)]
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        data = work / "data"
        embedseg("prepare", name, "--out", data, "--crop-size", crop_size, *options)
        embedseg("crops", data, "--out", work / "crops")
        means: dict[str, list[float]] = {}
        for precision in args.precisions:
            for seed in args.seeds:
                model, predictions = work / f"{precision}-{seed}", work / f"p-{precision}-{seed}"
                cpu = embedseg("train", work / "crops", "--out", model, "--seed", seed, "--precision", precision,
                               *EMBEDSEG_TRAIN.split())  # fmt: skip
                cpu += embedseg("predict", model / "best.pt", "--images", data / "test" / "images", "--out",
                                predictions, "--no-tta", "--clustering", "current", "--precision", precision)  # fmt: skip
                ap = per_image_ap(data, predictions, work / f"s-{precision}-{seed}.csv")[0.5].mean()
                means.setdefault(precision, []).append(float(ap))
                print(f"{precision} seed {seed}: AP@0.5 {ap:.3f} ({cpu / 60:.1f} CPU-min)", flush=True)
    (a, runs_a), (b, runs_b) = means.items()
    delta = np.mean(runs_b) - np.mean(runs_a)
    spread = max(np.std(runs_a, ddof=1), np.std(runs_b, ddof=1)) if len(args.seeds) > 1 else 0.0
    bar = max(0.02, spread)
    print(f"{a}: {np.mean(runs_a):.3f} ± {np.std(runs_a, ddof=1):.3f}; {b}: {np.mean(runs_b):.3f} ± "
          f"{np.std(runs_b, ddof=1):.3f} (mean ± seed sd over {len(args.seeds)} seeds)")  # fmt: skip
    print(f"Δ mean AP@0.5 {delta:+.3f}, bar {bar:.3f}: {'parity' if abs(delta) <= bar else 'NO parity'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
