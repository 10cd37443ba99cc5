"""Robustness evaluation: the attack suite, gradient-masking sanity checks, robust gap, background bias.

Every number reported here is measured the same way: model in eval mode, fp32,
autocast off, inputs in pixel scale ``[0, 1]``, processed in batches of
``batch_size``. Accuracies are percentages.

Randomness: batch ``i`` of every randomly started attack is seeded with
``seed + i`` right before it runs, so PGD and CW start from the same point, a
run is reproducible for a given ``(seed, batch_size)``, and the attacks do not
depend on which other attacks ran. The global random state of the caller is
restored afterwards.

The attack suite (docs/design.md, "The evaluation protocol"): clean, FGSM, PGD-k (one run of the
longest PGD gives the shorter ones as its intermediate iterates), CW-inf (PGD
on the logit margin) and AutoAttack through the ``pyautoattack`` package.
"""

from dhat.evaluation import gradient_attacks  # noqa: F401 - registers FGSM, PGD-k, CW-inf and AutoAttack
from dhat.evaluation.autoattack import run_autoattack, run_square
from dhat.evaluation.bias import background_bias_metrics
from dhat.evaluation.config import AUTOATTACK_STANDARD, AttackSuiteConfig
from dhat.evaluation.gap import robust_gap
from dhat.evaluation.inference import accuracy, evaluation_context, predict
from dhat.evaluation.protocol import Evaluation, evaluate_checkpoint
from dhat.evaluation.sanity import sanity_checks
from dhat.evaluation.suite import adversarial_batches, evaluate_attacks, scalar_metrics
from dhat.evaluation.transfer import transfer_attack, transfer_matrix

__all__ = [
    "AUTOATTACK_STANDARD",
    "AttackSuiteConfig",
    "Evaluation",
    "accuracy",
    "adversarial_batches",
    "background_bias_metrics",
    "evaluate_attacks",
    "evaluate_checkpoint",
    "evaluation_context",
    "predict",
    "robust_gap",
    "run_autoattack",
    "run_square",
    "sanity_checks",
    "scalar_metrics",
    "transfer_attack",
    "transfer_matrix",
]
