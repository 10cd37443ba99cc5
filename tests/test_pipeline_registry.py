"""The registered pipelines: static composites from the method catalog, picklable nodes tagged by stage."""

from __future__ import annotations

import pickle

import pytest

from dhat.methods.catalog import GROUPS, namespaces
from dhat.parameters import STAGES
from dhat.pipeline_registry import COMPOSITES, register_pipelines


@pytest.fixture(scope="module")
def registry():
    return register_pipelines()


def test_every_stage_and_composite_is_registered(registry):
    assert set(STAGES) | set(COMPOSITES) | {"study", "study_ablations", "__default__"} == set(registry)
    assert registry["__default__"].nodes == registry["train_eval"].nodes


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composites_train_the_methods_of_their_catalog_groups(registry, name):
    trained = {n.namespace for n in registry[name].nodes if "training" in n.tags}
    assert trained == set(namespaces(COMPOSITES[name]))
    assert {n.name for n in registry[name].nodes if not n.namespace} == {
        "ingest_data", "train_mask_model", "compute_attention_masks", "transfer_attacks", "build_report"}


def test_train_eval_is_the_core_comparison_and_all_covers_every_group(registry):
    assert namespaces(COMPOSITES["train_eval"]) == ("natural", "pgd_at", "uiat", "dhat", "dhat_true_masks")
    # The paper's comparison runs on data without true masks (CIFAR): it must not contain the oracle.
    assert "dhat_true_masks" not in namespaces(COMPOSITES["train_eval_paper"])
    assert set(COMPOSITES["train_eval_all"]) == set(GROUPS)


def test_nodes_are_named_module_level_functions_with_one_stage_tag(registry):
    for node in registry["train_eval_all"].nodes:
        func = node.func
        assert "<locals>" not in func.__qualname__ and "<lambda>" not in func.__qualname__, node.name
        assert pickle.loads(pickle.dumps(func)) is func, node.name  # ParallelRunner can ship it
        assert len(set(node.tags) & set(STAGES)) == 1, node.name


def test_report_waits_for_every_evaluation_of_its_composite(registry):
    report = next(n for n in registry["train_eval_paper"].nodes if n.name == "build_report")
    assert {f"{m}.metrics" for m in namespaces(COMPOSITES["train_eval_paper"])} <= set(report.inputs)


def test_study_runs_every_core_method_per_seed_with_the_seed_from_its_namespace(registry):
    from dhat.pipelines.study.pipeline import STUDY_GROUPS, STUDY_SEEDS

    trained = {n.namespace for n in registry["study"].nodes if "training" in n.tags}
    assert trained == {f"study_seed{s}.{m}" for s in STUDY_SEEDS for m in namespaces(STUDY_GROUPS)}
    train = next(n for n in registry["study"].nodes if n.name == "study_seed1.dhat.train")
    assert "study_seed1.seed" in train.inputs and "params:dhat.method" in train.inputs
