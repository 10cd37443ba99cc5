"""The training engine: reproducibility, schedule, checkpoint selection, errors."""

import pytest
import torch

from dhat.methods import create_method
from dhat.models import build_model
from dhat.tensors import DeviceImageSet
from dhat.training import TrainingConfig, train_model


def _tiny_sets(with_masks: bool = False):
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (48,), generator=generator)
    images = torch.randint(0, 256, (48, 3, 8, 8), generator=generator, dtype=torch.uint8)
    images[:, labels.new_tensor(0)] = (labels * 100).view(-1, 1, 1).to(torch.uint8)  # learnable cue in channel 0
    masks = torch.randint(0, 256, (48, 8, 8), generator=generator, dtype=torch.uint8) if with_masks else None
    return DeviceImageSet(images[:40], labels[:40], None if masks is None else masks[:40]), DeviceImageSet(images[40:], labels[40:])


def _config(**overrides):
    values = {"epochs": 3, "batch_size": 16, "lr": 0.05, "crop_padding": 1, "flip": True, "progress": False, "val_steps": 2}
    return TrainingConfig.from_dict({**values, **overrides})


@pytest.mark.parametrize("method_name", ["pgd_at", "dhat"])
def test_same_seed_same_run(method_name):
    train, val = _tiny_sets(with_masks=True)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model("small_cnn", num_classes=3, width=4)
        torch.randn(7)  # disturb the global RNG: the engine must reseed before shuffling and attacks
        results.append(train_model(model, create_method(method_name, {"attack": {"steps": 2}, "inverse": {"steps": 2}} if method_name == "dhat" else {"attack": {"steps": 2}}), train, val, _config()))
    first, second = results
    strip = lambda h: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in h]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert all(torch.equal(first.last_state[k], second.last_state[k]) for k in first.last_state)


def test_step_decay_at_epoch_fractions_and_history_columns():
    train, val = _tiny_sets()
    config = _config(epochs=10, lr=0.1, lr_milestones=[0.8, 0.9], val_steps=0, select_on="val_clean")
    assert config.milestone_epochs() == [8, 9]
    result = train_model(build_model("small_cnn", num_classes=3, width=4), create_method("natural"), train, val, config)
    lrs = [row["lr"] for row in result.history]
    assert lrs[:8] == pytest.approx([0.1] * 8) and lrs[8] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.001)
    assert {"loss", "ce", "train_acc", "val_clean", "val_pgd10", "epoch_seconds"} <= set(result.history[0])


def test_best_checkpoint_is_the_best_validation_epoch():
    train, val = _tiny_sets()
    result = train_model(build_model("small_cnn", num_classes=3, width=4), create_method("pgd_at", {"attack": {"steps": 1}}), train, val, _config(epochs=4))
    scores = [row["val_pgd10"] for row in result.history]
    assert result.best_epoch == scores.index(max(scores)) + 1
    if result.best_epoch == len(scores):
        assert all(torch.equal(result.best_state[k], result.last_state[k]) for k in result.best_state)


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
    from dhat.methods.base import StepOutput, TrainingMethod

    class ExplodesInEpochTwo(TrainingMethod):
        name = "explodes"

        def objective(self, model, batch):
            logits = model(batch.x)
            loss = torch.nn.functional.cross_entropy(logits, batch.y)
            if batch.epoch == 1:
                loss = loss * float("nan")
            return StepOutput(loss=loss, logits=logits)

    train, val = _tiny_sets()
    result = train_model(build_model("small_cnn", num_classes=3, width=4), ExplodesInEpochTwo(None), train, val, _config(epochs=4))
    assert result.diverged_epoch == 2
    assert len(result.history) == 1 and result.best_epoch == 1
    assert all(torch.isfinite(v).all() for v in result.best_state.values() if v.is_floating_point())
