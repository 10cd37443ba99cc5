"""The attack registry: names parse and display in one place, and a new attack is one registration."""

from __future__ import annotations

import pytest
import torch

from dhat.evaluation import evaluate_attacks
from dhat.evaluation import registry as attacks
from dhat.stats.sweeps import score
from tests.conftest import LinearPixelModel
from tests.evaluation.helpers import make_config


def test_names_parse_into_families_and_step_counts():
    assert attacks.parse("pgd50")[0].name == "pgd" and attacks.steps("pgd50") == 50
    assert attacks.family("cw") == "cw" and attacks.steps("cw") is None
    assert attacks.family("clean") is None and attacks.family("pgd") is None  # a PGD name needs its length
    with pytest.raises(ValueError, match="pgd<steps>"):
        attacks.parse("pgdx")
    assert attacks.of_family(["pgd50", "cw", "pgd10", "pgd20"], "pgd") == ["pgd10", "pgd20", "pgd50"]
    assert attacks.longest(["pgd50", "cw", "pgd100"], "pgd") == "pgd100"
    assert attacks.is_batch_attack("pgd7") and not attacks.is_batch_attack("autoattack")


def test_display_names_and_table_headers_of_every_attack():
    shown = {n: (attacks.display_name(n), attacks.header(n))
             for n in ("clean", "fgsm", "pgd10", "pgd50", "cw", "autoattack", "unknown")}
    assert shown == {"clean": ("clean", "Clean"), "fgsm": ("FGSM", "FGSM"), "pgd10": ("PGD-10", "PGD-10"),
                     "pgd50": ("PGD-50", "PGD-50"), "cw": ("CW-inf", "CW"), "autoattack": ("AutoAttack", "AA"),
                     "unknown": ("unknown", "unknown")}
    assert attacks.order(["autoattack", "cw", "pgd50", "pgd10", "clean", "fgsm"]) == [
        "clean", "fgsm", "pgd10", "pgd50", "cw", "autoattack"]
    assert attacks.batch_names(make_config(pgd_steps=(10, 50))) == ["fgsm", "pgd10", "pgd50", "cw"]


@pytest.fixture
def flip_attack():
    """A toy attack registered for one test: every pixel moved by eps away from 0.5 (no gradient)."""

    @attacks.register_attack("flip", display="Flip", header="FL")
    def craft(model, x, y, config, names, batch_index):
        return {"flip": (x + config.eps * torch.sign(x - 0.5)).clamp(0, 1)}

    yield craft
    del attacks.ATTACKS._entries["flip"]  # noqa: SLF001 - undo the test's registration


def test_a_new_attack_is_one_registration_away_from_the_suite_and_the_sweeps(flip_attack):
    model = LinearPixelModel(torch.tensor([[1.0], [-1.0]]).repeat(1, 12), torch.zeros(2)).eval()
    images = torch.rand(10, 3, 2, 2)
    labels = (images.flatten(1).mean(1) < 0.5).long()
    config = make_config(eps=0.1)
    results = evaluate_attacks(model, images, labels, config, attacks=["flip", "fgsm"])
    moved = (images + 0.1 * torch.sign(images - 0.5)).clamp(0, 1)
    expected = (model(moved).argmax(1) == labels).float().mean().item() * 100
    assert results["flip"] == pytest.approx(expected) and "fgsm" in results
    scored = score(model, images, labels, config, ["flip"])  # the sweeps accept it too
    assert scored["accuracy"]["flip"]["estimate"] == pytest.approx(expected)
    assert attacks.header("flip") == "FL" and attacks.display_name("flip") == "Flip"
    assert "flip" in config.default_attacks()  # the evaluation node runs it without being told
    assert evaluate_attacks(model, images, labels, config)["flip"] == pytest.approx(expected)
