"""Branched ERF-Net: size, output initialisation, checkpoints (ours and official layout)."""

from __future__ import annotations

import pytest
import torch

from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError
from embedseg.models import (
    BranchedERFNet,
    load_checkpoint,
    load_official_checkpoint,
    save_checkpoint,
    strip_dataparallel_prefix,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("in_channels", "expected"), [(1, 2_252_624), (3, 2_252_838)])
def test_parameter_count_matches_official_network(in_channels: int, expected: int) -> None:
    assert n_parameters(BranchedERFNet(in_channels=in_channels)) == expected


def test_output_init_gives_zero_offsets_and_unit_sigma() -> None:
    torch.manual_seed(0)
    model = BranchedERFNet().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 48))
    assert out.shape == (2, 5, 64, 48)
    assert torch.equal(out[:, :2], torch.zeros_like(out[:, :2]))
    assert torch.equal(out[:, 2:4], torch.ones_like(out[:, 2:4]))
    assert out[:, 4].std() > 0  # the seed branch keeps its default (random) initialisation


def test_input_size_must_be_multiple_of_8() -> None:
    with pytest.raises(RuntimeError):
        BranchedERFNet().eval()(torch.rand(1, 1, 100, 100))


def test_checkpoint_round_trip(tmp_path) -> None:
    model = BranchedERFNet(in_channels=3)
    settings = DatasetSettings(name="toy", in_channels=3, center="medoid")
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
    loaded, loaded_settings = load_checkpoint(tmp_path / "best.pt", device="cpu")
    assert not loaded.training
    assert loaded_settings == settings
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_checkpoint_rejects_foreign_files(tmp_path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not an embedseg checkpoint"):
        load_checkpoint(tmp_path / "other.pt", device="cpu")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="broken.pt"):
        load_checkpoint(tmp_path / "broken.pt", device="cpu")
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt", device="cpu")


def test_official_dataparallel_checkpoint_loads(tmp_path) -> None:
    source = BranchedERFNet()
    prefixed = {f"module.{key}": value for key, value in source.state_dict().items()}
    assert strip_dataparallel_prefix(prefixed).keys() == source.state_dict().keys()
    torch.save({"epoch": 199, "best_iou": 0.8, "model_state_dict": prefixed}, tmp_path / "best_iou_model.pth")
    loaded = load_official_checkpoint(tmp_path / "best_iou_model.pth", device="cpu")
    assert torch.equal(loaded.encoder.output_conv.weight, source.encoder.output_conv.weight)
