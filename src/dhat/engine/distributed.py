"""Data-parallel training on one machine: worker processes from PyTorch's elastic launcher.

``training.devices: N`` (N > 1) makes :func:`dhat.engine.fitting.fit` start N worker processes
with :func:`torch.distributed.launcher.api.elastic_launch` (the engine behind
``torchrun --standalone``). Each worker joins a process group (NCCL on CUDA, one GPU per
worker; gloo on CPU), trains the same model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` on its shard of every batch, and
the launcher hands rank 0's result back to the caller (the Kedro node).

How the ranks stay one training run:

- Every rank draws the epoch's permutation and the crops of the *whole* batch from the
  same data generator, then keeps its contiguous slice: the union of the shards is the
  batch a single process would train on, with the same crops, and the generators never
  drift apart.
- DDP averages the gradients, so every optimiser step, and hence the weights, are the
  same on every rank.
- Per-sample method state that a rank updates only for its own images (SGLR's soft
  labels, CFA's class-wise accuracies) is combined after each epoch's steps by
  :meth:`dhat.methods.TrainingMethod.synchronise`.
- Before the epoch-end hooks and validation, rank 0's batch-norm buffers and random state
  are broadcast, so every rank validates the same weights with the same random starts and
  takes the same decisions (checkpoint selection, CFA's weight averaging).
- Rank 0 alone logs and writes the resumable state, which holds every rank's random state
  so that a resumed run continues each rank where it stopped.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Distributed", "launch", "shard", "data_parallel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> Distributed | None:
        """The initialised process group's view, or ``None`` in a single process."""
        if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
            return None
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (a new tensor; gloo needs it on the CPU for some dtypes)."""
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def broadcast_random_state(self) -> None:
        """Give every rank rank 0's torch random state (CPU, and this rank's GPU)."""
        states = [torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None]
        dist.broadcast_object_list(states, src=0)
        torch.set_rng_state(states[0])
        if states[1] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(states[1])

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) on every rank.

        DDP syncs them from rank 0 at the start of each forward, so the last forwards of an
        epoch leave each rank with its own; this makes validation and the saved weights agree.
        """
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (``None`` elsewhere)."""
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered


def shard(batch: torch.Tensor, context: Distributed | None) -> torch.Tensor:
    """This rank's contiguous slice of a batch tensor along its first dimension, a view
    (``torch.tensor_split``: sizes differ by at most one); the whole tensor in a single process."""
    if context is None:
        return batch
    return batch.tensor_split(context.world_size)[context.rank]


def data_parallel(model: nn.Module, context: Distributed | None) -> nn.Module:
    """``model`` in DistributedDataParallel in a process group of several ranks; itself otherwise.

    The wrapper shares the parameters of ``model``; attacks and losses call it like the model.
    """
    if context is None:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)  # buffers follow rank 0 at every forward


def _backend(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def _worker(entry: Callable[..., Any], device_type: str, log_level: int, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
    """Body of one worker process: join the group, run ``entry``, leave the group."""
    local_rank = int(os.environ["LOCAL_RANK"])
    # Spawned workers start without the parent's logging set-up; rank 0 logs the run (the others stay quiet).
    logging.basicConfig(level=log_level, format=f"[rank {os.environ['RANK']}] %(levelname)s %(name)s: %(message)s")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    # CPU workers share the machine's cores: one thread each avoids oversubscription.
    if device_type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    dist.init_process_group(backend=_backend(device_type))
    try:
        return entry(*args, **kwargs)
    finally:
        dist.destroy_process_group()


def launch(entry: Callable[..., Any], processes: int, device_type: str, *args: Any, **kwargs: Any) -> dict[int, Any]:
    """Run ``entry(*args, **kwargs)`` in ``processes`` worker processes on this machine; ``{rank: return value}``.

    ``entry`` must be a module-level function (workers are spawned and import it). On CUDA
    each worker takes GPU ``LOCAL_RANK``, so ``processes`` may not exceed the GPUs present.
    A failure in any worker stops all of them and raises with that worker's traceback.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # noqa: PLC0415 - only for N > 1

    if processes < 2:
        raise ValueError(f"launch needs at least 2 processes, got {processes}")
    if device_type == "cuda" and processes > torch.cuda.device_count():
        raise ValueError(f"training.devices={processes} but only {torch.cuda.device_count()} GPU(s) are visible")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=f"dhat-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
        start_method="spawn",
    )
    logger.info("Launching %d worker processes (%s backend)", processes, _backend(device_type))
    level = logging.getLogger("dhat").getEffectiveLevel()
    return elastic_launch(config, _worker)(entry, device_type, level, args, kwargs)
