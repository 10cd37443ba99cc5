"""The attack registry: every attack the evaluation knows, how its names parse, display and are crafted.

An attack *family* registers once (:func:`register_attack`); a parametrised family such as
PGD has one name per length (``pgd10``, ``pgd50``). The suite, transfer attacks, the sweeps,
the radius analysis, the sanity checks, the report, the study's tables and the figures read
names, lengths and display names from here, so a new attack is its module with one
registration (imported by :mod:`dhat.evaluation`):

    @register_attack("mim", display="MI-FGSM", header="MIM", allowed=lambda config: ("mim",))
    def craft_mim(model, x, y, config, names, batch_index):
        return {"mim": ...}

``craft(model, x, y, config, names, batch_index) -> {name: x_adv}`` crafts the family's
requested names for one batch (inside the suite's evaluation context); batch ``i`` seeds
its random start with ``config.seed + i`` so attacks share their starts. A family without
``craft`` (AutoAttack) is run by its own code, not per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dhat.registry import Registry

#: The suite's settings (:class:`dhat.evaluation.config.AttackSuiteConfig`, which reads this registry).
AttackSuiteConfig = Any

__all__ = ["BATCH_EXAMPLES", "CLEAN", "Attack", "ATTACKS", "register_attack", "parse", "steps", "family",
           "display_name", "header", "is_batch_attack", "of_family", "longest", "batch_names", "order"]

#: How messages show the per-batch attack names (see :func:`is_batch_attack`).
BATCH_EXAMPLES = "fgsm, pgd<steps> such as pgd10, cw"

#: The unattacked accuracy: not an attack, but a column of every table.
CLEAN = "clean"

Craft = Callable[[nn.Module, torch.Tensor, torch.Tensor, "AttackSuiteConfig", list[str], int], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Attack:
    """One attack family.

    Attributes:
        name: the family's name (``pgd``); a parametrised family's names append a step count (``pgd10``).
        display: name in figures and prose (``{steps}`` filled for a parametrised family: ``PGD-{steps}``).
        header: short name in table headers (``AA``).
        parametrised: whether names carry a step count.
        allowed: the names a suite configuration can run (``config -> names``).
        craft: the per-batch crafting function, or ``None`` for an attack run on its own (AutoAttack).
        gradient: a white-box gradient attack (the sanity checks compare these with a black-box one).
    """

    name: str
    display: str
    header: str
    parametrised: bool
    allowed: Callable[[AttackSuiteConfig], tuple[str, ...]]
    craft: Craft | None = None
    gradient: bool = True


#: The attack families, in the order the suite crafts them (which fixes the random streams).
ATTACKS: Registry[Attack] = Registry("attack", "attacks")


def register_attack(name: str, *, display: str, header: str | None = None, parametrised: bool = False,
                    allowed: Callable[[AttackSuiteConfig], tuple[str, ...]] | None = None,
                    gradient: bool = True) -> Callable[[Craft | None], Craft | None]:
    """Decorator registering a family with its crafting function (decorate ``None`` for one without)."""

    def decorate(craft: Craft | None) -> Craft | None:
        ATTACKS.register(name)(Attack(name, display, header or display, parametrised,
                                      allowed or (lambda config: (name,)), craft, gradient))
        return craft

    return decorate


def parse(name: str) -> tuple[Attack, int | None]:
    """``"pgd50"`` -> (the PGD family, 50); ``"cw"`` -> (CW, ``None``). Unknown names raise ``ValueError``."""
    for family_name in ATTACKS:
        attack = ATTACKS.get(family_name)
        if not attack.parametrised and name == family_name:
            return attack, None
        rest = name[len(family_name):] if isinstance(name, str) and name.startswith(family_name) else ""
        if attack.parametrised and rest.isdigit():
            return attack, int(rest)
    raise ValueError(f"{name!r} is not an attack name; known: "
                     + ", ".join(f"{a}<steps>" if ATTACKS.get(a).parametrised else a for a in ATTACKS))


def _known(name: str) -> tuple[Attack, int | None] | None:
    try:
        return parse(name)
    except ValueError:
        return None


def steps(name: str) -> int | None:
    """The step count of a parametrised name (``pgd20`` -> 20); ``None`` otherwise (or for unknown names)."""
    known = _known(name)
    return None if known is None else known[1]


def family(name: str) -> str | None:
    """The family of an attack name (``pgd20`` -> ``pgd``); ``None`` for ``clean`` and unknown names."""
    known = _known(name)
    return None if known is None else known[0].name


def _shown(name: str, field: str, clean: str) -> str:
    if name == CLEAN:
        return clean
    known = _known(name)
    if known is None:
        return name
    attack, count = known
    return getattr(attack, field).format(steps=count)


def display_name(name: str) -> str:
    """Name in figures and prose: ``clean``, ``FGSM``, ``PGD-20``, ``CW-inf``, ``AutoAttack``; unknown names as given."""
    return _shown(name, "display", CLEAN)


def header(name: str) -> str:
    """Short name in table headers: ``Clean``, ``FGSM``, ``PGD-50``, ``CW``, ``AA``; unknown names as given."""
    return _shown(name, "header", "Clean")


def is_batch_attack(name: str) -> bool:
    """Whether ``name`` is a registered attack crafted per batch (any PGD length; not AutoAttack)."""
    known = _known(name)
    return known is not None and known[0].craft is not None


def of_family(names: Iterable[str], family_name: str) -> list[str]:
    """The names of ``family_name`` among ``names``, shortest first (``["pgd10", "pgd50"]``)."""
    found = {n for n in names if family(n) == family_name}
    return sorted(found, key=lambda n: steps(n) or 0)


def longest(names: Iterable[str], family_name: str) -> str | None:
    """The longest name of a parametrised family among ``names`` (the strongest PGD), or ``None``."""
    found = of_family(names, family_name)
    return found[-1] if found else None


def batch_names(config: AttackSuiteConfig) -> list[str]:
    """Every name the per-batch attacks of a suite can craft (FGSM, its PGD lengths, CW, ...), in crafting order."""
    return [n for a in ATTACKS for n in ATTACKS.get(a).allowed(config) if ATTACKS.get(a).craft is not None]


def order(names: Iterable[str]) -> list[str]:
    """``names`` in registry order (clean first, then by family, shorter runs first); unknown names last."""
    families = {a: i for i, a in enumerate(ATTACKS)}

    def key(name: str) -> tuple[int, int, str]:
        if name == CLEAN:
            return (-1, 0, name)
        known = _known(name)
        if known is None:
            return (len(families), 0, name)
        return (families[known[0].name], known[1] or 0, name)

    return sorted(names, key=key)

