"""Out-of-core prediction of large OME-Zarr images (issue 27): peak RSS and throughput (Mpx/s) of
`embedseg.blocks.predict_blocks` on 2k², 4k² and 8k² uint16 images, with and without TTA.

Each case runs in its own process (its peak RSS is that process's ru_maxrss, the synthetic image
written beforehand by this one). The network is a small random-weight one (`SmallNet`: three 3×3
convolutions of 8 channels, receptive radius 3 px) whose raw outputs are its own times 0.01 on
top of analytic bump outputs (zero offsets, 20 px bandwidth, seed logit rising with brightness), so
that the clustering sees one object per bump: the paper's ERF-Net runs at ~0.3 Mpx/s on one core
of this machine, and its 8k² TTA case would take most of an hour. The blocks are planned for
`--memory-gb` (default 1) and the torch threads of this process.

    .venv/bin/python benchmarks/bigimage.py [--sizes 2048 4096 8192] [--memory-gb 1]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


class SmallNet(torch.nn.Module):
    receptive_radius = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.ModuleList([torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)])
        self.head = torch.nn.Conv2d(8, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.features:
            h = torch.relu(layer(h))
        sigma = math.log(math.log(2) / (20 / 1023) ** 2) / 10
        zeros = torch.zeros_like(x)
        bumps = torch.cat([zeros, zeros, zeros + sigma, zeros + sigma, 30 * (x - 0.4)], dim=1)
        return bumps + 0.01 * self.head(h)


def bump_image(size: int) -> np.ndarray:
    """uint16 Gaussian bumps (σ 6 px) every 96 px."""
    yy, xx = np.mgrid[-18:19, -18:19]
    bump = (65535 * np.exp(-(yy**2 + xx**2) / (2 * 6.0**2))).astype(np.uint16)
    tile = np.zeros((96, 96), np.uint16)
    tile[48 - 18 : 48 + 19, 48 - 18 : 48 + 19] = bump
    return np.tile(tile, (size // 96 + 1, size // 96 + 1))[:size, :size]


def one_case(path: str, tta: bool, memory_gb: float, work: str) -> dict:
    from embedseg import blocks, zarr_io
    from embedseg.dataset_settings import DatasetSettings

    settings = DatasetSettings(name="bench", normalization_factor=65535.0)
    image = zarr_io.open_image(path)
    start = time.perf_counter()
    out = blocks.predict_blocks(SmallNet().eval(), image, settings, Path(work), tta=tta, memory_gb=memory_gb)
    seconds = time.perf_counter() - start
    import zarr

    labels = zarr.open_group(out, mode="r")["labels/embedseg/1"]  # the half-resolution level: small
    return {
        "seconds": seconds,
        "mpx_per_s": math.prod(image.shape) / 1e6 / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "objects_at_level_1": int(len(np.unique(np.asarray(labels))) - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--case", nargs=3, metavar=("ZARR", "TTA", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        path, tta, work = args.case
        print(json.dumps(one_case(path, tta == "1", args.memory_gb, work)))
        return
    from embedseg import zarr_io

    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads, memory budget {args.memory_gb} GB"
    )
    print(f"{'size':>6} {'TTA':>4} {'seconds':>8} {'Mpx/s':>7} {'peak RSS GB':>12} {'objects':>8}")
    rss = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"{size}.ome.zarr"
            zarr_io.write_image(path, bump_image(size), "yx", (1024, 1024))
            for tta in (False, True):
                command = [
                    sys.executable,
                    __file__,
                    "--memory-gb",
                    str(args.memory_gb),
                    "--case",
                    str(path),
                    "1" if tta else "0",
                    str(Path(tmp) / f"work{size}{int(tta)}"),
                ]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                rss[size, tta] = result["peak_rss_gb"]
                print(
                    f"{size:>6} {'on' if tta else 'off':>4} {result['seconds']:>8.1f} {result['mpx_per_s']:>7.2f} "
                    f"{result['peak_rss_gb']:>12.2f} {result['objects_at_level_1']:>8}",
                    flush=True,
                )
    for tta in (False, True):
        if (4096, tta) in rss and (8192, tta) in rss:
            print(f"TTA {'on' if tta else 'off'}: peak RSS 8k² / 4k² = {rss[8192, tta] / rss[4096, tta]:.2f}")


if __name__ == "__main__":
    main()
