"""Image classifiers used by the project.

Every classifier takes images in pixel scale ``[0, 1]`` and normalises them
itself, so attacks, masks and augmentations all work in pixel space.  Each one
exposes ``features(x)`` (the last convolutional feature map, used by Grad-CAM
and by feature-level defences) and ``head(feature_map)`` (pooling + linear
layer), with ``forward(x) == head(features(x))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dhat.registry import Registry

__all__ = ["ImageClassifier", "SmallCNN", "WideResNet", "available_models", "build_model", "register_model"]


class MaxPool2x2(nn.Module):
    """2x2 max-pooling with stride 2, equal to ``nn.MaxPool2d(2)`` value for value, faster on a CPU without autograd.

    PyTorch's CPU kernel costs about as much as a 3x3 convolution on the small CNN's
    16x16 maps; the maximum of the four strided quarter images is the same number (a
    maximum rounds nothing, NaN propagates alike) at a fraction of the cost. Where a
    gradient will flow (the input requires one) and on other devices, the module calls
    ``F.max_pool2d`` itself, so every gradient is PyTorch's own.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() and x.requires_grad) or x.device.type != "cpu" or x.ndim != 4 \
                or x.shape[-1] % 2 or x.shape[-2] % 2:
            return F.max_pool2d(x, 2)
        return torch.maximum(torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                             torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))


class SmallCNN(nn.Module):
    """Three conv stages (two 3x3 convs each, BN, ReLU), sized for a laptop CPU.

    The first two stages end in 2x2 max-pooling; the third stage's output is the
    feature map Grad-CAM reads, at 1/4 of the input resolution.
    """

    def __init__(self, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width)

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.stage1 = nn.Sequential(*block(in_channels, widths[0]), *block(widths[0], widths[0]), MaxPool2x2())
        self.stage2 = nn.Sequential(*block(widths[0], widths[1]), *block(widths[1], widths[1]), MaxPool2x2())
        self.stage3 = nn.Sequential(*block(widths[1], widths[2]), *block(widths[2], widths[2]))
        self.num_features = widths[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(x)))


class _WideBasicBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko & Komodakis, 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # The projection shortcut reads the pre-activated input, as in the original WRN.
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + residual


class WideResNet(nn.Module):
    """WRN-depth-k feature extractor for 32x32 inputs (3x3 stem, three groups)."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, in_channels: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"model.depth must be 6n+4 for a WideResNet, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        c_in = widths[0]
        for group, stride in zip(range(1, 4), (1, 2, 2), strict=True):
            for i in range(n):
                layers.append(_WideBasicBlock(c_in, widths[group], stride if i == 0 else 1, drop_rate))
                c_in = widths[group]
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c_in)
        self.num_features = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.blocks(self.stem(x))))


class _TimmResNetFeatures(nn.Module):
    """A timm CNN's feature extractor; for ResNets, ``cifar_stem`` puts a 3x3 stride-1 first conv and no
    max-pool (for 32x32 inputs)."""

    def __init__(self, variant: str, in_channels: int = 3, cifar_stem: bool = True) -> None:
        super().__init__()
        import timm  # noqa: PLC0415 - imported lazily: timm is slow to import and only the ResNet family needs it

        net = timm.create_model(variant, pretrained=False, num_classes=0, in_chans=in_channels)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.net = net
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class ImageClassifier(nn.Module):
    """Normalisation + feature extractor + global-average-pool + linear head.

    Args:
        backbone: module mapping normalised images to a feature map; must expose
            ``num_features`` (its channel count).
        num_classes: number of output logits.
        mean, std: per-channel normalisation applied inside the model, so
            callers always pass pixels in ``[0, 1]``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(int(backbone.num_features), num_classes)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map for pixel-scale images ``x``."""
        return self.backbone((x - self.mean) / self.std)

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Logits from a feature map (global average pool + linear)."""
        return self.fc(feature_map.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ModelBuilder = Callable[..., nn.Module]
#: Architectures by name (``model.name``): ``fn(in_channels, **options) -> backbone``.
MODELS: Registry[ModelBuilder] = Registry("architecture", "model.name")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``fn(in_channels, **options) -> backbone`` as architecture ``name``.

    The backbone must expose ``num_features`` and return a feature map ``[B, C, h, w]``;
    :func:`build_model` adds normalisation, pooling and the linear head. Options that
    belong to other architectures are ignored (``conf/`` environments merge the ``model``
    section softly, so ``width`` of the small CNN may sit beside ``name: resnet18``).
    """
    return MODELS.register(name)


def available_models() -> tuple[str, ...]:
    """Names of the registered architectures, in registration order."""
    return MODELS.names()


@register_model("small_cnn")
def _small_cnn(in_channels: int, width: int = 16, **_other: Any) -> nn.Module:
    """The CPU default's small CNN (``width`` channels in the first block)."""
    return SmallCNN(in_channels=in_channels, width=int(width))


@register_model("resnet18")
def _resnet18(in_channels: int, cifar_stem: bool = True, **_other: Any) -> nn.Module:
    """timm's ResNet-18; ``cifar_stem`` replaces the 7x7 stem for 32x32 inputs (paper's CIFAR setting)."""
    return _TimmResNetFeatures("resnet18", in_channels=in_channels, cifar_stem=bool(cifar_stem))


@register_model("timm")
def _timm(in_channels: int, variant: str = "resnet18", cifar_stem: bool = False, **_other: Any) -> nn.Module:
    """Any timm CNN whose head is global average pooling + linear (``variant``: its timm name), e.g. a
    pre-trained mask model (:mod:`dhat.attention.reference_model`); ``cifar_stem`` as for ``resnet18``."""
    return _TimmResNetFeatures(str(variant), in_channels=in_channels, cifar_stem=bool(cifar_stem))


@register_model("wrn28_10")
def _wide_resnet(
    in_channels: int, depth: int = 28, widen_factor: int = 10, drop_rate: float = 0.0, **_other: Any
) -> nn.Module:
    """WideResNet-``depth``-``widen_factor`` (WRN-28-10 by default)."""
    return WideResNet(depth=int(depth), widen_factor=int(widen_factor), in_channels=in_channels,
                      drop_rate=float(drop_rate))


def build_model(
    name: str,
    num_classes: int,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    in_channels: int = 3,
    **options: Any,
) -> ImageClassifier:
    """Build a registered classifier by name.

    Args:
        name: one of :func:`available_models` (``small_cnn`` for the CPU default,
            ``resnet18`` and ``wrn28_10`` for the paper's CIFAR settings).
        num_classes: number of classes.
        mean, std: normalisation applied inside the model.
        options: architecture options (``width`` for ``small_cnn``; ``cifar_stem`` for
            ``resnet18``; ``depth``, ``widen_factor``, ``drop_rate`` for ``wrn28_10``).

    Raises:
        ValueError: naming ``model.name`` when the architecture is unknown.
    """
    return ImageClassifier(MODELS.get(name)(in_channels, **options), num_classes=num_classes, mean=mean, std=std)
