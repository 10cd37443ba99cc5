"""Robustness evaluation: the attack suite, gradient-masking sanity checks, robust gap, background bias.

Every number reported here is measured the same way: model in eval mode, fp32,
autocast off, inputs in pixel scale ``[0, 1]``, processed in batches of
``batch_size``. Accuracies are percentages.

Randomness: batch ``i`` of every randomly started attack is seeded with
``seed + i`` right before it runs, so PGD and CW start from the same point, a
run is reproducible for a given ``(seed, batch_size)``, and the attacks do not
depend on which other attacks ran. The global random state of the caller is
restored afterwards.

The attack suite (DESIGN.md section 3): clean, FGSM, PGD-k (one run of the
longest PGD gives the shorter ones as its intermediate iterates), CW-inf (PGD
on the logit margin) and AutoAttack through the ``pyautoattack`` package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from dhat.attacks import (
    batchnorm_mode,
    cross_entropy_loss,
    cw_linf,
    fgsm,
    signed_gradient_attack,
)
from dhat.attention import foreground_iou, grad_cam_batched
from dhat.config import dataclass_from_dict, parse_pixel_value
from dhat.models import ImageClassifier

__all__ = [
    "AttackSuiteConfig",
    "AUTOATTACK_STANDARD",
    "predict",
    "accuracy",
    "evaluation_context",
    "adversarial_batches",
    "run_autoattack",
    "run_square",
    "evaluate_attacks",
    "scalar_metrics",
    "sanity_checks",
    "robust_gap",
    "background_bias_metrics",
]

logger = logging.getLogger(__name__)

#: Components of AutoAttack's standard version, in the order the package runs them.
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
_AUTOATTACK_NAMES = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")
_GRADIENT_FREE_AA = {"square"}


@dataclasses.dataclass(frozen=True)
class AttackSuiteConfig:
    """Settings of the attack suite, validated on construction.

    Attributes:
        eps: L-inf radius in pixel scale (8/255 for CIFAR).
        step_size: PGD and CW step (2/255).
        pgd_steps: PGD lengths reported; the longest is run once and the shorter
            ones are its intermediate iterates.
        cw_steps: iterations of CW-inf (PGD on the margin loss).
        fgsm: whether FGSM is part of the default suite.
        autoattack: whether AutoAttack is part of the default suite.
        autoattack_version: ``standard`` (APGD-CE, APGD-T, FAB-T, Square), ``plus``,
            ``rand`` or ``custom`` (then ``autoattack_attacks`` lists the components).
        autoattack_attacks: components for the ``custom`` version.
        autoattack_n_iter: APGD/FAB iterations; ``None`` keeps the package's 100.
            Anything else makes the run a *reduced* AutoAttack and is labelled so.
        autoattack_square_queries: Square query budget inside AutoAttack;
            ``None`` keeps the package's 5000 (otherwise labelled reduced).
        transfer_autoattack: whether transfer evaluations also craft AutoAttack
            examples on the source model (expensive; off by default).
        batch_size: images per forward/backward pass.
        seed: base seed of every random start (see the module docstring).
        progress: show tqdm progress bars.
        robust_gap_subset: images per split for :func:`robust_gap`; ``None`` uses
            the size of the smaller split.
        sanity_eps_sweep: radii of the "accuracy -> 0 as eps grows" check, ascending.
        sanity_pgd_steps: PGD iterations per radius of the sweep.
        sanity_step_factor: sweep step size is ``factor * eps / steps`` so that the
            attack can cross the whole ball at every radius.
        sanity_max_accuracy: accuracy (percent) the largest radius must fall below.
        sanity_tolerance: slack (percentage points) for the monotonicity comparisons.
        sanity_subset: images used by the sweep and the Square check (first ones of
            a seeded permutation); ``None`` uses all.
        square_queries: query budget of the stand-alone Square attack.
        square_subset: images for the stand-alone Square attack; ``None`` uses
            ``sanity_subset``.
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    pgd_steps: tuple[int, ...] = (10, 20, 50)
    cw_steps: int = 30
    fgsm: bool = True
    autoattack: bool = True
    autoattack_version: str = "standard"
    autoattack_attacks: tuple[str, ...] | None = None
    autoattack_n_iter: int | None = None
    autoattack_square_queries: int | None = None
    transfer_autoattack: bool = False
    batch_size: int = 256
    seed: int = 0
    progress: bool = True
    robust_gap_subset: int | None = None
    sanity_eps_sweep: tuple[float, ...] = (8 / 255, 16 / 255, 32 / 255, 64 / 255, 128 / 255)
    sanity_pgd_steps: int = 20
    sanity_step_factor: float = 2.5
    sanity_max_accuracy: float = 5.0
    sanity_tolerance: float = 1.0
    sanity_subset: int | None = 500
    square_queries: int = 1000
    square_subset: int | None = 100

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and reject invalid values, naming the field."""
        set_ = object.__setattr__  # frozen dataclass: normalise in place once
        set_(self, "pgd_steps", tuple(self.pgd_steps))
        set_(self, "sanity_eps_sweep", tuple(float(e) for e in self.sanity_eps_sweep))
        if self.autoattack_attacks is not None:
            set_(self, "autoattack_attacks", tuple(self.autoattack_attacks))

        def need(condition: bool, field: str, message: str) -> None:
            if not condition:
                raise ValueError(f"evaluation.{field} {message}")

        for field in ("eps", "step_size", "sanity_step_factor", "sanity_max_accuracy", "sanity_tolerance"):
            value = getattr(self, field)
            need(isinstance(value, int | float) and not isinstance(value, bool), field, f"must be a number, got {value!r}")
            need(math.isfinite(value) and value >= 0, field, f"must be >= 0, got {value!r}")
        need(self.eps <= 1, "eps", f"must be <= 1 (pixel scale [0, 1]; write 8/255, not 8), got {self.eps!r}")
        need(self.step_size > 0, "step_size", f"must be > 0, got {self.step_size!r}")
        need(len(self.pgd_steps) > 0, "pgd_steps", "must list at least one PGD length, e.g. [10, 20, 50]")
        for k in self.pgd_steps:
            need(_is_int(k) and k >= 1, "pgd_steps", f"must hold integers >= 1, got {self.pgd_steps!r}")
        need(len(set(self.pgd_steps)) == len(self.pgd_steps), "pgd_steps", f"has duplicates: {self.pgd_steps!r}")
        for field in ("cw_steps", "batch_size", "sanity_pgd_steps", "square_queries"):
            value = getattr(self, field)
            need(_is_int(value) and value >= 1, field, f"must be an integer >= 1, got {value!r}")
        need(_is_int(self.seed), "seed", f"must be an integer, got {self.seed!r}")
        for field in ("robust_gap_subset", "sanity_subset", "square_subset", "autoattack_n_iter",
                      "autoattack_square_queries"):
            value = getattr(self, field)
            need(value is None or (_is_int(value) and value >= 1), field,
                 f"must be null or an integer >= 1, got {value!r}")
        need(self.autoattack_version in _AUTOATTACK_VERSIONS, "autoattack_version",
             f"must be one of {', '.join(_AUTOATTACK_VERSIONS)}, got {self.autoattack_version!r}")
        if self.autoattack_version == "custom":
            need(bool(self.autoattack_attacks), "autoattack_attacks",
                 "must list the components when autoattack_version is 'custom', e.g. [apgd-ce, square]")
        else:
            need(self.autoattack_attacks is None, "autoattack_attacks",
                 "is only used with autoattack_version: custom; remove it or set the version to custom")
        for name in self.autoattack_attacks or ():
            need(name in _AUTOATTACK_NAMES, "autoattack_attacks",
                 f"has unknown component {name!r}; choose from {', '.join(_AUTOATTACK_NAMES)}")
        need(len(self.sanity_eps_sweep) >= 2, "sanity_eps_sweep", "must list at least two radii")
        need(all(e > 0 for e in self.sanity_eps_sweep), "sanity_eps_sweep", "must hold radii > 0")
        need(list(self.sanity_eps_sweep) == sorted(self.sanity_eps_sweep), "sanity_eps_sweep",
             f"must be ascending, got {self.sanity_eps_sweep!r}")
        need(self.sanity_max_accuracy <= 100, "sanity_max_accuracy", "is a percentage and must be <= 100")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, section: str = "evaluation") -> AttackSuiteConfig:
        """Build from a YAML mapping; radii may be written ``"8/255"``; unknown keys are rejected by name."""
        values = dict(values or {})
        for key in ("eps", "step_size"):
            if key in values:
                values[key] = parse_pixel_value(values[key], f"{section}.{key}")
        if "sanity_eps_sweep" in values:
            sweep = values["sanity_eps_sweep"]
            if isinstance(sweep, str) or not isinstance(sweep, Sequence):
                raise ValueError(f"{section}.sanity_eps_sweep must be a list of radii, got {sweep!r}")
            values["sanity_eps_sweep"] = tuple(
                parse_pixel_value(e, f"{section}.sanity_eps_sweep[{i}]") for i, e in enumerate(sweep)
            )
        try:
            return dataclass_from_dict(cls, values, section)
        except ValueError as error:
            # __post_init__ cannot know where the mapping came from: re-prefix with the YAML path.
            message = str(error)
            if section != "evaluation" and message.startswith("evaluation."):
                message = f"{section}." + message[len("evaluation."):]
            raise ValueError(message) from None

    def pgd_names(self) -> tuple[str, ...]:
        """Result keys of the PGD lengths, e.g. ``("pgd10", "pgd20", "pgd50")``."""
        return tuple(f"pgd{k}" for k in sorted(self.pgd_steps))

    def default_attacks(self) -> tuple[str, ...]:
        """Attacks run when the caller does not choose: FGSM, every PGD, CW and AutoAttack as enabled."""
        names: list[str] = ["fgsm"] if self.fgsm else []
        names += [*self.pgd_names(), "cw"]
        if self.autoattack:
            names.append("autoattack")
        return tuple(names)

    def autoattack_components(self) -> tuple[str, ...]:
        """Components AutoAttack runs under this configuration."""
        if self.autoattack_version == "custom":
            return tuple(self.autoattack_attacks or ())
        if self.autoattack_version == "standard":
            return AUTOATTACK_STANDARD
        if self.autoattack_version == "plus":
            return ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
        return ("apgd-ce", "apgd-dlr")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Basic helpers
# ---------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a parameter-free module)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_model(model: nn.Module, name: str = "model") -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    for pname, param in model.named_parameters():
        if param.dtype != torch.float32:
            raise ValueError(
                f"{name} parameter {pname!r} is {param.dtype}; evaluation is fp32 only, call {name}.float() first"
            )


def _check_images(images: torch.Tensor, device: torch.device, name: str = "images") -> torch.Tensor:
    """Validate an image batch (float, [N, C, H, W], values in [0, 1], right device); return it as fp32."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor of shape [N, C, H, W] in [0, 1], got {shape}")
    if images.device != device:
        raise ValueError(f"{name} is on {images.device} but the model is on {device}; move {name} to {device}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{name} must be pixel-scale values in [0, 1] (normalisation is inside the model), "
            f"got range [{images.min().item():.3g}, {images.max().item():.3g}]"
        )
    return images.float()


def _check_labels(labels: torch.Tensor, n: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
        desc = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be an int64 tensor of shape [N], got {desc}; use {name}.long()")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but the images have {n}; pass matching tensors")
    if labels.device != device:
        raise ValueError(f"{name} is on {labels.device} but the model is on {device}; move {name} to {device}")
    return labels


def _check_batch_size(batch_size: int) -> None:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


@contextlib.contextmanager
def evaluation_context(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode, autocast off, caller's random state restored afterwards; yields the model's device.

    Every reported number is computed inside this context so that batch-norm
    statistics are frozen, mixed precision cannot leak in from an outer
    autocast region and seeding an evaluation does not disturb training code.
    """
    device = _model_device(model)
    fork_devices = [device] if device.type == "cuda" else []
    with (
        batchnorm_mode(model, "eval"),
        torch.autocast(device_type=device.type, enabled=False),
        torch.random.fork_rng(devices=fork_devices),
    ):
        yield device


def _batches(n: int, batch_size: int, desc: str, progress: bool) -> Iterator[tuple[int, int, int]]:
    """(batch index, start, end) over ``n`` items, with an optional tqdm bar."""
    starts = range(0, n, batch_size)
    for index, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False)):
        yield index, start, min(start + batch_size, n)


def _predict_raw(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits without validation or mode handling (the caller is inside :func:`evaluation_context`)."""
    with torch.no_grad():
        chunks = [model(images[i : i + batch_size]).float() for i in range(0, images.shape[0], batch_size)]
    if chunks:
        return torch.cat(chunks)
    return images.new_zeros((0, 0))


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits ``[N, K]`` of ``model`` on pixel-scale ``images`` (eval mode, fp32, no autocast, batched)."""
    _check_model(model)
    _check_batch_size(batch_size)
    images = _check_images(images, _model_device(model))
    with evaluation_context(model):
        return _predict_raw(model, images, batch_size)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Clean accuracy in percent (0 for an empty set)."""
    logits = predict(model, images, batch_size)
    labels = _check_labels(labels, images.shape[0], _model_device(model))
    return _percent(logits.argmax(dim=1) == labels) if labels.numel() else 0.0


def _percent(correct: torch.Tensor) -> float:
    """Share of ``True`` entries in percent."""
    return 100.0 * correct.double().mean().item() if correct.numel() else 0.0


# ---------------------------------------------------------------------------
# Crafting adversarial examples
# ---------------------------------------------------------------------------


def _split_attacks(config: AttackSuiteConfig, attacks: Sequence[str] | None) -> tuple[list[str], bool]:
    """Validate attack names; return the per-batch (gradient) attacks and whether AutoAttack runs."""
    chosen = tuple(config.default_attacks() if attacks is None else attacks)
    valid = {"fgsm", *config.pgd_names(), "cw", "autoattack"}
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise ValueError(
            f"attacks {unknown} are not in the suite; choose from {', '.join(sorted(valid))} "
            "(PGD lengths come from evaluation.pgd_steps)"
        )
    batch_attacks = [name for name in chosen if name != "autoattack"]
    return list(dict.fromkeys(batch_attacks)), "autoattack" in chosen


def adversarial_batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str],
    desc: str = "attacks",
) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """Craft the gradient attacks batch by batch on ``model``: yields ``(start, end, {attack: x_adv})``.

    The caller must be inside :func:`evaluation_context` (eval mode). ``attacks``
    are names among ``fgsm``, ``pgd<k>`` (``k`` in ``config.pgd_steps``) and ``cw``.
    All PGD lengths come from a single run of the longest requested one.
    Batch ``i`` is seeded with ``config.seed + i`` before each randomly started
    attack, so PGD and CW share their start and a separate run with the same seed
    reproduces them.
    """
    pgd_lengths = sorted(int(name[3:]) for name in attacks if name.startswith("pgd"))
    for index, start, end in _batches(images.shape[0], config.batch_size, desc, config.progress):
        x, y = images[start:end], labels[start:end]
        out: dict[str, torch.Tensor] = {}
        if "fgsm" in attacks:
            out["fgsm"] = fgsm(model, x, y, config.eps)
        if pgd_lengths:
            torch.manual_seed(config.seed + index)
            _, iterates = signed_gradient_attack(
                model, x, cross_entropy_loss(y), config.eps, config.step_size, pgd_lengths[-1],
                start="uniform", record_at=pgd_lengths,
            )
            for k in pgd_lengths:
                out[f"pgd{k}"] = iterates[k]
        if "cw" in attacks:
            torch.manual_seed(config.seed + index)
            out["cw"] = cw_linf(model, x, y, config.eps, config.step_size, config.cw_steps)
        yield start, end, out


class _AutoAttackLogCapture(logging.Handler):
    """Collects AutoAttack's per-component robust accuracies from its DEBUG log lines.

    The package computes them but does not return them; its log line
    ``robust accuracy after APGD-CE: 12.34%`` is the cheap way to read them.
    Warnings the package emits are forwarded to this module's logger.
    """

    _PATTERN = re.compile(r"robust accuracy after ([A-Z\-]+): ([0-9.]+)%")

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.components: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = self._PATTERN.search(message)
        if match:
            self.components[match.group(1).lower()] = float(match.group(2))
        if record.levelno >= logging.WARNING:
            logger.warning("AutoAttack: %s", message)
        else:
            logger.debug("AutoAttack: %s", message)


def _autoattack_label(config: AttackSuiteConfig, n_targets: int, full_targets: int) -> tuple[str, bool]:
    """Human label of the AutoAttack run and whether it is reduced from the package's standard settings."""
    parts: list[str] = []
    if config.autoattack_n_iter is not None:
        parts.append(f"n_iter={config.autoattack_n_iter}")
    if config.autoattack_square_queries is not None:
        parts.append(f"square_queries={config.autoattack_square_queries}")
    if n_targets != full_targets:
        parts.append(f"target_classes={n_targets}")
    components = ", ".join(config.autoattack_components())
    label = f"AutoAttack {config.autoattack_version} ({components})"
    reduced = bool(parts) or config.autoattack_version == "custom"
    if parts:
        label += " reduced: " + ", ".join(parts)
    return label, reduced


def run_autoattack(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackSuiteConfig
) -> tuple[torch.Tensor, dict[str, Any]]:
    """AutoAttack (``pyautoattack``) at ``config.eps``; returns the adversarial images and run information.

    The caller must be inside :func:`evaluation_context`. Information keys:
    ``label`` (what ran, marked reduced when settings differ from the package's
    standard), ``reduced`` (bool), ``components`` (cumulative robust accuracy in
    percent after each component, from the package's log), ``seconds``.
    """
    from pyautoattack import AutoAttack  # imported lazily: only needed when AutoAttack runs

    device = _model_device(model)
    n_classes = int(_predict_raw(model, images[:1], 1).shape[1]) if images.shape[0] else 10
    if config.eps == 0 or images.shape[0] == 0:
        label, reduced = _autoattack_label(config, 9, 9)
        return images.clone(), {"label": label + " (skipped: eps=0 or no images)", "reduced": reduced,
                                "components": {}, "seconds": 0.0}
    components = set(config.autoattack_components())
    # The DLR losses read the 3rd (untargeted) and 4th (targeted) largest logits.
    for component, needed in (("apgd-t", 4), ("apgd-dlr", 3)):
        if component in components and n_classes < needed:
            raise ValueError(
                f"AutoAttack component {component} needs at least {needed} classes, the model has {n_classes}; "
                "set evaluation.autoattack_version: custom with autoattack_attacks that leave it out"
            )
    kwargs: dict[str, Any] = {"device": device, "eps": float(config.eps), "norm": "Linf", "seed": config.seed,
                              "version": config.autoattack_version}
    if config.autoattack_version == "custom":
        kwargs["attacks"] = list(config.autoattack_attacks or ())
    capture = _AutoAttackLogCapture()
    aa_logger = logging.getLogger("auto-attack")
    old_level, old_propagate = aa_logger.level, aa_logger.propagate
    aa_logger.addHandler(capture)
    aa_logger.setLevel(logging.DEBUG)
    aa_logger.propagate = False  # its progress goes through our logger (DEBUG), not the root handlers
    try:
        adversary = AutoAttack(model, **kwargs)
        x_adv, label, reduced, seconds = _configure_and_run(adversary, images, labels, config, n_classes)
    finally:
        aa_logger.removeHandler(capture)
        aa_logger.setLevel(old_level)
        aa_logger.propagate = old_propagate
    return x_adv, {"label": label, "reduced": reduced, "components": dict(capture.components), "seconds": seconds}


def _configure_and_run(
    adversary: Any, images: torch.Tensor, labels: torch.Tensor, config: AttackSuiteConfig, n_classes: int
) -> tuple[torch.Tensor, str, bool, float]:
    """Apply the configured reductions to an ``AutoAttack`` object and run it; returns (x_adv, label, reduced, s)."""
    # The targeted components attack the top-9 wrong classes; with fewer classes there are fewer targets.
    n_targets = min(adversary.apgd_targeted.n_target_classes, n_classes - 1)
    full_targets = adversary.apgd_targeted.n_target_classes if config.autoattack_version != "custom" else n_targets
    adversary.apgd_targeted.n_target_classes = n_targets
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_classes - 1)
    if config.autoattack_n_iter is not None:
        n_iter = config.autoattack_n_iter
        adversary.fab.n_iter = n_iter
        for apgd in (adversary.apgd, adversary.apgd_targeted):
            # APGD fixes its step-size checkpoint schedule from n_iter in its constructor: redo it the same way.
            apgd.n_iter = apgd.n_iter_orig = n_iter
            apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
            apgd.n_iter_min = max(int(0.06 * n_iter), 1)
            apgd.size_decr = max(int(0.03 * n_iter), 1)
    if config.autoattack_square_queries is not None:
        adversary.square.n_queries = config.autoattack_square_queries
    label, reduced = _autoattack_label(config, n_targets, full_targets)
    started = time.perf_counter()
    x_adv, _ = adversary.run_standard_evaluation(images, labels, batch_size=config.batch_size)
    return x_adv.detach(), label, reduced, time.perf_counter() - started


def run_square(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, n_queries: int, seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Stand-alone Square attack (``pyautoattack``, margin loss, untargeted), in batches.

    The query schedule is rescaled to ``n_queries`` (the package's option for budgets
    below its 10 000-query design). The caller must be inside :func:`evaluation_context`.
    """
    from pyautoattack.square import SquareAttack

    attack = SquareAttack(model, norm="Linf", n_queries=n_queries, eps=float(eps), p_init=0.8, n_restarts=1,
                          seed=seed, verbose=False, device=_model_device(model), resc_schedule=True)
    out = []
    for start in range(0, images.shape[0], batch_size):
        with torch.no_grad():
            out.append(attack.perturb(images[start : start + batch_size], labels[start : start + batch_size]))
    return torch.cat(out) if out else images.clone()


# ---------------------------------------------------------------------------
# The attack suite
# ---------------------------------------------------------------------------


def evaluate_attacks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy (percent) of ``model`` under each attack of the suite.

    Args:
        model: classifier on pixel-scale inputs.
        images, labels: float ``[N, C, H, W]`` in ``[0, 1]`` and int64 ``[N]`` on the model's device.
        config: the suite's settings.
        attacks: names to run among ``fgsm``, ``pgd<k>``, ``cw``, ``autoattack``;
            ``None`` runs ``config.default_attacks()``. Clean accuracy is always measured.

    Returns:
        ``clean`` and one key per attack run (accuracy in percent), ``worst_case``
        (a point counts only if it survives every attack run), ``n_images``,
        ``eps``, ``attacks`` (names run, in order), ``seconds`` (wall time of
        ``gradient_attacks``, which share their batches, and of ``autoattack``),
        and when AutoAttack ran ``autoattack_label``,
        ``autoattack_reduced`` and ``autoattack_components`` (cumulative robust
        accuracy after each component). ``per_sample`` maps ``clean`` and each
        attack to a bool CPU tensor ``[N]`` of correct predictions (for the sanity
        checks); :func:`scalar_metrics` drops it for JSON.
    """
    _check_model(model)
    device = _model_device(model)
    images = _check_images(images, device)
    labels = _check_labels(labels, images.shape[0], device)
    batch_attacks, run_aa = _split_attacks(config, attacks)
    n = images.shape[0]
    if n == 0:
        raise ValueError("images must hold at least one image to evaluate")
    correct: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    with evaluation_context(model):
        correct["clean"] = (_predict_raw(model, images, config.batch_size).argmax(1) == labels).cpu()
        if batch_attacks:
            parts: dict[str, list[torch.Tensor]] = {name: [] for name in batch_attacks}
            started = time.perf_counter()
            for start, end, adv in adversarial_batches(model, images, labels, config, batch_attacks):
                y = labels[start:end]
                for name in batch_attacks:
                    with torch.no_grad():
                        parts[name].append((model(adv[name]).argmax(1) == y).cpu())
            seconds["gradient_attacks"] = time.perf_counter() - started
            for name in batch_attacks:
                correct[name] = torch.cat(parts[name])
        if run_aa:
            x_adv, info = run_autoattack(model, images, labels, config)
            correct["autoattack"] = (_predict_raw(model, x_adv, config.batch_size).argmax(1) == labels).cpu()
            seconds["autoattack"] = info["seconds"]
            results["autoattack_label"] = info["label"]
            results["autoattack_reduced"] = info["reduced"]
            results["autoattack_components"] = info["components"]
    for name, flags in correct.items():
        results[name] = _percent(flags)
    worst = torch.stack(list(correct.values())).all(dim=0) if n else torch.zeros(0, dtype=torch.bool)
    results.update(
        worst_case=_percent(worst),
        n_images=n,
        eps=float(config.eps),
        attacks=[*batch_attacks, *(["autoattack"] if run_aa else [])],
        seconds=seconds,
        per_sample=correct,
    )
    logger.info(
        "attack suite on %d images (eps %.4f): %s",
        n, config.eps, ", ".join(f"{k} {results[k]:.2f}%" for k in ("clean", *results["attacks"], "worst_case")),
    )
    return results


def scalar_metrics(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` without the per-sample tensors, ready for a JSON metrics file."""
    return {key: value for key, value in results.items() if key != "per_sample"}


# ---------------------------------------------------------------------------
# Gradient-masking sanity checks
# ---------------------------------------------------------------------------


def _subset_indices(n: int, size: int | None, seed: int, device: torch.device) -> torch.Tensor:
    """First ``size`` entries of a seeded permutation of ``range(n)`` (a fixed, reproducible subset)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[: n if size is None else min(size, n)].to(device)


def sanity_checks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackSuiteConfig,
    results: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Checks that catch gradient masking; each failed one is logged as a WARNING.

    1. ``pgd_beats_fgsm``: the strongest PGD's accuracy <= FGSM's + ``sanity_tolerance``.
    2. ``accuracy_vanishes_with_eps``: PGD accuracy over ``sanity_eps_sweep`` is
       non-increasing (within the tolerance) and ends below ``sanity_max_accuracy``.
    3. ``white_box_beats_square``: on a fixed subset, the gradient attacks'
       accuracy (a point counts if it survives FGSM, PGD, CW and any gradient
       AutoAttack components run) <= a stand-alone Square attack's + tolerance.
       Square is run alone because AutoAttack standard folds it into its
       cumulative number.

    Args:
        results: output of :func:`evaluate_attacks` on the same images; attacks it
            lacks (FGSM, PGD, CW) are run here. ``None`` runs them all.

    Returns:
        One dict per check: ``name``, ``passed`` (bool), ``detail`` (str), and the
        measured numbers (``values``).
    """
    _check_model(model)
    device = _model_device(model)
    images = _check_images(images, device)
    labels = _check_labels(labels, images.shape[0], device)
    strongest_pgd = config.pgd_names()[-1]
    needed = ["fgsm", strongest_pgd, "cw"]
    results = dict(results or {})
    per_sample: dict[str, torch.Tensor] = dict(results.get("per_sample", {}))
    for name, flags in per_sample.items():
        if flags.shape[0] != images.shape[0]:
            raise ValueError(
                f"results['per_sample'][{name!r}] has {flags.shape[0]} entries but images has {images.shape[0]}; "
                "pass the results of evaluate_attacks on these same images"
            )
    missing = [name for name in needed if name not in per_sample]
    if missing:
        extra = evaluate_attacks(model, images, labels, config, attacks=missing)
        per_sample.update({name: extra["per_sample"][name] for name in missing})
    tol = config.sanity_tolerance
    checks: list[dict[str, Any]] = []

    # (a) An iterative attack must do at least as well as its single-step version.
    acc_fgsm, acc_pgd = _percent(per_sample["fgsm"]), _percent(per_sample[strongest_pgd])
    checks.append({
        "name": "pgd_beats_fgsm",
        "passed": acc_pgd <= acc_fgsm + tol,
        "detail": f"{strongest_pgd} accuracy {acc_pgd:.2f}% vs FGSM {acc_fgsm:.2f}% (tolerance {tol} points)",
        "values": {"fgsm": acc_fgsm, strongest_pgd: acc_pgd},
    })

    subset = _subset_indices(images.shape[0], config.sanity_subset, config.seed, device)
    x_sub, y_sub = images[subset], labels[subset]
    # (b) With a large enough ball every image can be turned into any other: accuracy must vanish.
    sweep: list[float] = []
    with evaluation_context(model):
        for eps in config.sanity_eps_sweep:
            step = config.sanity_step_factor * eps / config.sanity_pgd_steps
            flags = []
            for index, start, end in _batches(x_sub.shape[0], config.batch_size, f"eps {eps:.3f}", config.progress):
                torch.manual_seed(config.seed + index)
                x_adv, _ = signed_gradient_attack(model, x_sub[start:end], cross_entropy_loss(y_sub[start:end]), eps,
                                                  step, config.sanity_pgd_steps, start="uniform")
                with torch.no_grad():
                    flags.append(model(x_adv).argmax(1) == y_sub[start:end])
            sweep.append(_percent(torch.cat(flags)) if flags else 0.0)
    monotone = all(later <= earlier + tol for earlier, later in zip(sweep, sweep[1:]))
    vanishes = sweep[-1] <= config.sanity_max_accuracy
    checks.append({
        "name": "accuracy_vanishes_with_eps",
        "passed": monotone and vanishes,
        "detail": (
            f"PGD-{config.sanity_pgd_steps} accuracy over eps "
            + ", ".join(f"{e * 255:.0f}/255: {a:.2f}%" for e, a in zip(config.sanity_eps_sweep, sweep))
            + f" on {x_sub.shape[0]} images; non-increasing: {monotone}; "
            f"largest eps below {config.sanity_max_accuracy}%: {vanishes}"
        ),
        "values": {"eps": list(config.sanity_eps_sweep), "accuracy": sweep},
    })

    # (c) A gradient-free attack must not beat the gradient attacks.
    square_size = config.square_subset if config.square_subset is not None else config.sanity_subset
    square_idx = subset[: x_sub.shape[0] if square_size is None else square_size]
    with evaluation_context(model):
        x_sq = run_square(model, images[square_idx], labels[square_idx], config.eps, config.square_queries,
                          config.seed, config.batch_size)
        square_flags = (_predict_raw(model, x_sq, config.batch_size).argmax(1) == labels[square_idx]).cpu()
    white_names = [name for name in per_sample if name not in ("clean", "autoattack")]
    aa_components = set(config.autoattack_components())
    if "autoattack" in per_sample and not (aa_components & _GRADIENT_FREE_AA):
        white_names.append("autoattack")  # purely gradient-based AutoAttack counts as white-box
    cpu_idx = square_idx.cpu()
    white_flags = torch.stack([per_sample[name][cpu_idx] for name in white_names]).all(dim=0)
    acc_white, acc_square = _percent(white_flags), _percent(square_flags)
    checks.append({
        "name": "white_box_beats_square",
        "passed": acc_white <= acc_square + tol,
        "detail": (
            f"white-box ({', '.join(white_names)}) accuracy {acc_white:.2f}% vs Square "
            f"({config.square_queries} queries, subset of {square_idx.numel()} images) {acc_square:.2f}%"
        ),
        "values": {"white_box": acc_white, "square": acc_square, "n_images": int(square_idx.numel())},
    })
    for check in checks:
        if not check["passed"]:
            logger.warning("sanity check %s FAILED (possible gradient masking): %s", check["name"], check["detail"])
        else:
            logger.info("sanity check %s passed: %s", check["name"], check["detail"])
    return checks


# ---------------------------------------------------------------------------
# Robust generalisation gap
# ---------------------------------------------------------------------------


def robust_gap(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    config: AttackSuiteConfig,
    attacks: Sequence[str] = ("pgd10", "autoattack"),
) -> dict[str, Any]:
    """Robust accuracy on training images minus robust accuracy on test images, per attack.

    Both subsets have the same size (``config.robust_gap_subset`` or the smaller
    split) and are the first entries of seeded permutations, so the train subset
    is the same every epoch and for every method. Pass *un-augmented* training images.

    Returns:
        ``{attack: {"train": %, "test": %, "gap": train - test}}`` plus ``n_images``.
    """
    if not attacks:
        raise ValueError("attacks must name at least one attack, e.g. ('pgd10', 'autoattack')")
    _check_model(model)
    device = _model_device(model)
    train_images = _check_images(train_images, device, "train_images")
    train_labels = _check_labels(train_labels, train_images.shape[0], device, "train_labels")
    test_images = _check_images(test_images, device, "test_images")
    test_labels = _check_labels(test_labels, test_images.shape[0], device, "test_labels")
    size = min(train_images.shape[0], test_images.shape[0])
    if config.robust_gap_subset is not None:
        size = min(size, config.robust_gap_subset)
    train_idx = _subset_indices(train_images.shape[0], size, config.seed, device)
    test_idx = _subset_indices(test_images.shape[0], size, config.seed + 1, device)
    on_train = evaluate_attacks(model, train_images[train_idx], train_labels[train_idx], config, attacks)
    on_test = evaluate_attacks(model, test_images[test_idx], test_labels[test_idx], config, attacks)
    gap: dict[str, Any] = {
        name: {"train": on_train[name], "test": on_test[name], "gap": on_train[name] - on_test[name]}
        for name in attacks
    }
    gap["n_images"] = size
    return gap


# ---------------------------------------------------------------------------
# Background bias
# ---------------------------------------------------------------------------


def background_bias_metrics(
    model: ImageClassifier,
    variant_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    cam_threshold: float,
    batch_size: int = 256,
    random_key: str = "test",
    aligned_key: str = "test_aligned",
) -> dict[str, Any]:
    """How much the model relies on backgrounds, on test variants with known foregrounds.

    Args:
        model: classifier exposing ``features``/``head`` (Grad-CAM needs them).
        variant_sets: ``name -> (images, labels, masks or None)``; masks are bool
            ``[N, H, W]`` true foregrounds.
        cam_threshold: Grad-CAM value in ``[0, 1]`` from which a pixel is foreground.
        random_key, aligned_key: variants whose accuracy difference is the bias gap
            (class-aligned backgrounds minus random backgrounds).

    Returns:
        ``variants``: per name ``{"n_images", "accuracy"}`` plus, where masks exist,
        ``cam_iou`` (mean IoU of ``grad_cam >= cam_threshold`` with the true
        foreground, Grad-CAM target = true label), ``cam_foreground_mass`` (mean share
        of Grad-CAM mass inside the true foreground, over maps with any mass) and
        ``cam_empty_maps`` (maps with no mass, left out of that mean);
        ``aligned_minus_random``: accuracy gap in points, ``None`` without both variants.
    """
    if not isinstance(cam_threshold, int | float) or not 0.0 <= cam_threshold <= 1.0:
        raise ValueError(f"cam_threshold must be a number in [0, 1], got {cam_threshold!r}")
    if not variant_sets:
        raise ValueError("variant_sets must hold at least one variant, e.g. {'test': (images, labels, masks)}")
    _check_model(model)
    _check_batch_size(batch_size)
    device = _model_device(model)
    variants: dict[str, dict[str, Any]] = {}
    for name, entry in variant_sets.items():
        if not isinstance(entry, tuple | list) or len(entry) != 3:
            raise ValueError(f"variant_sets[{name!r}] must be a tuple (images, labels, masks or None)")
        images, labels, masks = entry
        images = _check_images(images, device, f"variant_sets[{name!r}] images")
        labels = _check_labels(labels, images.shape[0], device, f"variant_sets[{name!r}] labels")
        stats: dict[str, Any] = {"n_images": int(images.shape[0])}
        with evaluation_context(model):
            logits = _predict_raw(model, images, batch_size)
        stats["accuracy"] = _percent(logits.argmax(1) == labels) if labels.numel() else 0.0
        if masks is not None:
            expected = (images.shape[0], *images.shape[-2:])
            if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != expected:
                got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
                raise ValueError(f"variant_sets[{name!r}] masks must be bool [N, H, W] = {expected}, got {got}")
            truth = masks.to(device).bool()
            with evaluation_context(model):
                cams = grad_cam_batched(model, images, labels, batch_size)
            stats["cam_iou"] = foreground_iou(cams, truth, cam_threshold).mean().item() if cams.numel() else None
            mass = cams.flatten(1).sum(1)
            inside = (cams * truth).flatten(1).sum(1)
            has_mass = mass > 0
            stats["cam_foreground_mass"] = (
                (inside[has_mass] / mass[has_mass]).mean().item() if has_mass.any() else None
            )
            stats["cam_empty_maps"] = int((~has_mass).sum().item())
        variants[name] = stats
    gap = None
    if random_key in variants and aligned_key in variants:
        gap = variants[aligned_key]["accuracy"] - variants[random_key]["accuracy"]
    return {"variants": variants, "aligned_minus_random": gap}
