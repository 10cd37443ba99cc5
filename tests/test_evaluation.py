"""Tests of the evaluation core: attack suite, sanity checks, robust gap, background bias."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dhat.attacks import signed_gradient_attack
from dhat.evaluation import (
    AttackSuiteConfig,
    accuracy,
    adversarial_batches,
    background_bias_metrics,
    evaluate_attacks,
    evaluation_context,
    predict,
    robust_gap,
    run_autoattack,
    sanity_checks,
    scalar_metrics,
)
from dhat.models import ImageClassifier, build_model

from .conftest import LinearPixelModel, TinyConv

# Reduced AutoAttack used only in tests: every standard component, few iterations.
AA_REDUCED = {
    "autoattack_version": "custom",
    "autoattack_attacks": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "autoattack_n_iter": 5,
    "autoattack_square_queries": 20,
}


pytestmark = pytest.mark.usefixtures("single_thread")


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


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"evaluation\.eps must be >= 0"):
        AttackSuiteConfig(eps=-0.1)
    with pytest.raises(ValueError, match=r"evaluation\.pgd_steps"):
        AttackSuiteConfig(pgd_steps=(10, 0))
    with pytest.raises(ValueError, match=r"evaluation\.batch_size"):
        AttackSuiteConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"evaluation\.sanity_eps_sweep must be ascending"):
        AttackSuiteConfig(sanity_eps_sweep=(0.5, 0.1))
    with pytest.raises(ValueError, match=r"evaluation\.autoattack_attacks"):
        AttackSuiteConfig(autoattack_version="custom")
    with pytest.raises(ValueError, match=r"evaluation\.eps must be <= 1"):
        AttackSuiteConfig(eps=8)


def test_from_dict_parses_fractions_and_rejects_unknown_keys() -> None:
    config = AttackSuiteConfig.from_dict(
        {"eps": "8/255", "step_size": "2/255", "pgd_steps": [10, 20], "sanity_eps_sweep": ["8/255", 0.5]}
    )
    assert config.eps == pytest.approx(8 / 255)
    assert config.step_size == pytest.approx(2 / 255)
    assert config.pgd_steps == (10, 20)
    assert config.sanity_eps_sweep == pytest.approx((8 / 255, 0.5))
    with pytest.raises(ValueError, match=r"evaluation\.epsilon"):
        AttackSuiteConfig.from_dict({"epsilon": 0.1})


def test_autoattack_with_too_few_classes_is_rejected() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0, 0.5]))
    config = make_config(autoattack=True, **AA_REDUCED)
    with pytest.raises(ValueError, match="apgd-t needs at least 4 classes"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), config)


def test_unknown_attack_name_is_rejected() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="pgd7"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), make_config(), ["pgd7"])


def test_bad_inputs_raise_clear_errors() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0]))
    config = make_config()
    with pytest.raises(ValueError, match=r"images must be pixel-scale values in \[0, 1\]"):
        evaluate_attacks(model, torch.full((2, 1, 2, 2), 2.0), torch.zeros(2, dtype=torch.long), config)
    with pytest.raises(ValueError, match="labels must be an int64"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.int32), config)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(3, dtype=torch.long), config)


# ---------------------------------------------------------------------------
# Hand-computed attacks on a linear model
# ---------------------------------------------------------------------------


def _linear_setup() -> tuple[LinearPixelModel, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 4, generator=generator)
    bias = torch.tensor([0.1, -0.2, 0.0])
    model = LinearPixelModel(weight, bias).eval()
    x = torch.rand(12, 1, 2, 2, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    return model, weight.double(), bias.double(), x, y


def _ce_input_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE / d x for logits = W x + b: W^T (softmax(z) - onehot(y)), in float64."""
    z = x.flatten(1) @ w.T + b
    residual = torch.softmax(z, dim=1) - torch.nn.functional.one_hot(y, 3).double()
    return (residual @ w).view_as(x)


def _hand_accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    predictions = (x.double().flatten(1) @ w.T + b).argmax(1)
    return 100.0 * (predictions == y).double().mean().item()


def test_fgsm_matches_hand_computation_on_linear_model() -> None:
    model, w, b, x, y = _linear_setup()
    eps = 0.1
    expected = (x.double() + eps * _ce_input_grad(w, b, x.double(), y).sign()).clamp(0, 1)
    config = make_config(eps=eps, batch_size=5)
    with evaluation_context(model):
        crafted = torch.cat([adv["fgsm"] for _, _, adv in adversarial_batches(model, x, y, config, ["fgsm"])])
    torch.testing.assert_close(crafted.double(), expected, atol=1e-6, rtol=0)
    results = evaluate_attacks(model, x, y, config, attacks=["fgsm"])
    assert results["clean"] == pytest.approx(_hand_accuracy(w, b, x, y))
    assert results["fgsm"] == pytest.approx(_hand_accuracy(w, b, expected, y))
    assert results["n_images"] == 12


def test_pgd_and_cw_match_independent_loop_on_linear_model() -> None:
    model, w, b, x, y = _linear_setup()
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

    pgd_expected = run(lambda c: _ce_input_grad(w, b, c, y), 10)
    cw_expected = run(margin_grad, 6)
    with evaluation_context(model):
        ((_, _, adv),) = list(adversarial_batches(model, x, y, config, ["pgd10", "cw"]))
    torch.testing.assert_close(adv["pgd10"].double(), pgd_expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(adv["cw"].double(), cw_expected, atol=1e-5, rtol=0)
    results = evaluate_attacks(model, x, y, config, attacks=["pgd10", "cw"])
    assert results["pgd10"] == pytest.approx(_hand_accuracy(w, b, pgd_expected, y))
    assert results["cw"] == pytest.approx(_hand_accuracy(w, b, cw_expected, y))
    # A point is in the worst case only if it survives clean, PGD and CW.
    survives = [(results["per_sample"][k]) for k in ("clean", "pgd10", "cw")]
    assert results["worst_case"] == pytest.approx(100.0 * torch.stack(survives).all(0).float().mean().item())


# ---------------------------------------------------------------------------
# Small CNN: shared PGD run, eps ball, restored state
# ---------------------------------------------------------------------------



def _tiny_setup(n: int = 10) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = ImageClassifier(TinyConv(), num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    generator = torch.Generator().manual_seed(1)
    return model.eval(), torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def _small_cnn_setup(n: int = 10) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, width=4)
    generator = torch.Generator().manual_seed(1)
    return model.eval(), torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("batch_size", [10, 4])
def test_pgd10_inside_pgd50_equals_separate_run(batch_size: int) -> None:
    model, x, y = _small_cnn_setup()
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
    model, x, _ = _tiny_setup(8)
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


def test_evaluation_restores_mode_and_random_state() -> None:
    model, x, y = _small_cnn_setup(4)
    model.train()
    running_mean = model.backbone.stage1[1].running_mean.clone()
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    evaluate_attacks(model, x, y, make_config(pgd_steps=(2,), cw_steps=2), attacks=["fgsm", "pgd2", "cw"])
    assert model.training
    torch.testing.assert_close(model.backbone.stage1[1].running_mean, running_mean)
    torch.testing.assert_close(torch.rand(3), expected_next)


def test_predict_and_accuracy_use_eval_mode() -> None:
    model, x, y = _small_cnn_setup(7)
    model.train()
    logits = predict(model, x, batch_size=3)
    assert model.training
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(logits, expected)
    assert accuracy(model, x, y, batch_size=3) == pytest.approx(100.0 * (expected.argmax(1) == y).float().mean().item())


# ---------------------------------------------------------------------------
# A model that ignores its input
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Sanity checks
# ---------------------------------------------------------------------------


def _sanity_config() -> AttackSuiteConfig:
    return make_config(
        eps=0.15, step_size=0.05, pgd_steps=(10,), cw_steps=5, batch_size=16,
        sanity_eps_sweep=(0.15, 0.3, 0.5), sanity_pgd_steps=10, sanity_max_accuracy=5.0,
        sanity_subset=None, square_queries=300, square_subset=None,
    )


def test_sanity_checks_pass_on_a_normal_model(caplog: pytest.LogCaptureFixture) -> None:
    model = MeanThresholdModel(quantise=False)
    x, y = brightness_data(16, distance=0.1, seed=0)
    config = _sanity_config()
    results = evaluate_attacks(model, x, y, config)
    assert results["clean"] == 100.0 and results["pgd10"] == 0.0  # shifting all pixels by eps crosses 0.5
    with caplog.at_level(logging.WARNING, logger="dhat.evaluation"):
        checks = sanity_checks(model, x, y, config, results)
    assert [c["name"] for c in checks] == ["pgd_beats_fgsm", "accuracy_vanishes_with_eps", "white_box_beats_square"]
    assert all(c["passed"] for c in checks), checks
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sanity_checks_catch_gradient_masking(caplog: pytest.LogCaptureFixture) -> None:
    model = MeanThresholdModel(quantise=True)
    x, y = brightness_data(16, distance=0.1, seed=0)
    config = _sanity_config()
    results = evaluate_attacks(model, x, y, config)
    # Zero gradients: the white-box attacks are stuck although every point is within eps of the boundary.
    assert results["clean"] == 100.0 and results["pgd10"] == 100.0
    with caplog.at_level(logging.WARNING, logger="dhat.evaluation"):
        checks = sanity_checks(model, x, y, config, results)
    by_name = {c["name"]: c for c in checks}
    assert not by_name["accuracy_vanishes_with_eps"]["passed"]
    assert by_name["accuracy_vanishes_with_eps"]["values"]["accuracy"][-1] == 100.0
    assert not by_name["white_box_beats_square"]["passed"]
    assert by_name["white_box_beats_square"]["values"]["square"] < 50.0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "accuracy_vanishes_with_eps" in warned and "white_box_beats_square" in warned


def test_sanity_checks_run_missing_attacks_themselves() -> None:
    model = MeanThresholdModel(quantise=False)
    x, y = brightness_data(8, distance=0.1, seed=1)
    checks = sanity_checks(model, x, y, _sanity_config())
    assert checks[0]["values"] == {"fgsm": 0.0, "pgd10": 0.0}


# ---------------------------------------------------------------------------
# Robust gap
# ---------------------------------------------------------------------------


def test_robust_gap_is_train_minus_test() -> None:
    model = MeanThresholdModel(quantise=False)
    # Train images lie 0.2 from the boundary (robust at eps 0.05); half the test images lie 0.02 from it.
    train_x, train_y = brightness_data(10, distance=0.2, seed=2)
    near_x, near_y = brightness_data(4, distance=0.02, seed=3)
    far_x, far_y = brightness_data(4, distance=0.2, seed=4)
    test_x, test_y = torch.cat([near_x, far_x]), torch.cat([near_y, far_y])
    config = make_config(eps=0.05, step_size=0.02, batch_size=8, autoattack_version="custom",
                         autoattack_attacks=("apgd-ce", "square"), autoattack_n_iter=10, autoattack_square_queries=50)
    gap = robust_gap(model, train_x, train_y, test_x, test_y, config, attacks=("pgd10", "autoattack"))
    assert gap["n_images"] == 8  # same size on both sides: the smaller split
    for name in ("pgd10", "autoattack"):
        assert gap[name]["train"] == 100.0
        assert gap[name]["test"] == 50.0
        assert gap[name]["gap"] == 50.0


# ---------------------------------------------------------------------------
# Background bias
# ---------------------------------------------------------------------------


def test_background_bias_metrics_on_predictable_grad_cam(identity_classifier: nn.Module) -> None:
    # identity_classifier: logits = [2 m, -m] with m the mean pixel; Grad-CAM for class 0 is the
    # image itself (min-max normalised) and for class 1 is empty (negative weight, ReLU).
    image = torch.zeros(1, 4, 4)
    image[0, :2, :2] = 1.0  # 4 bright pixels: the Grad-CAM foreground at threshold 0.6
    image[0, 3, :] = 0.5  # 4 half-bright pixels: below threshold, but they hold Grad-CAM mass
    exact = torch.zeros(4, 4, dtype=torch.bool)
    exact[:2, :2] = True
    wider = torch.zeros(4, 4, dtype=torch.bool)
    wider[:2, :] = True  # 8 pixels: IoU with the 4-pixel CAM region is 1/2
    images = image.expand(3, 1, 4, 4).clone()
    labels = torch.tensor([0, 0, 1])
    masks = torch.stack([exact, wider, exact])
    aligned = image.expand(2, 1, 4, 4).clone()
    out = background_bias_metrics(
        identity_classifier,
        {"test": (images, labels, masks), "test_aligned": (aligned, torch.tensor([0, 0]), None)},
        cam_threshold=0.6,
        batch_size=2,
    )
    test = out["variants"]["test"]
    assert test["accuracy"] == pytest.approx(200 / 3)  # positive mean -> class 0; the label-1 image is wrong
    # IoUs 1, 1/2 and 0 (empty CAM vs non-empty mask).
    assert test["cam_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    # Mass shares: 4 / (4 + 4*0.5) = 2/3 and 4 / 6 = 2/3 again with the wider mask (its extra pixels
    # are dark); the label-1 map has no mass and is left out.
    assert test["cam_foreground_mass"] == pytest.approx(2 / 3)
    assert test["cam_empty_maps"] == 1
    assert out["variants"]["test_aligned"] == {"n_images": 2, "accuracy": 100.0}
    assert out["aligned_minus_random"] == pytest.approx(100 - 200 / 3)


def test_background_bias_metrics_validates_masks(identity_classifier: nn.Module) -> None:
    images = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"masks must be bool \[N, H, W\]"):
        background_bias_metrics(identity_classifier, {"test": (images, torch.tensor([0, 1]), torch.ones(2, 3, 3))}, 0.5)
    with pytest.raises(ValueError, match="cam_threshold"):
        background_bias_metrics(identity_classifier, {"test": (images, torch.tensor([0, 1]), None)}, 1.5)
