"""SGLR: per-index soft labels against the update rule by hand, the hard-label phase, validation, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from dhat.methods import Batch, EpochContext, create_method
from dhat.tensors import DeviceImageSet
from tests.hand import one_hot, softmax
from tests.methods.helpers import fix_attack, tiny_sets, train_tiny


def _soft_ce(q, logits):
    return -sum(qk * math.log(pk) for qk, pk in zip(q, softmax(logits), strict=True))


def test_sglr_soft_labels_follow_the_update_rule_per_index(monkeypatch, linear_model):
    method = create_method("sglr", {"start_epoch": 0, "momentum": 0.9, "clean_weight": 0.2, "adv_weight": 0.8})
    torch.manual_seed(1)
    x1, xa1 = torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2)
    x2, xa2 = torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2)
    y1, y2 = [0, 2], [0, 1]
    probs = lambda t: [softmax(row) for row in linear_model(t).tolist()]  # noqa: E731

    fix_attack(monkeypatch, method, xa1)
    method.objective(linear_model, Batch(x=x1, y=torch.tensor(y1), indices=torch.tensor([5, 2])))
    fix_attack(monkeypatch, method, xa2)
    out = method.objective(linear_model, Batch(x=x2, y=torch.tensor(y2), indices=torch.tensor([5, 7])))

    def step(q, pc, pa):
        return [0.9 * qk + 0.1 * (0.2 * c + 0.8 * a) for qk, c, a in zip(q, pc, pa, strict=True)]

    pc1, pa1, pc2, pa2 = probs(x1), probs(xa1), probs(x2), probs(xa2)
    q5 = step(step([1.0, 0.0, 0.0], pc1[0], pa1[0]), pc2[0], pa2[0])  # index 5: two updates
    q2 = step([0.0, 0.0, 1.0], pc1[1], pa1[1])  # index 2: one update, untouched by the second batch
    q7 = step([0.0, 1.0, 0.0], pc2[1], pa2[1])  # index 7: first seen in the second batch
    table = method.soft_labels
    for index, expected in ((5, q5), (2, q2), (7, q7)):
        assert table[index].tolist() == pytest.approx(expected, rel=1e-5)
    assert method.initialised.nonzero().flatten().tolist() == [2, 5, 7]
    # The loss uses the labels *after* this batch's update.
    z_adv = linear_model(xa2).tolist()
    assert out.loss.item() == pytest.approx((_soft_ce(q5, z_adv[0]) + _soft_ce(q7, z_adv[1])) / 2, rel=1e-5)


def test_sglr_uses_hard_labels_before_the_start_epoch(monkeypatch, linear_model):
    method = create_method("sglr", {"start_fraction": 0.9})
    assert method.params.first_soft_epoch(10) == 9 and method.params.first_soft_epoch(100) == 90
    generator = torch.Generator().manual_seed(4)
    x, x_adv, y = torch.rand(2, 1, 2, 2, generator=generator), torch.rand(2, 1, 2, 2, generator=generator), [1, 0]
    fix_attack(monkeypatch, method, x_adv)
    batch = Batch(x=x, y=torch.tensor(y), indices=torch.arange(2), epoch=8, num_epochs=10)
    out = method.objective(linear_model, batch)
    assert out.loss.item() == pytest.approx(F.cross_entropy(linear_model(x_adv), torch.tensor(y)).item())
    assert method.soft_labels is None  # no state before es
    # Epoch 9 = es: q = 0.9 onehot(y) + 0.1 (0.2 p(x) + 0.8 p(x')), and the loss is the soft CE.
    out = method.objective(linear_model, Batch(**{**batch.__dict__, "epoch": 9}))
    z, z_adv = linear_model(x).tolist(), linear_model(x_adv).tolist()
    q = [
        [0.9 * t + 0.1 * (0.2 * c + 0.8 * a) for t, c, a in zip(one_hot(y[i], 3), softmax(z[i]), softmax(z_adv[i]), strict=True)]
        for i in range(2)
    ]
    assert out.loss.item() == pytest.approx((_soft_ce(q[0], z_adv[0]) + _soft_ce(q[1], z_adv[1])) / 2, rel=1e-5)
    assert torch.allclose(method.soft_labels, torch.tensor(q), rtol=1e-5)


def test_a_new_run_forgets_the_soft_labels_and_sizes_the_table_to_the_training_set(monkeypatch, linear_model):
    method = create_method("sglr", {"start_epoch": 0})
    x = torch.full((2, 1, 2, 2), 0.5)
    fix_attack(monkeypatch, method, x)
    method.objective(linear_model, Batch(x=x, y=torch.tensor([1, 0]), indices=torch.tensor([0, 1])))
    assert method.soft_labels.shape == (2, 3)
    train = DeviceImageSet(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.zeros(6, dtype=torch.long))
    method.on_epoch_start(EpochContext(0, 10, linear_model, train, None))
    assert method.soft_labels is None and method.initialised is None
    method.objective(linear_model, Batch(x=x, y=torch.tensor([2, 0]), indices=torch.tensor([4, 1])))
    assert method.initialised.tolist() == [False, True, False, False, True, False]
    p = softmax(linear_model(x[:1]).tolist()[0])  # x = x' here: the target is p itself
    for index, label in ((4, 2), (1, 0)):
        expected = [0.9 * t + 0.1 * pk for t, pk in zip(one_hot(label, 3), p, strict=True)]
        assert method.soft_labels[index].tolist() == pytest.approx(expected, rel=1e-5)
    assert not method.soft_labels[[0, 2, 3, 5]].any()


def test_sglr_validation_names_the_field():
    with pytest.raises(ValueError, match=r"sglr\.momentum"):
        create_method("sglr", {"momentum": 1.5})
    with pytest.raises(ValueError, match=r"sglr\.clean_weight \+ sglr\.adv_weight must be 1"):
        create_method("sglr", {"clean_weight": 0.5, "adv_weight": 0.8})
    with pytest.raises(ValueError, match=r"sglr\.start_epoch"):
        create_method("sglr", {"start_epoch": -1})
    with pytest.raises(ValueError, match=r"sglr\.start_fraction"):
        create_method("sglr", {"start_fraction": 1.2})
    attack = create_method("sglr").params.attack
    assert attack.start == "uniform" and attack.bn_mode == "eval" and attack.steps == 10


@pytest.mark.usefixtures("single_thread")
def test_one_epoch_of_training_refines_every_label_once():
    method = create_method("sglr", {"start_epoch": 0, "attack": {"steps": 1}})
    result = train_tiny(method)
    assert math.isfinite(result.history[0]["loss"])
    labels = tiny_sets()[0].labels
    assert method.soft_labels.shape == (16, 3) and bool(method.initialised.all())
    # One visit per image: q = 0.9 onehot(y) + 0.1 target, with the target a distribution.
    target = (method.soft_labels - 0.9 * F.one_hot(labels, 3)) / 0.1
    assert target.min() >= -1e-5
    assert torch.allclose(target.sum(1), torch.ones(16), atol=1e-4)
