"""Time per training step of each method, side by side, relative to PGD-AT.

    python -m dhat.benchmark --methods natural,pgd_at,uiat,dhat --steps 20
    dhat-benchmark --model resnet18 --image-size 32 --batch-size 128 --device cuda --precision bf16

Methods are timed in interleaved rounds (one step of each method per round,
after warm-up steps), so a change in machine load affects every method alike.
Each step is a full ``train_step`` (inner attacks, forward, backward, SGD) on
one fixed random batch with random attention masks; the median over rounds is
reported, with images per second, peak device memory (CUDA), the ratio to PGD-AT
and the projected time of one CIFAR-10 epoch (50,000 images) at that rate.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from dhat.config import resolve_device
from dhat.engine.precision import PRECISIONS, autocast, make_scaler
from dhat.methods import Batch, available_methods, create_method, wrap_model
from dhat.models import build_model

__all__ = ["CIFAR10_TRAIN_IMAGES", "StepTiming", "benchmark_methods", "benchmark_table", "main"]

#: Training images of CIFAR-10: the projected epoch time is this many images at the measured rate.
CIFAR10_TRAIN_IMAGES = 50_000


@dataclass(frozen=True)
class StepTiming:
    """Median seconds per training step of one method, and its peak device memory (CUDA only)."""

    seconds: float
    peak_bytes: int | None = None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def benchmark_methods(  # noqa: PLR0913 - one keyword per benchmark knob
    methods: Sequence[str],
    model_name: str = "small_cnn",
    image_size: int = 16,
    num_classes: int = 10,
    batch_size: int = 128,
    steps: int = 10,
    warmup: int = 2,
    device: str = "auto",
    seed: int = 0,
    model_options: dict | None = None,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,  # noqa: A002 - the training switch's own name (training.compile)
) -> dict[str, StepTiming]:
    """Median seconds per training step of each method (same model size, batch, device and precision).

    ``precision`` is applied as in training (:mod:`dhat.engine.precision`: autocast, and a gradient
    scaler for fp16); ``compile`` runs each step through ``torch.compile`` of the model, as
    ``training.compile`` does (the warm-up steps absorb the compilation). On CUDA the peak
    memory of each method's steps is recorded.
    """
    if steps < 1 or warmup < 0:
        raise ValueError("steps must be >= 1 and warmup >= 0")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    x = torch.rand(batch_size, 3, image_size, image_size, device=torch_device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=torch_device)
    masks = torch.rand(batch_size, image_size, image_size, device=torch_device)
    runners = {}
    for name in methods:
        method = create_method(name)
        model = build_model(model_name, num_classes, **(model_options or {}))
        if method.model_wrapper():
            model = wrap_model(model, method.model_wrapper())  # e.g. FSR's extra modules
        model = model.to(torch_device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        method.use_loss_scaler(make_scaler(torch_device, precision))
        runners[name] = (method, torch.compile(model) if compile else model, optimizer)
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, int | None] = dict.fromkeys(methods)
    for round_index in range(warmup + steps):
        for name, (method, model, optimizer) in runners.items():
            batch = Batch(x=x, y=y, indices=torch.arange(batch_size, device=torch_device), masks=masks)
            _synchronize(torch_device)
            if torch_device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(torch_device)
            started = time.perf_counter()
            with autocast(torch_device, precision):
                method.train_step(model, optimizer, batch)
            _synchronize(torch_device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - started)
                peak = _peak_bytes(torch_device)  # None on CPU
                if peak is not None:
                    peaks[name] = max(peaks[name] or 0, peak)
    return {name: StepTiming(statistics.median(values), peaks[name]) for name, values in times.items()}


def benchmark_table(results: Mapping[str, StepTiming], batch_size: int,
                    dataset_size: int = CIFAR10_TRAIN_IMAGES) -> pd.DataFrame:
    """One row per method: s/step, images/s, ratio to PGD-AT, peak memory (MiB), projected epoch seconds.

    The projected epoch is ``ceil(dataset_size / batch_size)`` steps at the measured median
    (the optimisation steps only: validation and data loading come on top).
    """
    if "pgd_at" not in results:
        raise ValueError("the results must include pgd_at, the reference of the ratio column")
    reference = results["pgd_at"].seconds
    steps_per_epoch = math.ceil(dataset_size / batch_size)
    return pd.DataFrame([{
        "method": name,
        "s_per_step": timing.seconds,
        "images_per_s": batch_size / timing.seconds,
        "x_pgd_at": timing.seconds / reference,
        "peak_mib": None if timing.peak_bytes is None else timing.peak_bytes / 2**20,
        "epoch_s": steps_per_epoch * timing.seconds,
    } for name, timing in results.items()])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="natural,pgd_at,uiat,dhat", help="comma-separated registry names")
    parser.add_argument("--model", default="small_cnn", help="small_cnn | resnet18 | wrn28_10")
    parser.add_argument("--width", type=int, default=None, help="small_cnn width")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (as training.compile)")
    parser.add_argument("--dataset-size", type=int, default=CIFAR10_TRAIN_IMAGES,
                        help="training images of the projected epoch (CIFAR-10: 50000)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; available: {', '.join(available_methods())}")
    if "pgd_at" not in methods:
        methods.insert(0, "pgd_at")  # the reference of the ratio column
    options = {"width": args.width} if args.width else {}
    results = benchmark_methods(
        methods, args.model, args.image_size, args.num_classes, args.batch_size, args.steps, args.warmup, args.device,
        model_options=options, precision=args.precision, channels_last=args.channels_last, compile=args.compile,
    )
    table = benchmark_table(results, args.batch_size, args.dataset_size)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    switches = "".join(s for s, on in ((", channels_last", args.channels_last), (", compiled", args.compile)) if on)
    print(f"model {args.model}, {args.image_size}x{args.image_size}, batch {args.batch_size}, {args.precision}{switches}, {name}, "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up")
    print(f"{'method':<16}{'s/step':>10}{'img/s':>10}{'x PGD-AT':>10}{'peak MiB':>10}"
          f"{f'epoch s ({args.dataset_size})':>22}")
    for row in table.itertuples():
        peak = "n/a" if row.peak_mib is None or math.isnan(row.peak_mib) else f"{row.peak_mib:.0f}"
        print(f"{row.method:<16}{row.s_per_step:>10.4f}{row.images_per_s:>10.1f}{row.x_pgd_at:>10.2f}{peak:>10}"
              f"{row.epoch_s:>22.1f}")


if __name__ == "__main__":
    main()
