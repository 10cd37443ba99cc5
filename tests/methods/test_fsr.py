"""FSR: the mask, the feature parts, the attack, the loss, the checkpoint round trip, Grad-CAM, training."""

import pytest
import torch
import torch.nn.functional as F

import dhat.methods.fsr as fsr_module
from dhat.attacks import pgd
from dhat.attention.gradcam import grad_cam
from dhat.checkpoints import load_classifier, make_checkpoint, model_spec
from dhat.methods import Batch, create_method, wrap_model
from dhat.models import build_model
from tests.hand import ce
from tests.methods.helpers import EPS, fix_attack, train_tiny


def _fsr_model(tau=0.1, **options):
    torch.manual_seed(0)
    return wrap_model(build_model("small_cnn", num_classes=3, width=2), {"name": "fsr", "options": {"tau": tau, "hidden": 4, **options}})


def _images(n, seed=1):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_fsr_eval_mask_is_deterministic_and_tempered():
    model = _fsr_model().eval()
    x = _images(4)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        feature_map = model.base.features(x)
        scores = model.separation(feature_map)
        assert torch.allclose(model.mask(feature_map), torch.sigmoid(scores / 0.1))  # public code's eval mask
    plain = _fsr_model(eval_mask="sigmoid").eval()
    with torch.no_grad():
        fm = plain.base.features(x)
        assert torch.allclose(plain.mask(fm), torch.sigmoid(plain.separation(fm)))


def test_fsr_train_mask_is_a_gumbel_sigmoid_sample():
    # A Gumbel-sigmoid sample exceeds 1/2 with probability sigmoid(score): check that frequency over many draws.
    model = _fsr_model().train()
    torch.manual_seed(2)
    with torch.no_grad():
        feature_map = model.base.features(_images(2)).repeat(2000, 1, 1, 1)  # 2000 draws of the same two maps
        scores = model.separation(feature_map)  # train-mode batch-norm: the scores mask() sees for this batch
        masks = model.mask(feature_map)
        assert not torch.equal(masks[0], masks[2])  # same map, different draws
        assert masks.min() >= 0 and masks.max() <= 1
        frequency = (masks > 0.5).float().view(2000, 2, -1).mean(0)
        expected = torch.sigmoid(scores[:2]).flatten(1)
        assert (frequency - expected).abs().max() < 0.05
        assert not torch.equal(model(feature_map.new_ones(2, 3, 8, 8)), model(feature_map.new_ones(2, 3, 8, 8)))


def test_fsr_attack_sees_the_deterministic_mask():
    model = _fsr_model()  # train mode: the attack switches to eval mode (bn_mode eval) and back
    method = create_method("fsr", {"hidden": 4, "attack": {"start": "none", "steps": 2}})
    batch = Batch(x=_images(2), y=torch.tensor([0, 1]), indices=torch.arange(2))
    crafted = method.craft(model, batch)["x_adv"]
    assert model.training
    model.eval()
    expected = pgd(model, batch.x, batch.y, EPS, 2 / 255, 2, start="none")
    assert torch.equal(crafted, expected) and not torch.equal(crafted, batch.x)


def test_fsr_parts_compose_as_in_the_public_code():
    model = _fsr_model().eval()
    x = _images(2)
    with torch.no_grad():
        fm = model.base.features(x)
        parts = model.parts(fm)
        m = parts["mask"]
        assert torch.allclose(parts["robust"], fm * m) and torch.allclose(parts["non_robust"], fm * (1 - m))
        rec = parts["non_robust"] + model.recalibration(parts["non_robust"]) * (1 - m)
        assert torch.allclose(parts["recalibrated"], rec, atol=1e-6)
        assert torch.allclose(parts["output"], parts["robust"] + rec, atol=1e-6)
        assert torch.allclose(model.features(x), parts["output"])
        logits, aux = model.forward_with_aux(x)
        assert torch.allclose(logits, model.base.fc(parts["output"].mean(dim=(2, 3))), atol=1e-6)
        assert set(aux) == {"robust", "non_robust", "recalibrated"}
        for name, logits_aux in aux.items():  # one shared auxiliary linear layer on the pooled parts
            assert torch.allclose(logits_aux, model.aux(parts[name].mean(dim=(2, 3))), atol=1e-6), name


def test_fsr_wrapper_round_trips_through_a_checkpoint():
    method = create_method("fsr", {"hidden": 4, "tau": 0.2})
    spec = model_spec({"name": "small_cnn", "width": 2}, {"num_classes": 3, "image_shape": [8, 8, 3], "mean": [0.5] * 3, "std": [0.25] * 3})
    spec["wrapper"] = method.model_wrapper()
    torch.manual_seed(0)
    model = wrap_model(build_model("small_cnn", num_classes=3, mean=[0.5] * 3, std=[0.25] * 3, width=2), spec["wrapper"])
    model.train()
    with torch.no_grad():
        model(_images(8))  # move the batch-norm statistics away from their initial values
    model.eval()
    loaded = load_classifier(make_checkpoint(model.state_dict(), spec, checkpoint="last"))
    assert isinstance(loaded, fsr_module.FSRClassifier) and loaded.tau == pytest.approx(0.2)
    x = _images(3, seed=2)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_grad_cam_of_the_wrapped_model_matches_the_hand_derived_map():
    model = _fsr_model()
    x, target = _images(3), torch.tensor([0, 1, 2])
    cam = grad_cam(model, x, target)
    assert model.training  # Grad-CAM restores the mode
    assert all(p.grad is None for p in model.parameters())
    # The head is average pooling + fc, so d logit_c / d F_k = W[c, k] / (h w) everywhere:
    # the map is relu(sum_k W[c, k] F_k) up to a positive scale, then upsampled and min-max normalised.
    model.eval()
    with torch.no_grad():
        features = model.features(x)
        weights = model.base.fc.weight[target]
        raw = F.relu((weights[:, :, None, None] * features).sum(1, keepdim=True))
        up = F.interpolate(raw, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
        low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
        # A constant map (no positive evidence, as for class 1 here) is all zeros.
        expected = torch.where(high > low, (up - low) / (high - low).clamp_min(1e-30), torch.zeros_like(up))
    assert bool((high > low).any()) and bool((high == low).any())  # both cases are exercised
    assert torch.allclose(cam, expected, atol=1e-5)


def test_fsr_loss_is_the_weighted_sum_of_its_parts(monkeypatch):
    model = _fsr_model()
    method = create_method("fsr", {"lambda_sep": 0.7, "lambda_rec": 1.3, "hidden": 4})
    x = _images(2)
    main = [[0.5, 2.0, -1.0], [1.5, 0.2, 0.1]]  # y = [1, 2]: y' = 0 (top-2) and 0 (top-1, wrong)
    aux = {"robust": [[0.1, 0.3, 0.2], [0.0, 1.0, -0.5]], "non_robust": [[1.0, -1.0, 0.0], [0.3, 0.3, 0.9]], "recalibrated": [[-0.2, 0.4, 1.1], [2.0, 0.0, 1.0]]}
    monkeypatch.setattr(model, "forward_with_aux", lambda x_adv: (torch.tensor(main), {k: torch.tensor(v) for k, v in aux.items()}))
    fix_attack(monkeypatch, method, x)
    out = method.objective(model, Batch(x=x, y=torch.tensor([1, 2]), indices=torch.arange(2)))
    y, y_wrong = [1, 2], [0, 0]
    mean = lambda key, labels: sum(ce(aux[key][i], labels[i]) for i in range(2)) / 2  # noqa: E731
    ce_main = sum(ce(main[i], y[i]) for i in range(2)) / 2
    expected = ce_main + 0.7 * (mean("robust", y) + mean("non_robust", y_wrong)) + 1.3 * mean("recalibrated", y)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.parts["sep_non_robust"].item() == pytest.approx(mean("non_robust", y_wrong), rel=1e-6)


def test_fsr_defaults_wrapper_and_errors():
    method = create_method("fsr")
    p = method.params
    assert (p.lambda_sep, p.lambda_rec, p.tau, p.hidden, p.eval_mask) == (1.0, 1.0, 0.1, 64, "tempered")
    assert p.attack.bn_mode == "eval" and p.attack.start == "uniform"
    assert method.model_wrapper() == {"name": "fsr", "options": {"tau": 0.1, "hidden": 64, "eval_mask": "tempered"}}
    with pytest.raises(ValueError, match=r"fsr\.tau"):
        create_method("fsr", {"tau": 0.0})
    with pytest.raises(ValueError, match=r"fsr\.eval_mask"):
        create_method("fsr", {"eval_mask": "noisy"})
    with pytest.raises(ValueError, match=r"fsr\.lambda_sep"):
        create_method("fsr", {"lambda_sep": -1.0})
    with pytest.raises(ValueError, match="'fsr' model wrapper"):
        method.objective(build_model("small_cnn", num_classes=3, width=2), Batch(x=_images(2), y=torch.tensor([0, 1]), indices=torch.arange(2)))


@pytest.mark.usefixtures("single_thread")
def test_training_logs_parts_that_add_up_to_the_loss():
    result = train_tiny(create_method("fsr", {"hidden": 4, "attack": {"steps": 1}}))
    (row,) = result.history
    parts = row["ce_adv"] + row["sep_robust"] + row["sep_non_robust"] + row["rec"]  # lambda_sep = lambda_rec = 1
    assert row["loss"] == pytest.approx(parts, rel=1e-5)
    assert any(k.startswith("aux.") for k in result.last_state)  # the wrapped model was trained and saved
