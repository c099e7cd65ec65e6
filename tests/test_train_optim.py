"""The training optimiser (ChunkedAdam via make_optimizer) is torch.optim.Adam, bit for bit."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from embedseg.core.losses import SpatialEmbLoss
from embedseg.data.synthetic import disc_centers, disc_labels
from embedseg.models import BranchedERFNet
from embedseg.optim import ChunkedAdam
from embedseg.schedule import learning_rate
from embedseg.train import make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 32
DISCS = [(8, 8, 5), (20, 10, 6), (14, 24, 7)]
UNUSED = "encoder.output_conv."  # the encoder's own classifier: no gradient in BranchedERFNet


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = disc_labels((SIZE, SIZE), DISCS)
    image = (labels > 0) * 0.6 + np.random.default_rng(0).normal(0.2, 0.05, labels.shape)
    instances = torch.from_numpy(np.stack([labels, labels.T]).astype(np.int64))
    centers = torch.from_numpy(disc_centers((SIZE, SIZE), DISCS).astype(bool))
    image = torch.from_numpy(np.stack([image, image.T])[:, None].astype(np.float32))
    return image, instances, torch.stack([centers, centers.T])


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: range, virtual_batch: int = 2) -> None:
    """`steps` optimiser steps as train_epoch takes them: mean gradient of `virtual_batch`
    mini-batches (same Dropout masks for every model: seeded per mini-batch), learning rate by epoch."""
    image, instances, centers = batch()
    criterion = SpatialEmbLoss()
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        for i in range(virtual_batch):
            torch.manual_seed(100 * step + i)
            loss, _ = criterion(model(image), instances, centers)
            (loss / virtual_batch).backward()
        optimizer.step()
        optimizer.zero_grad()


def assert_same_training(model_a, optimizer_a, model_b, optimizer_b) -> None:
    """Identical parameters, buffers and optimiser state_dicts, down to the last bit."""
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    state_a, state_b = optimizer_a.state_dict(), optimizer_b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, entries in state_a["state"].items():
        assert entries.keys() == state_b["state"][index].keys()
        for name, value in entries.items():
            assert value.dtype == state_b["state"][index][name].dtype
            assert torch.equal(value, state_b["state"][index][name]), (index, name)


def pair() -> tuple[torch.nn.Module, torch.optim.Adam, torch.nn.Module, torch.optim.Optimizer]:
    """The same fresh network twice: with torch.optim.Adam as the official code, and with
    make_optimizer."""
    torch.manual_seed(0)
    reference = BranchedERFNet().train()
    model = copy.deepcopy(reference)
    adam = torch.optim.Adam(reference.parameters(), lr=5e-4, weight_decay=1e-4)
    return reference, adam, model, make_optimizer(model)


def test_training_steps_equal_torch_adam_bit_for_bit() -> None:
    reference, adam, model, optimizer = pair()
    assert isinstance(optimizer, ChunkedAdam)
    untrained = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(reference, adam, range(5))
    train_steps(model, optimizer, range(5))
    assert_same_training(reference, adam, model, optimizer)
    for name, p in model.named_parameters():  # unused parameters: no step, no state, as in Adam
        assert torch.equal(p, untrained[name]) == name.startswith(UNUSED), name
    trained = [name for name, _ in model.named_parameters() if not name.startswith(UNUSED)]
    assert len(optimizer.state_dict()["state"]) == len(trained)
    assert int(optimizer.state_dict()["state"][0]["step"]) == 5


def test_checkpoints_keep_the_torch_adam_format_and_resume_either_way() -> None:
    """state_dicts of model and optimiser hold tensors with storages of their own (not views of
    the flat buffers), and a checkpoint of either optimiser resumes in the other identically."""
    reference, adam, model, optimizer = pair()
    train_steps(reference, adam, range(3))
    train_steps(model, optimizer, range(3))
    for state_dict in (model.state_dict(), *optimizer.state_dict()["state"].values()):
        for value in state_dict.values():
            assert value.untyped_storage().nbytes() == value.numel() * value.element_size()
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, saved)

    def checkpoint() -> dict:
        """A fresh load per reader: a loaded optimiser trains the state tensors it was given."""
        saved.seek(0)
        return torch.load(saved, weights_only=True)

    resumed_plain = BranchedERFNet().train()  # ours → torch.optim.Adam
    resumed_plain.load_state_dict(checkpoint()["model"])
    plain = torch.optim.Adam(resumed_plain.parameters(), lr=5e-4, weight_decay=1e-4)
    plain.load_state_dict(checkpoint()["optim"])
    resumed_ours = BranchedERFNet().train()  # torch.optim.Adam's state → ours
    resumed_ours.load_state_dict(reference.state_dict())
    ours = make_optimizer(resumed_ours)
    ours.load_state_dict(copy.deepcopy(adam.state_dict()))
    optimizer.load_state_dict(checkpoint()["optim"])  # and into the running one, as resume() does
    for pair_ in ((reference, adam), (resumed_plain, plain), (resumed_ours, ours), (model, optimizer)):
        train_steps(*pair_, range(3, 5))
    for other in ((resumed_plain, plain), (resumed_ours, ours), (model, optimizer)):
        assert_same_training(reference, adam, *other)


def test_parameters_without_gradient_or_moved_fall_back_to_adam() -> None:
    """A trained parameter that misses a gradient in one step is skipped, as Adam skips it (its
    step count falls behind, so the flat path stays off), and a model whose parameters were
    replaced (``.to``) keeps training on its new tensors."""
    reference, adam, model, optimizer = pair()
    train_steps(reference, adam, range(2))
    train_steps(model, optimizer, range(2))
    moved = model.decoders[0].output_conv.weight
    moved.data = moved.data.clone()  # what Module.to does to every parameter: no longer a view
    train_steps(reference, adam, range(2, 3))
    train_steps(model, optimizer, range(2, 3))
    assert_same_training(reference, adam, model, optimizer)
    frozen = [m.decoders[0].output_conv.bias for m in (reference, model)]
    for p in frozen:
        p.requires_grad_(False)
    train_steps(reference, adam, range(3, 4))
    train_steps(model, optimizer, range(3, 4))
    for p in frozen:
        p.requires_grad_(True)
    train_steps(reference, adam, range(4, 6))
    train_steps(model, optimizer, range(4, 6))
    assert_same_training(reference, adam, model, optimizer)
