"""The benchmark command (dhat.benchmark): medians of interleaved timed steps and the ratio table."""

from types import SimpleNamespace

import pytest
import torch

import dhat.benchmark as benchmark_module
from dhat.benchmark import StepTiming, benchmark_methods, benchmark_table, main


def test_main_prints_each_method_with_its_rate_ratio_and_projected_epoch(capsys, monkeypatch):
    calls = []

    def fake_benchmark(methods, model_name, image_size, num_classes, batch_size, steps, warmup, device, *args, **kwargs):
        calls.append((list(methods), model_name, image_size, num_classes, batch_size, steps, warmup,
                      kwargs["model_options"], kwargs["precision"]))
        return {"pgd_at": StepTiming(0.02), "natural": StepTiming(0.005), "dhat": StepTiming(0.05, 3 * 2**20),
                "fsr": StepTiming(0.03)}

    monkeypatch.setattr(benchmark_module, "benchmark_methods", fake_benchmark)
    main(["--methods", "natural,dhat,fsr", "--steps", "3", "--warmup", "1", "--width", "2", "--image-size", "8",
          "--batch-size", "4", "--precision", "bf16"])
    # PGD-AT is always added, first, as the reference of the ratio column.
    assert calls == [(["pgd_at", "natural", "dhat", "fsr"], "small_cnn", 8, 10, 4, 3, 1, {"width": 2}, "bf16")]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model small_cnn, 8x8, batch 4, bf16,") and "median of 3 interleaved steps" in lines[0]
    rows = [line.split() for line in lines[2:]]
    # 50,000 images in batches of 4: 12,500 steps per projected epoch.
    assert rows == [
        ["pgd_at", "0.0200", "200.0", "1.00", "n/a", "250.0"],
        ["natural", "0.0050", "800.0", "0.25", "n/a", "62.5"],
        ["dhat", "0.0500", "80.0", "2.50", "3", "625.0"],
        ["fsr", "0.0300", "133.3", "1.50", "n/a", "375.0"],
    ]


def test_benchmark_table_needs_its_reference_and_rounds_the_epoch_up():
    table = benchmark_table({"pgd_at": StepTiming(0.5)}, batch_size=128, dataset_size=1000)
    assert table.iloc[0]["epoch_s"] == 8 * 0.5  # ceil(1000 / 128) = 8 steps
    with pytest.raises(ValueError, match="pgd_at"):
        benchmark_table({"dhat": StepTiming(1.0)}, batch_size=4)


def test_benchmark_reports_the_median_of_interleaved_steps_after_warmup(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    durations = {"natural": [100.0, 3.0, 1.0, 8.0], "pgd_at": [100.0, 10.0, 40.0, 20.0]}  # first: the warm-up step
    order, batches = [], []

    class Stub:
        def __init__(self, name):
            self.name, self.calls = name, 0

        def model_wrapper(self):
            return None

        def use_loss_scaler(self, scaler):
            assert scaler is None  # fp32

        def train_step(self, model, optimizer, batch):
            order.append(self.name)
            batches.append(batch)
            clock.now += durations[self.name][self.calls]
            self.calls += 1

    monkeypatch.setattr(benchmark_module, "create_method", Stub)
    monkeypatch.setattr(benchmark_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    seconds = benchmark_methods(["natural", "pgd_at"], image_size=8, batch_size=4, steps=3, warmup=1, model_options={"width": 2})
    assert {k: v.seconds for k, v in seconds.items()} == {"natural": 3.0, "pgd_at": 20.0}  # medians, not means (4, 23.3)
    assert order == ["natural", "pgd_at"] * 4  # interleaved rounds
    # Every step sees the same seeded batch with masks.
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    assert all(torch.equal(b.x, x) and b.masks.shape == (4, 8, 8) for b in batches)


@pytest.mark.usefixtures("single_thread")
def test_benchmark_runs_real_methods_and_wrapped_models():
    for precision in ("fp32", "bf16"):
        seconds = benchmark_methods(["pgd_at", "natural", "dhat", "fsr"], image_size=8, batch_size=4, steps=1,
                                    warmup=0, model_options={"width": 2}, precision=precision)
        assert list(seconds) == ["pgd_at", "natural", "dhat", "fsr"]
        assert all(value.seconds > 0 and value.peak_bytes is None for value in seconds.values())  # no CUDA here


def test_benchmark_rejects_unknown_methods_and_bad_counts(capsys):
    with pytest.raises(SystemExit):
        main(["--methods", "natural,not_a_method"])
    assert "--methods: unknown not_a_method; available:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps"):
        benchmark_methods(["pgd_at"], steps=0)
    with pytest.raises(ValueError, match="warmup"):
        benchmark_methods(["pgd_at"], warmup=-1)
