"""The method registry, parameter validation and the shared attack settings (dhat.methods.base)."""

import pytest
import torch

from dhat.methods import TrainingMethod, available_methods, create_method, method_class, register_method, wrap_model
from dhat.methods.base import METHODS, AttackSettings


def test_registry_lists_every_built_in_method():
    expected = {
        "natural", "pgd_at", "uiat", "dhat", "trades", "mart", "sglr", "fsr", "awp", "cfa",
    }
    assert expected <= set(available_methods())
    assert available_methods() == sorted(available_methods())
    for name in expected:
        assert method_class(name).name == name
        assert isinstance(create_method(name), method_class(name))


def test_unknown_method_names_the_key_and_lists_the_choices():
    with pytest.raises(ValueError, match=r"method.name='trades_plus'.*choose one of .*pgd_at"):
        create_method("trades_plus")


def test_registering_a_name_twice_is_an_error_and_leaves_the_registry_alone():
    before = {name: METHODS.get(name) for name in METHODS}

    class Impostor(TrainingMethod):
        pass

    with pytest.raises(ValueError, match="'natural' is registered twice"):
        register_method("natural")(Impostor)
    assert {name: METHODS.get(name) for name in METHODS} == before and method_class("natural") is not Impostor


def test_attack_values_are_parsed_and_validated_by_section():
    assert create_method("pgd_at", {"attack": {"eps": "8/255"}}).params.attack.eps == pytest.approx(8 / 255)
    # A nested override keeps the other defaults.
    attack = create_method("pgd_at", {"attack": {"steps": 3}}).params.attack
    assert (attack.eps, attack.step_size, attack.steps, attack.start) == pytest.approx((8 / 255, 2 / 255, 3, "uniform"))
    with pytest.raises(ValueError, match=r"pgd_at.attack.eps must be >= 0"):
        create_method("pgd_at", {"attack": {"eps": -0.1}})
    with pytest.raises(ValueError, match=r"dhat.attack.epsilon"):
        create_method("dhat", {"attack": {"epsilon": 0.1}})
    with pytest.raises(ValueError, match=r"custom.attack.bn_mode"):
        create_method("pgd_at", {"attack": {"bn_mode": "frozen"}}, section="custom")


def test_per_sample_radius_scales_the_step():
    settings = AttackSettings(eps="8/255", step_size="2/255").validate("test")
    assert settings.radius_and_step() == pytest.approx((8 / 255, 2 / 255))
    radius, step = settings.radius_and_step(torch.tensor([4 / 255, 16 / 255]))
    assert radius.tolist() == pytest.approx([4 / 255, 16 / 255])
    assert step.tolist() == pytest.approx([1 / 255, 4 / 255])  # step / eps stays 1/4


def test_unknown_model_wrapper_is_named():
    with pytest.raises(ValueError, match="model wrapper name=.nope. is not a registered model wrapper; choose one of .*fsr"):
        wrap_model(torch.nn.Linear(1, 1), {"name": "nope"})
