"""Speed, peak memory and equivalence of this package ("ours", B) against official EmbedSeg 0.2.5 (A).

    bash benchmarks/official_env.sh                 # once: builds .venv-official
    .venv/bin/python benchmarks/compare_official.py [--rounds 2] [--repeats 2] [--cases ...]

The driver writes identical synthetic inputs to a scratch folder, then runs every case in
fresh worker processes — A with .venv-official's Python, B with this one — alternately
(A, B, A, B, …) so that load on a shared machine hits both alike. Each worker times its case
after one warm-up call, on 2 threads, and reports its peak RSS (one process per case, so the
peaks do not mix). A runs first in every round and saves its network weights; B loads them
(`load_official_checkpoint`), so both networks compute with the same weights, and the outputs
of both are compared at the end: raw network output, TTA output, clustering labels and medoids.
The forward and TTA cases run the network as each package's prediction does: the official
eval-mode model, ours the inference copy of `embedseg predict` (BatchNorm folded, channels_last).

Ours runs twice: in float32 ("ours", held to the equivalence checks) and with `--precision auto`
("ours auto": bfloat16 autocast of the network on CPUs with AMX-BF16 or AVX512-BF16, else float32
again; embedseg.acceleration.resolve_precision), whose distance from the official outputs is
reported, not checked.

After the timing table, a second one gives the network cases' compute rates (GFLOP/s from
the convolutions' operation count) beside this machine's float32 matrix-product rate: what a
target ratio would demand of the CPU.

The workers import only what their side needs: this file's top level uses the standard
library, NumPy and torch, which both virtual environments have.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = REPO / ".venv-official" / "bin" / "python"
THREADS = 2
GRID_SPACING = 1.0 / 1023.0
MEDOID_AREAS = (500, 5_000, 20_000)
OFFICIAL_WEIGHTS = "official_model.pth"


@dataclass(frozen=True)
class Case:
    """One benchmark: what it times and the speed-up target (official/ours)."""

    name: str
    label: str
    target: float
    max_repeats: int = 1000  # timed calls per process at most (TTA: one, the official takes ~20 s)


CASES = (
    Case("train_step", "training step, batch 2 x 256^2", 1.5),
    Case("forward", "forward 1024^2, no TTA", 1.0),
    Case("tta", "forward 1024^2, 8-fold TTA", 2.0, max_repeats=1),
    Case("cluster", "clustering 1024^2, ~100 objects", 10.0),
    *(Case(f"medoid_{area}", f"medoid, object of {area:,} px", 10.0) for area in MEDOID_AREAS),
)


# ----------------------------------------------------------------------------------------------
# Synthetic inputs (written once by the driver, read by both workers)


def blob_labels(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(H, W) uint16 label image of touching blobs: every pixel within its nearest centre's radius
    gets that centre's id (1 + index in `centres`, (N, 2) float (y, x); radii (N,))."""
    from scipy.spatial import cKDTree

    pixels = np.indices(shape).reshape(2, -1).T
    distance, nearest = cKDTree(centres).query(pixels)
    return np.where(distance < radii[nearest], nearest + 1, 0).reshape(shape).astype(np.uint16)


def random_labels(
    shape: tuple[int, int], n_objects: int, radius: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`blob_labels` at random centres with radii uniform in `radius`; also the centres."""
    centres = rng.uniform((0, 0), shape, size=(n_objects, 2))
    return blob_labels(shape, centres, rng.uniform(*radius, size=n_objects)), centres


def centre_image(shape: tuple[int, int], centres: np.ndarray) -> np.ndarray:
    """(H, W) bool, True at each rounded centre (the loss falls back to the mean if it is off)."""
    image = np.zeros(shape, dtype=bool)
    yx = np.clip(np.round(centres).astype(int), 0, np.array(shape) - 1)
    image[yx[:, 0], yx[:, 1]] = True
    return image


def synthetic_image(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 image in [0, 1]: bright objects on a dark, noisy background."""
    return (0.2 + 0.5 * (labels > 0) + 0.1 * rng.standard_normal(labels.shape)).astype(np.float32)


def synthetic_prediction(labels: np.ndarray, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raw network output (5, H, W) float32 that clusters into the objects of `labels`.

    Offsets point from each object pixel to its object's centre (± 2 px of noise); σ_raw = 0.85
    (φ = 0.5 at ≈ 12 px); the seed logit falls from 6 at the centre to 0.5 at the object's
    radius, −4 on the background. Small noise keeps the seed maximum unique.
    """
    shape = labels.shape
    inside = labels > 0
    obj = labels[inside].astype(int) - 1
    yx = np.indices(shape)[:, inside].T.astype(float)
    to_centre = centres[obj] - yx + 2.0 * rng.standard_normal(yx.shape)
    radius = np.array([np.sqrt(np.count_nonzero(labels == k + 1) / np.pi) for k in range(len(centres))])
    relative = np.hypot(*(centres[obj] - yx).T) / np.maximum(radius[obj], 1.0)

    prediction = np.zeros((5, *shape), dtype=np.float32)
    prediction[0:2] = 0.01 * rng.standard_normal((2, *shape))
    prediction[0][inside] = np.arctanh(np.clip(to_centre[:, 1] * GRID_SPACING, -0.999, 0.999))
    prediction[1][inside] = np.arctanh(np.clip(to_centre[:, 0] * GRID_SPACING, -0.999, 0.999))
    prediction[2:4] = 0.85 + 0.01 * rng.standard_normal((2, *shape))
    prediction[4] = -4.0
    prediction[4][inside] = 6.0 - 5.5 * relative + 0.01 * rng.standard_normal(relative.shape)
    return prediction


def blob_mask(area: int, rng: np.random.Generator) -> np.ndarray:
    """Bool mask holding one irregular object of about `area` px (an ellipse plus a lobe)."""
    a = np.sqrt(area / (1.23 * np.pi))  # the ellipse plus the part of the lobe outside it
    size = int(4 * a) + 8
    y, x = np.indices((size, size)) - size / 2
    angle = rng.uniform(0, np.pi)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    ellipse = (u / (1.3 * a)) ** 2 + (v / (0.8 * a)) ** 2 < 1
    lobe = (u - 1.1 * a) ** 2 + (v - 0.5 * a) ** 2 < (0.55 * a) ** 2
    return ellipse | lobe


def write_inputs(
    folder: Path,
    seed: int = 0,
    size: int = 1024,
    crop: int = 256,
    n_objects: int = 100,
    medoid_areas: tuple[int, ...] = MEDOID_AREAS,
) -> None:
    """All inputs of every case as ``inputs.npz`` in `folder` (the same bytes for A and B)."""
    rng = np.random.default_rng(seed)
    crops = [random_labels((crop, crop), max(n_objects // 5, 2), (8, 20), rng) for _ in range(2)]
    labels, centres = random_labels((size, size), n_objects, (15, 35), rng)
    arrays = {
        "train_image": np.stack([synthetic_image(lab, rng) for lab, _ in crops])[:, None],
        "train_instances": np.stack([lab for lab, _ in crops]).astype(np.int64),
        "train_centres": np.stack([centre_image(lab.shape, c) for lab, c in crops]),
        "image": synthetic_image(labels, rng)[None, None],
        "prediction": synthetic_prediction(labels, centres, rng),
        "cluster_truth": labels,
    }
    arrays.update({f"medoid_{area}": blob_mask(area, rng) for area in medoid_areas})
    np.savez(folder / "inputs.npz", **arrays)


# ----------------------------------------------------------------------------------------------
# The two peers: the same five operations, each implemented by one package


class Official:
    """Official EmbedSeg 0.2.5 (run in .venv-official). Each method imports only what it uses,
    so a worker process holds just the modules of its case (fair peak RSS)."""

    name = "official"

    def model(self, folder: Path) -> torch.nn.Module:
        """Fresh network (seeded); its weights are saved for B."""
        from EmbedSeg.models import BranchedERFNet

        torch.manual_seed(0)
        model = BranchedERFNet(num_classes=[4, 1], input_channels=1)
        model.init_output(n_sigma=2)
        torch.save({"model_state_dict": model.state_dict()}, folder / OFFICIAL_WEIGHTS)
        return model

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The official notebooks' optimiser."""
        return torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)

    def loss(self) -> Callable[..., torch.Tensor]:
        from EmbedSeg.criterions.my_loss import SpatialEmbLoss

        criterion = SpatialEmbLoss(grid_y=1024, grid_x=1024, pixel_y=1, pixel_x=1, n_sigma=2, foreground_weight=10)
        return lambda prediction, instances, centres: criterion(
            prediction, instances, instances > 0, centres, w_inst=1, w_var=10, w_seed=1
        ).mean()

    def inference(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network its prediction runs: the eval-mode model itself."""
        return model.eval()

    def tta(self, model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        from EmbedSeg.utils.test_time_augmentation import apply_tta_2d

        # It moves every tensor with `.cuda()`; on a CPU-only torch that must be a no-op.
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        return apply_tta_2d(image, model)[0]

    def cluster(self, prediction: torch.Tensor) -> np.ndarray:
        from EmbedSeg.utils.utils import Cluster

        labels = Cluster(1024, 1024, 1, 1, "cpu").cluster(
            prediction,
            n_sigma=2,
            seed_thresh=0.9,
            fg_thresh=0.5,
            min_mask_sum=0,
            min_unclustered_sum=0,
            min_object_size=36,
        )
        return labels.numpy()

    def medoid(self, mask: np.ndarray) -> tuple[int, int]:
        from EmbedSeg.utils.generate_crops import generate_center_image

        centre = generate_center_image(mask.astype(np.uint16), "medoid", [1], one_hot=False)
        return tuple(int(v) for v in np.argwhere(centre)[0])


class Ours:
    """This package (run in .venv), called with the official settings of each operation."""

    name = "ours"

    def model(self, folder: Path) -> torch.nn.Module:
        """The official network's weights, loaded into ours."""
        from embedseg.models import load_official_checkpoint

        return load_official_checkpoint(folder / OFFICIAL_WEIGHTS, device="cpu")

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The optimiser of `embedseg train`."""
        from embedseg.train import make_optimizer

        return make_optimizer(model)

    precision = "fp32"

    def forward(self, model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        """The training forward of `embedseg train` at this peer's precision (output in float32)."""
        from embedseg.acceleration import Precision, resolve_precision

        with Precision.named(resolve_precision(self.precision, image.device)[0], image.device).autocast():
            return model(image).float()

    def loss(self) -> Callable[..., torch.Tensor]:
        from embedseg.core.losses import SpatialEmbLoss

        # EmbedSeg 0.2.5 has the fixed per-channel variance term.
        criterion = SpatialEmbLoss(variance_loss="fixed", foreground_weight=10.0)
        return lambda prediction, instances, centres: criterion(prediction, instances, centres)[0]

    def inference(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network `embedseg predict` runs: BatchNorm folded, channels_last (equal outputs
        to float rounding)."""
        from embedseg.acceleration import inference_model

        return inference_model(model, precision=self.precision)

    def tta(self, model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        from embedseg.inference import predict_raw

        return predict_raw(model, image[0].numpy(), tta=True)

    def cluster(self, prediction: torch.Tensor) -> np.ndarray:
        from embedseg.core.cluster import ClusterParams, cluster

        return cluster(
            prediction,
            ClusterParams(seed_thresh=0.9, fg_thresh=0.5, min_mask_sum=0, min_unclustered_sum=0, min_object_size=36),
        )

    def medoid(self, mask: np.ndarray) -> tuple[int, int]:
        from embedseg.core.centers import medoid

        return medoid(mask)


class OursAuto(Ours):
    """This package with ``--precision auto``."""

    name = "ours-auto"
    precision = "auto"


PEERS = {"official": Official, "ours": Ours, "ours-auto": OursAuto}
OURS = ("ours", "ours-auto")


# ----------------------------------------------------------------------------------------------
# Cases: each returns the callable to time; its last result is saved for the equivalence check


def prepare_case(case: str, peer: Official | Ours, inputs: dict[str, np.ndarray], folder: Path) -> Callable[[], Any]:
    if case == "train_step":
        model = peer.model(folder).train()
        loss_fn = peer.loss()
        optimiser = peer.optimizer(model)
        image, instances, centres = (
            torch.from_numpy(inputs[k]) for k in ("train_image", "train_instances", "train_centres")
        )
        torch.manual_seed(1)  # the same Dropout2d masks in A and B (same layer order)
        parameters = [p for _, p in sorted(model.named_parameters(), key=lambda item: item[0])]

        def step() -> np.ndarray:
            """The loss, then the gradient norm of every parameter (by name; 0 if unused)."""
            optimiser.zero_grad()
            loss = loss_fn(peer.forward(model, image) if isinstance(peer, Ours) else model(image), instances, centres)
            loss.backward()
            norms = [0.0 if p.grad is None else float(p.grad.norm()) for p in parameters]
            optimiser.step()
            return np.array([loss.item(), *norms])

        return step
    if case in ("forward", "tta"):
        model = peer.inference(peer.model(folder))
        image = torch.from_numpy(inputs["image"])
        if case == "forward":
            return torch.no_grad()(lambda: model(image)[0].numpy())
        return torch.no_grad()(lambda: peer.tta(model, image).numpy())
    if case == "cluster":
        prediction = torch.from_numpy(inputs["prediction"])
        return lambda: peer.cluster(prediction)
    if case.startswith("medoid_"):
        mask = inputs[case]
        return lambda: np.array(peer.medoid(mask))
    raise ValueError(f"unknown case {case!r}; known: {[c.name for c in CASES]}")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_worker(peer_name: str, cases: list[str], folder: Path, repeats: int) -> None:
    """Time `cases` in this process and write ``result-{peer}-{case}.json`` (+ ``.npy`` outputs).

    repeats = 0 runs each case once, untimed (equivalence only).
    """
    torch.set_num_threads(THREADS)
    peer = PEERS[peer_name]()
    inputs = dict(np.load(folder / "inputs.npz"))
    for case in cases:
        run = prepare_case(case, peer, inputs, folder)
        # The warm-up call (numba compilation, allocator, lazy imports) gives the compared output:
        # for the training step that is the loss of the same weights on the same batch.
        np.save(folder / f"output-{peer_name}-{case}.npy", np.asarray(run()))
        seconds, cpu_seconds = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        record = {
            "peer": peer_name,
            "case": case,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "peak_rss": peak_rss_bytes(),
        }
        (folder / f"result-{peer_name}-{case}.json").write_text(json.dumps(record))


# ----------------------------------------------------------------------------------------------
# Driver


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[key] = str(THREADS)
    return env


def run_peer(python: Path, peer: str, cases: list[str], folder: Path, repeats: int) -> list[dict[str, Any]]:
    """Run one worker process; its results (one dict per case)."""
    command = [
        str(python),
        str(Path(__file__).resolve()),
        "--worker",
        peer,
        "--folder",
        str(folder),
        "--repeats",
        str(repeats),
        "--cases",
        *cases,
    ]
    env = worker_env()
    if peer != "official":  # this checkout's embedseg, also where the venv's editable install is another
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
        )
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{peer} worker failed on {cases}:\n{done.stderr[-4000:]}")
    return [json.loads((folder / f"result-{peer}-{case}.json").read_text()) for case in cases]


def benchmark(
    cases: list[str], folder: Path, rounds: int, repeats: int, official_python: Path
) -> dict[tuple[str, str], dict[str, Any]]:
    """Alternate A and B per case and round; per (peer, case): all wall and CPU timings, peak RSS."""
    from tqdm import tqdm

    pooled: dict[tuple[str, str], dict[str, Any]] = {}
    max_repeats = {c.name: c.max_repeats for c in CASES}
    runs = [(r, case, peer) for r in range(rounds) for case in cases for peer in ("official", *OURS)]
    for _, case, peer in tqdm(runs, desc="benchmark runs", file=sys.stderr):
        python = official_python if peer == "official" else Path(sys.executable)
        (record,) = run_peer(python, peer, [case], folder, min(repeats, max_repeats[case]))
        entry = pooled.setdefault((peer, case), {"seconds": [], "cpu_seconds": [], "peak_rss": 0})
        entry["seconds"] += record["seconds"]
        entry["cpu_seconds"] += record["cpu_seconds"]
        entry["peak_rss"] = max(entry["peak_rss"], record["peak_rss"])
    return pooled


def medoid_cost(mask: np.ndarray, yx: np.ndarray) -> float:
    """Sum of Euclidean distances from pixel `yx` to every pixel of `mask` (float64)."""
    pixels = np.argwhere(mask).astype(np.float64)
    return float(np.hypot(*(pixels - yx).T).sum())


def equivalence(folder: Path, cases: list[str]) -> list[tuple[str, bool, str]]:
    """Compare the saved outputs of A and B: (check, passed, detail) per case."""
    inputs = np.load(folder / "inputs.npz")
    checks = []
    for case in cases:
        a = np.load(folder / f"output-official-{case}.npy")
        b = np.load(folder / f"output-ours-{case}.npy")
        if case == "train_step":
            loss_error = abs(a[0] - b[0]) / abs(a[0])
            gradient_error = float(np.max(np.abs(a[1:] - b[1:]) / np.maximum(np.abs(a[1:]), 1e-12)))
            detail = (
                f"loss A {a[0]:.6f} B {b[0]:.6f}; gradient norms of {np.count_nonzero(a[1:])} parameter "
                f"tensors: max relative difference {gradient_error:.1e}"
            )
            checks.append(
                ("train_step: first step's loss and gradients", loss_error < 1e-5 and gradient_error < 1e-4, detail)
            )
        elif case in ("forward", "tta"):
            error = float(np.abs(a - b).max())
            checks.append((f"{case}: raw output, same weights", error < 1e-4, f"max |A-B| = {error:.2e}"))
        elif case == "cluster":
            differ = int(np.count_nonzero(a != b))
            detail = f"{differ} px differ; {len(np.unique(a)) - 1} vs {len(np.unique(b)) - 1} objects"
            checks.append(("cluster: label image identical", differ == 0, detail))
        elif case.startswith("medoid_"):
            mask = inputs[case]
            cost_a, cost_b = medoid_cost(mask, a), medoid_cost(mask, b)
            same_pixel = bool(np.array_equal(a, b))
            ok = same_pixel or abs(cost_a - cost_b) <= 1e-9 * cost_a
            detail = f"A {a.tolist()} B {b.tolist()}; sum of distances {cost_a:.6f} vs {cost_b:.6f}"
            checks.append((f"{case}: {'same pixel' if same_pixel else 'equal cost'}", ok, detail))
        auto_output = folder / f"output-ours-auto-{case}.npy"
        if case in ("train_step", "forward", "tta") and auto_output.exists():
            c = np.load(auto_output)
            scale = float(np.abs(a).max()) or 1.0
            checks.append(
                (
                    f"{case}: ours auto (reported, not checked)",
                    True,
                    f"max |A-auto| / max |A| = {float(np.abs(a - c).max()) / scale:.2e}",
                )
            )
    return checks


def network_gflop(case: str, inputs: dict[str, np.ndarray]) -> float:
    """Floating-point operations of one call of a network case, in GFLOP (convolutions, counted by
    ``torch.utils.flop_counter`` on our network, the same layers as the official): the training
    step's forward and backward (the loss and Adam are not counted), one forward of the image, or
    eight for TTA."""
    from torch.utils.flop_counter import FlopCounterMode

    from embedseg.models import BranchedERFNet

    model = BranchedERFNet()
    image = torch.from_numpy(inputs["train_image" if case == "train_step" else "image"])
    with FlopCounterMode(display=False) as counter:
        if case == "train_step":
            model.train()(image).sum().backward()
        else:
            with torch.no_grad():
                model.eval()(image)
    return counter.get_total_flops() / 1e9 * (8 if case == "tta" else 1)


def format_rates(
    pooled: dict[tuple[str, str], dict[str, Any]], cases: list[str], inputs: dict[str, np.ndarray], ceiling: float
) -> str:
    """Markdown table of the network cases' compute rates against `ceiling`, this machine's
    matrix-product GFLOP/s on the same thread count: how far a target ratio is from what the CPU
    can do at all."""
    header = ("case", "GFLOP", "official GFLOP/s", "ours GFLOP/s", "ours / matmul", "target needs")
    rows = [
        f"float32 matmul on {THREADS} threads: {ceiling:.0f} GFLOP/s",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    by_name = {c.name: c for c in CASES}
    for name in (c for c in cases if c in ("train_step", "forward", "tta")):
        gflop = network_gflop(name, inputs)
        rate_a, rate_b = (gflop / statistics.median(pooled[(p, name)]["seconds"]) for p in ("official", "ours"))
        needed = by_name[name].target * rate_a
        rows.append(
            f"| {by_name[name].label} | {gflop:.1f} | {rate_a:.0f} | {rate_b:.0f} | {rate_b / ceiling:.0%} | "
            f"{needed:.0f} GFLOP/s = {needed / ceiling:.0%} of matmul |"
        )
    return "\n".join(rows)


def format_table(pooled: dict[tuple[str, str], dict[str, Any]], cases: list[str]) -> str:
    """Markdown table: median wall seconds, their ratio A/B against the target, the ratio of
    median CPU seconds (less sensitive to other load on the machine), peak RSS."""
    header = (
        "case",
        "official s",
        "ours s",
        "A/B",
        "target",
        "A/B cpu",
        "ours auto s",
        "A/auto",
        "official MB",
        "ours MB",
        "mem A/B",
    )
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    by_name = {c.name: c for c in CASES}
    for name in cases:
        a, b, auto = pooled[("official", name)], pooled[("ours", name)], pooled[("ours-auto", name)]
        ta, tb, tc = (statistics.median(x["seconds"]) for x in (a, b, auto))
        cpu_ratio = statistics.median(a["cpu_seconds"]) / statistics.median(b["cpu_seconds"])
        ma, mb = a["peak_rss"] / 2**20, b["peak_rss"] / 2**20
        case = by_name[name]
        verdict = "ok" if ta / tb >= case.target else "MISS"
        rows.append(
            f"| {case.label} | {ta:.3f} | {tb:.3f} | {ta / tb:.1f} | {case.target:g} {verdict} | "
            f"{cpu_ratio:.1f} | {tc:.3f} | {ta / tc:.1f} | {ma:.0f} | {mb:.0f} | {ma / mb:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES])
    parser.add_argument("--rounds", type=int, default=2, help="A/B alternations per case (fresh processes)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per process after one warm-up")
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--folder", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=sorted(PEERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.cases, args.folder, args.repeats)
        return 0
    if not args.official_python.exists():
        parser.error(f"{args.official_python} not found: run `bash benchmarks/official_env.sh` first")
    # Imported here: tests import this module as benchmarks.compare_official, without benchmarks/ on the path.
    from machine import describe_machine

    with tempfile.TemporaryDirectory(prefix="compare-official-") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        write_inputs(folder)
        print(f"before: {describe_machine()}; {THREADS} threads")
        pooled = benchmark(args.cases, folder, args.rounds, args.repeats, args.official_python)
        print(f"load after: {os.getloadavg()[0]:.2f}; medians over {args.rounds} rounds x {args.repeats} calls\n")
        print(format_table(pooled, args.cases))
        print()
        if any(case in args.cases for case in ("train_step", "forward", "tta")):
            from machine import matmul_gflops

            inputs = dict(np.load(folder / "inputs.npz"))
            print(format_rates(pooled, args.cases, inputs, matmul_gflops(THREADS)))
            print()
        failed = 0
        for check, passed, detail in equivalence(folder, args.cases):
            print(f"{'PASS' if passed else 'FAIL'}  {check}: {detail}")
            failed += not passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
