"""Real-data accuracy under a fixed CPU budget: ours against official EmbedSeg 0.2.5 (not run in CI).

    bash benchmarks/official_env.sh                       # once
    .venv/bin/python benchmarks/real_data_accuracy.py --steps 200 [--datasets usiigaci dsb]

For each data set (read from /work/shared/data or $EMBEDSEG_SHARED_DATA): a fixed-seed split of
the images into train and test (Usiigaci: 40 / 5 of the 45; DSB: greyscale stage1 images,
`--dsb-train` / `--dsb-test`), medoid crops made once by our `embedseg.crops`, then

- ours: ``embedseg train`` (one epoch of 2·steps random crops, batch 2, no virtual batching,
  the fixed variance loss of EmbedSeg 0.2.5) and ``embedseg predict`` (8-fold TTA, clustering
  preset `current` with the smallest training object as minimum size) on last.pt;
- official: its BranchedERFNet, SpatialEmbLoss and Adam in the same kind of loop (uniformly drawn
  crops with replacement, one of the 8 dihedral transforms each, batch 2, the same number of
  steps — its own train.py needs torchvision, which cannot be installed beside this torch), then
  its ``apply_tta_2d`` and ``Cluster.cluster`` with the same thresholds;

and both are scored with the same metric (AP_dsb per τ, mean over test images; equal to
StarDist's ``matching_dataset(by_image=True)``, see ap_speed.py). Both start from their own
default initialisation with the same seed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from compare_official import OFFICIAL_PYTHON, THREADS, worker_env
from machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
# name: (folder under the shared data, reader layout, normalisation factor of the paper)
DATASETS = {"usiigaci": ("usiigaci-2017", "usiigaci", 65535.0), "dsb": ("dsb2018-stage1", "dsb-stage1", 255.0)}
REPORTED_TAUS = (0.5, 0.75, 0.9)


# ----------------------------------------------------------------------------------------------
# Data (driver, our venv)


def split_dataset(name: str, folder: Path, n_train: int, n_test: int, seed: int) -> None:
    """Write folder/{train,test}/{images,masks}/*.tif: a seeded random split of the source."""
    from embedseg.data.formats import read_source
    from embedseg.io import write_labels, write_tiff

    subdir, layout, _ = DATASETS[name]
    samples = read_source(SHARED_DATA / subdir, layout).pool
    if len(samples) < n_train + n_test:
        raise SystemExit(f"{name}: {len(samples)} images, fewer than {n_train} + {n_test}")
    order = np.random.default_rng(seed).permutation(len(samples))
    for subset, picks in (("train", order[:n_train]), ("test", order[n_train : n_train + n_test])):
        for sample in (samples[i] for i in picks):
            write_tiff(folder / subset / "images" / f"{sample.name}.tif", sample.read_image())
            write_labels(folder / subset / "masks" / f"{sample.name}.tif", sample.read_labels())


def make_crops(name: str, data_dir: Path, crops_dir: Path, crop_size: int) -> int:
    """Medoid crops of the training images (our crop step); the first 4 double as `val` (ours
    needs one; model selection is not used: both peers are evaluated at their last step)."""
    from embedseg.crops import crop_subset
    from embedseg.dataset_settings import DatasetSettings

    settings = DatasetSettings(
        name=name,
        normalization="absolute",
        normalization_factor=DATASETS[name][2],
        crop_size=crop_size,
        min_object_size=smallest_object(data_dir),
        center="medoid",
    )
    n_crops = crop_subset(data_dir, "train", crops_dir, settings)
    for folder in ("images", "masks", "centers"):
        (crops_dir / "val" / folder).mkdir(parents=True, exist_ok=True)
        for path in sorted((crops_dir / "train" / folder).glob("*.tif"))[:4]:
            (crops_dir / "val" / folder / path.name).symlink_to(path)
    settings.save(crops_dir)
    return n_crops


def smallest_object(data_dir: Path) -> int:
    """Pixels of the smallest training object (EmbedSeg HEAD's `min_object_size`)."""
    from embedseg.io import list_images, read_labels

    sizes = [np.bincount(read_labels(p).ravel())[1:] for p in list_images(data_dir / "train" / "masks")]
    return int(min(s[s > 0].min() for s in sizes))


def pack_for_official(name: str, data_dir: Path, crops_dir: Path, path: Path) -> None:
    """Crops (as stored) and normalised test images in one .npz for the official worker (no TIFF
    reading there); the crops are normalised there, per batch, to keep the file small."""
    from embedseg.io import list_images, read_image, read_labels

    factor = DATASETS[name][2]
    crops = list_images(crops_dir / "train" / "images")
    tests = list_images(data_dir / "test" / "images")
    np.savez(
        path,
        images=np.stack([read_image(p) for p in crops]),
        factor=factor,
        masks=np.stack([read_labels(crops_dir / "train" / "masks" / p.name) for p in crops]).astype(np.int16),
        centers=np.stack([read_image(crops_dir / "train" / "centers" / p.name) for p in crops]).astype(bool),
        test_names=np.array([p.name for p in tests]),
        **{f"test_{i}": (read_image(p) / factor).astype(np.float32) for i, p in enumerate(tests)},
    )


# ----------------------------------------------------------------------------------------------
# Official worker (.venv-official)


def official_train_and_predict(packed: Path, out: Path, steps: int, min_object_size: int, seed: int) -> None:
    """Train the official network for `steps` steps and write its test labels as .npz."""
    from EmbedSeg.criterions.my_loss import SpatialEmbLoss
    from EmbedSeg.models import BranchedERFNet
    from EmbedSeg.utils.test_time_augmentation import apply_tta_2d
    from EmbedSeg.utils.utils import Cluster

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # its TTA hard-codes .cuda()
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = np.load(packed)
    images, masks, centers, factor = data["images"], data["masks"], data["centers"], float(data["factor"])
    model = BranchedERFNet(num_classes=[4, 1], input_channels=1)
    model.init_output(n_sigma=2)
    criterion = SpatialEmbLoss(grid_y=1024, grid_x=1024, pixel_y=1, pixel_x=1, n_sigma=2, foreground_weight=10)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        picks = rng.integers(len(images), size=2)
        batch = [dihedral_sample((images[i] / factor, masks[i], centers[i]), rng) for i in picks]
        image, instances, center = (torch.from_numpy(np.stack(parts)) for parts in zip(*batch))
        image, instances = image.float(), instances.long()
        loss = criterion(model(image[:, None]), instances, instances > 0, center, w_inst=1, w_var=10, w_seed=1)
        optimiser.zero_grad()
        loss.mean().backward()
        optimiser.step()

    model.eval()
    labels = {}
    with torch.no_grad():
        for i, name in enumerate(data["test_names"]):
            image = data[f"test_{i}"]
            padded, window = reflect_pad_8(image)
            raw = apply_tta_2d(torch.from_numpy(padded)[None, None], model)[0]
            # Its grid is 1024²; larger images get its `expand_grid` rule (test.py): a square
            # grid of the image's size with the pixel size scaled by size / 1024.
            size = max(1024, *padded.shape)
            cluster = Cluster(size, size, size / 1024, size / 1024, "cpu")
            instance = cluster.cluster(
                raw,
                n_sigma=2,
                seed_thresh=0.9,
                fg_thresh=0.5,
                min_mask_sum=0,
                min_unclustered_sum=0,
                min_object_size=min_object_size,
            )
            labels[str(name)] = instance.numpy()[window].astype(np.int32)
    np.savez(out, **labels)


def dihedral_sample(arrays: tuple[np.ndarray, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random one of the 8 dihedral transforms applied to each (H, W) array."""
    k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    out = [np.rot90(a, k) for a in arrays]
    return [np.ascontiguousarray(np.flip(a, 0) if flip else a) for a in out]


def reflect_pad_8(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Reflect-pad (H, W) to multiples of 8 (Δ//2 before), as EmbedSeg 0.2.5's test.py does."""
    pads = [((-n) % 8 // 2, (-n) % 8 - (-n) % 8 // 2) for n in image.shape]
    window = tuple(slice(before, before + n) for (before, _), n in zip(pads, image.shape))
    return np.pad(image, pads, mode="reflect"), window


# ----------------------------------------------------------------------------------------------
# Driver


def run_ours(
    crops_dir: Path, data_dir: Path, model_dir: Path, pred_dir: Path, steps: int, min_object_size: int, seed: int
) -> None:
    """`embedseg train` then `embedseg predict` (CLI, as a user runs them)."""
    embedseg = [sys.executable, "-m", "embedseg"]
    env = worker_env()
    subprocess.run(
        [
            *embedseg,
            "train",
            str(crops_dir),
            "--out",
            str(model_dir),
            "--epochs",
            "1",
            "--train-size",
            str(2 * steps),
            "--batch-size",
            "2",
            "--virtual-batch",
            "1",
            "--val-size",
            "4",
            "--val-batch-size",
            "2",
            "--variance-loss",
            "fixed",
            "--seed",
            str(seed),
            "--device",
            "cpu",
            "--no-resume",
        ],
        check=True,
        env=env,
    )
    subprocess.run(
        [
            *embedseg,
            "predict",
            str(model_dir / "last.pt"),
            "--images",
            str(data_dir / "test" / "images"),
            "--out",
            str(pred_dir),
            "--tta",
            "--clustering",
            "current",
            "--min-object-size",
            str(min_object_size),
            "--device",
            "cpu",
        ],
        check=True,
        env=env,
    )


def scores(data_dir: Path, predictions: dict[str, np.ndarray]) -> np.ndarray:
    """AP_dsb per τ (9,) over the test images: mean of per-image TP/(TP+FP+FN)."""
    from embedseg.core.metrics import match_labels
    from embedseg.io import list_images, read_labels

    return np.mean(
        [match_labels(read_labels(p), predictions[p.name]).ap for p in list_images(data_dir / "test" / "masks")], axis=0
    )


def compare(name: str, work: Path, args: argparse.Namespace) -> dict[str, tuple[np.ndarray, float]]:
    """Split, crop, train and predict with both peers; AP per τ and training+prediction seconds."""
    from embedseg.io import list_images, read_labels

    n_train, n_test = (40, 5) if name == "usiigaci" else (args.dsb_train, args.dsb_test)
    data_dir, crops_dir = work / "data", work / "crops"
    split_dataset(name, data_dir, n_train, n_test, args.seed)
    n_crops = make_crops(name, data_dir, crops_dir, args.crop_size)
    min_size = smallest_object(data_dir)
    print(
        f"{name}: {n_train} train / {n_test} test images, {n_crops} crops of {args.crop_size}^2, "
        f"min object {min_size} px",
        flush=True,
    )
    pack_for_official(name, data_dir, crops_dir, work / "official-input.npz")

    start = time.perf_counter()
    run_ours(crops_dir, data_dir, work / "model-ours", work / "pred-ours", args.steps, min_size, args.seed)
    ours_seconds = time.perf_counter() - start
    ours = {p.name: read_labels(p) for p in list_images(work / "pred-ours")}

    start = time.perf_counter()
    subprocess.run(
        [
            str(args.official_python),
            str(Path(__file__).resolve()),
            "--worker",
            str(work),
            "--steps",
            str(args.steps),
            "--min-object-size",
            str(min_size),
            "--seed",
            str(args.seed),
        ],
        check=True,
        env=worker_env(),
    )
    official_seconds = time.perf_counter() - start
    official = dict(np.load(work / "official-labels.npz"))
    return {"official": (scores(data_dir, official), official_seconds), "ours": (scores(data_dir, ours), ours_seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps (batch 2) for each peer")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--dsb-train", type=int, default=80, help="DSB greyscale images to train on")
    parser.add_argument("--dsb-test", type=int, default=20, help="DSB greyscale images to test on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--min-object-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        official_train_and_predict(
            args.worker / "official-input.npz",
            args.worker / "official-labels.npz",
            args.steps,
            args.min_object_size,
            args.seed,
        )
        return 0
    if not args.official_python.exists():
        parser.error(f"{args.official_python} not found: run `bash benchmarks/official_env.sh` first")
    if not SHARED_DATA.is_dir():
        parser.error(f"real data not found at {SHARED_DATA} (set EMBEDSEG_SHARED_DATA)")
    print(f"{args.steps} steps of batch 2 per peer; {describe_machine()}")
    rows = []
    for name in args.datasets:
        with tempfile.TemporaryDirectory(prefix=f"accuracy-{name}-") as scratch:
            for peer, (ap, seconds) in compare(name, Path(scratch), args).items():
                rows.append((name, peer, ap, seconds))
    taus = np.round(np.arange(0.5, 0.901, 0.05), 2)
    columns = [int(np.argmin(np.abs(taus - t))) for t in REPORTED_TAUS]
    print(
        "\n| data set | peer | " + " | ".join(f"AP@{t:.2f}" for t in REPORTED_TAUS) + " | mean AP 0.5:0.9 | seconds |"
    )
    print("|---|---|" + "---|" * (len(REPORTED_TAUS) + 2))
    for name, peer, ap, seconds in rows:
        print(
            f"| {name} | {peer} | "
            + " | ".join(f"{ap[c]:.3f}" for c in columns)
            + f" | {ap.mean():.3f} | {seconds:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
