"""The training engine (dhat.engine.training): reproducibility, schedule, checkpoint selection, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from dhat.engine.recipe import TrainingConfig
from dhat.engine.training import train_model
from dhat.methods import create_method
from dhat.methods.base import StepOutput, TrainingMethod
from dhat.models import build_model
from dhat.tensors import DeviceImageSet

pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_sets(with_masks: bool = False):
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (48,), generator=generator)
    images = torch.randint(0, 256, (48, 3, 8, 8), generator=generator, dtype=torch.uint8)
    images[:, 0] = (labels * 100).view(-1, 1, 1).to(torch.uint8)  # learnable cue in channel 0
    masks = torch.randint(0, 256, (48, 8, 8), generator=generator, dtype=torch.uint8) if with_masks else None
    return DeviceImageSet(images[:40], labels[:40], None if masks is None else masks[:40]), DeviceImageSet(images[40:], labels[40:])


def _config(**overrides):
    values = {"epochs": 3, "batch_size": 16, "lr": 0.05, "crop_padding": 1, "flip": True, "progress": False, "val_steps": 2}
    return TrainingConfig.from_dict({**values, **overrides})


def _model():
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=3, width=4)


class LearnsThenUnlearns(TrainingMethod):
    """Cross-entropy for three epochs, then its negative: validation accuracy rises, then collapses."""

    name = "learns_then_unlearns"

    def objective(self, model, batch):
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        return StepOutput(loss=-loss if batch.epoch >= 3 else loss, logits=logits)


class ExplodesInEpochTwo(TrainingMethod):
    name = "explodes"

    def objective(self, model, batch):
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        if batch.epoch == 1:
            loss = loss * float("nan")
        return StepOutput(loss=loss, logits=logits)


@pytest.mark.parametrize("method_name", ["pgd_at", "dhat"])
def test_same_seed_same_run(method_name):
    train, val = _tiny_sets(with_masks=True)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model("small_cnn", num_classes=3, width=4)
        torch.randn(7)  # disturb the global RNG: the engine must reseed before shuffling and attacks
        params = {"attack": {"steps": 2}, "inverse": {"steps": 2}} if method_name == "dhat" else {"attack": {"steps": 2}}
        results.append(train_model(model, create_method(method_name, params), train, val, _config()))
    first, second = results
    strip = lambda h: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in h]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert all(torch.equal(first.last_state[k], second.last_state[k]) for k in first.last_state)


class RecordsBatches(TrainingMethod):
    """Cross-entropy that records each batch's indices and images; ``noise`` draws from the global RNG."""

    name = "records_batches"

    def __init__(self, noise: bool):
        super().__init__(None)
        self.noise, self.seen = noise, []

    def objective(self, model, batch):
        self.seen.append((batch.indices.clone(), batch.x.clone()))
        if self.noise:
            torch.rand(5)  # an attack's random start would draw from the global RNG like this
        logits = model(batch.x)
        return StepOutput(loss=F.cross_entropy(logits, batch.y), logits=logits)


def test_methods_with_the_same_seed_see_the_same_batches_and_crops():
    """Common random numbers: data order and augmentation do not depend on what a method draws."""
    train, val = _tiny_sets()
    quiet, noisy = RecordsBatches(noise=False), RecordsBatches(noise=True)
    for method in (quiet, noisy):
        train_model(_model(), method, train, val, _config(epochs=2))
    assert len(quiet.seen) == len(noisy.seen) == 2 * 3  # 40 images in batches of 16 (16, 16, 8), two epochs
    for (index_a, x_a), (index_b, x_b) in zip(quiet.seen, noisy.seen, strict=True):
        assert torch.equal(index_a, index_b) and torch.equal(x_a, x_b)
    other = RecordsBatches(noise=False)
    train_model(_model(), other, train, val, _config(epochs=2, seed=1))
    assert not torch.equal(other.seen[0][0], quiet.seen[0][0])  # another seed, another order


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_training_learns_and_keeps_fp32_weights(precision):
    train, val = _tiny_sets()
    method = create_method("pgd_at", {"attack": {"steps": 2}})
    result = train_model(_model(), method, train, val, _config(epochs=6, precision=precision, flip=False))
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert all(t.dtype == torch.float32 for t in result.last_state.values() if t.is_floating_point())
    assert (method.loss_scaler is not None) == (precision == "fp16")  # fp16 steps through a gradient scaler


def test_compile_trains_the_compiled_module_and_saves_the_plain_weights(monkeypatch):
    """``training.compile``: steps go through ``torch.compile``'s module; checkpoints keep the model's own keys."""
    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model  # the wiring is under test here, not the compiler (which needs a C++ toolchain on CPU)

    monkeypatch.setattr(torch, "compile", fake_compile)
    train, val = _tiny_sets()
    model = _model()
    result = train_model(model, create_method("natural"), train, val, _config(epochs=1, compile=True))
    assert compiled == [model] and set(result.last_state) == set(model.state_dict())


def test_step_decay_at_epoch_fractions_and_history_values():
    train, val = _tiny_sets()
    config = _config(epochs=10, lr=0.1, lr_milestones=[0.8, 0.9], val_steps=0, select_on="val_clean")
    assert config.milestone_epochs() == [8, 9]
    model = _model()
    result = train_model(model, create_method("natural"), train, val, config)
    lrs = [row["lr"] for row in result.history]
    assert lrs[:8] == pytest.approx([0.1] * 8) and lrs[8] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.001)
    assert [row["epoch"] for row in result.history] == list(range(1, 11))
    last = result.history[-1]
    assert last["ce"] == pytest.approx(last["loss"])  # natural training's only part is its loss
    assert math.isnan(last["val_pgd10"])  # val_steps = 0: no robust evaluation
    # val_clean is the final model's accuracy on the validation images, computed here independently.
    model.eval()
    with torch.no_grad():
        correct = (model(val.images.float() / 255).argmax(1) == val.labels).float().mean().item()
    assert last["val_clean"] == pytest.approx(100 * correct)


def test_best_checkpoint_is_the_first_best_validation_epoch():
    train, val = _tiny_sets()
    config = {"epochs": 5, "lr": 0.1, "lr_milestones": [], "val_steps": 0, "select_on": "val_clean"}
    result = train_model(_model(), LearnsThenUnlearns(None), train, val, _config(**config))
    scores = [row["val_clean"] for row in result.history]
    assert result.best_epoch == scores.index(max(scores)) + 1  # the first of tied epochs
    assert result.best_epoch < len(scores)  # unlearning makes the last epoch worse: selection matters
    # The best state is the weights after epoch best_epoch: a run stopped there (same seeds, constant
    # learning rate) ends with them.
    truncated = train_model(_model(), LearnsThenUnlearns(None), train, val, _config(**{**config, "epochs": result.best_epoch}))
    columns = lambda h: [(row["loss"], row["train_acc"], row["val_clean"]) for row in h]  # noqa: E731
    assert columns(truncated.history) == columns(result.history[: result.best_epoch])
    assert all(torch.equal(result.best_state[k], truncated.last_state[k]) for k in result.best_state)
    assert not all(torch.equal(result.best_state[k], result.last_state[k]) for k in result.best_state)


def test_methods_needing_masks_fail_before_training():
    train, val = _tiny_sets(with_masks=False)
    with pytest.raises(ValueError, match="mask_precomputation"):
        train_model(build_model("small_cnn", num_classes=3, width=4), create_method("dhat"), train, val, _config())


@pytest.mark.parametrize(("key", "value"), [("epochs", 0), ("lr", -1.0), ("select_on", "test_pgd10"), ("lr_milestones", [1.5]), ("val_eps", -0.1)])
def test_invalid_training_parameters_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"training.{key}"):
        TrainingConfig.from_dict({key: value})
    with pytest.raises(ValueError, match="training.epochz"):
        TrainingConfig.from_dict({"epochz": 3})


def test_a_diverging_loss_stops_training_and_keeps_the_best_checkpoint():
    train, val = _tiny_sets()
    config = {"epochs": 4, "lr_milestones": []}
    result = train_model(_model(), ExplodesInEpochTwo(None), train, val, _config(**config))
    assert result.diverged_epoch == 2
    assert len(result.history) == 1 and result.best_epoch == 1
    # The kept checkpoint is the epoch-1 weights: what a one-epoch run of the same method ends with.
    one_epoch = train_model(_model(), ExplodesInEpochTwo(None), train, val, _config(**{**config, "epochs": 1}))
    assert one_epoch.diverged_epoch is None
    assert all(torch.equal(result.best_state[k], one_epoch.last_state[k]) for k in result.best_state)
