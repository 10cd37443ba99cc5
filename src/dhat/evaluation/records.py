"""The per-image record of an evaluation: which test images were scored, and which each attack got right.

``{"positions": int64 [n], "<attack>": bool [n], ...}``: ``positions`` are the indices of the
scored images in the test split, one flag array per attack (``clean`` included) in the same
order; an attack run on a subset of them (AutoAttack on the CPU default) has its own
``<attack>_positions``. The protocol (:mod:`dhat.evaluation.protocol`) writes it; paired
comparisons and the study's aggregation read it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["POSITIONS_SUFFIX", "attack_names", "is_positions", "positions_of"]


#: A per-image record holds ``positions`` (test-image indices of its flags) and, for an attack run
#: on a subset of them (AutoAttack on the CPU default), ``<attack>_positions``.
POSITIONS_SUFFIX = "_positions"


def is_positions(key: str) -> bool:
    """Whether ``key`` of a per-image record holds test-image indices rather than correctness flags."""
    return key == "positions" or key.endswith(POSITIONS_SUFFIX)


def attack_names(record: Mapping[str, np.ndarray]) -> list[str]:
    """The attacks (with ``clean``) a per-image record holds flags for."""
    return [key for key in record if not is_positions(key)]


def positions_of(record: Mapping[str, np.ndarray], attack: str) -> np.ndarray:
    """Test-image indices of ``record[attack]``."""
    return np.asarray(record.get(f"{attack}{POSITIONS_SUFFIX}", record["positions"]))
