"""The training engine: SGD with step decay, tensor-side augmentation, per-epoch validation.

Kedro-free: give it a model, a method from :mod:`dhat.methods` and the data as
:class:`~dhat.tensors.DeviceImageSet`; it returns the best and last weights and
a per-epoch history.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dhat.attacks import batchnorm_mode, pgd
from dhat.data.loading import TrainingSet
from dhat.engine.augment import augment_batch
from dhat.engine.distributed import Distributed, data_parallel, shard
from dhat.engine.precision import autocast, make_scaler
from dhat.engine.recipe import TrainingConfig
from dhat.engine.resume import ResumeSettings, capture_rng, load_state, restore_rng, save_state
from dhat.methods.base import Batch, EpochContext, TrainingMethod

__all__ = ["TrainingResult", "train_model", "seed_everything", "evaluate_clean_and_pgd"]

logger = logging.getLogger(__name__)

@dataclass
class TrainingResult:
    """Weights of the selected and the last epoch, with the per-epoch history."""

    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]]
    diverged_epoch: int | None = None


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def _clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(1) == y).sum())


def evaluate_clean_and_pgd(
    model: nn.Module, data: TrainingSet, eps: float, step_size: float, steps: int, batch_size: int
) -> tuple[float, float]:
    """Clean and PGD accuracy (percent) in eval mode, fp32; used for checkpoint selection."""
    clean = robust = 0
    with batchnorm_mode(model, "eval"):
        for start in range(0, len(data), batch_size):
            x = data.float_images(slice(start, start + batch_size))
            y = data.labels[start : start + batch_size]
            clean += _clean_correct(model, x, y)
            if steps > 0:
                x_adv = pgd(model, x, y, eps, step_size, steps, start="uniform")
                robust += _clean_correct(model, x_adv, y)
    n = max(len(data), 1)
    return 100.0 * clean / n, (100.0 * robust / n if steps > 0 else float("nan"))


def _shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's index batches of a fresh permutation of ``range(n)``, drawn from ``generator``.

    A batch of one breaks batch-norm in train mode, so a remainder of one is folded
    into the previous batch.
    """
    order = torch.randperm(n, device=generator.device, generator=generator)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and batches[-1].numel() < 2:
        batches[-2] = torch.cat([batches[-2], batches.pop()])
    return batches


@dataclass
class _StateParts:
    """What a resumable training state is made of, besides the history and the best checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    method: TrainingMethod
    data_rng: torch.Generator
    scaler: torch.amp.GradScaler | None = None
    distributed: Distributed | None = None

    def capture(self, epochs_done: int, history: list[dict[str, float]], best: tuple[float, int, Any]) -> dict[str, Any]:
        """The state to save; under data parallelism a collective call (rank 0 gathers every rank's random state)."""
        rng = capture_rng(self.data_rng)
        ranks = None if self.distributed is None else self.distributed.gather(rng)
        return {
            "epoch": epochs_done, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
            "rng": rng, "rng_ranks": ranks, "history": history, "best_score": best[0], "best_epoch": best[1],
            "best_state": best[2], "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    def resume(self, settings: ResumeSettings | None, label: str, epochs: int, fresh: tuple[Any, ...]) -> tuple[Any, ...]:
        """Restore a saved state of this run if there is one (see :func:`load_state`); else return ``fresh``."""
        state = load_state(settings, label) if settings is not None else None
        if state is None:
            return fresh
        restored = self.restore(state)
        if self.distributed is None or self.distributed.is_main:
            logger.info("%s: resuming after epoch %d of %d from %s", label, restored[0], epochs, settings.path)
        return restored

    def restore(self, state: Mapping[str, Any]) -> tuple[int, list[dict[str, float]], tuple[float, int, Any]]:
        """Load ``state`` into the parts; returns the epochs done, the history and the best (score, epoch, weights)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"], self.model)
        ranks = state.get("rng_ranks")
        rank = 0 if self.distributed is None else self.distributed.rank
        restore_rng(ranks[rank] if ranks else state["rng"], self.data_rng)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        best = (float(state["best_score"]), int(state["best_epoch"]), state["best_state"])
        return int(state["epoch"]), list(state["history"]), best


#: Steps between two reads of the running loss for the progress bar (each read waits for the device).
PROGRESS_EVERY = 10


def _train_epoch(  # noqa: PLR0913 - the loop's state, passed explicitly
    model: nn.Module,
    method: TrainingMethod,
    optimizer: torch.optim.Optimizer,
    train_set: TrainingSet,
    config: TrainingConfig,
    data_rng: torch.Generator,
    epoch: int,
    label: str,
    distributed: Distributed | None = None,
) -> dict[str, float] | None:
    """One epoch of optimiser steps; the sample-weighted means of the loss and its parts, and train accuracy.

    The sums stay on the device and are read once at the end of the epoch (and every
    :data:`PROGRESS_EVERY` steps when the progress bar is shown), so a step never waits
    for the device. Returns ``None`` when the loss became non-finite during the epoch.
    With ``distributed``, each batch (order and crops drawn whole, as in one process) is
    split between the ranks and the epoch's means are over every rank's images.
    """
    batches = _shuffled_batches(len(train_set), config.batch_size, data_rng)
    device = train_set.device
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    show = config.progress and (distributed is None or distributed.is_main)
    bar = tqdm(train_set.epoch_batches(batches, method.needs_masks), total=len(batches),
               desc=f"{label} epoch {epoch + 1}/{config.epochs}", leave=False, disable=not show)
    for step, (whole, images, maps) in enumerate(bar, start=1):
        x, masks = augment_batch(images, maps, config, generator=data_rng)
        # This rank's slice of the batch (views), its crops drawn for the whole of it; the batch itself in one process.
        index, x = shard(whole, distributed), shard(x, distributed)
        masks = None if masks is None else shard(masks, distributed)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        batch = Batch(x=x, y=train_set.labels[index], indices=index, masks=masks, epoch=epoch, num_epochs=config.epochs)
        with autocast(device, config.precision):
            output = method.train_step(model, optimizer, batch)
        size = index.numel()
        for name, value in {"loss": output.loss, **output.parts}.items():
            weighted = value.detach().double() * size
            sums[name] = sums[name] + weighted if name in sums else weighted
        correct += (output.logits.detach().argmax(1) == batch.y).sum()
        seen += size
        if show and step % PROGRESS_EVERY == 0:
            bar.set_postfix(loss=f"{float(sums['loss']) / seen:.3f}")
    if distributed is not None:
        sums = {name: distributed.all_reduce_sum(total) for name, total in sums.items()}
        correct = distributed.all_reduce_sum(correct)
        seen = int(distributed.all_reduce_sum(torch.tensor(seen, device=device)))
    values = {name: float(total) / max(seen, 1) for name, total in sums.items()}  # the epoch's one read
    if not math.isfinite(values.get("loss", 0.0)):
        return None
    return {**values, "train_acc": 100.0 * int(correct) / max(seen, 1)}


def _optimiser(model: nn.Module, config: TrainingConfig) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with momentum and weight decay, and its step-decay schedule."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), gamma=config.lr_gamma)


def _place(model: nn.Module, device: torch.device, config: TrainingConfig, distributed: Distributed | None) -> nn.Module:
    """``model`` on ``device`` (SyncBatchNorm layers for data-parallel runs that ask for them; channels-last)."""
    model.to(device)
    if distributed is not None and config.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _log_epoch(label: str, config: TrainingConfig, row: Mapping[str, float]) -> None:
    logger.info(
        "%s epoch %d/%d: loss %.4f, train acc %.1f%%, val clean %.1f%%, val PGD-%d %.1f%% (%.1fs)",
        label, row["epoch"], config.epochs, row["loss"], row["train_acc"], row["val_clean"], config.val_steps,
        row["val_pgd10"], row["epoch_seconds"],
    )


def _synchronise_ranks(method: TrainingMethod, model: nn.Module, distributed: Distributed) -> None:
    """After an epoch's steps: the per-sample state each rank kept for its own images, rank 0's batch-norm
    statistics, and one random state for the epoch-end decisions and the validation, so every rank takes the same."""
    method.synchronise(distributed)
    distributed.broadcast_buffers(model)
    distributed.broadcast_random_state()


def train_model(
    model: nn.Module,
    method: TrainingMethod,
    train_set: TrainingSet,
    val_set: TrainingSet,
    config: TrainingConfig,
    description: str | None = None,
    resume: ResumeSettings | None = None,
    distributed: Distributed | None = None,
) -> TrainingResult:
    """Train ``model`` in place with ``method``.

    Each epoch: shuffle, augment (crop + flip, identical for images and masks),
    one optimiser step per batch, then clean and PGD accuracy on ``val_set`` in
    eval mode. The checkpoint with the best ``config.select_on`` is kept, as is
    the last one.

    With ``resume``, the whole training state is written atomically every
    ``resume.every`` epochs (and after the last), and a state of the same
    configuration found at the start is continued from its last completed epoch
    (:mod:`dhat.engine.resume`): the result equals that of an uninterrupted run.

    With ``distributed`` (inside a worker of :func:`dhat.engine.distributed.launch`), this rank
    trains on its share of every batch through DistributedDataParallel; every rank ends
    with the same weights, history and selected checkpoint, and rank 0 alone writes the
    resumable state (see :mod:`dhat.engine.distributed`).

    Raises:
        ValueError: when the method needs masks and ``train_set`` has none.
    """
    if method.needs_masks and not train_set.has_masks:
        raise ValueError(
            f"method {method.name!r} needs attention masks for the training images: "
            "run the mask_precomputation pipeline first"
        )
    seed_everything(config.seed)
    device = train_set.device
    # Data order and augmentation draw from their own generator: every method trained with the same
    # seed sees the same batches and crops (common random numbers), whatever randomness its attacks use,
    # which makes paired comparisons between methods less noisy.
    data_rng = torch.Generator(device=device).manual_seed(config.seed)
    model = _place(model, device, config, distributed)
    optimizer, scheduler = _optimiser(model, config)
    label = description or method.name
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = -math.inf, 0, _cpu_state(method.evaluation_model(model))
    diverged_epoch: int | None = None
    scaler = make_scaler(device, config.precision)
    method.use_loss_scaler(scaler)
    trained = data_parallel(model, distributed)  # shares the parameters of ``model``
    trained = torch.compile(trained) if config.compile else trained
    parts = _StateParts(model, optimizer, scheduler, method, data_rng, scaler, distributed)
    main = distributed is None or distributed.is_main
    start_epoch, history, (best_score, best_epoch, best_state) = parts.resume(
        resume, label, config.epochs, (0, history, (best_score, best_epoch, best_state)))
    for epoch in range(start_epoch, config.epochs):
        model.train()
        context = EpochContext(epoch, config.epochs, model, train_set, val_set, history)
        method.on_epoch_start(context)
        started = time.perf_counter()
        averages = _train_epoch(trained, method, optimizer, train_set, config, data_rng, epoch, label, distributed)
        if distributed is not None:
            _synchronise_ranks(method, model, distributed)
        if averages is None:
            diverged_epoch = epoch + 1
            # The weights are no longer finite: keep the best checkpoint so far and stop, loudly.
            logger.error(
                "%s: the training loss became non-finite in epoch %d; training stopped. The selected checkpoint "
                "(epoch %d) is kept; check the method's loss weights (an unbounded term such as FLOE 'paper' "
                "can diverge).", label, diverged_epoch, best_epoch,
            )
            break
        method.on_epoch_end(context)
        evaluated = method.evaluation_model(model)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - started
        val_clean, val_pgd = evaluate_clean_and_pgd(
            evaluated, val_set, float(config.val_eps), float(config.val_step_size), config.val_steps, config.val_batch_size
        )
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            **averages,
            "val_clean": val_clean,
            "val_pgd10": val_pgd,
            "epoch_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - started - train_seconds,
        }
        history.append(row)
        score = row[config.select_on]
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch + 1, _cpu_state(evaluated)
        if main:
            _log_epoch(label, config, row)
        if resume is not None and resume.every and ((epoch + 1) % resume.every == 0 or epoch + 1 == config.epochs):
            captured = parts.capture(epoch + 1, history, (best_score, best_epoch, best_state))  # collective
            if main:
                save_state(resume, captured)
    return TrainingResult(
        best_state=best_state,
        last_state=_cpu_state(method.evaluation_model(model)),
        best_epoch=best_epoch,
        history=copy.deepcopy(history),
        diverged_epoch=diverged_epoch,
    )
