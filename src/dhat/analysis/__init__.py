"""The paper's analyses as plain functions: attention under +-eps, robustness against the radius, training cost."""

from dhat.analysis.attention_shift import AttentionShiftConfig, attention_region, attention_shift, region_iou
from dhat.analysis.cost import compute_cost_table
from dhat.analysis.radius import RadiusSweepConfig, robustness_vs_eps
from dhat.analysis.settings import AnalysisSettings

__all__ = [
    "AnalysisSettings",
    "AttentionShiftConfig",
    "RadiusSweepConfig",
    "attention_region",
    "attention_shift",
    "compute_cost_table",
    "region_iou",
    "robustness_vs_eps",
]
