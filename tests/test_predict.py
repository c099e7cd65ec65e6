"""Inference: padding to multiples of 8, exact TTA back-transforms, tiling, CLI end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from embedseg import cli, inference
from embedseg.core.embedding import GRID_SPACING
from embedseg.dataset_settings import DatasetSettings


class BrightestPixelToy(nn.Module):
    """Rotation/flip-equivariant stand-in for the network: offsets point to the brightest pixel,
    σ_x/σ_y = horizontal/vertical gradient magnitudes (frame-dependent), seed = intensity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        image = x[:, 0]
        brightest = image.flatten(1).argmax(1)
        py, px = (brightest // w).view(b, 1, 1), (brightest % w).view(b, 1, 1)
        ys = torch.arange(h).view(1, h, 1)
        xs = torch.arange(w).view(1, 1, w)
        o_x = ((px - xs) * GRID_SPACING).expand(b, h, w)
        o_y = ((py - ys) * GRID_SPACING).expand(b, h, w)
        padded = nn.functional.pad(image, (1, 1, 1, 1))
        grad_x = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]).abs()
        grad_y = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]).abs()
        return torch.stack([o_x, o_y, grad_x, grad_y, image], dim=1).float()


def conv_toy(seed: int = 0) -> nn.Module:
    """Translation-equivariant toy with a 5×5 receptive field."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 5, 3, padding=1)).eval()


def test_padding_splits_the_remainder_floor_before():
    assert inference.padding(16) == (0, 0)
    assert inference.padding(13) == (1, 2)
    assert inference.padding(521) == (3, 4)
    image = np.arange(13 * 9, dtype=np.float32).reshape(1, 13, 9)
    padded, crop = inference.pad_image(image)
    assert padded.shape == (1, 16, 16)
    np.testing.assert_array_equal(padded[:, crop[0], crop[1]], image)
    np.testing.assert_array_equal(padded[0, 0, crop[1]], image[0, 1])  # reflected, not zero


@pytest.mark.parametrize("shape", [(13, 21), (16, 16), (7, 30)])
def test_predict_raw_returns_the_input_size(shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(np.float32)
    raw = inference.predict_raw(conv_toy(), image, tta=False)
    assert raw.shape == (5, *shape)
    # Cropping back keeps the pixels where they were: compare with the padded prediction.
    padded, crop = inference.pad_image(image[None])
    full = conv_toy()(torch.from_numpy(padded)[None])[0]
    torch.testing.assert_close(raw, full[:, crop[0], crop[1]])


@pytest.mark.parametrize("shape", [(24, 24), (16, 40)])
def test_tta_of_an_equivariant_predictor_equals_the_plain_output(shape):
    rng = np.random.default_rng(1)
    image = rng.random(shape).astype(np.float32)
    toy = BrightestPixelToy()
    plain = inference.predict_raw(toy, image, tta=False)
    averaged = inference.predict_raw(toy, image, tta=True)
    assert not torch.allclose(plain[2], plain[3])  # σ_x ≠ σ_y: the swap matters
    torch.testing.assert_close(averaged, plain, rtol=0, atol=1e-6)
    # Each single transform, mapped back, already equals the plain output.
    tile = torch.from_numpy(image)[None]
    for t in inference.dihedral.transforms(2):
        out = toy(inference.dihedral.forward(tile, t)[None])[0]
        torch.testing.assert_close(inference.dihedral.invert_output(out, t, 2), plain, rtol=0, atol=1e-6)


def test_tta_batch_size_does_not_change_the_result():
    image = np.random.default_rng(2).random((16, 24)).astype(np.float32)
    model = conv_toy()
    torch.testing.assert_close(
        inference.predict_raw(model, image, batch_size=8), inference.predict_raw(model, image, batch_size=3)
    )


def test_tile_spans_cover_the_axis_once():
    for size, tile, overlap in [(64, 64, 8), (200, 64, 8), (1032, 1024, 64), (96, 32, 12)]:
        spans = inference.tile_spans(size, tile, overlap)
        kept = np.concatenate([np.arange(lo, hi) for _, lo, hi in spans])
        np.testing.assert_array_equal(kept, np.arange(size))
        for start, lo, hi in spans:
            assert start % 8 == 0 and start + min(tile, size) <= size
            assert lo - start >= overlap or start == 0
            assert start + tile - hi >= overlap or start + tile == size


def test_tiling_equals_untiled_for_a_translation_equivariant_model():
    image = np.random.default_rng(3).random((90, 75)).astype(np.float32)
    model = conv_toy()
    whole = inference.predict_raw(model, image, tta=False, tile_size=96)
    tiled = inference.predict_raw(model, image, tta=False, tile_size=32, overlap=4)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        inference.predict_raw(model, image, tta=True, tile_size=32, overlap=4),
        inference.predict_raw(model, image, tta=True, tile_size=96),
        rtol=0,
        atol=1e-5,
    )


def test_image_channels_are_checked():
    settings = DatasetSettings(name="toy", in_channels=1)
    with pytest.raises(inference.DataError, match="channel"):
        inference.network_input(np.zeros((3, 8, 8)), settings, "rgb.tif")
    assert inference.network_input(np.full((8, 8), 255, np.uint8), settings).max() == 1.0


def test_predict_cli_writes_labels_and_seeds(tmp_path, capsys):
    from embedseg.models import BranchedERFNet, save_checkpoint

    torch.manual_seed(0)
    model = BranchedERFNet(in_channels=1)
    settings = DatasetSettings(name="toy", normalization_factor=255.0, min_object_size=3)
    save_checkpoint(
        tmp_path / "best.pt",
        {
            "model_state_dict": model.state_dict(),
            "model_config": model.config,
            "settings": settings.to_dict(),
            "epoch": 0,
            "best_iou": 0.0,
        },
    )
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(images / "a.tif", rng.integers(0, 255, (20, 36), dtype=np.uint8))
    code = cli.main(
        [
            "predict",
            str(tmp_path / "best.pt"),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "pred"),
            "--clustering",
            "current",
            "--no-tta",
            "--seeds-out",
            str(tmp_path / "seeds"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    labels = tifffile.imread(tmp_path / "pred" / "a.tif")
    assert labels.shape == (20, 36) and labels.dtype == np.uint16
    n_objects = len(np.unique(labels[labels > 0]))
    summary = capsys.readouterr().out
    assert f"1 image(s) segmented; objects per image: median {n_objects}" in summary
    assert f"labels in {tmp_path / 'pred'}" in summary
    seeds = tifffile.imread(tmp_path / "seeds" / "a.tif")
    assert seeds.shape == (20, 36) and seeds.dtype == np.float32 and ((seeds >= 0) & (seeds <= 1)).all()


def test_summary_names_images_without_objects_and_leaves_block_images_uncounted():
    from embedseg.predict import object_count, summary_text

    assert object_count(np.array([[0, 3], [3, 7]])) == 2
    assert object_count(np.zeros((4, 5, 5), bool)) == 0
    text = summary_text({"a.tif": 4, "b.tif": 0, "c.tif": 9, "big.ome.zarr": None}, "out")
    assert "4 image(s) segmented; objects per image: median 4, range 0-9; 1 predicted in blocks" in text
    assert "no object found in 1 image(s): b.tif;" in text and text.endswith("labels in out")


class MemoryLimitedToy(nn.Module):
    """conv_toy that raises CUDA's out-of-memory error above a pixel budget per forward pass."""

    def __init__(self, max_pixels: int) -> None:
        super().__init__()
        self.inner, self.max_pixels, self.calls = conv_toy(), max_pixels, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.max_pixels:
            raise torch.cuda.OutOfMemoryError("toy out of memory")
        return self.inner(x)


def test_out_of_memory_falls_back_to_single_transforms_then_smaller_tiles(monkeypatch):
    monkeypatch.setattr(inference, "MIN_TILE", 32)
    image = np.random.default_rng(4).random((64, 64)).astype(np.float32)
    expected = inference.predict_raw(conv_toy(), image, tta=True, tile_size=64, overlap=4)
    limited = MemoryLimitedToy(max_pixels=40 * 40)
    raw = inference.predict_raw(limited, image, tta=True, tile_size=64, overlap=4, batch_size=8)
    torch.testing.assert_close(raw, expected, rtol=0, atol=1e-5)
    assert (8, 1, 64, 64) in limited.calls and (1, 1, 64, 64) in limited.calls
    assert limited.calls[-1] == (1, 1, 32, 32)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        inference.predict_raw(MemoryLimitedToy(max_pixels=100), image, tta=False, tile_size=64)


def test_predict_raw_gives_the_model_back_as_it_came_and_trainable():
    from embedseg.models import BranchedERFNet

    torch.manual_seed(0)
    model = BranchedERFNet(in_channels=1).eval()
    params = list(model.parameters())
    image = np.random.default_rng(4).random((32, 40)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(image)[None, None])[0]
    raw = inference.predict_raw(model, image, tta=False)
    torch.testing.assert_close(raw, reference, rtol=0, atol=1e-5)
    assert list(model.parameters()) == params  # same Parameter objects (optimisers keep working)
    for p in model.parameters():
        assert p.is_contiguous() and not p.is_inference()
    model.train()
    model(torch.from_numpy(image)[None, None]).sum().backward()  # still trainable after predicting
    assert any(p.grad is not None for p in model.parameters())


def test_3d_images_are_predicted_whole_when_they_fit() -> None:
    """The official 3-D inference predicts the whole padded volume; tiles only when it does not
    fit --memory-gb (or --tile-size asks for them)."""
    from embedseg.inference import DEFAULT_OVERLAP, plan_tile
    from embedseg.predict import PredictConfig

    padded = (72, 384, 408)  # Mouse-Organoid-Cells-CBG (70, 378, 401), padded to multiples of 8
    overlap = DEFAULT_OVERLAP
    assert plan_tile(padded, overlap, memory_gb=1000) == padded
    assert math.prod(plan_tile(padded, overlap, memory_gb=0.5)) < math.prod(padded)
    assert PredictConfig().tile(3) is None  # planned from --memory-gb
    assert PredictConfig(tile_size=(64,)).tile(3) == 64
