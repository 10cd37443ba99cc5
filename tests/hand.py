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


def cos2(a, b):
    """Squared cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot**2 / (sum(x * x for x in a) * sum(y * y for y in b))


def one_hot(label, size):
    return [1.0 if k == label else 0.0 for k in range(size)]


def linear_logits(weight, bias, x):
    """``W x + b`` for a weight given as a list of rows."""
    return [sum(w * v for w, v in zip(row, x, strict=True)) + b for row, b in zip(weight, bias, strict=True)]


def linear_input_gradient(weight, logit_gradient):
    """``W^T g``: the input gradient of a linear model given the loss gradient ``g`` w.r.t. its logits."""
    return [sum(g * row[j] for g, row in zip(logit_gradient, weight, strict=True)) for j in range(len(weight[0]))]


def ce_logit_gradient(row, label):
    """d CE / d logits = softmax - one-hot."""
    return [p - t for p, t in zip(softmax(row), one_hot(label, len(row)), strict=True)]
