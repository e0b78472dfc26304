"""Figures for MLflow: ROC, precision-recall, confusion matrix, reliability, training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: figures are only written to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def curve_figure(curves: dict[str, dict], x: str, y: str, title: str):
    """One line per model, e.g. x="fpr", y="tpr" for ROC."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, points in curves.items():
        ax.plot(points[x], points[y], label=name)
    if x == "fpr":
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right" if x == "fpr" else "lower left")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str):
    """Confusion matrix heat map with counts (rows: true class, columns: predicted)."""
    cm = np.asarray(matrix)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(classes))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    for (i, j), n in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(n),
            ha="center",
            va="center",
            color="white" if n > cm.max() / 2 else "black",
            fontsize=8,
        )
    fig.tight_layout()
    return fig


def reliability_figure(diagrams: dict[str, list[dict]], title: str):
    """Reliability diagram: accuracy against mean top-label confidence per bin, one line per
    set of probabilities (e.g. before and after temperature scaling; rows from
    ``calibration.reliability_bins``), marker area by the bin's share of rows, and the diagonal
    a calibrated model follows."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfect calibration")
    for name, rows in diagrams.items():
        total = sum(r["count"] for r in rows) or 1
        x = [r["confidence"] for r in rows]
        y = [r["accuracy"] for r in rows]
        (line,) = ax.plot(x, y, marker="", label=name)
        sizes = [400 * r["count"] / total + 8 for r in rows]
        ax.scatter(x, y, s=sizes, color=line.get_color(), alpha=0.6)
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", title=title, xlim=(0, 1.01))
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def history_figure(history: pd.DataFrame, title: str):
    """Training loss, validation loss and validation macro F1 per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(history["epoch"], history["train_loss"], label="train loss")
    left.plot(history["epoch"], history["val_loss"], label="val loss")
    left.set(xlabel="epoch", title=title)
    left.legend()
    right.plot(history["epoch"], history["val_f1_macro"], c="tab:green")
    right.set(xlabel="epoch", ylabel="val macro F1")
    fig.tight_layout()
    return fig


def model_figures(
    role: str, result: dict, classes: list[str], diagrams: dict, history: pd.DataFrame | None
) -> list[tuple[str, object]]:
    """A model's figures on the test split, by name: ROC, PR, confusion matrix, reliability
    (``diagrams``: label -> reliability bins) and, with its ``history``, training curves."""
    figures = [
        ("roc", curve_figure({role: result["roc"]}, "fpr", "tpr", f"ROC, {role}")),
        ("pr", curve_figure({role: result["pr"]}, "recall", "precision", f"PR, {role}")),
        ("confusion", confusion_figure(result["metrics"]["confusion_matrix"], classes, role)),
        ("reliability", reliability_figure(diagrams, f"reliability (test), {role}")),
    ]
    if history is not None:
        figures.append(("training_curves", history_figure(history, f"training, {role}")))
    return figures


def close(fig) -> None:
    """Free a figure once it has been logged."""
    plt.close(fig)
