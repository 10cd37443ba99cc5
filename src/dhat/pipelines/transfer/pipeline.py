"""``transfer``: examples crafted on one trained model, scored on the others."""

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.transfer.nodes import transfer_attacks


def create_pipeline(**kwargs) -> Pipeline:
    """Transfer among ``trained_models``: every method's latest selected checkpoint on disk.

    ``train_eval`` maps ``trained_models`` to the checkpoints of its own run
    (:func:`dhat.pipelines.reporting.pipeline.create_run_pipeline`).
    """
    return Pipeline([Node(transfer_attacks, inputs=["trained_models", "test_set", "params:transfer", "params:device"],
                          outputs="transfer_table", name="transfer_attacks", tags=["transfer"])])
