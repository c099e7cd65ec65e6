"""3-D network and loss of this package ("ours") against official EmbedSeg 0.2.5 (BranchedERFNet_3d,
SpatialEmbLoss_3d): same weights and inputs → same network output, first-step loss and gradients.

    .venv/bin/python benchmarks/official3d_network.py [--shape 16 64 64] [--anisotropy 2.0]

The driver writes a small synthetic volume (ellipsoids, round in physical units, on a noisy
background) to a scratch folder, then runs two worker processes of this file: the official one
with .venv-official's Python, ours with this one. The official worker builds its network with
``torch.manual_seed(0)`` and saves these initial weights (ours builds its own with the same seed
and compares); then it moves the zero-initialised offset and σ weights off zero (as training
does: at the initial weights every embedding sits on the grid, symmetric voxels tie in the Lovász
sort, and the subgradient then depends on how each sort orders ties) and saves the result; ours
loads it (`load_official_checkpoint`). Each worker then computes, on the same input:

- the eval-mode output (1, 7, Z, Y, X);
- one training step's loss and every parameter's gradient: train mode (BatchNorm on batch
  statistics) with Dropout3d active and ``torch.manual_seed(1)`` right before the forward, so
  both draw the same dropout masks (same layers in the same order on same-shaped tensors).
  The loss is the official 3-D configuration: n_sigma 3, w_inst 1, w_var 10, w_seed 1, the grid of
  ``create_dicts`` (n_x = n_y = 1024, pixel 1, pixel_z = (n_z − 1)/(n_x − 1)·anisotropy) and
  foreground_weight = #background/#foreground voxels of the mask (as ``calculate_foreground_weight``).

The workers import only the standard library, NumPy and torch at top level (both environments
have them) and their own package inside their function.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = REPO / ".venv-official" / "bin" / "python"
INIT_WEIGHTS = "official3d_init.pth"  # as initialised
WEIGHTS = "official3d_weights.pth"  # with the offset and σ outputs moved off their initial zeros
INIT_SEED = 0  # torch seed of the networks' initialisation
DROPOUT_SEED = 1  # torch seed right before the training forward, in both workers
GRID_Z = 32  # official n_z: any value ≥ Z gives the same δ_z
# Bounds the equivalence test holds the comparison to: outputs and loss agree to float32
# rounding; gradients pass through a training-mode BatchNorm, whose normalisation amplifies
# rounding, so they are compared relative to each tensor's largest value.
OUTPUT_TOLERANCE = 1e-5  # max |A − B| / max |A| of the eval output
LOSS_TOLERANCE = 1e-5  # relative
GRADIENT_TOLERANCE = 1e-3  # max over tensors of max |A − B| / max(max |A|, GRADIENT_FLOOR · largest)
# Gradients below this share of the largest one are compared to that floor instead of to their
# own size: the bias of a convolution in front of a training-mode BatchNorm has a gradient of 0
# in exact arithmetic, so what both compute for it is rounding noise (~1e-9 of the largest).
GRADIENT_FLOOR = 1e-2


# ----------------------------------------------------------------------------------------------
# Synthetic inputs


def ellipsoid_volume(
    shape: tuple[int, int, int], n_objects: int, anisotropy: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids (Z, Y, X) int64 of `n_objects` random ellipsoids (later ones cover earlier
    ones) and the centre image (Z, Y, X) bool with every object's centre voxel but the last
    object's, so that the loss's centroid fallback is exercised too. Semi-axes are 4–9 voxels in
    y and x and divided by `anisotropy` in z (round in physical units)."""
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.int64)
    axes = rng.uniform(4, 9, size=(n_objects, 3)) / np.array([anisotropy, 1.0, 1.0])
    centres = rng.uniform(axes, np.array(shape) - axes).round().astype(int)
    for k, ((cz, cy, cx), (az, ay, ax)) in enumerate(zip(centres, axes)):
        labels[((zz - cz) / az) ** 2 + ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1] = k + 1
    centre_image = np.zeros(shape, bool)
    for k, (cz, cy, cx) in enumerate(centres[:-1]):
        if labels[cz, cy, cx] == k + 1:  # not covered by a later object
            centre_image[cz, cy, cx] = True
    return labels, centre_image


def write_inputs(
    folder: Path,
    shape: tuple[int, int, int] = (16, 64, 64),
    anisotropy: float = 2.0,
    n_objects: int = 6,
    seed: int = 0,
) -> None:
    """``inputs.npz`` (image (1, 1, Z, Y, X) float32, instances (1, Z, Y, X), centres (1, Z, Y, X))
    and ``settings.json`` (anisotropy, foreground_weight) in `folder`."""
    rng = np.random.default_rng(seed)
    labels, centres = ellipsoid_volume(shape, n_objects, anisotropy, rng)
    image = (0.2 + 0.5 * (labels > 0) + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    np.savez(folder / "inputs.npz", image=image[None, None], instances=labels[None], centres=centres[None])
    n_foreground = int(np.count_nonzero(labels))
    settings = {"anisotropy": anisotropy, "foreground_weight": (labels.size - n_foreground) / n_foreground}
    (folder / "settings.json").write_text(json.dumps(settings))


# ----------------------------------------------------------------------------------------------
# Workers


def official_peer(folder: Path, settings: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """The official network (seeded, weights saved for ours) and its loss as the 3-D training uses it."""
    from EmbedSeg.criterions.my_loss_3d import SpatialEmbLoss_3d
    from EmbedSeg.models.BranchedERFNet_3d import BranchedERFNet_3d

    torch.manual_seed(INIT_SEED)
    model = BranchedERFNet_3d(num_classes=[6, 1], input_channels=1)
    model.init_output(n_sigma=3)
    torch.save({"model_state_dict": model.state_dict()}, folder / INIT_WEIGHTS)
    with torch.no_grad():
        weight = model.decoders[0].output_conv.weight  # (16, 6, 2, 2, 2)
        weight[:, :3].normal_(std=2e-4)  # offsets of a few voxels
        weight[:, 3:6].normal_(std=1e-2)  # σ_raw ≈ 1 ± 0.05
    torch.save({"model_state_dict": model.state_dict()}, folder / WEIGHTS)
    pixel_z = (GRID_Z - 1) / (1024 - 1) * settings["anisotropy"]
    criterion = SpatialEmbLoss_3d(
        grid_z=GRID_Z,
        grid_y=1024,
        grid_x=1024,
        pixel_z=pixel_z,
        pixel_y=1,
        pixel_x=1,
        n_sigma=3,
        foreground_weight=settings["foreground_weight"],
    )

    def loss(prediction: torch.Tensor, instances: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        return criterion(prediction, instances, instances > 0, centres, w_inst=1, w_var=10, w_seed=1).mean()

    return model, loss


def our_peer(folder: Path, settings: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """Our network with the official weights, and our loss in the official 3-D configuration."""
    from embedseg.core.embedding import grid_spacing
    from embedseg.core.losses import SpatialEmbLoss
    from embedseg.models import load_official_checkpoint

    model = load_official_checkpoint(folder / WEIGHTS, device="cpu", ndim=3)
    criterion = SpatialEmbLoss(
        variance_loss="fixed",  # EmbedSeg 0.2.5's per-channel variance, as my_loss_3d.py
        spacing=grid_spacing(3, settings["anisotropy"]),
        foreground_weight=settings["foreground_weight"],
    )

    def loss(prediction: torch.Tensor, instances: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        return criterion(prediction, instances, centres)[0]

    return model, loss


PEERS = {"official": official_peer, "ours": our_peer}


def same_initialisation(folder: Path) -> bool:
    """Whether our 3-D network built after ``torch.manual_seed(INIT_SEED)`` has exactly the
    official initial weights (same layers created in the same order, same output init)."""
    from embedseg.models import BranchedERFNet

    torch.manual_seed(INIT_SEED)
    ours = BranchedERFNet(in_channels=1, ndim=3).state_dict()
    official = torch.load(folder / INIT_WEIGHTS, weights_only=True)["model_state_dict"]
    return list(ours) == list(official) and all(torch.equal(ours[key], official[key]) for key in ours)


def run_worker(peer: str, folder: Path) -> None:
    """Write ``{peer}-output.npy`` (eval output), ``{peer}-gradients.npz`` (gradient per parameter
    name) and ``{peer}.json`` (loss, parameter count, torch version) into `folder`."""
    torch.set_num_threads(1)
    settings = json.loads((folder / "settings.json").read_text())
    inputs = {key: torch.from_numpy(value) for key, value in np.load(folder / "inputs.npz").items()}
    model, loss_fn = PEERS[peer](folder, settings)
    with torch.no_grad():
        output = model.eval()(inputs["image"])
    np.save(folder / f"{peer}-output.npy", output.numpy())

    model.train()
    torch.manual_seed(DROPOUT_SEED)
    loss = loss_fn(model(inputs["image"]), inputs["instances"], inputs["centres"])
    loss.backward()
    gradients = {name: p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}
    np.savez(folder / f"{peer}-gradients.npz", **gradients)
    record = {
        "loss": loss.item(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    if peer == "ours":
        record["same_init"] = same_initialisation(folder)
    (folder / f"{peer}.json").write_text(json.dumps(record))


# ----------------------------------------------------------------------------------------------
# Driver


def run_peer(python: Path, peer: str, folder: Path) -> None:
    """Run one worker process (official first: it writes the weights ours loads)."""
    command = [str(python), str(Path(__file__).resolve()), "--worker", peer, "--folder", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{peer} worker failed:\n{done.stderr[-4000:]}")


def compare(folder: Path) -> dict[str, Any]:
    """Figures of the comparison: output, loss and gradient differences, parameter counts."""
    official, ours = (json.loads((folder / f"{peer}.json").read_text()) for peer in ("official", "ours"))
    out_a, out_b = (np.load(folder / f"{peer}-output.npy") for peer in ("official", "ours"))
    with np.load(folder / "official-gradients.npz") as a, np.load(folder / "ours-gradients.npz") as b:
        names_a, names_b = sorted(a.files), sorted(b.files)
        gradient_scale = max(float(np.abs(a[name]).max()) for name in names_a)
        floor = GRADIENT_FLOOR * gradient_scale
        gradient_errors = {
            name: float(np.abs(a[name] - b[name]).max() / max(np.abs(a[name]).max(), floor))
            for name in names_a
            if name in b.files
        }
    return {
        "output_error": float(np.abs(out_a - out_b).max() / np.abs(out_a).max()),
        "output_shape": list(out_b.shape),
        "loss_official": official["loss"],
        "loss_ours": ours["loss"],
        "loss_error": abs(official["loss"] - ours["loss"]) / abs(official["loss"]),
        "same_gradient_names": names_a == names_b,
        "n_gradients": len(names_b),
        "gradient_error": max(gradient_errors.values()),
        "worst_gradient": max(gradient_errors, key=gradient_errors.get),
        "gradient_scale": gradient_scale,
        "n_parameters_official": official["n_parameters"],
        "n_parameters_ours": ours["n_parameters"],
        "same_torch": official["torch"] == ours["torch"],
        "same_init": ours["same_init"],
    }


def run_both(folder: Path, official_python: Path = OFFICIAL_PYTHON) -> dict[str, Any]:
    run_peer(official_python, "official", folder)
    run_peer(Path(sys.executable), "ours", folder)
    return compare(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[16, 64, 64], help="Z Y X, multiples of 8")
    parser.add_argument("--anisotropy", type=float, default=2.0)
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--folder", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=sorted(PEERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.folder)
        return 0
    if not args.official_python.exists():
        parser.error(f"{args.official_python} not found: run `bash benchmarks/official_env.sh` first")
    with tempfile.TemporaryDirectory(prefix="official3d-") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        write_inputs(folder, tuple(args.shape), args.anisotropy)
        figures = run_both(folder, args.official_python)
    print(json.dumps(figures, indent=2))
    passed = (
        figures["output_error"] < OUTPUT_TOLERANCE
        and figures["loss_error"] < LOSS_TOLERANCE
        and figures["gradient_error"] < GRADIENT_TOLERANCE
        and figures["n_parameters_official"] == figures["n_parameters_ours"]
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
