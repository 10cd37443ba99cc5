"""Defaults live in one place: every value ``conf/base`` states equals the dataclass default it fills."""

from __future__ import annotations

import dataclasses

import pytest

from dhat.analysis import AnalysisSettings
from dhat.engine.recipe import TrainingConfig
from dhat.evaluation import AttackSuiteConfig
from dhat.evaluation.sections import EvaluationSettings, TransferSettings
from dhat.stats.study import StudySettings
from dhat.stats.sweeps import MaskSourceSettings, SensitivitySettings
from tests.pipelines.memory import load_parameters

BASE = load_parameters("base")


def _as_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_as_plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("section", "build", "default"),
    [
        ("training", TrainingConfig.from_dict, TrainingConfig().validate()),
        ("evaluation.suite", AttackSuiteConfig.from_dict, AttackSuiteConfig()),
        ("evaluation", EvaluationSettings.from_dict, EvaluationSettings()),
        ("transfer", TransferSettings.from_dict, TransferSettings()),
        ("analysis", AnalysisSettings.from_dict, AnalysisSettings()),
        ("sensitivity", SensitivitySettings.from_dict, SensitivitySettings()),
        ("mask_sources", MaskSourceSettings.from_dict, MaskSourceSettings()),
        ("study", StudySettings.from_dict, StudySettings()),
    ],
)
def test_base_yaml_restates_the_dataclass_defaults(section, build, default):
    values = BASE
    for part in section.split("."):
        values = values[part]
    assert _as_plain(build(values)) == _as_plain(default)
