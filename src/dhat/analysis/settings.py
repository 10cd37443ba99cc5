"""The ``analysis`` parameter section, validated into a dataclass whose defaults equal ``conf/base``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dhat.analysis.attention_shift import AttentionShiftConfig
from dhat.analysis.radius import RadiusSweepConfig
from dhat.config import dataclass_from_dict

__all__ = ["AnalysisSettings"]


@dataclass(frozen=True)
class AnalysisSettings:
    """``analysis``: the attention-shift and robustness-vs-radius analyses of every trained method."""

    attention_shift: AttentionShiftConfig = field(default_factory=AttentionShiftConfig)
    robustness_vs_eps: RadiusSweepConfig = field(default_factory=RadiusSweepConfig)
    progress: bool = True

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> AnalysisSettings:
        """Validate the section; unknown keys and bad values raise ``ValueError`` naming the key."""
        values = dict(params or {})
        values["attention_shift"] = AttentionShiftConfig.from_dict(values.get("attention_shift"))
        values["robustness_vs_eps"] = RadiusSweepConfig.from_dict(values.get("robustness_vs_eps"))
        return dataclass_from_dict(cls, values, "analysis")
