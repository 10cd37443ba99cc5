"""Which method namespaces the composite pipelines contain.

Each name is a namespace with a ``<name>.method`` section in ``conf/*/parameters*.yml``
(its registry ``name``, ``params`` and optional ``training`` overrides). Adding a
namespace here and a section there is all a new configuration of a method needs.
"""

# Trained by ``kedro run --pipelines=train_eval``: the paper's core comparison, sized for the CPU default.
DEFAULT_METHODS: tuple[str, ...] = ("natural", "pgd_at", "uiat", "dhat")
# The other methods of the paper's tables 1, 2 and 7, including DHAT combined with AWP and CFA.
BASELINE_METHODS: tuple[str, ...] = (
    "trades",
    "mart",
    "pgd_at_awp",
    "trades_awp",
    "fsr",
    "cfa",
    "cfa_trades",
    "sglr",
    "dhat_awp",
    "dhat_cfa",
)
# Ablations of DHAT (paper table 4) and the FLOE variants compared in docs/floe_variants.md.
ABLATION_METHODS: tuple[str, ...] = ("dhat_dhlr_only", "dhat_floe_only", "dhat_floe_paper", "dhat_floe_reference")
ALL_METHODS: tuple[str, ...] = DEFAULT_METHODS + BASELINE_METHODS + ABLATION_METHODS
