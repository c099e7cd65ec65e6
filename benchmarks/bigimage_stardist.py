"""StarDist's `predict_instances_big` on the bump images of benchmarks/bigimage.py: peak RSS and
Mpx/s, for the side-by-side table in benchmarks/README.md ("Large images").

A small random-weight StarDist2D (16 rays, U-Net depth 2, 8 base filters, grid 2; no weights can
be downloaded here), blocks of 1024² with 64 px overlap and context; `prob_thresh` 0.99 keeps the
random network's candidates few enough for its NMS. Run in .venv-stardist:

    .venv-stardist/bin/python benchmarks/bigimage_stardist.py [--sizes 2048 4096 8192]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable


def bump_image(size: int):
    import numpy as np

    yy, xx = np.mgrid[-18:19, -18:19]
    bump = (65535 * np.exp(-(yy**2 + xx**2) / (2 * 6.0**2))).astype(np.uint16)
    tile = np.zeros((96, 96), np.uint16)
    tile[48 - 18 : 48 + 19, 48 - 18 : 48 + 19] = bump
    return np.tile(tile, (size // 96 + 1, size // 96 + 1))[:size, :size]


def one_case(size: int, tta: bool) -> dict:
    from stardist.models import Config2D, StarDist2D

    config = Config2D(n_rays=16, grid=(2, 2), unet_n_depth=2, unet_n_filter_base=8, n_channel_in=1)
    model = StarDist2D(config, name=None, basedir=None)
    image = bump_image(size).astype("float32") / 65535
    start = time.perf_counter()
    labels, _ = model.predict_instances_big(
        image, axes="YX", block_size=1024, min_overlap=64, context=64, prob_thresh=0.99, show_progress=False
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "mpx_per_s": size * size / 1e6 / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "objects": int(labels.max()),
    }


def run_cases(doc: str, script: str, one_case: Callable[[int], dict], header: str, row: Callable[[dict], str]) -> None:
    """The command line of a peer's big-image benchmark: each size in a process of its own (so
    that peak RSS is the case's), one printed row per size; ``--case SIZE`` runs one case."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case)))
        return
    print(header)
    for size in args.sizes:
        out = subprocess.run([sys.executable, script, "--case", str(size)], check=True, capture_output=True, text=True)
        print(f"{size:>6} " + row(json.loads(out.stdout.strip().splitlines()[-1])), flush=True)


def main() -> None:
    run_cases(
        __doc__,
        __file__,
        lambda size: one_case(size, False),
        f"{'size':>6} {'seconds':>8} {'Mpx/s':>7} {'peak RSS GB':>12} {'objects':>8}  (StarDist, no TTA)",
        lambda r: f"{r['seconds']:>8.1f} {r['mpx_per_s']:>7.2f} {r['peak_rss_gb']:>12.2f} {r['objects']:>8}",
    )


if __name__ == "__main__":
    main()
