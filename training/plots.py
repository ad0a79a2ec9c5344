"""PNG plots for training runs: per-epoch curves and the ROC curve of a set of scores.

Rendering uses matplotlib's Agg backend, selected here before pyplot is imported, so plots
work on headless training machines and never open a window. Every figure is closed after it
is saved, so a long run that plots once per epoch does not accumulate figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.axes import Axes  # noqa: E402

from training.metrics import roc_auc, roc_curve  # noqa: E402

__all__ = ["plot_curves", "plot_roc"]

_DPI = 120


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over ``history``, skipping rows where it is missing or NaN.

    A row without ``epoch`` is placed at its 1-based position in ``history``.
    """
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(history, start=1):
        value = row.get(key)
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            continue
        epoch = row.get("epoch")
        x = float(epoch) if epoch is not None and not math.isnan(float(epoch)) else float(i)
        xs.append(x)
        ys.append(value)
    return xs, ys


def _draw(
    ax: Axes, history: Sequence[Mapping[str, float]], keys: Sequence[tuple[str, str]]
) -> bool:
    """Plot each (key, label) series onto ``ax``; True if anything was drawn."""
    drawn = False
    for key, label in keys:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
            drawn = True
    if drawn:
        ax.legend(loc="best")
    else:
        # An empty legend would only raise a warning; say plainly that there is nothing yet.
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    return drawn


def plot_curves(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Save training curves as a PNG at ``path`` (parent folders are created) and return it.

    ``history`` holds one mapping per epoch with keys ``epoch``, ``train_loss``, ``val_loss``,
    ``val_accuracy`` and ``val_auc`` (accuracy and AUC as fractions in [0, 1]); a missing or
    NaN value is left out of its line, so e.g. an epoch without validation still plots its
    training loss. Left panel: the two losses; right panel: validation accuracy and AUC.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        _draw(ax_loss, history, (("train_loss", "train loss"), ("val_loss", "val loss")))
        ax_loss.set_ylabel("loss")
        ax_loss.set_title("Loss")
        _draw(ax_score, history, (("val_accuracy", "val accuracy"), ("val_auc", "val AUC")))
        ax_score.set_title("Validation accuracy & AUC")
        # Both are fractions: a fixed axis makes runs comparable at a glance.
        ax_score.set_ylim(0.0, 1.02)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return path


def plot_roc(labels: np.ndarray, scores: np.ndarray, path: Path, title: str = "ROC") -> Path:
    """Save the ROC curve of ``scores`` (see :func:`training.metrics.roc_curve`) as a PNG at
    ``path`` (parent folders are created) and return it. The legend gives the AUC (``n/a``
    when only one class is present, in which case only the chance diagonal is drawn).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(labels, scores)
    auc = roc_auc(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        auc_text = "n/a" if math.isnan(auc) else f"{auc:.4f}"
        # With one class the curve is all NaN; keep its legend entry so the n/a AUC shows.
        xs, ys = (fpr, tpr) if not math.isnan(auc) else ([], [])
        ax.plot(xs, ys, lw=2, label=f"model (AUC = {auc_text})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", lw=1, label="chance")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("false-positive rate (reals flagged fake)")
        ax.set_ylabel("true-positive rate (fakes caught)")
        ax.set_title(title)
        ax.legend(loc="lower right")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return path
