"""Small helpers for reading hyper-parameters from YAML.

Attack radii are conventionally written as fractions of 255 ("8/255"); YAML has
no arithmetic, so :func:`parse_pixel_value` accepts either a number or such a
string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

__all__ = ["parse_pixel_value", "positive_radii", "check_non_negative", "dataclass_from_dict", "resolve_device", "device_label"]

T = TypeVar("T")


def parse_pixel_value(value: Any, name: str) -> float:
    """Parse ``8/255``, ``"8/255"``, ``0.0314`` into a float; error names the parameter ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number or a fraction like '8/255', got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                numerator, denominator = text.split("/", 1)
                return float(numerator) / float(denominator)
            return float(text)
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"{name} must be a number or a fraction like '8/255', got {value!r}")


def positive_radii(values: Any, name: str) -> tuple[float, ...]:
    """A non-empty list of radii (``8/255`` or numbers) as sorted, distinct positive floats; errors name ``name``."""
    radii = tuple(parse_pixel_value(r, name) for r in (values or ()))
    if not radii or any(r <= 0 for r in radii):
        raise ValueError(f"{name} must be positive radii such as 8/255, got {list(values or ())}")
    return tuple(sorted(set(radii)))


def check_non_negative(values: Any, section: str, *names: str) -> None:
    """Raise ``ValueError`` naming ``section.<name>`` for the first attribute of ``values`` below 0."""
    for name in names:
        value = getattr(values, name)
        if value < 0:
            raise ValueError(f"{section}.{name} must be >= 0, got {value}")


def dataclass_from_dict(cls: type[T], values: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from a parameter mapping, rejecting unknown keys by name.

    ``section`` is the YAML path of the mapping (``dhat.method``), used in messages so a
    typo in ``conf/`` points at the exact key to fix.
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"valid keys: {', '.join(sorted(known))}"
        )
    return cls(**values)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for CUDA but none is available; use device: auto or cpu")
    return resolved


def device_label(device: torch.device) -> str:
    """What ran the work, for tables of timings: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {torch.get_num_threads()} threads"
