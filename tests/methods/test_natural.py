"""Natural training: cross-entropy on clean images, against a hand computation."""

import math

import pytest
import torch

from dhat.methods import Batch, create_method
from tests.hand import ce, softmax


def _data():
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0, 1, 2, 1])


def test_natural_loss_is_the_clean_cross_entropy(linear_model):
    x, y = _data()
    out = create_method("natural").objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    z = linear_model(x).tolist()
    expected = sum(ce(z[i], int(y[i])) for i in range(4)) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.parts["ce"].item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(out.logits, linear_model(x))


def test_label_smoothing_mixes_in_the_uniform_target(linear_model):
    x, y = _data()
    out = create_method("natural", {"label_smoothing": 0.3}).objective(linear_model, Batch(x=x, y=y, indices=torch.arange(4)))
    z = linear_model(x).tolist()
    # (1 - s) CE + s * mean_k(-log p_k), the uniform target spread over the 3 classes.
    expected = sum(0.7 * ce(z[i], int(y[i])) + 0.3 * sum(-math.log(p) for p in softmax(z[i])) / 3 for i in range(4)) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"natural\.label_smoothing must be in \[0, 1\)"):
        create_method("natural", {"label_smoothing": 1.0})
