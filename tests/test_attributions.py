"""Attention map sources (dhat.attention.attributions) against hand computations and the project's Grad-CAM."""

import numpy as np
import pytest
import torch
from torch import nn

from dhat.attention.attributions import (
    ATTRIBUTIONS,
    attention_maps,
    available_attributions,
    integrated_gradients_attributions,
    min_max_normalise,
    register_attribution,
)
from dhat.attention.gradcam import grad_cam
from dhat.models import ImageClassifier, build_model
from tests.conftest import IdentityFeatures, LinearPixelModel

pytestmark = pytest.mark.usefixtures("single_thread")

SOURCES = ("gradcam", "captum_gradcam", "integrated_gradients")
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _small_cnn(seed: int = 0) -> ImageClassifier:
    """Random 3-stage CNN (BN, max-pooling): 16x16 images give a 4x4 feature map, so upsampling matters."""
    torch.manual_seed(seed)
    model = build_model("small_cnn", num_classes=5, mean=MEAN, std=STD, width=4)
    with torch.no_grad():  # non-trivial running statistics, so train and eval mode differ
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _data(n: int = 6, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator), torch.randint(0, 5, (n,), generator=generator)


def _normalise_np(maps: np.ndarray) -> np.ndarray:
    """Independent per-image min-max normalisation (constant maps -> 0)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


def test_captum_gradcam_and_gradcam_sources_equal_the_projects_grad_cam():
    model = _small_cnn()
    images, labels = _data()
    expected = grad_cam(model, images, labels)
    assert (expected.flatten(1).max(1).values == 1).sum() >= 4  # most maps are non-constant: a real comparison
    assert torch.equal(attention_maps("gradcam", model, images, labels), expected)
    captum_maps = attention_maps("captum_gradcam", model, images, labels)
    assert captum_maps.shape == expected.shape
    assert torch.allclose(captum_maps, expected, atol=1e-5, rtol=0)


def test_captum_gradcam_on_a_wrapper_whose_features_is_no_single_submodule():
    from dhat.methods.fsr import fsr_wrapper

    torch.manual_seed(3)
    model = fsr_wrapper(_small_cnn(), hidden=4).eval()
    images, labels = _data(n=4)
    expected = grad_cam(model, images, labels)
    assert expected.flatten(1).max(1).values.sum() >= 2
    assert torch.allclose(attention_maps("captum_gradcam", model, images, labels), expected, atol=1e-5, rtol=0)


def test_integrated_gradients_of_a_normalising_linear_image_classifier_by_hand():
    # f_y(x) = sum_c W[y, c] / s_c * mean_hw(x_c - m_c) + b_y: df/dx_c = W[y, c] / (s_c H W) everywhere, and
    # IG from black is exactly gradient * x, so the map is |sum_c W[y, c] / s_c * x_c| min-max normalised.
    model = ImageClassifier(IdentityFeatures(3), num_classes=2, mean=MEAN, std=STD)
    weight = np.array([[1.5, -2.0, 0.5], [-1.0, 0.25, 3.0]])
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor(weight))
        model.fc.bias.copy_(torch.tensor([0.3, -0.7]))
    images, _ = _data(n=4, size=5)
    labels = torch.tensor([0, 1, 1, 0])
    x = images.double().numpy()
    scale = weight[labels.numpy()] / np.array(STD)  # [N, C]
    raw_by_hand = scale[:, :, None, None] * x / (5 * 5)
    raw = integrated_gradients_attributions(model, images, labels, n_steps=8)
    np.testing.assert_allclose(raw.numpy(), raw_by_hand, atol=1e-6)
    maps = attention_maps("integrated_gradients", model, images, labels, n_steps=8)
    np.testing.assert_allclose(maps.numpy(), _normalise_np(np.abs(raw_by_hand.sum(axis=1))), atol=1e-5)


def test_integrated_gradients_of_a_per_pixel_linear_model_black_and_set_mean_baselines():
    generator = torch.Generator().manual_seed(2)
    weight, bias = torch.randn(3, 3 * 4 * 4, generator=generator), torch.randn(3, generator=generator)
    model = LinearPixelModel(weight, bias)
    images = torch.rand(5, 3, 4, 4, generator=generator)
    labels = torch.tensor([0, 2, 1, 1, 0])
    w = weight.double().numpy()[labels.numpy()].reshape(5, 3, 4, 4)
    x = images.double().numpy()
    # Black baseline: IG = w * x.
    black = attention_maps("integrated_gradients", model, images, labels, n_steps=4)
    np.testing.assert_allclose(black.numpy(), _normalise_np(np.abs((w * x).sum(axis=1))), atol=1e-5)
    # Mean baseline: IG = w * (x - per-channel mean over the whole set), whatever the batch size.
    channel_mean = x.mean(axis=(0, 2, 3), keepdims=True)
    expected = _normalise_np(np.abs((w * (x - channel_mean)).sum(axis=1)))
    for batch_size in (2, 5):
        maps = attention_maps("integrated_gradients", model, images, labels, batch_size=batch_size, baseline="mean")
        np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


class SmoothFeatures(nn.Module):
    """Two convolutions with smooth activations: Gauss-Legendre integration converges fast on it."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.Softplus(), nn.Conv2d(channels, channels, 3, stride=2), nn.Tanh()
        )
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_integrated_gradients_completeness_on_a_smooth_cnn():
    # Completeness: each image's attributions sum to f_y(x) - f_y(baseline) (up to the quadrature error).
    torch.manual_seed(4)
    model = ImageClassifier(SmoothFeatures(), num_classes=5, mean=MEAN, std=STD).eval()
    with torch.no_grad():
        model.fc.weight.mul_(10.0)
    images, labels = _data(n=4)
    for baseline, base_images in (("black", torch.zeros_like(images)), ("mean", images.mean((0, 2, 3), True))):
        raw = integrated_gradients_attributions(model, images, labels, n_steps=32, baseline=baseline)
        assert raw.shape == images.shape
        with torch.no_grad():
            difference = (model(images) - model(base_images.expand_as(images))).gather(1, labels.view(-1, 1))[:, 0]
        assert difference.abs().min() > 0.02
        torch.testing.assert_close(raw.sum(dim=(1, 2, 3)), difference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("source", SOURCES)
def test_maps_shape_range_and_batching(source):
    model = _small_cnn()
    images, labels = _data(n=5)
    options = {"n_steps": 8} if source == "integrated_gradients" else {}
    whole = attention_maps(source, model, images, labels, **options)
    assert whole.shape == (5, 16, 16) and whole.dtype == torch.float32 and whole.device == images.device
    assert whole.min() >= 0 and whole.max() <= 1
    # Each map is min-max normalised: min 0, and max 1 unless the map is constant (then all zeros).
    assert torch.all(whole.flatten(1).min(1).values == 0)
    assert torch.all((whole.flatten(1).max(1).values == 1) | (whole.flatten(1).max(1).values == 0))
    batched = attention_maps(source, model, images, labels, batch_size=2, **options)
    assert torch.allclose(batched, whole, atol=1e-6, rtol=0)
    assert attention_maps(source, model, images[:0], labels[:0], **options).shape == (0, 16, 16)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("images_require_grad", [False, True])
def test_sources_use_eval_mode_restore_the_mode_and_leave_no_gradients(source, images_require_grad):
    model = _small_cnn().train()
    images, labels = _data(n=3)
    images.requires_grad_(images_require_grad)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    options = {"n_steps": 4} if source == "integrated_gradients" else {}
    maps = attention_maps(source, model, images, labels, **options)
    assert not maps.requires_grad
    assert model.training and all(m.training for m in model.modules())
    # Running statistics did not move: the forward passes ran in eval mode.
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert images.requires_grad is images_require_grad and images.grad is None
    model.eval()
    attention_maps(source, model, images, labels, **options)
    assert not model.training


def test_unknown_source_names_the_parameter_and_the_choices():
    model = _small_cnn()
    images, labels = _data(n=2)
    with pytest.raises(ValueError, match=r"mask_sources\.sources='saliency'") as error:
        attention_maps("saliency", model, images, labels)
    for name in SOURCES:
        assert name in str(error.value)
    assert set(SOURCES) <= set(available_attributions())


def test_bad_options_are_named():
    model = _small_cnn()
    images, labels = _data(n=2)
    with pytest.raises(ValueError, match=r"'gradcam' takes no option 'n_steps'"):
        attention_maps("gradcam", model, images, labels, n_steps=8)
    with pytest.raises(ValueError, match=r"'integrated_gradients' takes no option 'steps'.*n_steps"):
        attention_maps("integrated_gradients", model, images, labels, steps=8)
    with pytest.raises(ValueError, match="baseline"):
        attention_maps("integrated_gradients", model, images, labels, baseline="white")
    with pytest.raises(ValueError, match="n_steps"):
        attention_maps("integrated_gradients", model, images, labels, n_steps=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        attention_maps("integrated_gradients", model, images, labels, internal_batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        attention_maps("gradcam", model, images, labels, batch_size=0)


def test_registered_source_gets_its_options_and_constant_maps_become_zeros(monkeypatch):
    monkeypatch.setattr(ATTRIBUTIONS, "_entries", dict(ATTRIBUTIONS._entries))

    @register_attribution("test_constant")
    def constant(model, images, labels, *, level: float = 0.5):
        return min_max_normalise(torch.full((images.shape[0], *images.shape[-2:]), level))

    images, labels = _data(n=3, size=4)
    maps = attention_maps("test_constant", nn.Identity(), images, labels, batch_size=2, level=2.0)
    assert torch.equal(maps, torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="registered twice"):
        register_attribution("test_constant")(constant)
    ramp = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
    assert torch.allclose(min_max_normalise(ramp), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
