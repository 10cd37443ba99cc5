"""``data_ingestion``: raw data -> train / validation / test image sets (+ analysis variants)."""

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.data_ingestion.nodes import ingest_data


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_data,
                inputs=["params:data", "params:device"],
                outputs=["train_set", "val_set", "test_set", "test_variants", "val_variants", "dataset_info"],
                name="ingest_data",
                tags=["data_ingestion"],
            )
        ]
    )
