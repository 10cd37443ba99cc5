"""``transfer``: examples crafted on one trained model, scored on the others."""

import warnings

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.transfer.nodes import transfer_attacks


def create_pipeline(after: list[str] | None = None, **kwargs) -> Pipeline:
    """``after``: datasets this run produces that must exist before transfer (not read)."""
    with warnings.catch_warnings():
        # ``after`` names namespaced outputs ("dhat.metrics") on purpose, to order this node after them.
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return _pipeline(after)


def _pipeline(after: list[str] | None) -> Pipeline:
    return Pipeline(
        [
            Node(
                transfer_attacks,
                inputs=["trained_models", "test_set", "params:transfer", "params:device", *(after or [])],
                outputs="transfer_table",
                name="transfer_attacks",
            )
        ]
    )
