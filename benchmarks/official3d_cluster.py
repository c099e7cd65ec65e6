"""3D clustering and 3D medoids of this package against official EmbedSeg 0.2.5 (issue 16, item 2).

    .venv/bin/python -m benchmarks.official3d_cluster [--folder DIR]

The driver writes one ``inputs.npz``: a synthetic raw 3D network output (7 × 16 × 64 × 64: six
touching nuclei, z steps twice as long as x/y steps) and a few 3D objects, among them shapes whose
medoid is tied between symmetric voxels. A worker process per side then computes from the same
bytes — the official one in .venv-official: ``Cluster_3d.cluster`` with the settings of its 3D
inference (``test_3d`` → ``predict_3d``; ``create_test_configs_dict`` defaults) and the medoid of
``generate_center_image_3d`` (its 3D crop generator, `speed_up` 1); ours in this Python — and the
driver compares: identical label images, identical medoid voxels. Exit status 1 if any differs.
Workers run as ``python -m`` from the repository root, so each imports only its own side's
package (the official venv has no ``embedseg``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.compare_official import OFFICIAL_PYTHON, REPO, worker_env

ANISOTROPY = 2.0  # voxel_z / voxel_x of the synthetic volume
GRID = 1024  # official n_x = n_y with pixel size 1: δ = 1/1023
GRID_Z = 32  # official n_z; δ_z = ANISOTROPY·δ whatever it is
# The official 3D inference's clustering settings (create_test_configs_dict defaults).
SETTINGS = {
    "seed_thresh": 0.9,
    "fg_thresh": 0.5,
    "min_mask_sum": 0,
    "min_unclustered_sum": 0,
    "min_object_size": 10,
}
CLUSTER = "cluster"


# ----------------------------------------------------------------------------------------------
# Synthetic inputs (the driver writes them once; both workers read the same file)


def nuclei_labels(shape: tuple[int, ...], centres: np.ndarray, radii: np.ndarray, anisotropy: float) -> np.ndarray:
    """(Z, Y, X) uint16 labels of touching nuclei: each voxel within its nearest centre's radius
    (x-voxel units, z steps count `anisotropy`) gets that centre's id. centres: (N, 3) (z, y, x)."""
    from scipy.spatial import cKDTree

    scale = np.array([anisotropy, 1.0, 1.0])
    voxels = np.indices(shape).reshape(3, -1).T * scale
    distance, nearest = cKDTree(centres * scale).query(voxels)
    return np.where(distance < radii[nearest], nearest + 1, 0).reshape(shape).astype(np.uint16)


def synthetic_output(
    labels: np.ndarray, centres: np.ndarray, anisotropy: float, rng: np.random.Generator
) -> np.ndarray:
    """Raw 3D network output (7, Z, Y, X) float32 [o_x, o_y, o_z, σ_x, σ_y, σ_z, seed logit]
    that clusters into the nuclei of `labels` (centres (N, 3) as (z, y, x)).

    Offsets point from each voxel to its nucleus centre, ± 1.5 x-voxels of noise, in grid units
    (δ = 1/1023 per x-voxel, so a z step is anisotropy·δ); σ_raw ≈ 0.85 (φ = 0.5 at ≈ 12
    x-voxels); the seed logit falls from 6 at the centre to 0.5 at the nucleus' radius and is −4
    outside; its small noise keeps the maximum unique.
    """
    delta = 1.0 / (GRID - 1)
    scale = np.array([anisotropy, 1.0, 1.0])
    inside = labels > 0
    obj = labels[inside].astype(int) - 1
    zyx = np.indices(labels.shape)[:, inside].T.astype(float)
    to_centre = (centres[obj] - zyx) * scale  # x-voxel units
    sizes = np.bincount(labels.ravel(), minlength=len(centres) + 1)[1:]
    radius = np.cbrt(3 * sizes * anisotropy / (4 * np.pi))  # of the ball of the same volume
    relative = np.linalg.norm(to_centre, axis=1) / radius[obj]
    to_centre += 1.5 * rng.standard_normal(to_centre.shape)

    output = np.zeros((7, *labels.shape), dtype=np.float32)
    output[0:3] = 0.01 * rng.standard_normal((3, *labels.shape))
    for channel, axis in enumerate((2, 1, 0)):  # o_x, o_y, o_z
        output[channel][inside] = np.arctanh(np.clip(to_centre[:, axis] * delta, -0.999, 0.999))
    output[3:6] = 0.85 + 0.01 * rng.standard_normal((3, *labels.shape))
    output[6] = -4.0
    output[6][inside] = 6.0 - 5.5 * relative + 0.01 * rng.standard_normal(relative.shape)
    return output


def medoid_shapes(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, float]]:
    """3D objects (bool (Z, Y, X)) with the anisotropy to use: an even-sided box and a ball whose
    exact medoid is tied between symmetric voxels (rounding, i.e. the official summation order,
    decides), a hollow shell, a flattened nucleus, and a random blob at a non-integer anisotropy."""
    zz, yy, xx = np.indices((12, 24, 24)) - np.array([5.5, 11.5, 11.5])[:, None, None, None]
    box = np.zeros((12, 24, 24), dtype=bool)
    box[2:10, 4:20, 6:18] = True
    ball = zz**2 + (yy / 2) ** 2 + (xx / 2) ** 2 < 5.5**2
    shell = ball & ~(zz**2 + (yy / 2) ** 2 + (xx / 2) ** 2 < 3.5**2)
    nucleus = (zz / 3) ** 2 + (yy / 9) ** 2 + (xx / 7) ** 2 < 1
    blob = np.zeros((10, 24, 24), dtype=bool)
    voxels = np.indices(blob.shape).astype(float)
    for centre, radius in zip(rng.uniform((2, 6, 6), (8, 18, 18), size=(4, 3)), rng.uniform(3, 6, size=4)):
        z, y, x = (voxels - centre[:, None, None, None]) * np.array([1.7, 1, 1])[:, None, None, None]
        blob |= z**2 + y**2 + x**2 < radius**2
    return {
        "medoid_box": (box, 1.0),
        "medoid_box_anisotropic": (box, ANISOTROPY),
        "medoid_ball": (ball, ANISOTROPY),
        "medoid_shell": (shell, ANISOTROPY),
        "medoid_nucleus": (nucleus, 1.0),
        "medoid_blob": (blob, 1.7),
    }


def write_inputs(folder: Path, seed: int = 0) -> list[str]:
    """``inputs.npz`` in `folder` with the inputs of every case; returns the case names."""
    rng = np.random.default_rng(seed)
    shape = (16, 64, 64)
    centres = np.array([(4, 14, 14), (8, 16, 44), (11, 42, 18), (6, 44, 46), (12, 26, 30), (4, 52, 28)], dtype=float)
    centres += rng.uniform(-1, 1, size=centres.shape)
    labels = nuclei_labels(shape, centres, rng.uniform(9, 13, size=len(centres)), ANISOTROPY)
    arrays = {"prediction": synthetic_output(labels, centres, ANISOTROPY, rng), "truth": labels}
    shapes = medoid_shapes(rng)
    for name, (mask, anisotropy) in shapes.items():
        arrays[name] = mask
        arrays[f"{name}_anisotropy"] = np.float64(anisotropy)
    np.savez(folder / "inputs.npz", **arrays)
    return [CLUSTER, *shapes]


# ----------------------------------------------------------------------------------------------
# The two sides; each imports only its own package


def official_cluster(prediction: torch.Tensor) -> np.ndarray:
    from EmbedSeg.utils.utils import Cluster_3d

    # As create_test_configs_dict: pixel_z = (n_z − 1)/(n_x − 1)·anisotropy, pixel_x = pixel_y = 1.
    pixel_z = (GRID_Z - 1) / (GRID - 1) * ANISOTROPY
    cluster = Cluster_3d(GRID_Z, GRID, GRID, pixel_z, 1, 1, "cpu")
    return cluster.cluster(prediction, n_sigma=3, **SETTINGS).numpy()


def official_medoid(mask: np.ndarray, anisotropy: float) -> tuple[int, ...]:
    from EmbedSeg.utils.generate_crops import generate_center_image_3d

    centre = generate_center_image_3d(mask.astype(np.uint16), "medoid", [1], False, anisotropy, 1)
    return tuple(int(v) for v in np.argwhere(centre)[0])


def our_cluster(prediction: torch.Tensor) -> np.ndarray:
    from embedseg.core.cluster import ClusterParams, cluster
    from embedseg.core.embedding import grid_spacing

    return cluster(prediction, ClusterParams(**SETTINGS), grid_spacing(3, ANISOTROPY))


def our_medoid(mask: np.ndarray, anisotropy: float) -> tuple[int, ...]:
    from embedseg.core.centers import medoid

    return medoid(mask, anisotropy)


SIDES = {"official": (official_cluster, official_medoid), "ours": (our_cluster, our_medoid)}


def run_worker(side: str, folder: Path, cases: list[str]) -> None:
    """Compute every case on one side; write ``output-{side}-{case}.npy``."""
    cluster, medoid = SIDES[side]
    inputs = np.load(folder / "inputs.npz")
    for case in cases:
        if case == CLUSTER:
            result = np.asarray(cluster(torch.from_numpy(inputs["prediction"])), dtype=np.int64)
        else:
            result = np.array(medoid(inputs[case], float(inputs[f"{case}_anisotropy"])))
        np.save(folder / f"output-{side}-{case}.npy", result)


def run_side(python: Path, side: str, folder: Path, cases: list[str]) -> None:
    """One worker process for `side` (``python -m``, from the repository root)."""
    module = "benchmarks.official3d_cluster"
    command = [str(python), "-m", module, "--worker", side, "--folder", str(folder), *cases]
    done = subprocess.run(command, cwd=REPO, env=worker_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{done.stderr[-4000:]}")


def equivalence(folder: Path, cases: list[str]) -> list[tuple[str, bool, str]]:
    """(case, passed, detail) per case from the saved outputs of both sides."""
    checks = []
    for case in cases:
        official, ours = (np.load(folder / f"output-{side}-{case}.npy") for side in ("official", "ours"))
        if case == CLUSTER:
            differ = int(np.count_nonzero(official != ours))
            objects = f"{len(np.unique(official)) - 1} vs {len(np.unique(ours)) - 1} objects"
            checks.append((case, differ == 0, f"{differ} voxels differ; {objects}"))
        else:
            detail = f"official {official.tolist()}, ours {ours.tolist()}"
            checks.append((case, official.tolist() == ours.tolist(), detail))
    return checks


def compare(folder: Path, official_python: Path = OFFICIAL_PYTHON) -> list[tuple[str, bool, str]]:
    """Write the inputs, run both sides, compare."""
    cases = write_inputs(folder)
    run_side(official_python, "official", folder, cases)
    run_side(Path(sys.executable), "ours", folder, cases)
    return equivalence(folder, cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--worker", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("cases", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.folder, args.cases)
        return 0
    if not args.official_python.exists():
        parser.error(f"{args.official_python} not found: run `bash benchmarks/official_env.sh` first")
    with tempfile.TemporaryDirectory(prefix="official3d-cluster-") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        checks = compare(folder, args.official_python)
    for case, passed, detail in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {case}: {detail}")
    return 0 if all(passed for _, passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
