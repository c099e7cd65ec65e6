"""Cellpose's `distributed_eval` (`cellpose.contrib.distributed_segmentation`) on the bump images of
benchmarks/bigimage.py: peak RSS and Mpx/s, for the side-by-side table in benchmarks/README.md
("Large images").

A random-weight Cellpose network (`CellposeModel(pretrained_model=False)`: no weights can be
downloaded here) whose outputs are, as in benchmarks/bigimage.py, analytic bump flows plus 0.01 ×
its own (patched into each dask worker): the network runs at its real cost and every bump is one
object, so the dynamics and the stitching do real work. Blocks of 1024² (overlap 2 × diameter
30 px, Cellpose's own rule) of a one-slice volume (it stitches 3-D blocks only), one local dask
worker with the machine's cores.
The distributed module needs dask, distributed, dask-image,
dask-jobqueue and Zarr 2, which .venv-cellpose lacks; install them beside it without touching
the venv (--target, then drop what the venv already has), and run:

    .venv-cellpose/bin/pip install --target /tmp/cpdist "dask[distributed]" dask-image \\
        dask-jobqueue imagecodecs "zarr>=2.18,<3" "numcodecs<0.16" deprecated
    PYTHONPATH=/tmp/cpdist .venv-cellpose/bin/python benchmarks/bigimage_cellpose.py

(remove numpy, scipy, tifffile … from /tmp/cpdist first: the venv pins its own.)
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigimage_stardist import bump_image, run_cases  # noqa: E402  (the same images and runner)


def bump_outputs() -> None:
    """In a worker: Cellpose's network call returns unit flows up the image's gradient (towards
    each bump's peak) and cell probability above 0 where the normalised image exceeds 0.3, plus
    0.01 × the random network's own outputs; and `eval` keeps the one-slice volume's z axis."""
    import cellpose.models
    import numpy as np

    network = cellpose.models.run_net

    def run_net(net, imgi, **kwargs):
        y, style = network(net, imgi, **kwargs)
        image = imgi[..., 0]
        grad_y, grad_x = np.gradient(image, axis=(1, 2))
        norm = np.sqrt(grad_y**2 + grad_x**2) + 1e-6
        y[..., 0] = 5 * grad_y / norm + 0.01 * y[..., 0]
        y[..., 1] = 5 * grad_x / norm + 0.01 * y[..., 1]
        y[..., 2] = 10 * (image - 0.3) + 0.01 * y[..., 2]
        return y, style

    cellpose.models.run_net = run_net
    evaluate = cellpose.models.CellposeModel.eval

    def eval_slice(self, x, **kwargs):  # eval squeezes the one-slice volume; the stitching wants it back
        masks, *rest = evaluate(self, x, **kwargs)
        return (masks.reshape(x.shape), *rest)

    cellpose.models.CellposeModel.eval = eval_slice


def one_case(size: int) -> dict:
    import zarr
    from cellpose.contrib.distributed_segmentation import distributed_eval, myLocalCluster

    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # its worker logs and temporary Zarr land in the working directory
        # distributed_eval stitches 3-D blocks only (its face graph is 3-D): a one-slice volume
        shape, chunks = (1, size, size), (1, 1024, 1024)
        image = zarr.open(f"{scratch}/image.zarr", mode="w", shape=shape, chunks=chunks, dtype="uint16")
        image[0] = bump_image(size)
        start = time.perf_counter()
        cores = os.cpu_count()
        with myLocalCluster(ncpus=cores, n_workers=1, threads_per_worker=1, memory_limit="16GB") as cluster:
            cluster.client.run(bump_outputs)
            labels, boxes = distributed_eval(
                image,
                blocksize=chunks,
                write_path=f"{scratch}/labels.zarr",
                model_kwargs={"gpu": False, "pretrained_model": False},
                eval_kwargs={"diameter": 30, "channels": [0, 0]},
                cluster=cluster,
            )
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "mpx_per_s": size * size / 1e6 / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "worker_peak_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
        "objects": len(boxes),
    }


def main() -> None:
    run_cases(
        __doc__,
        __file__,
        one_case,
        f"{'size':>6} {'seconds':>8} {'Mpx/s':>7} {'RSS GB':>7} {'worker GB':>10} {'objects':>8}  (Cellpose)",
        lambda r: (
            f"{r['seconds']:>8.1f} {r['mpx_per_s']:>7.2f} {r['peak_rss_gb']:>7.2f} "
            f"{r['worker_peak_rss_gb']:>10.2f} {r['objects']:>8}"
        ),
    )


if __name__ == "__main__":
    main()
