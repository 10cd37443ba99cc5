"""The benchmark command runs every method side by side and reports ratios to PGD-AT."""

import pytest

from dhat.benchmark import benchmark_methods, main


def test_benchmark_prints_each_method_and_its_ratio(capsys):
    main(["--methods", "natural,dhat,fsr", "--steps", "1", "--warmup", "0", "--width", "2", "--image-size", "8", "--batch-size", "4"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert set(rows) == {"pgd_at", "natural", "dhat", "fsr"}  # PGD-AT is always added as the reference
    assert float(rows["pgd_at"][1]) == pytest.approx(1.0)
    assert all(float(seconds) > 0 for seconds, _ in rows.values())


def test_benchmark_rejects_unknown_methods_and_bad_counts():
    with pytest.raises(SystemExit):
        main(["--methods", "not_a_method"])
    with pytest.raises(ValueError, match="steps"):
        benchmark_methods(["pgd_at"], steps=0)
