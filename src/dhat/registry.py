"""A name -> object registry filled by decorators (the timm style), shared by methods, models and data sources."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered under names, looked up with errors that name the parameter and the choices.

    Args:
        kind: what is registered, for messages ("training method", "architecture").
        parameter: the YAML key that names an entry ("method.name", "model.name", "data.source").
    """

    def __init__(self, kind: str, parameter: str) -> None:
        self.kind = kind
        self.parameter = parameter
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name`` (registering a name twice is an error)."""

        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str) -> T:
        """The entry ``name``; a ``ValueError`` names the parameter and lists the registered names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"{self.parameter}={name!r} is not a registered {self.kind}; choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
