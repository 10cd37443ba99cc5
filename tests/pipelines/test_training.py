"""``training`` for one namespace on an in-memory catalog."""

from __future__ import annotations

import pytest
import torch

from dhat.checkpoints import load_classifier
from dhat.pipelines import training
from tests.pipelines.memory import run_pipeline


@pytest.fixture(scope="module")
def trained(params, ingested, masks):
    catalog = run_pipeline(training.create_pipeline(methods=["pgd_at"]), params, attention_masks=masks["attention_masks"],
                           **ingested)
    trained = {name: catalog.load(f"pgd_at.{name}") for name in ("model_best", "model_last", "history")}
    return {**trained, "state": catalog.load("pgd_at.training_state")}


def test_namespace_trains_its_own_method_with_the_shared_recipe(params, trained):
    history = trained["history"]
    assert history["epoch"].tolist() == list(range(1, params["training"]["epochs"] + 1))
    best, last = trained["model_best"]["metadata"], trained["model_last"]["metadata"]
    assert best["method"]["name"] == "pgd_at" and best["checkpoint"] == "best" and last["checkpoint"] == "last"
    # The selected epoch is the one with the best validation PGD accuracy (first one on ties).
    assert best["best_epoch"] == int(history.loc[history["val_pgd10"].idxmax(), "epoch"])
    assert last["epoch"] == params["training"]["epochs"]


def test_the_node_leaves_its_resumable_state_for_the_session_hook_to_remove(params, trained):
    """Without a session (no hooks) the state of the last epoch stays where the catalog put it."""
    state = torch.load(trained["state"], weights_only=True)
    assert state["epoch"] == params["training"]["epochs"] and len(state["history"]) == state["epoch"]
    for name, tensor in trained["model_last"]["state_dict"].items():
        torch.testing.assert_close(tensor, state["model"][name])


def test_checkpoints_rebuild_the_trained_weights(trained, ingested):
    model = load_classifier(trained["model_last"])
    state = trained["model_last"]["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    x = torch.from_numpy(ingested["test_set"]["images"][:4]).permute(0, 3, 1, 2).float() / 255
    assert torch.isfinite(model(x)).all()


def test_dhat_refuses_to_train_without_attention_masks(params, ingested):
    with pytest.raises(ValueError, match="needs attention masks"):
        run_pipeline(training.create_pipeline(methods=["dhat"]), params, attention_masks=None, **ingested)
