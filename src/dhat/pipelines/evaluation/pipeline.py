"""``evaluation``: one namespace per method, all built from one template."""

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.evaluation.nodes import evaluate_method
from dhat.pipelines.methods import DEFAULT_METHODS

SHARED_INPUTS = {"train_set", "test_set", "test_variants", "dataset_info"}
SHARED_PARAMS = {"params:evaluation", "params:device"}


def method_template(namespace: str) -> Pipeline:
    """The evaluation node of one method (reads its ``model_best`` / ``model_last``)."""

    def evaluate(*inputs):
        return evaluate_method(*inputs, namespace=namespace)

    return Pipeline(
        [
            Node(
                evaluate,
                inputs=[
                    "model_best",
                    "model_last",
                    "train_set",
                    "test_set",
                    "test_variants",
                    "dataset_info",
                    "params:evaluation",
                    "params:device",
                ],
                outputs="metrics",
                name="evaluate",
            )
        ]
    )


def create_pipeline(methods: tuple[str, ...] = DEFAULT_METHODS, **kwargs) -> Pipeline:
    return sum(
        (Pipeline(method_template(m), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS) for m in methods),
        Pipeline([]),
    )
