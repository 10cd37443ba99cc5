"""Models, data and settings shared by the evaluation tests (values that can be checked by hand)."""

from __future__ import annotations

import torch
from torch import nn

from dhat.evaluation import AttackSuiteConfig
from dhat.models import ImageClassifier, build_model
from tests.conftest import LinearPixelModel, TinyConv

# Reduced AutoAttack used only in tests: every standard component, few iterations.
AA_REDUCED = {
    "autoattack_version": "custom",
    "autoattack_attacks": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "autoattack_n_iter": 5,
    "autoattack_square_queries": 20,
}



def make_config(**overrides: object) -> AttackSuiteConfig:
    base: dict[str, object] = {"progress": False, "batch_size": 8, "autoattack": False}
    base.update(overrides)
    return AttackSuiteConfig(**base)  # type: ignore[arg-type]


class ConstantModel(nn.Module):
    """Ignores its input: logits are a fixed vector (the input only enters with weight 0)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0.0 * x.flatten(1).sum(1, keepdim=True)


class MeanThresholdModel(nn.Module):
    """Two classes decided by mean brightness: logits ``[s, -s]``, ``s = k (mean(x) - 0.5)``.

    With ``quantise=True`` the input is rounded to 32 grey levels first: the
    outputs barely change but the gradient is exactly zero (gradient masking).
    """

    def __init__(self, quantise: bool, scale: float = 20.0) -> None:
        super().__init__()
        self.quantise = quantise
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the module a device and a dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantise:
            x = torch.round(x * 31.0) / 31.0
        s = self.scale * (x.flatten(1).mean(1) - 0.5) + self.dummy
        return torch.stack([s, -s], dim=1)


def brightness_data(n: int, distance: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1x8x8 images of mean 0.5 +- ``distance`` (label 0 when brighter) with small zero-mean texture."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels == 0, 0.5 + distance, 0.5 - distance).view(-1, 1, 1, 1)
    texture = (torch.rand(n, 1, 8, 8, generator=generator) - 0.5) * 0.04
    texture = texture - texture.mean(dim=(1, 2, 3), keepdim=True)
    return (base + texture).clamp(0, 1), labels.long()


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------



def linear_setup() -> tuple[LinearPixelModel, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 4, generator=generator)
    bias = torch.tensor([0.1, -0.2, 0.0])
    model = LinearPixelModel(weight, bias).eval()
    x = torch.rand(12, 1, 2, 2, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    return model, weight.double(), bias.double(), x, y


def ce_input_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE / d x for logits = W x + b: W^T (softmax(z) - onehot(y)), in float64."""
    z = x.flatten(1) @ w.T + b
    residual = torch.softmax(z, dim=1) - torch.nn.functional.one_hot(y, 3).double()
    return (residual @ w).view_as(x)


def hand_accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    predictions = (x.double().flatten(1) @ w.T + b).argmax(1)
    return 100.0 * (predictions == y).double().mean().item()




def tiny_setup(n: int = 10) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = ImageClassifier(TinyConv(), num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    generator = torch.Generator().manual_seed(1)
    return model.eval(), torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def small_cnn_setup(n: int = 10) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, width=4)
    generator = torch.Generator().manual_seed(1)
    return model.eval(), torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def sanity_config() -> AttackSuiteConfig:
    return make_config(
        eps=0.15, step_size=0.05, pgd_steps=(10,), cw_steps=5, batch_size=16,
        sanity_eps_sweep=(0.15, 0.3, 0.5), sanity_pgd_steps=10, sanity_max_accuracy=5.0,
        sanity_subset=None, square_queries=300, square_subset=None,
    )
