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


@pytest.mark.parametrize(
    ("in_channels", "ndim", "expected"),
    [(1, 2, 2_252_624), (3, 2, 2_252_838), (1, 3, 3_690_146)],  # official BranchedERFNet(_3d) counts
)
def test_parameter_count_matches_official_network(in_channels: int, ndim: int, expected: int) -> None:
    assert n_parameters(BranchedERFNet(in_channels=in_channels, ndim=ndim)) == expected


def test_3d_network_has_official_layers_and_names() -> None:
    model = BranchedERFNet(ndim=3)
    assert model.config == {"in_channels": 1, "n_sigma": 3, "n_seed": 1, "ndim": 3}
    block = model.encoder.layers[1]
    assert [name for name, _ in block.named_children()] == [
        "conv3x1x1_1", "conv1x3x1_1", "conv1x1x3_1", "bn1",
        "conv3x1x1_2", "conv1x3x1_2", "conv1x1x3_2", "bn2", "dropout",
    ]  # fmt: skip
    dilated = model.encoder.layers[7]  # first block at 1/8 resolution: dilation 2 on its second half
    assert dilated.conv1x3x1_2.dilation == (1, 2, 1) and dilated.conv1x3x1_2.padding == (0, 2, 0)
    assert isinstance(dilated.dropout, torch.nn.Dropout3d) and dilated.dropout.p == 0.3
    assert not any(isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d) for m in model.modules())


def test_unsupported_ndim_is_rejected() -> None:
    with pytest.raises(ValueError, match="ndim"):
        BranchedERFNet(ndim=1)


def test_output_init_gives_zero_offsets_and_unit_sigma() -> None:
    torch.manual_seed(0)
    model = BranchedERFNet().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 48))
    assert out.shape == (2, 5, 64, 48)
    assert torch.equal(out[:, :2], torch.zeros_like(out[:, :2]))
    assert torch.equal(out[:, 2:4], torch.ones_like(out[:, 2:4]))
    assert out[:, 4].std() > 0  # the seed branch keeps its default (random) initialisation


def test_3d_output_init_gives_zero_offsets_and_unit_sigma() -> None:
    torch.manual_seed(0)
    model = BranchedERFNet(ndim=3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 8, 16, 24))
    assert out.shape == (1, 7, 8, 16, 24)
    assert torch.equal(out[:, :3], torch.zeros_like(out[:, :3]))
    assert torch.equal(out[:, 3:6], torch.ones_like(out[:, 3:6]))
    assert out[:, 6].std() > 0


def test_input_size_must_be_multiple_of_8() -> None:
    with pytest.raises(RuntimeError):
        BranchedERFNet().eval()(torch.rand(1, 1, 100, 100))


@pytest.mark.parametrize("ndim", [2, 3])
def test_checkpoint_round_trip(tmp_path, ndim: int) -> None:
    model = BranchedERFNet(in_channels=3, ndim=ndim)
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
    assert loaded.ndim == ndim and loaded.config == model.config
    assert loaded_settings == settings
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_without_ndim_loads_as_2d(tmp_path) -> None:
    """Checkpoints written before 3-D support have no ``ndim`` in their model_config."""
    model = BranchedERFNet()
    old_config = {key: value for key, value in model.config.items() if key != "ndim"}
    checkpoint = {"model_state_dict": model.state_dict(), "model_config": old_config}
    save_checkpoint(tmp_path / "old.pt", {**checkpoint, "settings": DatasetSettings(name="toy").to_dict()})
    loaded, _ = load_checkpoint(tmp_path / "old.pt", device="cpu")
    assert loaded.ndim == 2 and loaded.n_sigma == 2
    assert torch.equal(loaded.decoders[1].output_conv.weight, model.decoders[1].output_conv.weight)


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


def test_official_3d_checkpoint_loads(tmp_path) -> None:
    source = BranchedERFNet(ndim=3)
    torch.save({"model_state_dict": source.state_dict()}, tmp_path / "best_iou_model.pth")
    loaded = load_official_checkpoint(tmp_path / "best_iou_model.pth", device="cpu", ndim=3)
    assert loaded.config == source.config
    assert torch.equal(loaded.decoders[0].output_conv.bias, source.decoders[0].output_conv.bias)
    with pytest.raises(RuntimeError, match="size mismatch|Missing key"):
        load_official_checkpoint(tmp_path / "best_iou_model.pth", device="cpu")  # as 2-D: wrong layout


@pytest.mark.parametrize(("ndim", "shape"), [(2, (1, 1, 32, 24)), (3, (1, 1, 8, 16, 24))])
def test_network_compiles_to_torchscript(ndim: int, shape: tuple[int, ...]) -> None:
    """`embedseg export` ships a TorchScript copy of the network."""
    torch.manual_seed(0)
    model = BranchedERFNet(ndim=ndim).eval()
    scripted = torch.jit.script(model)
    x = torch.rand(shape)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
