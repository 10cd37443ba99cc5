"""The method catalog is the one list of methods: YAML sections, registry and pipelines agree with it."""

from __future__ import annotations

import pytest

from dhat.engine.fitting import split_method_params
from dhat.methods import available_methods, create_method
from dhat.methods.catalog import GROUPS, METHOD_CATALOG, catalog_entry, display_name, namespaces, order_methods
from tests.pipelines.memory import load_parameters

BASE = load_parameters("base")


def _method_sections(params):
    return {key for key, value in params.items() if isinstance(value, dict) and "method" in value}


def test_every_catalog_entry_has_exactly_one_yaml_section_and_vice_versa():
    assert _method_sections(BASE) == set(namespaces())
    for env in ("test", "cifar10", "cifar100", "imagenet"):
        assert _method_sections(load_parameters(env)) == set(namespaces()), env


@pytest.mark.parametrize("namespace", namespaces())
def test_each_configuration_names_a_registered_method_with_valid_parameters(namespace):
    name, hyper, _ = split_method_params(BASE[namespace]["method"], f"{namespace}.method")
    assert name in available_methods()
    method = create_method(name, hyper, section=f"{namespace}.method.params")
    if namespace == name:
        # One default per value: a method's own section restates its dataclass defaults, never others.
        assert method.describe() == create_method(name).describe(), namespace


def test_groups_partition_the_catalog_in_paper_order():
    assert sorted(n for g in GROUPS for n in namespaces([g])) == sorted(namespaces())
    assert namespaces(["core"]) == ("natural", "pgd_at", "uiat", "dhat")
    assert namespaces(["oracle"]) == ("dhat_true_masks",)
    assert order_methods(["dhat", "zeta", "natural", "alpha"]) == ["natural", "dhat", "alpha", "zeta"]
    assert display_name("pgd_at_awp") == "AWP (PGD-AT)" and display_name("custom") == "custom"
    assert [e.namespace for e in METHOD_CATALOG][:2] == ["natural", "pgd_at"]


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: natural, pgd_at"):
        catalog_entry("dhat_floe_bounded")
    with pytest.raises(ValueError, match="unknown method group"):
        namespaces(["extras"])


@pytest.mark.parametrize("env", ["cifar10", "cifar100"])
def test_cifar_environments_follow_the_papers_table_1(env):
    params = load_parameters(env)
    uiat = create_method("uiat", params["uiat"]["method"]["params"])
    assert uiat.params.inverse.eps == pytest.approx(4 / 255)
    for namespace in ("dhat", "dhat_true_masks", "dhat_floe_only"):
        assert create_method("dhat", params[namespace]["method"]["params"]).params.floe == "reference", namespace
    for namespace in ("dhat_awp", "dhat_cfa"):
        method = create_method(params[namespace]["method"]["name"], params[namespace]["method"]["params"])
        assert method.base.params.floe == "reference" and method.base.params.lambda1 == 1.0, namespace
    # The embedded default keeps its measured choice.
    assert create_method("dhat", BASE["dhat"]["method"]["params"]).params.floe == "bounded"
