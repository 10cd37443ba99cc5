"""``transfer``: examples crafted on one trained model, scored on the others."""

from kedro.pipeline import Pipeline

from dhat.pipelines.composition import node_after
from dhat.pipelines.transfer.nodes import transfer_attacks


def create_pipeline(after: list[str] | None = None, **kwargs) -> Pipeline:
    """``after``: datasets this run produces that must exist before transfer (not read)."""
    return node_after(
        transfer_attacks,
        inputs=["trained_models", "test_set", "params:transfer", "params:device"],
        outputs="transfer_table",
        name="transfer_attacks",
        after=after,
        tags=["transfer"],
    )
