"""``training``: one namespace per method, all built from one template."""

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.methods import DEFAULT_METHODS
from dhat.pipelines.training.nodes import fit

SHARED_INPUTS = {"train_set", "val_set", "attention_masks", "dataset_info"}
SHARED_PARAMS = {"params:model", "params:training", "params:device"}


def method_template(namespace: str) -> Pipeline:
    """The training node of one method; ``namespace`` names its YAML section and outputs."""

    def train(*inputs):
        return fit(*inputs, label=namespace)

    return Pipeline(
        [
            Node(
                train,
                inputs=[
                    "train_set",
                    "val_set",
                    "attention_masks",
                    "dataset_info",
                    "params:method",
                    "params:model",
                    "params:training",
                    "params:device",
                ],
                outputs=["model_best", "model_last", "history"],
                name="train",
            )
        ]
    )


def create_pipeline(methods: tuple[str, ...] = DEFAULT_METHODS, **kwargs) -> Pipeline:
    return sum(
        (
            Pipeline(method_template(m), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS)
            for m in methods
        ),
        Pipeline([]),
    )
