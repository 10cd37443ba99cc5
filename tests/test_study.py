"""Aggregation of a multi-seed study against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dhat.stats.study import stack_runs, study_markdown, study_paired_table, study_table

T2 = 4.302652729911275  # t(0.975, 2)


def _runs():
    positions = np.arange(4)
    flags = {  # (seed, method) -> clean / pgd5 correctness on the same 4 images
        (0, "dhat"): ([1, 1, 1, 0], [1, 0, 0, 0]), (1, "dhat"): ([1, 1, 1, 1], [1, 1, 0, 0]),
        (2, "dhat"): ([1, 1, 0, 0], [1, 0, 0, 0]),
        (0, "uiat"): ([1, 1, 0, 0], [0, 0, 0, 0]), (1, "uiat"): ([1, 1, 1, 0], [1, 0, 0, 0]),
        (2, "uiat"): ([1, 0, 0, 0], [0, 0, 0, 0]),
    }
    return {key: {"positions": positions, "clean": np.array(c, bool), "pgd5": np.array(p, bool),
                  "pgd2": np.array(c, bool)} for key, (c, p) in flags.items()}


def test_study_table_is_the_mean_over_seeds_with_a_t_interval():
    table = study_table(stack_runs(_runs()))
    assert table["attack"].tolist() == ["clean", "pgd5", "clean", "pgd5"]  # the longest PGD, catalog order
    row = table[(table["method"] == "dhat") & (table["attack"] == "clean")].iloc[0]
    # Seeds: 75, 100, 50 -> mean 75, sd 25.
    assert (row["mean"], row["sd"], row["per_seed"]) == (pytest.approx(75.0), pytest.approx(25.0), "75.0 100.0 50.0")
    assert (row["low"], row["high"]) == pytest.approx((75 - T2 * 25 / math.sqrt(3), 75 + T2 * 25 / math.sqrt(3)))


def test_paired_differences_are_per_seed():
    paired = study_paired_table(stack_runs(_runs()), pairs=[("dhat", "uiat")])
    clean = paired[paired["attack"] == "clean"].iloc[0]
    # Per-seed differences of clean accuracy: 25, 25, 25 -> mean 25, sd 0: a zero-width interval.
    assert (clean["difference"], clean["low"], clean["high"]) == pytest.approx((25.0, 25.0, 25.0))
    assert clean["verdict"] == "DHAT better" and clean["comparison"] == "DHAT - UIAT"
    pgd = paired[paired["attack"] == "pgd5"].iloc[0]
    # 25, 25, 25 again on PGD-5 (1 vs 0, 2 vs 1, 1 vs 0 correct).
    assert pgd["difference"] == pytest.approx(25.0)
    markdown = study_markdown(study_table(stack_runs(_runs())), paired, "3 seeds.")
    assert "| Method | Clean | PGD-5 |" in markdown and "| DHAT | 75.0 [" in markdown and "| DHAT - UIAT | Clean | +25.0 [+25.0, +25.0] | DHAT better |" in markdown


def test_runs_on_different_images_or_missing_seeds_are_refused():
    runs = _runs()
    runs[(1, "uiat")] = {**runs[(1, "uiat")], "positions": np.arange(1, 5)}
    with pytest.raises(ValueError, match="different test images"):
        stack_runs(runs)
    runs = _runs()
    for key in runs:  # AutoAttack on a subset: fine while every run has the same subset ...
        runs[key] = {**runs[key], "autoattack": runs[key]["clean"][:2], "autoattack_positions": np.array([0, 3])}
    assert stack_runs(runs)["dhat"]["autoattack"].shape == (3, 2)
    runs[(0, "dhat")] = {**runs[(0, "dhat")], "autoattack_positions": np.array([0, 2])}
    with pytest.raises(ValueError, match="different test images under 'autoattack'"):
        stack_runs(runs)
    runs = _runs()
    del runs[(2, "uiat")]
    with pytest.raises(ValueError, match=r"no results for 'uiat' with seed\(s\) \[2\]"):
        stack_runs(runs)


def test_study_settings_check_seeds_and_methods():
    from dhat.stats.study import StudySettings

    assert StudySettings.from_dict({"seeds": [3, 1], "methods": ["pgd_at", "dhat"]}) == StudySettings((3, 1), ("pgd_at", "dhat"))
    for seeds in ([], [1, 1], [-1], "0,1", [0.5]):
        with pytest.raises(ValueError, match="study.seeds"):
            StudySettings.from_dict({"seeds": seeds})
    with pytest.raises(ValueError, match="dhat_plus"):
        StudySettings.from_dict({"methods": ["dhat_plus"]})


def test_the_study_pipeline_follows_its_settings():
    from dhat.pipelines.study.pipeline import create_ablation_pipeline, create_pipeline
    from dhat.stats.study import StudySettings

    settings = StudySettings((5, 6), ("pgd_at", "dhat"))
    trained = {n.namespace for n in create_pipeline(settings).nodes if "training" in n.tags}
    assert trained == {"study_seed5.pgd_at", "study_seed5.dhat", "study_seed6.pgd_at", "study_seed6.dhat"}
    ablations = {n.namespace for n in create_ablation_pipeline(settings).nodes if "training" in n.tags}
    assert {ns.split(".")[0] for ns in ablations} == {"study_seed5", "study_seed6"}


def test_comparisons_come_from_the_settings():
    from dhat.stats.study import StudySettings

    settings = StudySettings.from_dict({"comparisons": [["dhat_absolute_mask", "dhat"], ["dhat", "uiat"]]})
    assert settings.comparisons == (("dhat_absolute_mask", "dhat"), ("dhat", "uiat"))
    for bad in ([["dhat"]], "dhat-uiat", [["dhat", "nope"]]):
        with pytest.raises(ValueError, match="study.comparisons|nope"):
            StudySettings.from_dict({"comparisons": bad})


def test_every_environments_study_names_its_comparisons_in_yaml():
    from dhat.stats.study import StudySettings
    from tests.pipelines.memory import load_parameters

    for env in ("base", "cifar10_cpu", "study_extended"):
        pairs = StudySettings.from_dict(load_parameters(env)["study"]).comparisons
        assert pairs and ("dhat", "uiat") in pairs and ("dhat", "pgd_at") in pairs, env


def test_one_mask_model_per_seed_is_trained_with_that_seed_and_feeds_only_that_seeds_units():
    """In memory, the test environment's sizes: two seeds of PGD-AT and DHAT, each seed its own mask model."""
    import pandas as pd

    from dhat.pipelines.study.pipeline import create_pipeline
    from dhat.stats.study import StudySettings
    from tests.pipelines.memory import load_parameters, run_pipeline

    params = load_parameters("test")
    params["study"] = {"seeds": [0, 1], "methods": ["pgd_at", "dhat"], "mask_model_per_seed": True,
                       "comparisons": [["dhat", "pgd_at"]]}
    settings = StudySettings.from_dict(params["study"])
    pipeline = create_pipeline(settings)
    masks_nodes = {n.name for n in pipeline.nodes if "mask_precomputation" in n.tags}
    assert masks_nodes == {f"study_seed{s}.{n}" for s in (0, 1) for n in ("train_mask_model", "compute_attention_masks")}
    dhat_train = next(n for n in pipeline.nodes if n.name == "study_seed1.dhat.train")
    assert "study_seed1.attention_masks" in dhat_train.inputs and "attention_masks" not in dhat_train.inputs
    catalog = run_pipeline(pipeline, params, **{f"study_seed{s}.seed": s for s in (0, 1)})
    models = [catalog.load(f"study_seed{s}.mask_model") for s in (0, 1)]
    assert [m["metadata"]["training"]["seed"] for m in models] == [0, 1]
    first, second = (catalog.load(f"study_seed{s}.attention_masks")["masks"] for s in (0, 1))
    assert first.shape == second.shape and not np.array_equal(first, second)  # two mask models, two sets of maps
    paired = catalog.load("study_paired_table")
    assert set(paired["comparison"]) == {"DHAT - PGD-AT"}
    masks = catalog.load("study_masks_table")
    assert isinstance(masks, pd.DataFrame) and masks["seed"].tolist() == [0, 1] and set(masks["method"]) == {"dhat"}
    assert masks["mask_model_val_clean"].between(0, 100).all() and masks["coverage"].between(0, 1).all()
    assert "background_share@0.1" in masks and "one mask model per seed" in catalog.load("study_report")
    assert catalog.load("study_masks_figure").get_axes()  # a figure with panels
    assert len(catalog.load("study_curves_figure").get_axes()) == 4  # clean and PGD for each of the two methods
