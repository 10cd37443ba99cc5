"""Time per training step of each method, side by side, relative to PGD-AT.

    python -m dhat.benchmark --methods natural,pgd_at,uiat,dhat --steps 20
    dhat-benchmark --model resnet18 --image-size 32 --batch-size 128 --device cuda

Methods are timed in interleaved rounds (one step of each method per round,
after warm-up steps), so a change in machine load affects every method alike.
Each step is a full ``train_step`` (inner attacks, forward, backward, SGD) on
one fixed random batch with random attention masks; the median over rounds is
reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from dhat.config import resolve_device
from dhat.methods import Batch, available_methods, create_method, wrap_model
from dhat.models import build_model

__all__ = ["benchmark_methods", "main"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_methods(
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
) -> dict[str, float]:
    """Median seconds per training step of each method (same model size, batch and device)."""
    if steps < 1 or warmup < 0:
        raise ValueError("steps must be >= 1 and warmup >= 0")
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    x = torch.rand(batch_size, 3, image_size, image_size, device=torch_device)
    y = torch.randint(0, num_classes, (batch_size,), device=torch_device)
    masks = torch.rand(batch_size, image_size, image_size, device=torch_device)
    runners = {}
    for name in methods:
        method = create_method(name)
        model = build_model(model_name, num_classes, **(model_options or {}))
        if method.model_wrapper():
            model = wrap_model(model, method.model_wrapper())  # e.g. FSR's extra modules
        model = model.to(torch_device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        runners[name] = (method, model, optimizer)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(warmup + steps):
        for name, (method, model, optimizer) in runners.items():
            batch = Batch(x=x, y=y, indices=torch.arange(batch_size, device=torch_device), masks=masks)
            _synchronize(torch_device)
            started = time.perf_counter()
            method.train_step(model, optimizer, batch)
            _synchronize(torch_device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


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
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; available: {', '.join(available_methods())}")
    if "pgd_at" not in methods:
        methods.insert(0, "pgd_at")  # the reference of the ratio column
    options = {"width": args.width} if args.width else {}
    seconds = benchmark_methods(
        methods, args.model, args.image_size, args.num_classes, args.batch_size, args.steps, args.warmup, args.device,
        model_options=options,
    )
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"model {args.model}, {args.image_size}x{args.image_size}, batch {args.batch_size}, {name}, "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up")
    print(f"{'method':<16}{'s/step':>10}{'x PGD-AT':>10}")
    for method, value in seconds.items():
        print(f"{method:<16}{value:>10.4f}{value / seconds['pgd_at']:>10.2f}")


if __name__ == "__main__":
    main()
