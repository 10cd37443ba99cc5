"""Plain-Python reference computations for tests (no torch: an independent implementation)."""

import math


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    """KL(p || q) of two probability vectors."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def ce(row, label):
    """Cross-entropy of one logit row for the true class ``label``."""
    return -math.log(softmax(row)[label])
