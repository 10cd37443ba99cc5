"""The attack suite against hand computations and independent loops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dhat.attacks import signed_gradient_attack
from dhat.evaluation import adversarial_batches, evaluate_attacks, evaluation_context, run_autoattack, scalar_metrics
from tests.evaluation.helpers import (
    AA_REDUCED,
    ConstantModel,
    ce_input_grad,
    hand_accuracy,
    linear_setup,
    make_config,
    small_cnn_setup,
    tiny_setup,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_fgsm_matches_hand_computation_on_linear_model() -> None:
    model, w, b, x, y = linear_setup()
    eps = 0.1
    expected = (x.double() + eps * ce_input_grad(w, b, x.double(), y).sign()).clamp(0, 1)
    config = make_config(eps=eps, batch_size=5)
    with evaluation_context(model):
        crafted = torch.cat([adv["fgsm"] for _, _, adv in adversarial_batches(model, x, y, config, ["fgsm"])])
    torch.testing.assert_close(crafted.double(), expected, atol=1e-6, rtol=0)
    results = evaluate_attacks(model, x, y, config, attacks=["fgsm"])
    assert results["clean"] == pytest.approx(hand_accuracy(w, b, x, y))
    assert results["fgsm"] == pytest.approx(hand_accuracy(w, b, expected, y))
    assert results["n_images"] == 12


def test_pgd_and_cw_match_independent_loop_on_linear_model() -> None:
    model, w, b, x, y = linear_setup()
    eps, step, seed = 0.1, 0.03, 7
    config = make_config(eps=eps, step_size=step, pgd_steps=(10,), cw_steps=6, seed=seed, batch_size=12)

    def start_point() -> torch.Tensor:
        # Batch 0 is seeded with ``seed + 0``; the start is uniform in the ball, clipped to [0, 1].
        torch.manual_seed(seed)
        noise = torch.rand_like(x) * 2.0 - 1.0
        return (x + noise * eps).clamp(0, 1).double()

    def run(grad_fn: object, steps: int) -> torch.Tensor:
        xd = x.double()
        current = start_point()
        for _ in range(steps):
            current = current + step * grad_fn(current).sign()  # type: ignore[operator]
            current = torch.min(torch.max(current, xd - eps), xd + eps).clamp(0, 1)
        return current

    def margin_grad(current: torch.Tensor) -> torch.Tensor:
        z = current.flatten(1) @ w.T + b
        others = z.scatter(1, y[:, None], float("-inf")).argmax(1)
        return (w[others] - w[y]).view_as(current)

    pgd_expected = run(lambda c: ce_input_grad(w, b, c, y), 10)
    cw_expected = run(margin_grad, 6)
    with evaluation_context(model):
        ((_, _, adv),) = list(adversarial_batches(model, x, y, config, ["pgd10", "cw"]))
    torch.testing.assert_close(adv["pgd10"].double(), pgd_expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(adv["cw"].double(), cw_expected, atol=1e-5, rtol=0)
    results = evaluate_attacks(model, x, y, config, attacks=["pgd10", "cw"])
    assert results["pgd10"] == pytest.approx(hand_accuracy(w, b, pgd_expected, y))
    assert results["cw"] == pytest.approx(hand_accuracy(w, b, cw_expected, y))
    # A point is in the worst case only if it survives clean, PGD and CW.
    survives = [(results["per_sample"][k]) for k in ("clean", "pgd10", "cw")]
    assert results["worst_case"] == pytest.approx(100.0 * torch.stack(survives).all(0).float().mean().item())


# ---------------------------------------------------------------------------
# Small CNN: shared PGD run, eps ball, restored state
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [10, 4])
def test_pgd10_inside_pgd50_equals_separate_run(batch_size: int) -> None:
    model, x, y = small_cnn_setup()
    config = make_config(eps=8 / 255, step_size=2 / 255, batch_size=batch_size, seed=11)
    with evaluation_context(model):
        batches = list(adversarial_batches(model, x, y, config, ["pgd10", "pgd20", "pgd50"]))
        for index, (start, end, adv) in enumerate(batches):
            for steps in (10, 50):
                torch.manual_seed(11 + index)
                separate, _ = signed_gradient_attack(
                    model, x[start:end], lambda z, yy=y[start:end]: nn.functional.cross_entropy(z, yy, reduction="sum"),
                    8 / 255, 2 / 255, steps,
                )
                torch.testing.assert_close(adv[f"pgd{steps}"], separate, atol=0, rtol=0)
    # The recorded iterates differ (the attack keeps moving), so this is not a trivial equality.
    assert not torch.equal(batches[0][2]["pgd10"], batches[0][2]["pgd50"])


def test_adversarial_examples_stay_in_ball_and_box() -> None:
    model, x, _ = tiny_setup(8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correct, so every attack has work to do
    eps = 16 / 255
    config = make_config(eps=eps, batch_size=4, **AA_REDUCED)
    with evaluation_context(model):
        crafted = [adv for _, _, adv in adversarial_batches(model, x, y, config, ["fgsm", "pgd10", "pgd50", "cw"])]
        aa, info = run_autoattack(model, x, y, config)
    stacked = {k: torch.cat([c[k] for c in crafted]) for k in crafted[0]}
    stacked["autoattack"] = aa
    for name, x_adv in stacked.items():
        assert (x_adv - x).abs().max() <= eps + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
    assert info["reduced"] and "reduced" in info["label"]
    assert set(info["components"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    assert not torch.equal(aa, x)  # AutoAttack did move some points


def test_constant_model_every_attack_equals_clean_accuracy() -> None:
    model = ConstantModel(torch.tensor([0.0, 2.0, 1.0, -1.0]))
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(9, 1, 4, 4, generator=generator)
    y = torch.tensor([1, 1, 0, 2, 1, 3, 1, 2, 2])
    config = make_config(autoattack=True, batch_size=4, **AA_REDUCED)
    results = evaluate_attacks(model, x, y, config)
    clean = 100.0 * 4 / 9  # the model always predicts class 1, which 4 of 9 labels are
    assert results["clean"] == pytest.approx(clean)
    for name in ("fgsm", "pgd10", "pgd20", "pgd50", "cw", "autoattack", "worst_case"):
        assert results[name] == pytest.approx(clean), name
    assert set(results["autoattack_components"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    assert results["autoattack_reduced"]
    metrics = scalar_metrics(results)
    assert "per_sample" not in metrics and metrics["pgd50"] == results["pgd50"]


def test_autoattack_on_a_subset_scores_those_images_only() -> None:
    model = ConstantModel(torch.tensor([0.0, 2.0, 1.0, -1.0]))  # always class 1
    x = torch.rand(9, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 1, 0, 2, 1, 3, 1, 2, 2])
    config = make_config(autoattack=True, batch_size=4, **AA_REDUCED)
    results = evaluate_attacks(model, x, y, config, autoattack_indices=torch.tensor([0, 2, 4]))
    # Images 0, 2, 4 have labels 1, 0, 1: two of three are predicted right, under any attack.
    assert results["per_sample"]["autoattack"].tolist() == [True, False, True]
    assert results["autoattack"] == pytest.approx(200 / 3) and results["autoattack_n_images"] == 3
    # The worst case counts the attacks run on all nine images.
    assert results["worst_case"] == pytest.approx(100.0 * 4 / 9) and results["per_sample"]["pgd50"].shape == (9,)
    with pytest.raises(ValueError, match="autoattack_indices"):
        evaluate_attacks(model, x, y, config, attacks=["autoattack"], autoattack_indices=torch.tensor([9]))


# ---------------------------------------------------------------------------
# Sanity checks
# ---------------------------------------------------------------------------


def test_evaluation_is_fp32_even_inside_a_reduced_precision_region() -> None:
    """Training may run under bf16 autocast; every reported number is still computed in fp32."""
    model, x, y = small_cnn_setup()
    config = make_config(pgd_steps=(3,), cw_steps=2, batch_size=8)
    reference = evaluate_attacks(model, x, y, config, attacks=["fgsm", "pgd3", "cw"])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = evaluate_attacks(model, x, y, config, attacks=["fgsm", "pgd3", "cw"])
        with evaluation_context(model):
            logits = model(x)
    assert logits.dtype == torch.float32
    for name, flags in reference["per_sample"].items():
        assert torch.equal(flags, inside["per_sample"][name]), name
