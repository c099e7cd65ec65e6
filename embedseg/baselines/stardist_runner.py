"""StarDist 2D (Schmidt et al. 2018) trained from scratch, run in its own TensorFlow environment.

Settings follow the StarDist paper/examples: 32 rays, prediction grid 2×2, 256² patches, then
the probability and NMS thresholds optimised on the validation images
(``model.optimize_thresholds``), as StarDist recommends. Augmentation: the same 8 dihedral
transforms as EmbedSeg. Images are normalised with the data set's rule (``dataset.json``),
like every other method, not with StarDist's own percentile normaliser.

Model folder: ``stardist/`` (StarDist's config.json, weights_best.h5, thresholds.json),
``log.csv``, ``memory.json``, ``dataset.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..core import dihedral
from ..io import DataError, write_json
from ..layout import LOG_CSV, MEMORY_JSON
from ..runtime import peak_memory
from .common import Split, load_settings, predict_folder, start_training, write_log
from .configs import StarDistPredictConfig, StarDistTrainConfig

MODEL_NAME = "stardist"


def configure_tensorflow(device: str) -> None:
    """`--device cpu` hides the GPUs (before TensorFlow is imported); on a GPU, memory grows as
    needed instead of TensorFlow taking the whole card, so jobs can share it and the peak means something."""
    if device == "cpu" or (device == "auto" and os.environ.get("EMBEDSEG_DEVICE") == "cpu"):
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def channels_last(image: np.ndarray) -> np.ndarray:
    """(H, W) stays; (C, H, W) → (H, W, C), StarDist's layout."""
    return image if image.ndim == 2 else np.moveaxis(image, 0, -1)


def patch_side(requested: int, split: Split, multiple: int) -> int:
    """Largest multiple of `multiple` ≤ `requested` that fits in every training image."""
    smallest = min(min(labels.shape) for labels in split.labels)
    side = min(requested, smallest) // multiple * multiple
    if side < multiple:
        raise DataError(f"training images of {smallest} px are smaller than StarDist's minimum patch of {multiple} px")
    return side


def dihedral_augmenter(seed: int):
    """StarDist augmenter: one random dihedral transform applied to image (H, W[, C]) and labels (H, W)."""
    rng = np.random.default_rng(seed)

    def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = dihedral.TRANSFORMS[rng.integers(len(dihedral.TRANSFORMS))]
        x_chw = x if x.ndim == 2 else np.moveaxis(x, -1, 0)
        return channels_last(dihedral.forward(x_chw, t)).copy(), dihedral.forward(y, t).copy()

    return augment


def epoch_logger(log_path: Path):
    """Keras callback writing `log.csv` after every epoch (StarDist's history has no timings)."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None) -> None:
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            # StarDist's own IoU metric (of its distance maps) is neither an object IoU nor a
            # pixel mIoU, so it stays out of log.csv (embedseg.layout.VAL_METRICS).
            logs = logs or {}
            self.rows.append(
                {
                    "epoch": epoch,
                    "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                    "train_loss": logs.get("loss"),
                    "val_loss": logs.get("val_loss"),
                    "seconds": time.perf_counter() - self.start,
                }
            )
            write_log(log_path, self.rows)

    return EpochLogger()


def tensorflow_peak_memory() -> dict:
    """GPU peak of TensorFlow's allocator when training ran on a GPU, else the process's peak RSS."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return {"peak_bytes": int(peak), "kind": "cuda_max_allocated", "device": "cuda"}
    return peak_memory(None)


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: StarDistTrainConfig) -> int:
    """Train on `data_dir`/{train,val}, optimise the thresholds on validation; write `out_dir`."""
    configure_tensorflow(config.device)
    model_dir = Path(out_dir)
    settings, train_split, val_split = start_training(data_dir, model_dir, config.seed)
    import keras
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    keras.utils.set_random_seed(config.seed)
    n_channels = train_split.images[0].shape[0] if train_split.images[0].ndim == 3 else 1
    # StarDist's U-Net (depth 3) needs patches divisible by 2**3 · grid.
    patch = patch_side(config.patch_size, train_split, 8 * config.grid)
    stardist_config = Config2D(
        n_rays=config.rays,
        grid=(config.grid, config.grid),
        n_channel_in=n_channels,
        train_patch_size=(patch, patch),
        train_batch_size=config.batch_size,
        train_epochs=config.epochs,
        train_steps_per_epoch=config.steps_per_epoch,
        train_tensorboard=False,  # tensorflow-cpu ships without TensorBoard (crash at epoch end)
    )
    model = StarDist2D(stardist_config, name=MODEL_NAME, basedir=str(model_dir))
    model.prepare_for_training()
    model.callbacks.append(epoch_logger(model_dir / LOG_CSV))
    images = [channels_last(image) for image in train_split.images]
    labels = [fill_label_holes(mask) for mask in train_split.labels]
    val_images = [channels_last(image) for image in val_split.images]
    val_labels = [fill_label_holes(mask) for mask in val_split.labels]
    model.train(
        images,
        labels,
        validation_data=(val_images, val_labels),
        augmenter=dihedral_augmenter(config.seed),
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        seed=config.seed,
    )
    model.optimize_thresholds(val_images, val_labels)
    write_json(model_dir / MEMORY_JSON, tensorflow_peak_memory())
    return 0


def predict(
    model_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: StarDistPredictConfig,
) -> int:
    """Write one label TIFF per image of `image_dir` into `out_dir`."""
    configure_tensorflow(config.device)
    settings = load_settings(model_dir)
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=MODEL_NAME, basedir=str(model_dir))

    def segment(image: np.ndarray) -> np.ndarray:
        x = channels_last(image)
        n_tiles = [*config.n_tiles] + [1] * (x.ndim - 2) if config.n_tiles else model._guess_n_tiles(x)
        labels, _ = model.predict_instances(x, n_tiles=n_tiles, show_tile_progress=False)
        return labels

    predict_folder(image_dir, out_dir, settings, segment)
    return 0
