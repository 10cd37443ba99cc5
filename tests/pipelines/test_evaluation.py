"""``evaluation`` for one namespace on an in-memory catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dhat.attention.gradcam import grad_cam
from dhat.checkpoints import load_classifier
from dhat.data.splits import stratified_indices
from dhat.extras.datasets import TorchCheckpointDataset
from dhat.intervals import accuracy_interval
from dhat.pipelines import evaluation, training
from tests.pipelines.memory import run_pipeline


@pytest.fixture(scope="module")
def evaluated(params, ingested, masks):
    catalog = run_pipeline(training.create_pipeline(methods=["natural"]), params, attention_masks=masks["attention_masks"],
                           **ingested)
    models = {f"natural.{k}": catalog.load(f"natural.{k}") for k in ("model_best", "model_last")}
    catalog = run_pipeline(evaluation.create_pipeline(methods=["natural"]), params, **ingested, **models)
    return {"metrics": catalog.load("natural.metrics"), "examples": catalog.load("natural.attention_examples"),
            "per_image": catalog.load("natural.per_image"), "model": models["natural.model_best"]}


def test_metrics_describe_the_labelled_subset_and_hold_every_attack(params, evaluated):
    metrics = evaluated["metrics"]
    n_eval = params["evaluation"]["n_eval"]
    assert metrics["evaluation"]["n_eval"] == n_eval and metrics["evaluation"]["subset"] is True
    n_aa = params["evaluation"]["autoattack_n"]
    description = metrics["evaluation"]["description"]
    assert f"a fixed subset of {n_eval} of the 450 test images" in description
    assert f"on a fixed class-stratified subset of {n_aa} of these images" in description
    best = metrics["best"]
    assert best["worst_case"] <= min(best[k] for k in ("clean", "fgsm", "pgd5", "cw"))
    assert metrics["evaluation"]["autoattack_n"] == best["autoattack_n_images"] == n_aa
    # AutoAttack's subset is nested in the evaluated images and stratified like them.
    per_image = evaluated["per_image"]
    assert set(per_image["autoattack_positions"]) < set(per_image["positions"])
    assert "reduced" in best["autoattack_label"]  # the tiny AutoAttack of the test environment says so
    assert {c["name"] for c in metrics["sanity_checks"]} == {"pgd_beats_fgsm", "accuracy_vanishes_with_eps",
                                                            "white_box_beats_square"}
    # Background variants are scored on the same test digits as the attacks.
    assert metrics["bias"]["acc_test"] == best["clean"]
    assert {v["n_images"] for v in metrics["bias_detail"]["variants"].values()} == {n_eval}


def test_attention_examples_travel_as_arrays_of_the_subset(params, ingested, evaluated):
    examples = evaluated["examples"]
    n = params["evaluation"]["attention_examples"]
    test = ingested["test_set"]
    positions = stratified_indices(test["labels"], params["evaluation"]["n_eval"], seed=0)[:n]
    np.testing.assert_array_equal(examples["indices"], positions)
    model = load_classifier(evaluated["model"])
    x = torch.from_numpy(test["images"][positions]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(test["labels"][positions])
    np.testing.assert_allclose(examples["maps"], grad_cam(model, x, y).numpy(), atol=1e-5)


def test_every_accuracy_has_its_bootstrap_interval_from_the_per_image_flags(evaluated):
    metrics, per_image = evaluated["metrics"], evaluated["per_image"]
    for attack in ("clean", "fgsm", "pgd5", "cw", "autoattack"):
        flags = per_image[attack]
        assert 100 * flags.mean() == pytest.approx(metrics["best"][attack])
        interval = metrics["intervals"][attack]
        assert interval["estimate"] == pytest.approx(metrics["best"][attack])
        assert interval["low"] <= interval["estimate"] <= interval["high"]
        assert interval == accuracy_interval(flags, seed=0).as_dict()


def test_robust_gap_uses_test_digits_from_the_training_distribution(params, ingested, evaluated):
    metrics = evaluated["metrics"]
    gap, shift = metrics["robust_gap"], metrics["background_shift"]
    assert gap["test_images"] == "test_in_distribution"
    # The shift compares the same digits: in-distribution backgrounds minus decorrelated ones.
    assert shift["clean"]["decorrelated"] == metrics["best"]["clean"]
    assert shift["pgd2"]["shift"] == pytest.approx(shift["pgd2"]["in_distribution"] - shift["pgd2"]["decorrelated"])
    variant = ingested["test_variants"]["test_in_distribution"]
    positions = evaluated["per_image"]["positions"]
    model = load_classifier(evaluated["model"])
    x = torch.from_numpy(variant["images"][positions]).permute(0, 3, 1, 2).float() / 255
    clean = 100 * (model(x).argmax(1).numpy() == variant["labels"][positions]).mean()
    assert shift["clean"]["in_distribution"] == pytest.approx(clean)
    assert metrics["masks"] is None  # the natural model trains without masks


def _external(params, ingested, tmp_path, entries):
    from dhat.pipelines import evaluate_external

    params = {**params, "external_models": entries}
    pipeline = evaluate_external.create_pipeline(tuple(entries)).only_nodes_with_tags("evaluation")
    names = {f"{name}.external_name": name for name in entries}  # the catalog's ConstantDataset pattern
    return run_pipeline(pipeline, params, **ingested, **names)


def test_an_outside_model_is_scored_exactly_as_the_same_trained_method(params, ingested, evaluated, tmp_path):
    """The natural model brought back as a checkpoint file, and as a bare state dict with its normalisation."""
    checkpoint = evaluated["model"]
    TorchCheckpointDataset(filepath=str(tmp_path / "natural.pt")).save(checkpoint)
    state = dict(checkpoint["state_dict"])
    spec = checkpoint["metadata"]["model"]
    bare = {k: v for k, v in state.items() if k not in ("mean", "std")}
    torch.save(bare, tmp_path / "bare.pt")
    entries = {"brought": {"checkpoint": str(tmp_path / "natural.pt")},
               "bare": {"checkpoint": str(tmp_path / "bare.pt"), "model": {"name": spec["name"], **spec.get("options", {})},
                        "normalization": {"mean": spec["mean"], "std": spec["std"]}}}
    catalog = _external(params, ingested, tmp_path, entries)
    for name in entries:
        metrics, per_image = catalog.load(f"{name}.metrics"), catalog.load(f"{name}.per_image")
        timeless = lambda best: {k: v for k, v in best.items() if k != "seconds"}  # noqa: E731
        assert timeless(metrics["best"]) == timeless(evaluated["metrics"]["best"]), name
        assert metrics["intervals"] == evaluated["metrics"]["intervals"]
        assert set(per_image) == set(evaluated["per_image"])
        assert all(np.array_equal(per_image[k], evaluated["per_image"][k]) for k in per_image)
        assert "last" not in metrics  # an outside model has no last checkpoint


def test_an_outside_model_may_not_take_a_methods_name_or_load_nothing(tmp_path):
    from dhat.external import external_settings

    with pytest.raises(ValueError, match="external_models.dhat: the name must be a new identifier"):
        external_settings({"dhat": {"checkpoint": __file__}})
    with pytest.raises(ValueError, match="external_models.mine names no model"):
        external_settings({"mine": {}})
    with pytest.raises(ValueError, match=r"external_models.mine.checkpoint=.* is not a file"):
        external_settings({"mine": {"checkpoint": str(tmp_path / "missing.pt")}})
