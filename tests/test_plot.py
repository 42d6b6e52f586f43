"""dlcore.plot: learning curves drawn from a history."""

import pytest

from dlcore import plot


def test_learning_curves_draws_one_line_per_curve():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot.learning_curves(plt, {"adam": [1.0, 0.5, 0.25], "sgd": [1.0, 0.9]}, ylabel="loss", log=True)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["adam", "sgd"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3] and list(ax.lines[1].get_ydata()) == [1.0, 0.9]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    plt.close(fig)
