"""Registry of data sources: ``data.source`` in ``conf/`` names one of them.

A source turns the ``data`` parameter section into train / validation / test image
sets (validation held out from train with ``data.seed``), their class names and
optional analysis variants of the test set. Adding a source is one function
decorated with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dhat.data.embedded import DIGIT_CLASS_NAMES, make_digit_texture_benchmark
from dhat.data.sources import load_image_folder, load_torchvision_cifar
from dhat.data.splits import split_train_val
from dhat.registry import Registry

__all__ = ["SourceData", "available_sources", "load_source", "register_source"]

ImageSet = dict[str, np.ndarray]


@dataclass
class SourceData:
    """What a source returns: the three splits, the class names and the test variants (may be empty)."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: list[str]
    variants: dict[str, ImageSet] = field(default_factory=dict)


SourceLoader = Callable[[Mapping[str, Any], int], SourceData]
#: Data sources by name (``data.source``).
SOURCES: Registry[SourceLoader] = Registry("data source", "data.source")


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    """Decorator registering ``fn(data_params, seed) -> SourceData`` as ``data.source: name``."""
    return SOURCES.register(name)


def available_sources() -> tuple[str, ...]:
    """Names of the registered sources, in registration order."""
    return SOURCES.names()


def check_source(name: Any) -> str:
    """``name`` if it is a registered source; otherwise a ``ValueError`` naming ``data.source``."""
    SOURCES.get(name)
    return name


def load_source(data: Mapping[str, Any]) -> SourceData:
    """Load the source that ``data["source"]`` names (default ``embedded``) with ``data["seed"]``."""
    loader = SOURCES.get(data.get("source", "embedded"))
    return loader(data, int(data.get("seed", 0)))


@register_source("embedded")
def _embedded(data: Mapping[str, Any], seed: int) -> SourceData:
    """Digits on class-correlated textures, with true masks and test variants (``data.embedded``)."""
    sets = make_digit_texture_benchmark(seed=seed, **data.get("embedded", {}))
    variants = {name: value for name, value in sets.items() if name.startswith("test_")}
    return SourceData(sets["train"], sets["val"], sets["test"], list(DIGIT_CLASS_NAMES), variants)


def _with_validation(full_train: ImageSet, test: ImageSet, class_names: list[str], data: Mapping[str, Any],
                     seed: int) -> SourceData:
    train, val = split_train_val(full_train, val_size=data.get("val_size", 0.02), seed=seed)
    return SourceData(train, val, test, list(class_names))


def _cifar(name: str) -> SourceLoader:
    def load(data: Mapping[str, Any], seed: int) -> SourceData:
        full_train, test, class_names = load_torchvision_cifar(
            name, root=str(data.get("root", "data/01_raw")), download=bool(data.get("download", True))
        )
        return _with_validation(full_train, test, class_names, data, seed)

    load.__doc__ = f"{name.upper()} through torchvision (``data.root``, ``data.download``)."
    return load


register_source("cifar10")(_cifar("cifar10"))
register_source("cifar100")(_cifar("cifar100"))


@register_source("image_folder")
def _image_folder(data: Mapping[str, Any], seed: int) -> SourceData:
    """``<data.root>/{train,test}/<class>/*`` images, optionally resized to ``data.image_size``."""
    if not data.get("root"):
        raise ValueError("data.root must name the image folder (<root>/{train,test}/<class>/*) for source image_folder")
    full_train, test, class_names = load_image_folder(str(data["root"]), image_size=data.get("image_size"))
    return _with_validation(full_train, test, class_names, data, seed)
