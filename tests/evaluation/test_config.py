"""The attack suite settings: validation names the field, YAML fractions parse."""

from __future__ import annotations

import pytest
import torch

from dhat.evaluation import AttackSuiteConfig, evaluate_attacks
from tests.evaluation.helpers import AA_REDUCED, ConstantModel, make_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"evaluation\.eps must be >= 0"):
        AttackSuiteConfig(eps=-0.1)
    with pytest.raises(ValueError, match=r"evaluation\.pgd_steps"):
        AttackSuiteConfig(pgd_steps=(10, 0))
    with pytest.raises(ValueError, match=r"evaluation\.batch_size"):
        AttackSuiteConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"evaluation\.sanity_eps_sweep must be ascending"):
        AttackSuiteConfig(sanity_eps_sweep=(0.5, 0.1))
    with pytest.raises(ValueError, match=r"evaluation\.autoattack_attacks"):
        AttackSuiteConfig(autoattack_version="custom")
    with pytest.raises(ValueError, match=r"evaluation\.eps must be <= 1"):
        AttackSuiteConfig(eps=8)


def test_from_dict_parses_fractions_and_rejects_unknown_keys() -> None:
    config = AttackSuiteConfig.from_dict(
        {"eps": "8/255", "step_size": "2/255", "pgd_steps": [10, 20], "sanity_eps_sweep": ["8/255", 0.5]}
    )
    assert config.eps == pytest.approx(8 / 255)
    assert config.step_size == pytest.approx(2 / 255)
    assert config.pgd_steps == (10, 20)
    assert config.sanity_eps_sweep == pytest.approx((8 / 255, 0.5))
    with pytest.raises(ValueError, match=r"evaluation\.epsilon"):
        AttackSuiteConfig.from_dict({"epsilon": 0.1})


def test_autoattack_with_too_few_classes_is_rejected() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0, 0.5]))
    config = make_config(autoattack=True, **AA_REDUCED)
    with pytest.raises(ValueError, match="apgd-t needs at least 4 classes"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), config)


def test_unknown_attack_name_is_rejected() -> None:
    model = ConstantModel(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="pgd7"):
        evaluate_attacks(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), make_config(), ["pgd7"])
