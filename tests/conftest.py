"""Shared fixtures: tiny models whose outputs can be computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dhat.models import ImageClassifier
from tests import hand


class IdentityFeatures(nn.Module):
    """Backbone returning its (normalised) input, so Grad-CAM and gradients are predictable."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class LinearPixelModel(nn.Module):
    """logits = W vec(x) + b: gradients w.r.t. the input are rows of W."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    def input_gradient_by_hand(self, x: torch.Tensor, logit_gradient) -> torch.Tensor:
        """d loss / d x without autograd: ``W^T g_i`` per sample, in plain Python (:mod:`tests.hand`).

        ``logit_gradient(i, logits_i)`` gives the loss gradient w.r.t. sample ``i``'s logits
        (a list), e.g. ``lambda i, z: hand.ce_logit_gradient(z, y[i])``.
        """
        weight, bias = self.linear.weight.tolist(), self.linear.bias.tolist()
        rows = []
        for i, pixels in enumerate(x.flatten(1).tolist()):
            logits = hand.linear_logits(weight, bias, pixels)
            rows.append(hand.linear_input_gradient(weight, logit_gradient(i, logits)))
        return torch.tensor(rows, dtype=x.dtype).view_as(x)


class TinyConv(nn.Module):
    """One 3x3 convolution + ReLU backbone (outputs depend strongly on the input at random init)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


@pytest.fixture
def single_thread():
    """Tiny models run far faster on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def identity_classifier() -> ImageClassifier:
    """1-channel images; logits = W * mean over pixels (no normalisation)."""
    model = ImageClassifier(IdentityFeatures(1), num_classes=2, mean=[0.0], std=[1.0])
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        model.fc.bias.zero_()
    return model.eval()


@pytest.fixture
def linear_model() -> LinearPixelModel:
    torch.manual_seed(0)
    weight = torch.randn(3, 1 * 2 * 2)
    return LinearPixelModel(weight, torch.tensor([0.1, -0.2, 0.0])).eval()
