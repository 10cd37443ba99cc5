"""What a data set provides beyond labelled images, and what a run asks of it.

Some methods and analyses need more than images and labels: DHAT's oracle trains with
the data's true foreground masks, which only the embedded benchmark has; a DHAT trained
on masks computed elsewhere (SAM, SOLO, ...) needs those files. Each data source declares
what it provides (:func:`dhat.data.registry.register_source`), every such need is a
:class:`Requirement` naming who asked for it and with which YAML key, and
:func:`unmet_requirements` compares the two before any work starts, so a run stops in its
first second instead of after hours of training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAPABILITIES",
    "DECORRELATED_VALIDATION",
    "EXTERNAL_MASKS",
    "Requirement",
    "TEST_VARIANTS",
    "TRUE_MASKS",
    "describe_unmet",
    "unmet_requirements",
]

#: A true foreground mask for every image (``masks`` in the image sets; 255 = foreground).
TRUE_MASKS = "true_masks"
#: Analysis variants of the test split (the embedded benchmark's aligned, random and foreground-only backgrounds).
TEST_VARIANTS = "test_variants"
#: A second validation split whose backgrounds are independent of the class, like the test split's (the embedded
#: benchmark's ``val_variants["decorrelated"]``): tuning on it can reward debiasing, the usual split cannot.
DECORRELATED_VALIDATION = "decorrelated_validation"
#: Per-image masks a user computed elsewhere (``data.external_masks``), aligned with the training images.
EXTERNAL_MASKS = "external_masks"

#: Every capability, with the words messages use for it.
CAPABILITIES: dict[str, str] = {
    TRUE_MASKS: "true foreground masks",
    TEST_VARIANTS: "test-split variants with other backgrounds",
    EXTERNAL_MASKS: "external masks (data.external_masks)",
    DECORRELATED_VALIDATION: "a validation split with class-independent backgrounds",
}


@dataclass(frozen=True)
class Requirement:
    """One thing a run needs from the data.

    Attributes:
        capability: one of :data:`CAPABILITIES`.
        who: the namespace or parameter section that asks (``dhat_true_masks``, ``mask_sources``).
        key: the YAML key and value that asked (``dhat_true_masks.method.params.mask_source: true``).
        fix: what to do when the data lacks it, in words a user can act on.
    """

    capability: str
    who: str
    key: str
    fix: str

    def __post_init__(self) -> None:
        if self.capability not in CAPABILITIES:
            raise ValueError(f"unknown data capability {self.capability!r}; known: {', '.join(CAPABILITIES)}")


def unmet_requirements(requirements: Iterable[Requirement], provided: Iterable[str]) -> list[Requirement]:
    """The requirements whose capability is not in ``provided``, in the order given."""
    available = set(provided)
    return [r for r in requirements if r.capability not in available]


def describe_unmet(unmet: Iterable[Requirement], data: Mapping[str, Any], provided: Iterable[str]) -> str:
    """One message for every unmet requirement: who asked, with which key, what the data has, and the fix."""
    source = data.get("source", "embedded")
    has = ", ".join(CAPABILITIES[c] for c in sorted(provided)) or "images and labels only"
    lines = [
        f"- {r.who} ({r.key}) needs {CAPABILITIES[r.capability]}, which data.source={source!r} does not provide "
        f"(it provides: {has}). Fix: {r.fix}"
        for r in unmet
    ]
    return "the data cannot serve this run; nothing was started:\n" + "\n".join(lines)
