"""Shared builders for the method tests: tiny models, batches, data sets and fixed examples."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dhat.engine.recipe import TrainingConfig
from dhat.engine.training import TrainingResult, train_model
from dhat.methods.base import Batch, TrainingMethod, create_method, wrap_model
from dhat.models import build_model
from dhat.tensors import DeviceImageSet

EPS = 8 / 255


def tiny_model(seed: int = 0, width: int = 2) -> nn.Module:
    """A seeded 3-class small CNN for 8x8 RGB images."""
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, width=width)


def tiny_batch(n: int = 6, seed: int = 1, epoch: int = 0, masks: bool = False) -> Batch:
    """A seeded batch of ``n`` 8x8 RGB images in ``[0.1, 0.9]`` with labels ``0, 1, 2, 0, ...``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=generator) * 0.8 + 0.1
    y = torch.arange(n) % 3
    m = torch.rand(n, 8, 8, generator=generator) if masks else None
    return Batch(x=x, y=y, indices=torch.arange(n), masks=m, epoch=epoch, num_epochs=20)


def tiny_sets(n_train: int = 16, n_val: int = 6, masks: bool = False) -> tuple[DeviceImageSet, DeviceImageSet]:
    """Seeded uint8 train/validation sets of 8x8 RGB images, labels ``i % 3``."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n_train + n_val) % 3
    images = torch.randint(0, 256, (n_train + n_val, 3, 8, 8), generator=generator, dtype=torch.uint8)
    m = torch.randint(0, 256, (n_train + n_val, 8, 8), generator=generator, dtype=torch.uint8) if masks else None
    train = DeviceImageSet(images[:n_train], labels[:n_train], None if m is None else m[:n_train])
    val = DeviceImageSet(images[n_train:], labels[n_train:])
    return train, val


def fixed_inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, x_adv, x_inv)`` for the 1x2x2 linear model: fixed examples whose losses are computable by hand."""
    x = torch.tensor([[[[0.1, 0.9], [0.4, 0.6]]], [[[0.8, 0.2], [0.3, 0.7]]], [[[0.5, 0.5], [0.2, 0.1]]]])[:n]
    x_adv = (x + torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 2, 2) * 0.03).clamp(0, 1)
    x_inv = (x - torch.tensor([1.0, 1.0, -1.0, -1.0]).view(1, 1, 2, 2) * 0.02).clamp(0, 1)
    return x, x_adv, x_inv


def fix_attack(monkeypatch: pytest.MonkeyPatch, method: TrainingMethod, x_adv: torch.Tensor) -> None:
    """Replace the method's inner attack (``params.attack.craft``) by a fixed adversarial example."""
    monkeypatch.setattr(method.params.attack, "craft", lambda model, x, y, eps=None: x_adv)


def assert_objective_equals_loss_on_crafted(name: str, params: dict) -> None:
    """``objective(model, batch) == loss_on(model, batch, craft(model, batch))`` from the same RNG state."""
    model = tiny_model().train()
    batch = tiny_batch(masks=True)
    method = create_method(name, params)
    torch.manual_seed(3)
    full = method.objective(copy.deepcopy(model), batch).loss
    torch.manual_seed(3)
    twin = copy.deepcopy(model)
    crafted = method.craft(twin, batch)
    assert set(crafted) >= {"x_adv"}
    split = method.loss_on(twin, batch, crafted).loss
    assert full.item() == pytest.approx(split.item(), rel=1e-6)


def train_tiny(method: TrainingMethod, epochs: int = 1, masks: bool = False, seed: int = 4) -> TrainingResult:
    """Train a tiny (wrapped, if the method asks) model with ``method`` on :func:`tiny_sets`."""
    train, val = tiny_sets(masks=masks)
    model = tiny_model(seed=seed)
    if method.model_wrapper():
        model = wrap_model(model, method.model_wrapper())
    config = TrainingConfig.from_dict(
        {"epochs": epochs, "batch_size": 8, "lr": 0.05, "crop_padding": 1, "progress": False, "val_steps": 1}
    )
    return train_model(model, method, train, val, config)


def configured(namespace: str, params: dict | None = None, **overrides: object):
    """The method of ``namespace`` as conf/base configures it (its ``name`` and ``params``), with ``params`` /
    ``overrides`` replacing keys; errors name ``namespace`` as the YAML section."""
    from dhat.methods import create_method
    from tests.pipelines.memory import load_parameters

    section = load_parameters("base")[namespace]["method"]
    merged = {**(section.get("params") or {}), **(params or {}), **overrides}
    return create_method(section["name"], merged, section=namespace)
