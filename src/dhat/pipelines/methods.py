"""Which method namespaces the composite pipelines contain.

Each name is a namespace with a ``<name>.method`` section in ``conf/*/parameters*.yml``
(its registry ``name``, ``params`` and optional ``training`` overrides).
"""

# The paper's main comparison, trained by ``kedro run --pipelines=train_eval``.
DEFAULT_METHODS: tuple[str, ...] = ("natural", "pgd_at", "uiat", "dhat")
# Ablations of DHAT (paper table 4) and the FLOE variants compared in the docs.
ABLATION_METHODS: tuple[str, ...] = ("dhat_dhlr_only", "dhat_floe_only", "dhat_floe_paper", "dhat_floe_reference")
ALL_METHODS: tuple[str, ...] = DEFAULT_METHODS + ABLATION_METHODS
