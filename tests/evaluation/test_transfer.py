"""Tests of transfer attacks (craft on a source model, score on a target)."""

from __future__ import annotations

import pytest
import torch

from dhat.evaluation import AttackSuiteConfig, evaluate_attacks, transfer_attack, transfer_matrix
from dhat.models import ImageClassifier
from tests.conftest import LinearPixelModel, TinyConv

pytestmark = pytest.mark.usefixtures("single_thread")



def tiny_model(seed: int) -> ImageClassifier:
    torch.manual_seed(seed)
    return ImageClassifier(TinyConv(), num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3).eval()


def data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def config(**overrides: object) -> AttackSuiteConfig:
    base: dict[str, object] = {"progress": False, "batch_size": 4, "eps": 16 / 255, "seed": 3, "autoattack": False}
    base.update(overrides)
    return AttackSuiteConfig(**base)  # type: ignore[arg-type]


def test_transfer_to_itself_equals_white_box() -> None:
    model = tiny_model(0)
    x, _ = data()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10  # a few wrong clean predictions too
    cfg = config()
    white = evaluate_attacks(model, x, y, cfg)
    transfer = transfer_attack(model, model, x, y, cfg)
    assert transfer["attacks"] == ["fgsm", "pgd10", "pgd20", "pgd50", "cw"]
    for name in ("clean", *transfer["attacks"]):
        assert transfer[name] == pytest.approx(white[name]), name
    assert white["pgd50"] < white["clean"]  # the attacks do bite, so the equality is informative


def test_transfer_autoattack_to_itself_equals_white_box() -> None:
    model = tiny_model(0)
    x, _ = data(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    cfg = config(autoattack=True, transfer_autoattack=True, autoattack_version="custom",
                 autoattack_attacks=("apgd-ce", "square"), autoattack_n_iter=5, autoattack_square_queries=20)
    white = evaluate_attacks(model, x, y, cfg, attacks=["autoattack"])
    transfer = transfer_attack(model, model, x, y, cfg, attacks=["autoattack"])
    assert transfer["autoattack"] == pytest.approx(white["autoattack"])
    assert white["autoattack"] < 100.0


def test_fgsm_transfer_between_linear_models_matches_hand_computation() -> None:
    generator = torch.Generator().manual_seed(5)
    w_src, w_tgt = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    b = torch.zeros(3)
    source, target = LinearPixelModel(w_src, b).eval(), LinearPixelModel(w_tgt, b).eval()
    x = torch.rand(12, 1, 2, 2, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    eps = 0.2
    # d CE / d x on the source: W_src^T (softmax(W_src x) - onehot(y)).
    xd, ws, wt = x.double().flatten(1), w_src.double(), w_tgt.double()
    residual = torch.softmax(xd @ ws.T, dim=1) - torch.nn.functional.one_hot(y, 3).double()
    x_fgsm = (xd + eps * (residual @ ws).sign()).clamp(0, 1)
    expected = 100.0 * ((x_fgsm @ wt.T).argmax(1) == y).double().mean().item()
    expected_clean = 100.0 * ((xd @ wt.T).argmax(1) == y).double().mean().item()
    out = transfer_attack(source, target, x, y, config(eps=eps), attacks=["fgsm"])
    assert out["fgsm"] == pytest.approx(expected)
    assert out["clean"] == pytest.approx(expected_clean)
    assert out["n_images"] == 12


def test_transfer_matrix_rows() -> None:
    models = {"a": tiny_model(0), "b": tiny_model(1)}
    x, y = data(8)
    cfg = config()
    rows = transfer_matrix(models, x, y, cfg, attacks=["fgsm", "pgd10"])
    assert len(rows) == 2 + 2 * 2 * 2  # one clean row per model, then sources x targets x attacks
    table = {(r["source"], r["target"], r["attack"]): r["accuracy"] for r in rows}
    for name, model in models.items():
        white = evaluate_attacks(model, x, y, cfg, attacks=["fgsm", "pgd10"])
        assert table[(name, name, "clean")] == pytest.approx(white["clean"])
        assert table[(name, name, "pgd10")] == pytest.approx(white["pgd10"])
    off_diagonal = transfer_attack(models["a"], models["b"], x, y, cfg, attacks=["pgd10"])
    assert table[("a", "b", "pgd10")] == pytest.approx(off_diagonal["pgd10"])


def test_transfer_rejects_bad_input() -> None:
    x, y = data(4)
    with pytest.raises(ValueError, match="models must hold at least one"):
        transfer_matrix({}, x, y, config())
    with pytest.raises(ValueError, match="attacks"):
        transfer_attack(tiny_model(0), tiny_model(1), x, y, config(), attacks=["pgd7"])
