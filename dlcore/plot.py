"""Plots the books draw (matplotlib, an optional extra: `pip install 'dlcore[plot]'`).

Each function takes the `matplotlib.pyplot` module so that callers decide on the backend, and
returns the figure. Clustering plots live in `dlcore.cluster.plot`; image and filter grids (arrays)
in `dlcore.inspect`.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def learning_curves(plt, curves: Mapping[str, Sequence[float]], *, ylabel: str = "loss", title: str = "",
                    log: bool = False):
    """One line per named curve over epochs 1..N: the books' learning-curve figures.

    Args:
        plt: `matplotlib.pyplot`.
        curves: name -> per-epoch values (e.g. a Trainer history entry).
        ylabel: the y axis label.
        title: the figure title.
        log: log-scale y axis.

    Returns:
        The matplotlib figure.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        # markers keep a curve of one or a few epochs visible
        ax.plot(range(1, len(curve) + 1), curve, label=name, marker="o" if len(curve) < 20 else None)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title, yscale="log" if log else "linear")
    ax.legend()
    return fig
