"""Binary-classification metrics: precision, recall, F1 (functions and streaming) and ROC-AUC.

The streaming forms follow ``dlcore.metrics.Metric`` (``init``/``update``/``compute``, sums in the
accumulator, padded rows masked by ``weights``), so ``Trainer(..., metrics=[Precision(), Recall()])``
reports them every epoch. ROC-AUC ranks all the scores at once, so it is a function of the whole set's
predictions (``roc_auc(trainer.predict(x), y)``), not a sum.

Outputs are single logits (``(B,)`` or ``(B, 1)``), the positive class when ``> threshold`` (0 for
logits; 0.5 for sigmoid probabilities), as ``dlcore.metrics.accuracy`` decides; labels are 0/1.

Reference: book 000 L7831-8970 (bank marketing: accuracy, precision, recall, ROC-AUC); book 002
L2439-2816 (precision and recall of a threshold rule).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.metrics import Accumulator, Metric

__all__ = ["F1", "Precision", "Recall", "confusion_counts", "f1", "precision", "recall", "roc_auc"]


def _binary(outputs, labels, threshold: float, fn: str) -> tuple[jax.Array, jax.Array]:
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    if outputs.ndim == labels.ndim + 1 and outputs.shape[-1] == 1:
        outputs = outputs[..., 0]
    if outputs.shape != labels.shape:
        raise ValueError(f"{fn}: binary outputs of shape {outputs.shape} do not match labels {labels.shape}; "
                         "pass one logit (or probability) per example, shape (B,) or (B, 1).")
    return outputs > threshold, labels > 0.5


def confusion_counts(outputs: jax.Array, labels: jax.Array, weights: jax.Array | None = None, *,
                     threshold: float = 0.0) -> dict[str, jax.Array]:
    """Weighted counts ``tp``, ``fp``, ``fn``, ``tn`` of binary predictions (float32 scalars).

    Args:
        outputs: Logits or probabilities, shape ``(B,)`` or ``(B, 1)``.
        labels: 0/1 targets, shape ``(B,)``.
        weights: Optional ``(B,)`` weights (0 for padded rows).
        threshold: Decision threshold (0 for logits, 0.5 for probabilities).
    """
    pred, true = _binary(outputs, labels, threshold, "confusion_counts")
    w = jnp.ones(pred.shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)

    def count(mask):
        return jnp.sum(jnp.where(mask, w, 0.0))

    return {"tp": count(pred & true), "fp": count(pred & ~true), "fn": count(~pred & true),
            "tn": count(~pred & ~true)}


def _ratio(num, den) -> jax.Array:
    return jnp.where(den > 0, num / jnp.maximum(den, 1e-30), 0.0)  # 0 when undefined, as sklearn's default


def precision(outputs: jax.Array, labels: jax.Array, *, threshold: float = 0.0) -> jax.Array:
    """``tp / (tp + fp)``: the fraction of predicted positives that are positive (0 if none predicted)."""
    c = confusion_counts(outputs, labels, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fp"])


def recall(outputs: jax.Array, labels: jax.Array, *, threshold: float = 0.0) -> jax.Array:
    """``tp / (tp + fn)``: the fraction of positives found (0 if there are none)."""
    c = confusion_counts(outputs, labels, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fn"])


def f1(outputs: jax.Array, labels: jax.Array, *, threshold: float = 0.0) -> jax.Array:
    """Harmonic mean of precision and recall, ``2 tp / (2 tp + fp + fn)``."""
    c = confusion_counts(outputs, labels, threshold=threshold)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative.

    Computed exactly from ranks (Mann-Whitney U), ties counting one half, as
    ``sklearn.metrics.roc_auc_score``. Any monotone score works (logits or probabilities).

    Args:
        scores: Shape ``(N,)`` or ``(N, 1)``.
        labels: 0/1 targets, shape ``(N,)``.

    Returns:
        A Python float in ``[0, 1]``.

    Raises:
        ValueError: On mismatched shapes, or when only one class is present.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"roc_auc: scores of shape {np.shape(scores)} do not match labels {np.shape(labels)}.")
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc: both classes must be present in labels.")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based rank of each distinct score, ties averaged
    ranks = average_rank[inverse]
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclasses.dataclass(frozen=True)
class _Counts(Metric):
    name: str = ""
    threshold: float = 0.0

    def init(self) -> Accumulator:
        z = jnp.zeros((), jnp.float32)
        return {"tp": z, "fp": z, "fn": z}

    def update(self, acc, outputs, targets, weights=None):
        c = confusion_counts(outputs, targets, weights, threshold=self.threshold)
        return {k: acc[k] + c[k] for k in ("tp", "fp", "fn")}


@dataclasses.dataclass(frozen=True)
class Precision(_Counts):
    """Streaming ``precision`` over the whole set (not a mean of per-batch values)."""

    name: str = "precision"

    def compute(self, acc):
        return _ratio(acc["tp"], acc["tp"] + acc["fp"])


@dataclasses.dataclass(frozen=True)
class Recall(_Counts):
    """Streaming ``recall`` over the whole set."""

    name: str = "recall"

    def compute(self, acc):
        return _ratio(acc["tp"], acc["tp"] + acc["fn"])


@dataclasses.dataclass(frozen=True)
class F1(_Counts):
    """Streaming ``f1`` over the whole set."""

    name: str = "f1"

    def compute(self, acc):
        return _ratio(2 * acc["tp"], 2 * acc["tp"] + acc["fp"] + acc["fn"])
