"""Figures of the analysis outputs: attention under +-eps, robustness against the radius, sensitivity, masks.

Each function takes the long table its analysis writes (with a ``method`` column where
several methods are drawn) and returns a matplotlib figure with labelled axes, units
and a legend; shaded bands and error bars are the tables' 95% intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from dhat.analysis.attention_shift import iou_quantities
from dhat.attention.masks import MaskRule, background_mask
from dhat.evaluation.registry import display_name as attack_display
from dhat.methods.catalog import display_name, order_methods

__all__ = ["attention_shift_figure", "mask_examples_figure", "robustness_vs_eps_figure",
           "seed_curves_figure", "sensitivity_figure"]

_IOU_TITLES = {
    "iou_clean_attention": "IoU with the clean image's attention region",
    "iou_clean_background": "IoU with the clean image's background",
    "iou_true_foreground": "IoU with the true object (digit)",
    "iou_true_background": "IoU with the true background",
}


def _methods(table: pd.DataFrame) -> list[str]:
    return order_methods(list(dict.fromkeys(table["method"])))


def _band(ax: plt.Axes, x: np.ndarray, rows: pd.DataFrame, value: str, label: str) -> None:
    line = ax.plot(x, rows[value], marker="o", markersize=3, label=label)[0]
    ax.fill_between(x, rows["low"], rows["high"], color=line.get_color(), alpha=0.15, linewidth=0)


def attention_shift_figure(table: pd.DataFrame, attention_share: float | None = None) -> plt.Figure:
    """One panel per IoU reference and one for accuracy, against the signed radius; a line per method."""
    quantities = [*iou_quantities(table), "accuracy"]
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.2 * len(quantities), 3.6), squeeze=False)
    for ax, quantity in zip(axes[0], quantities, strict=True):
        for method in _methods(table):
            rows = table[(table["method"] == method) & (table["quantity"] == quantity)].sort_values("radius_255")
            _band(ax, rows["radius_255"].to_numpy(), rows, "estimate", display_name(method))
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(_IOU_TITLES.get(quantity, "accuracy on these examples (%)"), fontsize=9)
        ax.set_xlabel("radius (/255); < 0 inverse adversarial, > 0 adversarial", fontsize=8)
        ax.set_ylabel("IoU" if quantity != "accuracy" else "accuracy (%)")
        if quantity != "accuracy":
            ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    region = f"the {attention_share:.0%} most attended pixels" if attention_share else "the most attended pixels"
    fig.suptitle(f"Grad-CAM attention region ({region}) under inverse and adversarial perturbations", fontsize=10)
    fig.tight_layout()
    return fig


def robustness_vs_eps_figure(table: pd.DataFrame) -> plt.Figure:
    """One panel per attack: accuracy (%) against the radius (/255), a line per method; clean at radius 0."""
    attacks = [a for a in dict.fromkeys(table["attack"]) if a != "clean"]
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.0 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks, strict=True):
        for method in _methods(table):
            mine = table[table["method"] == method]
            rows = pd.concat([mine[mine["attack"] == "clean"], mine[mine["attack"] == attack]]).sort_values("radius_255")
            _band(ax, rows["radius_255"].to_numpy(), rows, "accuracy", display_name(method))
        ax.set_title(attack_display(attack))
        ax.set_xlabel("L-inf radius (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sensitivity_figure(table: pd.DataFrame, parameter: str, attacks: Sequence[str], default: float | None,
                       method: str = "dhat") -> plt.Figure:
    """Accuracy (%) against one parameter's values: clean and each attack, with 95% interval error bars."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ordered = table.sort_values("value")
    for attack in ["clean", *attacks]:
        rows = ordered[ordered["attack"] == attack]
        x = rows["value"].to_numpy(dtype=float)
        y = rows["accuracy"].to_numpy(dtype=float)
        err = np.vstack([y - rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float) - y])
        ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, label=attack_display(attack))
    if default is not None:
        ax.axvline(float(default), color="grey", linestyle=":", linewidth=1, label="default")
    ax.set_xlabel(parameter)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{display_name(method)}: sensitivity to {parameter} (one seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mask_examples_figure(images: np.ndarray, maps: np.ndarray, labels: Sequence[str],
                         rules: Mapping[str, MaskRule], coverage_of: Mapping[str, float] | None = None) -> plt.Figure:
    """A row per training image: the image, its stored Grad-CAM map, and DHAT's background image under each rule.

    ``images`` uint8 ``[n, H, W, 3]``, ``maps`` uint8 ``[n, H, W]`` (``round(255 * M)``), ``labels`` the class
    names; the background image is the image with every pixel the rule calls foreground set to black, as
    ``x_bg = x * 1[background]`` in training. ``coverage_of`` adds each rule's share of background over the
    whole training set to its column title.
    """
    float_maps = torch.from_numpy(np.asarray(maps)).float() / 255.0
    backgrounds = {name: background_mask(float_maps, rule).numpy() for name, rule in rules.items()}
    columns = 2 + len(rules)
    fig, axes = plt.subplots(len(images), columns, figsize=(1.9 * columns, 1.9 * len(images)), squeeze=False)
    for row, (image, grad_map, label) in enumerate(zip(images, maps, labels, strict=True)):
        axes[row][0].imshow(image)
        axes[row][0].set_ylabel(label, fontsize=8)
        axes[row][1].imshow(grad_map, cmap="jet", vmin=0, vmax=255)
        for col, (name, background) in enumerate(backgrounds.items(), start=2):
            axes[row][col].imshow(image * background[row][..., None])
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    titles = ["image", "Grad-CAM map", *(f"background:\n{name}" + (f"\n({100 * coverage_of[name]:.0f}% of pixels)"
                                                                    if coverage_of and name in coverage_of else "")
                                       for name in rules)]
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def seed_curves_figure(histories: Mapping[tuple[int, str], pd.DataFrame]) -> plt.Figure:
    """Validation clean (top) and PGD (bottom) accuracy per epoch, a panel per method and a line per seed.

    ``histories`` maps ``(seed, method)`` to the training history (``epoch``, ``val_clean``,
    ``val_pgd10``), so whether every method's curves have flattened can be read off each panel.
    """
    methods = order_methods(list(dict.fromkeys(m for _, m in histories)))
    fig, axes = plt.subplots(2, len(methods), figsize=(3.3 * len(methods), 5.6), squeeze=False, sharey="row")
    for col, method in enumerate(methods):
        for (seed, name), history in sorted(histories.items()):
            if name != method:
                continue
            axes[0][col].plot(history["epoch"], history["val_clean"], linewidth=1, label=f"seed {seed}")
            if "val_pgd10" in history and history["val_pgd10"].notna().any():
                axes[1][col].plot(history["epoch"], history["val_pgd10"], linewidth=1, label=f"seed {seed}")
        axes[0][col].set_title(display_name(method), fontsize=9)
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation clean (%)")
    axes[1][0].set_ylabel("validation PGD (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
