"""``mask_precomputation``: natural reference model -> Grad-CAM attention map per training image."""

from kedro.pipeline import Node, Pipeline

from dhat.pipelines.mask_precomputation.nodes import compute_attention_masks, train_mask_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_mask_model,
                inputs=["train_set", "val_set", "dataset_info", "params:mask_model", "params:device",
                        "mask_model_training_state"],
                outputs=["mask_model", "mask_model_history"],
                name="train_mask_model",
                tags=["mask_precomputation"],
            ),
            Node(
                compute_attention_masks,
                inputs=["mask_model", "train_set", "params:mask_model", "params:device"],
                outputs=["attention_masks", "mask_quality"],
                name="compute_attention_masks",
                tags=["mask_precomputation"],
            ),
        ]
    )
