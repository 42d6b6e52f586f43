"""Wine quality: telling good wines from bad ones with a threshold and tensor masks (Antiga et al., ch. 4).

The book's recipe (section 4.3, Representing tabular data, on the UCI white wines, 4,898 rows of 11
chemical measurements and a quality score 0-10):
  1. split the table into ``data`` (N, 11) and ``target`` (N,); ``target <= 3`` marks 20 bad wines;
  2. the mean of every column over bad (quality <= 3), middling (4-6) and good (>= 7) wines: bad wines
     have more total sulfur dioxide (170.60, against 141.83 for the middling and 125.25 for the good);
  3. predict "good" where total sulfur dioxide (column 6) is below the middling mean, the book's literal
     ``total_sulfur_threshold = 141.83``: 2,727 wines; the wines scored above 5 are the actually good ones,
     3,258; both masks hold for 2,018, so precision 2018 / 2727 = 0.74000733 and recall 2018 / 3258 =
     0.61939840.
Every figure is exact on the UCI file ``winequality-white.csv`` (`dlcore data prepare wine_quality`
downloads it and checks its SHA-256; or put the file in ``$DLCORE_DATA/wine_quality/``). Without it the
example runs on ``synthetic_wine``, generated wines with the same columns, and says so: its figures are
not the book's.

The masks are boolean arrays combined with ``&`` and counted with ``sum``, as the book's tensors;
dlcore.metrics.precision and recall give the same ratios from the rule's margin
``threshold - total sulfur dioxide``.

Run: `dlcore run wine_quality` or `python examples/wine_quality.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dlcore import metrics
from dlcore.data.real import WINE_FEATURES
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="wine_quality",
    title="a threshold on total sulfur dioxide with boolean masks: 2,727 predicted good, precision 0.740",
    book="Antiga, Stevens, Huang & Viehmann, Deep Learning with PyTorch, 2nd ed.",
    section="ch. 4, Real-world data representation using tensors, 4.3 Representing tabular data",
    source="sections 4.3.5 When to categorize (the group means, Out[15]) and 4.3.6 Finding thresholds "
           "(In[13] to Out[18])",
    data="wine_quality",
    standin="synthetic_wine",
    book_figures={"bad_wines": 20.0, "mid_total_sulfur_dioxide": 141.83, "predicted_good": 2727.0,
                  "actual_good": 3258.0, "true_positives": 2018.0, "precision": 0.74000733406674,
                  "recall": 0.6193984039287906},
)

TOTAL_SULFUR_THRESHOLD = 141.83  # the book's literal: the middling wines' mean, as Out[15] prints it
SULFUR = WINE_FEATURES.index("total sulfur dioxide")  # column 6


def threshold_rule(data, target, threshold: float = TOTAL_SULFUR_THRESHOLD) -> dict[str, float]:
    """The book's rule: "good" where total sulfur dioxide < ``threshold``; actually good: quality > 5.

    Args:
        data: ``(N, 11)`` float32, the wine table's columns without quality (column 6: total sulfur dioxide).
        target: ``(N,)`` integer quality scores.
        threshold: the sulfur threshold.

    Returns:
        ``{"bad_wines", "predicted_good", "actual_good", "true_positives", "precision", "recall"}``: counts
        of the masks ``target <= 3``, ``data[:, 6] < threshold``, ``target > 5`` and of both of the last
        two, and the ratios ``true_positives / predicted_good`` and ``true_positives / actual_good`` (0 when
        the denominator is 0, as dlcore.metrics.precision).
    """
    data, target = jnp.asarray(data), jnp.asarray(target)
    if data.ndim != 2 or data.shape[1] != len(WINE_FEATURES) or target.shape != data.shape[:1]:
        raise ValueError(f"threshold_rule: expects data (N, {len(WINE_FEATURES)}) and target (N,), got "
                         f"{data.shape} and {target.shape}")
    bad_indexes = target <= 3
    predicted_indexes = jnp.less(data[:, SULFUR], threshold)  # torch.lt: float32 against float32(threshold)
    actual_indexes = target > 5
    n_matches = int(jnp.sum(actual_indexes & predicted_indexes))
    n_predicted = int(jnp.sum(predicted_indexes))
    n_actual = int(jnp.sum(actual_indexes))
    return {"bad_wines": int(jnp.sum(bad_indexes)), "predicted_good": n_predicted, "actual_good": n_actual,
            "true_positives": n_matches,
            # Python ints divided, as the book's .item() counts: the ratios to every printed digit
            "precision": n_matches / n_predicted if n_predicted else 0.0,
            "recall": n_matches / n_actual if n_actual else 0.0}


def group_means(data, target) -> dict[str, np.ndarray]:
    """Column means ``(11,)`` of the bad (quality <= 3), middling (4-6) and good (>= 7) wines; NaN for an
    empty group."""
    data, target = np.asarray(data, np.float32), np.asarray(target)
    groups = {"bad": target <= 3, "mid": (target > 3) & (target < 7), "good": target >= 7}
    return {name: (data[mask].mean(axis=0) if mask.any() else np.full(data.shape[1], np.nan, np.float32))
            for name, mask in groups.items()}


def run(ctx: Context) -> dict[str, float]:
    wine = ctx.load()["train"]
    data, target = wine["x"], wine["y"]  # (N, 11) float32, (N,) int32 quality
    if len(target) == 0:
        raise ValueError(f"{ctx.dataset}: the table has no rows; the file holds only a header")
    ctx.print(f"data {data.shape} {data.dtype}, target {target.shape}; qualities {sorted(set(target.tolist()))}")

    means = group_means(data, target)
    ctx.print(f"{'':2} {'column':<20} {'bad':>7} {'mid':>7} {'good':>7}")
    for i, name in enumerate(WINE_FEATURES):
        ctx.print(f"{i:2} {name:<20} {means['bad'][i]:7.2f} {means['mid'][i]:7.2f} {means['good'][i]:7.2f}")

    r = threshold_rule(data, target)
    ctx.print(f"bad wines (quality <= 3): {r['bad_wines']}")
    ctx.print(f"predicted good (total sulfur dioxide < {TOTAL_SULFUR_THRESHOLD}): {r['predicted_good']}; "
              f"actually good (quality > 5): {r['actual_good']}; both: {r['true_positives']}")
    ctx.print(f"precision {r['true_positives']} / {r['predicted_good']} = {r['precision']:.8f}, "
              f"recall {r['true_positives']} / {r['actual_good']} = {r['recall']:.8f}")
    # the same ratios from dlcore.metrics: the rule's margin is positive exactly where it predicts "good"
    margin = TOTAL_SULFUR_THRESHOLD - jnp.asarray(data[:, SULFUR])
    actual = jnp.asarray(target) > 5
    ctx.print(f"dlcore.metrics.precision {float(metrics.precision(margin, actual)):.6f}, "
              f"recall {float(metrics.recall(margin, actual)):.6f} (float32)")
    if ctx.dataset != EXAMPLE.data:
        ctx.print(f"{ctx.dataset} is generated: these counts are not the book's (theirs need the UCI file)")
    return {"bad_wines": r["bad_wines"], "mid_total_sulfur_dioxide": float(means["mid"][SULFUR]),
            "predicted_good": r["predicted_good"], "actual_good": r["actual_good"],
            "true_positives": r["true_positives"], "precision": r["precision"], "recall": r["recall"]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
