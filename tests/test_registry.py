"""The shared decorator registry."""

from __future__ import annotations

import pytest

from dhat.registry import Registry


def test_register_get_and_errors_that_name_the_parameter():
    registry: Registry[int] = Registry("architecture", "model.name")
    registry.register("b")(2)
    registry.register("a")(1)
    assert registry.get("a") == 1 and registry.names() == ("b", "a") and "b" in registry and list(registry) == ["b", "a"]
    with pytest.raises(ValueError, match=r"model\.name='c' is not a registered architecture; choose one of b, a"):
        registry.get("c")
    with pytest.raises(ValueError, match="architecture 'a' is registered twice"):
        registry.register("a")(3)
    assert registry.get("a") == 1
