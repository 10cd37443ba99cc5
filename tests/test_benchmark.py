"""The benchmark command (dhat.benchmark): medians of interleaved timed steps and the ratio table."""

from types import SimpleNamespace

import pytest
import torch

import dhat.benchmark as benchmark_module
from dhat.benchmark import benchmark_methods, main


def test_main_prints_each_method_with_its_ratio_to_pgd_at(capsys, monkeypatch):
    calls = []

    def fake_benchmark(methods, model_name, image_size, num_classes, batch_size, steps, warmup, device, model_options=None):
        calls.append((list(methods), model_name, image_size, num_classes, batch_size, steps, warmup, model_options))
        return {"pgd_at": 0.02, "natural": 0.005, "dhat": 0.05, "fsr": 0.03}

    monkeypatch.setattr(benchmark_module, "benchmark_methods", fake_benchmark)
    main(["--methods", "natural,dhat,fsr", "--steps", "3", "--warmup", "1", "--width", "2", "--image-size", "8", "--batch-size", "4"])
    # PGD-AT is always added, first, as the reference of the ratio column.
    assert calls == [(["pgd_at", "natural", "dhat", "fsr"], "small_cnn", 8, 10, 4, 3, 1, {"width": 2})]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model small_cnn, 8x8, batch 4,") and "median of 3 interleaved steps after 1 warm-up" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["pgd_at", "0.0200", "1.00"],
        ["natural", "0.0050", "0.25"],
        ["dhat", "0.0500", "2.50"],
        ["fsr", "0.0300", "1.50"],
    ]


def test_benchmark_reports_the_median_of_interleaved_steps_after_warmup(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    durations = {"natural": [100.0, 3.0, 1.0, 8.0], "pgd_at": [100.0, 10.0, 40.0, 20.0]}  # first: the warm-up step
    order, batches = [], []

    class Stub:
        def __init__(self, name):
            self.name, self.calls = name, 0

        def model_wrapper(self):
            return None

        def train_step(self, model, optimizer, batch):
            order.append(self.name)
            batches.append(batch)
            clock.now += durations[self.name][self.calls]
            self.calls += 1

    monkeypatch.setattr(benchmark_module, "create_method", Stub)
    monkeypatch.setattr(benchmark_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    seconds = benchmark_methods(["natural", "pgd_at"], image_size=8, batch_size=4, steps=3, warmup=1, model_options={"width": 2})
    assert seconds == {"natural": 3.0, "pgd_at": 20.0}  # medians (the means would be 4 and 23.3)
    assert order == ["natural", "pgd_at"] * 4  # interleaved rounds
    # Every step sees the same seeded batch with masks.
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    assert all(torch.equal(b.x, x) and b.masks.shape == (4, 8, 8) for b in batches)


@pytest.mark.usefixtures("single_thread")
def test_benchmark_runs_real_methods_and_wrapped_models():
    seconds = benchmark_methods(["pgd_at", "natural", "dhat", "fsr"], image_size=8, batch_size=4, steps=1, warmup=0, model_options={"width": 2})
    assert list(seconds) == ["pgd_at", "natural", "dhat", "fsr"]
    assert all(value > 0 for value in seconds.values())


def test_benchmark_rejects_unknown_methods_and_bad_counts(capsys):
    with pytest.raises(SystemExit):
        main(["--methods", "natural,not_a_method"])
    assert "--methods: unknown not_a_method; available:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps"):
        benchmark_methods(["pgd_at"], steps=0)
    with pytest.raises(ValueError, match="warmup"):
        benchmark_methods(["pgd_at"], warmup=-1)
