"""The method catalog: every configured method namespace, its display name and group, in the paper's order.

This is the one list of methods the project has. The Kedro pipelines build one
training + evaluation namespace per entry, the report orders and names its rows
with it, the parameter checks know which namespaces exist from it, and the tests
read it. A new configuration of a method is one entry here plus its
``<namespace>.method`` section in ``conf/base/parameters_methods.yml``; a new
method is, in addition, one module in :mod:`dhat.methods` registering its objective.

The order is the paper's (table 1): the natural model first as a reference, then
PGD-AT, TRADES, MART, AWP, FSR, CFA, UIAT, SGLR, DHAT and its combinations, then
DHAT's ablations (table 4), the mask rule and FLOE variants compared in ``docs/study_design.md``
and ``docs/floe_variants.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "GROUPS",
    "MethodEntry",
    "METHOD_CATALOG",
    "PAIRED_COMPARISONS",
    "catalog_entry",
    "display_name",
    "namespaces",
    "order_methods",
]

#: Groups of methods, each trained by its own composite pipeline (see ``pipeline_registry``).
GROUPS: tuple[str, ...] = ("core", "oracle", "baselines", "ablations", "mask_variants", "floe_variants")

#: Paired comparisons the report draws (a - b on the same test images and seeds), where both were evaluated.
PAIRED_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("dhat", "uiat"),
    ("dhat", "pgd_at"),
    ("dhat_true_masks", "dhat"),
    ("dhat_true_masks", "uiat"),
    ("dhat_true_masks", "pgd_at"),  # can better masks close DHAT's gap to PGD-AT?
    ("uiat", "pgd_at"),
    ("dhat", "dhat_absolute_mask"),
    ("dhat", "dhat_floe_reference"),
)


@dataclass(frozen=True)
class MethodEntry:
    """One configured method namespace.

    Attributes:
        namespace: Kedro namespace and YAML section (``dhat``, ``dhat_floe_paper``).
        display: name in tables and figures.
        group: one of :data:`GROUPS`: ``core`` (the paper's core comparison, trained by
            ``train_eval``), ``oracle`` (DHAT with the data's true foreground masks: what
            DHAT can do with a perfect segmenter; needs data with true masks, trained by
            ``train_eval`` on the embedded default), ``baselines`` (the paper's other methods), ``ablations``
            (paper table 4), ``mask_variants`` (DHAT with the paper's absolute mask threshold instead of
            the default's quantile rule, alone or with the reference code's FLOE as in the paper's
            table 1), ``floe_variants`` (the FLOE forms compared by measurement).
    """

    namespace: str
    display: str
    group: str


METHOD_CATALOG: tuple[MethodEntry, ...] = (
    MethodEntry("natural", "Natural", "core"),
    MethodEntry("pgd_at", "PGD-AT", "core"),
    MethodEntry("trades", "TRADES", "baselines"),
    MethodEntry("mart", "MART", "baselines"),
    MethodEntry("pgd_at_awp", "AWP (PGD-AT)", "baselines"),
    MethodEntry("trades_awp", "AWP (TRADES)", "baselines"),
    MethodEntry("fsr", "FSR", "baselines"),
    MethodEntry("cfa", "CFA", "baselines"),
    MethodEntry("cfa_trades", "CFA (TRADES)", "baselines"),
    MethodEntry("uiat", "UIAT", "core"),
    MethodEntry("sglr", "SGLR", "baselines"),
    MethodEntry("dhat", "DHAT", "core"),
    MethodEntry("dhat_true_masks", "DHAT (true masks)", "oracle"),
    MethodEntry("dhat_awp", "DHAT-AWP", "baselines"),
    MethodEntry("dhat_cfa", "DHAT-CFA", "baselines"),
    MethodEntry("dhat_dhlr_only", "DHAT (DHLR only)", "ablations"),
    MethodEntry("dhat_floe_only", "DHAT (FLOE only)", "ablations"),
    MethodEntry("dhat_absolute_mask", "DHAT (mask omega 0.1)", "mask_variants"),
    MethodEntry("dhat_paper", "DHAT (paper settings)", "mask_variants"),
    MethodEntry("dhat_floe_paper", "DHAT (FLOE eq. 10)", "floe_variants"),
    MethodEntry("dhat_floe_reference", "DHAT (FLOE ref. code)", "floe_variants"),
)

_BY_NAMESPACE = {entry.namespace: entry for entry in METHOD_CATALOG}


def _check_catalog() -> None:
    """Fail at import when the catalog itself is inconsistent (a duplicate or an unknown group)."""
    if len(_BY_NAMESPACE) != len(METHOD_CATALOG):
        raise ValueError("METHOD_CATALOG lists a namespace twice")
    unknown = sorted({e.group for e in METHOD_CATALOG} - set(GROUPS))
    if unknown:
        raise ValueError(f"METHOD_CATALOG uses unknown group(s) {unknown}; known: {', '.join(GROUPS)}")


_check_catalog()


def catalog_entry(namespace: str) -> MethodEntry:
    """The entry of ``namespace``; the error lists the configured namespaces."""
    try:
        return _BY_NAMESPACE[namespace]
    except KeyError:
        raise ValueError(
            f"{namespace!r} is not a method namespace of the catalog (src/dhat/methods/catalog.py); "
            f"known: {', '.join(_BY_NAMESPACE)}"
        ) from None


def namespaces(groups: Iterable[str] | None = None) -> tuple[str, ...]:
    """Namespaces of the given groups (all when ``None``), in the paper's order."""
    if groups is None:
        return tuple(_BY_NAMESPACE)
    wanted = set(groups)
    unknown = sorted(wanted - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown method group(s) {unknown}; known: {', '.join(GROUPS)}")
    return tuple(e.namespace for e in METHOD_CATALOG if e.group in wanted)


def display_name(namespace: str) -> str:
    """Human-readable name of a namespace (the namespace itself when it is not in the catalog)."""
    entry = _BY_NAMESPACE.get(namespace)
    return entry.display if entry else namespace


def order_methods(methods: Sequence[str]) -> list[str]:
    """Catalog (paper) order for known namespaces, then any others alphabetically."""
    rank = {name: i for i, name in enumerate(_BY_NAMESPACE)}
    return sorted(methods, key=lambda m: (rank.get(m, len(rank)), m))
