"""Work done once: each shortcut of the evaluation gives exactly the numbers of the work it replaces."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dhat.analysis.radius import RadiusSweepConfig, evaluated_flags, robustness_vs_eps
from dhat.checkpoints import make_checkpoint
from dhat.evaluation.autoattack import _configure_and_run, frozen_parameters, run_autoattack
from dhat.evaluation.inference import evaluation_context
from dhat.evaluation.protocol import _attack_last, same_weights
from dhat.evaluation.suite import evaluate_attacks, scalar_metrics
from dhat.models import MaxPool2x2, build_model
from tests.evaluation.helpers import AA_REDUCED, make_config

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "options": {"width": 4}}


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", 10, (0.5,) * 3, (0.25,) * 3, width=4).eval()


def _data(n: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("kind", ["random", "ties", "zeros", "nan"])
def test_the_fast_pooling_gives_max_pool2d_s_values_and_gradients(kind: str) -> None:
    x = {"random": torch.randn(3, 4, 8, 6), "ties": torch.randint(0, 2, (3, 4, 8, 6)).float(),
         "zeros": torch.zeros(3, 4, 8, 6), "nan": torch.randn(3, 4, 8, 6)}[kind]
    if kind == "nan":
        x[0, 1, 2, 3] = float("nan")
    reference = nn.MaxPool2d(2)
    with torch.no_grad():
        torch.testing.assert_close(MaxPool2x2()(x), reference(x), rtol=0, atol=0, equal_nan=True)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(3, 4, 4, 3)
    MaxPool2x2()(a).backward(upstream)
    reference(b).backward(upstream)
    assert torch.equal(a.grad, b.grad)
    odd = torch.randn(2, 3, 5, 5)  # odd sizes: PyTorch's own kernel
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(odd), reference(odd))


def test_the_small_cnn_scores_like_one_with_torch_s_pooling() -> None:
    model = _model()
    reference = copy.deepcopy(model)
    for stage in (reference.backbone.stage1, reference.backbone.stage2):
        stage[-1] = nn.MaxPool2d(2)
    images, labels = _data()
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))
    config = make_config(eps=8 / 255, step_size=2 / 255, pgd_steps=(5,), cw_steps=4)
    ours = evaluate_attacks(model, images, labels, config, attacks=["fgsm", "pgd5", "cw"])
    theirs = evaluate_attacks(reference, images, labels, config, attacks=["fgsm", "pgd5", "cw"])
    for name in ("clean", "fgsm", "pgd5", "cw"):
        assert torch.equal(ours["per_sample"][name], theirs["per_sample"][name])


def test_autoattack_with_frozen_weights_crafts_the_same_examples_and_leaves_the_flags() -> None:
    model = _model()
    images, labels = _data(12)
    config = make_config(eps=8 / 255, autoattack=True, seed=3, **AA_REDUCED)
    from pyautoattack import AutoAttack

    with evaluation_context(model):
        frozen, _ = run_autoattack(model, images, labels, config)
        adversary = AutoAttack(model, device=torch.device("cpu"), eps=config.eps, norm="Linf", seed=config.seed,
                               version="custom", attacks=list(config.autoattack_attacks))
        unfrozen, *_ = _configure_and_run(adversary, images, labels, config, 10)
    assert torch.equal(frozen, unfrozen)
    assert all(p.requires_grad for p in model.parameters())
    with frozen_parameters(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def _sweep(**overrides: object) -> RadiusSweepConfig:
    values = {"radii": (4 / 255, 8 / 255), "attacks": ("fgsm", "pgd5", "cw"), "cw_steps": 4, "batch_size": 8,
              "seed": 0} | overrides
    return RadiusSweepConfig(**values)


def test_the_radius_sweep_reuses_the_evaluation_only_where_it_would_repeat_it_exactly() -> None:
    model = _model()
    images, labels = _data()
    suite = make_config(eps=8 / 255, step_size=2 / 255, pgd_steps=(5, 10), cw_steps=4, seed=0)
    evaluated = evaluate_attacks(model, images, labels, suite, attacks=["fgsm", "pgd5", "pgd10", "cw"])
    record = {"positions": np.arange(24), **{k: v.numpy() for k, v in evaluated["per_sample"].items()}}
    positions = np.arange(24)
    known = evaluated_flags(record, suite, _sweep(), positions)
    assert set(known) == {8 / 255} and set(known[8 / 255]) == {"clean", "fgsm", "pgd5", "cw"}
    pd.testing.assert_frame_equal(robustness_vs_eps(model, images, labels, _sweep(), known),
                                  robustness_vs_eps(model, images, labels, _sweep()))
    # Anything that changes an outcome: the sweep crafts everything again.
    assert evaluated_flags(record, suite, _sweep(seed=1), positions) == {}
    assert evaluated_flags(record, suite, _sweep(step_fraction=0.5), positions) == {}
    assert evaluated_flags(record, suite, _sweep(batch_size=16), positions) == {}
    assert evaluated_flags(record, suite, _sweep(radii=(4 / 255,)), positions) == {}
    assert evaluated_flags(record, suite, _sweep(), np.arange(1, 25)) == {}
    assert evaluated_flags(record, dataclasses.replace(suite, cw_steps=5), _sweep(), positions) == {}
    # A record of another checkpoint (its clean or FGSM outcomes differ) is set aside: everything is crafted.
    fresh = robustness_vs_eps(model, images, labels, _sweep())
    for name in ("clean", "fgsm"):
        other = {**record, name: ~record[name], "pgd5": ~record["pgd5"]}
        pd.testing.assert_frame_equal(
            robustness_vs_eps(model, images, labels, _sweep(), evaluated_flags(other, suite, _sweep(), positions)), fresh)


def test_the_last_checkpoint_when_it_is_the_selected_one_reuses_its_outcomes_exactly() -> None:
    model = _model()
    images, labels = _data()
    config = make_config(eps=8 / 255, step_size=2 / 255, pgd_steps=(5, 10), cw_steps=4)
    best_checkpoint = make_checkpoint(model.state_dict(), SPEC)
    best = evaluate_attacks(model, images, labels, config, attacks=["fgsm", "pgd5", "pgd10", "cw"])
    last_checkpoint = copy.deepcopy(best_checkpoint)
    assert same_weights(best_checkpoint, last_checkpoint)
    reused = scalar_metrics(_attack_last(best_checkpoint, last_checkpoint, best, images, labels, config,
                                         ["pgd5", "pgd10"], torch.device("cpu")))
    measured = scalar_metrics(evaluate_attacks(model, images, labels, config, attacks=["pgd5", "pgd10"]))
    assert reused.pop("same_as_best") is True
    for key in ("clean", "pgd5", "pgd10", "worst_case", "n_images", "eps", "attacks"):
        assert reused[key] == measured[key], key
    # Other weights (one buffer is enough) are attacked again.
    last_checkpoint["state_dict"]["backbone.stage1.1.running_mean"] += 1.0
    assert not same_weights(best_checkpoint, last_checkpoint)
    again = _attack_last(best_checkpoint, last_checkpoint, best, images, labels, config, ["pgd5"], torch.device("cpu"))
    assert "same_as_best" not in again and again["seconds"]["gradient_attacks"] > 0
    assert reused["seconds"] == {"gradient_attacks": 0.0}
