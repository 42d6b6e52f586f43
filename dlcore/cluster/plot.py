"""Plots for choosing k: the elbow of the inertia curve, silhouette scores, silhouette diagrams.

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 8, Finding the optimal number of clusters,
Figures 8-7 to 8-9. matplotlib
is optional (`pip install 'dlcore[plot]'`); it is imported only when a plot is drawn, and figures are
made without pyplot, so no display or backend is needed to save them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["plot_elbow", "plot_silhouette_diagram", "plot_silhouette_scores"]


def _axes(ax, figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("dlcore.cluster plots need matplotlib: pip install 'dlcore[plot]'") from None
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").subplots()


def plot_elbow(ks: Sequence[int], inertias: Sequence[float], *, elbow: int | None = None, ax: Any = None):
    """Inertia against the number of clusters, with the elbow marked (Figure 8-7).

    Args:
        ks: numbers of clusters.
        inertias: the inertia of the k-means fit for each k.
        elbow: the k to annotate, if any.
        ax: matplotlib Axes to draw on (default: a new figure's).

    Returns:
        The Axes (`ax.figure.savefig(path)` saves it).
    """
    ax = _axes(ax, (5, 3.5))
    ax.plot(list(ks), list(inertias), "bo-")
    ax.set_xlabel("$k$")
    ax.set_ylabel("Inertia")
    if elbow is not None:
        y = dict(zip(ks, inertias))[elbow]
        ax.annotate("Elbow", xy=(elbow, y), xytext=(0.55, 0.55), textcoords="figure fraction",
                    arrowprops={"facecolor": "black", "shrink": 0.1})
    ax.grid(True)
    return ax


def plot_silhouette_scores(ks: Sequence[int], scores: Sequence[float], *, ax: Any = None):
    """Silhouette score against the number of clusters (Figure 8-8); returns the Axes."""
    ax = _axes(ax, (5, 3.5))
    ax.plot(list(ks), list(scores), "bo-")
    ax.set_xlabel("$k$")
    ax.set_ylabel("Silhouette score")
    ax.grid(True)
    return ax


def plot_silhouette_diagram(silhouettes: np.ndarray, labels: np.ndarray, *, ax: Any = None, title: str | None = None):
    """One knife per cluster: its members' coefficients, sorted; the dashed line is the mean (Figure 8-9).

    Args:
        silhouettes: `(n,)` coefficients, from `silhouette_samples(X, labels)`.
        labels: `(n,)` cluster labels.
        ax: matplotlib Axes (default: a new figure's).
        title: e.g. "k = 5".

    Returns:
        The Axes.
    """
    silhouettes, labels = np.asarray(silhouettes), np.asarray(labels)
    if silhouettes.shape != labels.shape or silhouettes.ndim != 1:
        raise ValueError(f"plot_silhouette_diagram: silhouettes and labels must be two (n,) arrays, got "
                         f"{silhouettes.shape} and {labels.shape}")
    ax = _axes(ax, (4, 4))
    from matplotlib import colormaps

    cmap = colormaps["Spectral"]
    clusters = np.unique(labels)
    pos, padding = 0, max(len(labels) // 30, 1)
    ticks = []
    for i, c in enumerate(clusters):
        coeffs = np.sort(silhouettes[labels == c])
        colour = cmap(i / max(len(clusters), 1))
        ax.fill_betweenx(np.arange(pos, pos + len(coeffs)), 0, coeffs, facecolor=colour, edgecolor=colour, alpha=0.7)
        ticks.append(pos + len(coeffs) // 2)
        pos += len(coeffs) + padding
    ax.set_yticks(ticks, [str(c) for c in clusters])
    ax.axvline(float(silhouettes.mean()), color="red", linestyle="--")
    ax.set_xlabel("Silhouette coefficient")
    ax.set_ylabel("Cluster")
    if title:
        ax.set_title(title)
    return ax
