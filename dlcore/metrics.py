"""Metrics: pure functions of arrays, and streaming metrics the training loop accumulates.

Two forms of each metric:

* **functions** (``accuracy(logits, labels)``, ``rmse(predictions, targets)``, ...) compute a metric on
  the arrays at hand and return a scalar;
* **streaming metrics** (``Accuracy()``, ``RMSE()``, ``Mean("loss", fn)``, ...) follow the ``Metric``
  protocol ``init() -> acc``, ``update(acc, outputs, targets, weights) -> acc``, ``compute(acc) -> scalar``.
  The accumulator is a dict of running sums, so ``update`` is pure and jittable, batches can be folded
  with ``lax.scan``, and accumulators from several devices combine with ``psum``. Metric objects are
  frozen dataclasses: hashable, so they can be static arguments of ``jax.jit``.

Streaming metrics aggregate over the whole data set, not per batch: ``RMSE`` is the square root of the
mean squared error over all examples, not the mean of per-batch RMSEs (Géron, Hands-On Machine Learning, PyTorch ed., ch. 10,
Implementing a Regression MLP, Model Evaluation: the book's per-batch mean gives 0.5668 where the true
validation RMSE is 0.6388). The ``weights`` mask (shape ``(B,)``, 1 for real examples, 0 for the padding
of a last partial batch) keeps padded rows out of every sum. Sums are float32: counts are exact up to
2**24 examples per accumulator.

Every streaming metric has a name (``names()``, ``get(name)``), so ``Trainer(..., metrics=["accuracy",
"precision", "recall", "f1"])`` reports them each epoch. ROC-AUC is the exception: it ranks the whole
set's scores, which no fixed-size sum can do exactly, so it is a function of all the predictions
(``roc_auc(trainer.predict(x), y)``) and ``get("roc_auc")`` says so. ``R2Score`` is the other
exception to plain sums: its accumulator merges target means and squared deviations batch by batch
(Chan et al.'s update), which float32 sums of squares could not do accurately.

Binary classification (precision, recall, F1, ROC-AUC, confusion counts): single logits ``(B,)`` or
``(B, 1)``, the positive class when ``> threshold`` (0 for logits; 0.5 for sigmoid probabilities), as
``accuracy`` decides; labels are 0/1. References: Ketkar & Moolayil, Deep Learning with Python, 2nd
ed., ch. 5, Training Deep Learning Models, A Practical Implementation in PyTorch (the bank marketing
exercise: accuracy, precision, recall, ROC-AUC); Stevens, Antiga & Viehmann, Deep Learning with
PyTorch, ch. 4, Real-world data representation using tensors, 4.3.6 Finding thresholds (precision and
recall of a threshold rule).

Layout: class axis last, as in ``dlcore.losses``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_choice, check_float, check_int
from dlcore.registry import Registry

__all__ = [
    "Accuracy",
    "BLEUScore",
    "F1",
    "MAE",
    "MSE",
    "Mean",
    "MeanAbsolutePercentageError",
    "Metric",
    "Perplexity",
    "Precision",
    "R2Score",
    "RMSE",
    "Recall",
    "TopKAccuracy",
    "accuracy",
    "bleu",
    "confusion_counts",
    "confusion_matrix",
    "f1",
    "get",
    "mae",
    "mean_absolute_percentage_error",
    "mse",
    "names",
    "precision",
    "r2_score",
    "recall",
    "rmse",
    "roc_auc",
    "top_k_accuracy",
]

Accumulator = dict[str, jax.Array]


# --------------------------------------------------------------------------------------------------
# Element-wise building blocks
# --------------------------------------------------------------------------------------------------


def _is_binary(logits: jax.Array, labels: jax.Array) -> bool:
    return logits.ndim == labels.ndim or (logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1)


def _correct(logits: jax.Array, labels: jax.Array, threshold: float = 0.0) -> jax.Array:
    """1.0 where the prediction is right, 0.0 elsewhere; shape of ``labels`` (binary: after squeeze)."""
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if _is_binary(logits, labels):
        if logits.ndim == labels.ndim + 1:
            logits = logits[..., 0]
        if logits.shape != labels.shape:
            raise ValueError(
                f"accuracy: binary logits shape {logits.shape} does not match labels shape {labels.shape}."
            )
        predicted = logits > threshold
        # Labels may be 0/1 floats (BCE targets) or ints/bools; anything above 0.5 is the positive class.
        return (predicted == (labels > 0.5)).astype(jnp.float32)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"accuracy: labels shape {labels.shape} must equal logits.shape[:-1] = {logits.shape[:-1]} "
            "(class axis last), or logits.shape / logits.shape[:-1] + (1,) for binary logits."
        )
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def _top_k_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"top_k_accuracy: labels shape {labels.shape} must equal logits.shape[:-1] = "
            f"{logits.shape[:-1]} (class axis last)."
        )
    check_int(k, "k", low=1, high=logits.shape[-1], who="top_k_accuracy")  # at most the class count
    _, top = jax.lax.top_k(logits, k)
    return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)


def _check_same_shape(fn: str, predictions, targets) -> None:
    if jnp.shape(predictions) != jnp.shape(targets):
        raise ValueError(
            f"{fn}: predictions shape {jnp.shape(predictions)} != targets shape {jnp.shape(targets)}; "
            "shapes must match exactly (no silent broadcasting)."
        )


def _abs_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    _check_same_shape("mae", predictions, targets)
    return jnp.abs(jnp.asarray(predictions, jnp.float32) - jnp.asarray(targets, jnp.float32))


def _squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    _check_same_shape("mse", predictions, targets)
    return jnp.square(jnp.asarray(predictions, jnp.float32) - jnp.asarray(targets, jnp.float32))


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def accuracy(logits: jax.Array, labels: jax.Array, *, threshold: float = 0.0) -> jax.Array:
    """Fraction of correct predictions.

    Multi-class: ``logits`` ``(..., C)`` and integer ``labels`` ``(...)``; the prediction is the argmax.
    Binary: single-logit outputs, ``logits`` of shape ``(B, 1)`` or the labels' own shape; the prediction
    is ``logits > threshold`` (0 for logits; pass 0.5 for sigmoid probabilities). Logits with the labels'
    shape ``(B, L)`` give the element-wise (multi-label) accuracy.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 10, Building Neural Networks with PyTorch, Other
    Classification Losses (multiclass ``torchmetrics.Accuracy``); ch. 11, Training Deep Neural Networks,
    Transfer Learning with PyTorch (binary).

    Args:
        logits: Shape ``(..., C)``, ``(..., 1)`` or the labels' shape.
        labels: Integer class ids (multi-class) or 0/1 targets (binary), shape ``(...)``.
        threshold: Decision threshold for binary outputs.

    Returns:
        A float32 scalar in ``[0, 1]``.
    """
    return jnp.mean(_correct(logits, labels, threshold))


def top_k_accuracy(logits: jax.Array, labels: jax.Array, k: int = 5) -> jax.Array:
    """Fraction of positions whose label is among the ``k`` highest logits.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 12, Deep Computer Vision Using Convolutional Neural
    Networks, Choosing the Right CNN Architecture (top-1 and top-5 accuracy of ImageNet models).

    Args:
        logits: Shape ``(..., C)``, class axis last.
        labels: Integer class ids, shape ``(...)``.
        k: How many top classes count as a hit; ``1 <= k <= C``.

    Returns:
        A float32 scalar in ``[0, 1]``.
    """
    return jnp.mean(_top_k_correct(logits, labels, k))


def mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean absolute error over all elements (a scalar; ``dlcore.losses.mae`` is per example).

    Args:
        predictions: Any shape ``S``.
        targets: Shape ``S``.

    Returns:
        A float32 scalar.
    """
    return jnp.mean(_abs_error(predictions, targets))


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over all elements (a scalar; ``dlcore.losses.mse`` is per example).

    Args:
        predictions: Any shape ``S``.
        targets: Shape ``S``.

    Returns:
        A float32 scalar.
    """
    return jnp.mean(_squared_error(predictions, targets))


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int) -> jax.Array:
    """Counts of (true class, predicted class) pairs, as `sklearn.metrics.confusion_matrix`.

    Args:
        labels: true class ids, any shape.
        predictions: predicted class ids, the same shape (e.g. `logits.argmax(-1)`).
        num_classes: C.

    Returns:
        (C, C) int32: row = true class, column = predicted class. Ids outside [0, C) are not counted.
    """
    labels = jnp.asarray(labels).reshape(-1)
    predictions = jnp.asarray(predictions).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: labels and predictions differ in size, "
                         f"{labels.shape[0]} vs {predictions.shape[0]}")
    valid = (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (predictions < num_classes)
    flat = jnp.where(valid, labels * num_classes + predictions, 0)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(valid.astype(jnp.int32))
    return counts.reshape(num_classes, num_classes)


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

    It needs every score at once (their ranks), so it does not stream: no fixed-size accumulator
    gives it exactly, and ``get("roc_auc")`` (``Trainer(metrics=["roc_auc"])``) raises. Compute it
    on the whole set's predictions: ``roc_auc(trainer.predict(x), y)``.

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


# --------------------------------------------------------------------------------------------------
# BLEU (corpus level, as sacrebleu's default score)
# --------------------------------------------------------------------------------------------------

# The rules of mteval-v13a's tokenizer (the WMT standard, sacrebleu's default "13a"), in order: pad every
# punctuation or symbol character of ASCII; split a period or comma from a non-digit before it and from a
# non-digit after it; split a dash after a digit.
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)
_13A_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def _tokenize_13a(line: str) -> list[str]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in _13A_ENTITIES:
            line = line.replace(entity, char)
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _ngram_counts(tokens: list[str], max_order: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            g = tuple(tokens[i:i + n])
            counts[g] = counts.get(g, 0) + 1
    return counts


@dataclasses.dataclass(frozen=True)
class BLEUScore:
    """A corpus BLEU score and its parts: `score` in [0, 100], the n-gram `precisions` (percent), the
    brevity penalty `bp`, and the corpus lengths of the hypotheses (`sys_len`) and references (`ref_len`),
    in tokens."""

    score: float
    precisions: tuple[float, ...]
    bp: float
    sys_len: int
    ref_len: int

    def __float__(self) -> float:
        return self.score

    def __str__(self) -> str:
        p = "/".join(f"{x:.1f}" for x in self.precisions)
        return f"BLEU = {self.score:.2f} {p} (BP = {self.bp:.3f} ratio = {self.sys_len / max(self.ref_len, 1):.3f} " \
               f"hyp_len = {self.sys_len} ref_len = {self.ref_len})"


def bleu(hypotheses, references, *, max_order: int = 4, tokenize: str = "13a", lowercase: bool = False
         ) -> BLEUScore:
    """Corpus BLEU (Papineni et al., 2002) as sacrebleu's default score (`sacrebleu.corpus_bleu`).

    Each hypothesis's n-grams (1 to `max_order`) are counted, each count clipped at its largest count in
    one reference, and the clipped and total counts summed over the corpus; the score is the brevity
    penalty times the geometric mean of the corpus n-gram precisions, in percent. As sacrebleu's defaults:
    mteval-v13a tokenization; "exp" smoothing (an order with no match counts 1 / (2^k * total), k = 1, 2,
    ... for each such order); the brevity penalty exp(1 - r / c) when the hypotheses' length c is below r,
    the sum of each sentence's closest reference length (the shorter on a tie). No match at all scores 0.
    Used by Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14, to score translations.

    Args:
        hypotheses: the system's sentences, a sequence of N strings.
        references: N reference strings (one per hypothesis), or, as sacrebleu, a list of reference
            streams, each of N strings (several references per hypothesis).
        max_order: the largest n-gram order.
        tokenize: "13a" (the default) or "none" (the sentences are already tokenized: split on spaces).
        lowercase: compare lower-cased text.

    Returns:
        A `BLEUScore` (`float(score)` gives the score in [0, 100]).

    Raises:
        ValueError: no hypothesis, a reference stream of another length than the hypotheses, or a
            sentence that is not a string.
    """
    who = "bleu"
    max_order = check_int(max_order, "max_order", low=1, who=who)
    if tokenize not in ("13a", "none"):
        raise ValueError(f"{who}: tokenize must be '13a' or 'none', got {tokenize!r}")
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if isinstance(references, str):
        references = [references]
    refs = list(references)
    streams = [refs] if refs and all(isinstance(r, str) for r in refs) else [list(r) for r in refs]
    if not hyps:
        raise ValueError(f"{who}: no hypotheses to score")
    for k, stream in enumerate(streams):
        if len(stream) != len(hyps):
            raise ValueError(f"{who}: {len(hyps)} hypotheses but reference stream {k} has {len(stream)} sentences; "
                             f"pass one reference string per hypothesis, or a list of such lists")
    for name, texts in [("hypothesis", hyps)] + [("reference", s) for s in streams]:
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise ValueError(f"{who}: every {name} must be a string, got {type(bad[0]).__name__}")

    def prep(text: str) -> list[str]:
        text = text.lower() if lowercase else text
        return _tokenize_13a(text.rstrip()) if tokenize == "13a" else text.split()

    correct, total = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for i, hyp in enumerate(hyps):
        h = prep(hyp)
        ref_tokens = [prep(s[i]) for s in streams]
        clip: dict[tuple[str, ...], int] = {}
        for r in ref_tokens:
            for g, c in _ngram_counts(r, max_order).items():
                clip[g] = max(clip.get(g, 0), c)
        sys_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in ref_tokens)[1]
        for g, c in _ngram_counts(h, max_order).items():
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, clip.get(g, 0))

    bp = 1.0 if sys_len >= ref_len else (float(np.exp(1.0 - ref_len / sys_len)) if sys_len else 0.0)
    precisions = [0.0] * max_order
    if not any(correct):
        return BLEUScore(0.0, tuple(precisions), bp, sys_len, ref_len)
    halvings = 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n]:
            precisions[n] = 100.0 * correct[n] / total[n]
        else:
            halvings *= 2
            precisions[n] = 100.0 / (halvings * total[n])
    if 0.0 in precisions:   # an order with no n-gram at all: the geometric mean is 0
        return BLEUScore(0.0, tuple(precisions), bp, sys_len, ref_len)
    score = bp * float(np.exp(np.mean(np.log(precisions))))
    return BLEUScore(score, tuple(precisions), bp, sys_len, ref_len)


def rmse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Root mean squared error over all elements.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 10, Implementing a Regression MLP, Model Evaluation:
    over a data set, stream it with ``RMSE()``; the mean of per-batch RMSEs is not the RMSE.

    Args:
        predictions: Any shape ``S``.
        targets: Shape ``S``.

    Returns:
        A float32 scalar.
    """
    return jnp.sqrt(mse(predictions, targets))


# --------------------------------------------------------------------------------------------------
# R² and MAPE (scikit-learn's r2_score and mean_absolute_percentage_error)
# --------------------------------------------------------------------------------------------------

_MULTIOUTPUT = ("uniform_average", "raw_values", "variance_weighted")
# scikit-learn's guard against zero targets in MAPE: |y - p| / max(|y|, eps) with eps = float64's epsilon.
MAPE_EPSILON = float(np.finfo(np.float64).eps)


def _regression_arrays(fn: str, predictions, targets, weights) -> tuple[Any, Any, Any]:
    """Float32 ``(N, D)`` predictions and targets and ``(N,)`` weights, checked (a 1-D input is one output).

    Concrete inputs become NumPy arrays, checked for NaN/inf and negative weights as scikit-learn does (with
    no compilation: the math runs in one jitted function after); traced ones (inside ``jit``) pass as they
    are, and a non-finite value there gives a NaN result instead. Missing weights are ones.
    """
    arrays = []
    for name, value in (("predictions", predictions), ("targets", targets), ("weights", weights)):
        if value is None or isinstance(value, jax.core.Tracer):
            arrays.append(value)
            continue
        try:
            value = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{fn}: {name} must be numbers, got {type(value).__name__}") from None
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{fn}: {name} contain NaN or inf; drop or fill those rows first")
        arrays.append(value)
    p, y, w = arrays
    _check_same_shape(fn, p, y)
    if p.ndim not in (1, 2):
        raise ValueError(f"{fn}: predictions must be (N,) or (N, outputs), got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError(f"{fn}: no examples (predictions of shape {p.shape})")
    if w is None:
        w = np.ones(p.shape[:1], np.float32)
    elif w.shape != p.shape[:1]:
        raise ValueError(f"{fn}: weights shape {w.shape} must be (N,) = {p.shape[:1]}, one weight per example")
    elif isinstance(w, np.ndarray) and w.min() < 0:
        raise ValueError(f"{fn}: weights must be >= 0, got a minimum of {float(w.min())}")
    if p.ndim == 1:
        p, y = p[:, None], y[:, None]
    return p, y, w


def _r2_from_sums(rss: jax.Array, tss: jax.Array, multioutput: str) -> jax.Array:
    """Per-output scores ``1 - rss / tss`` with scikit-learn's ``force_finite`` rules, then averaged.

    A perfect prediction (``rss == 0``) scores 1 even for a constant target; an imperfect one of a constant
    target (``tss == 0``) scores 0 instead of -inf.
    """
    scores = jnp.where(rss == 0, 1.0, jnp.where(tss == 0, 0.0, 1.0 - rss / jnp.where(tss == 0, 1.0, tss)))
    if multioutput == "raw_values":
        return scores
    if multioutput == "variance_weighted":
        total = jnp.sum(tss)
        # all targets constant: the weights are all 0, so fall back to the plain mean, as scikit-learn does
        return jnp.where(total > 0, jnp.sum(tss * scores) / jnp.where(total > 0, total, 1.0), jnp.mean(scores))
    return jnp.mean(scores)


def _weighted_mean(y: jax.Array, w: jax.Array) -> jax.Array:
    """``sum w y / sum w`` per column of ``(N, D)``, exact for a constant column (0 when all w are 0).

    Shifted by the first real row: a constant target then has deviations of exactly 0 (float32's
    ``sum(w * 5) / sum(w)`` need not be 5, which would make a constant target's R² huge and negative),
    and the sums stay small for targets far from 0.
    """
    n = jnp.sum(w)
    shift = y[jnp.argmax(w != 0)]
    return shift + jnp.sum(w[:, None] * (y - shift), axis=0) / jnp.where(n > 0, n, 1.0)


def r2_score(predictions: jax.Array, targets: jax.Array, weights: jax.Array | None = None, *,
             multioutput: str = "uniform_average") -> jax.Array:
    """Coefficient of determination, ``1 - sum w (y - p)^2 / sum w (y - mean_w(y))^2``, per output.

    Equal to ``sklearn.metrics.r2_score(targets, predictions, sample_weight=weights,
    multioutput=multioutput)`` (note dlcore's order: predictions first, as every dlcore metric), with its
    ``force_finite`` rules: a perfect prediction scores 1, an imperfect prediction of a constant target
    0. It is what scikit-learn regressors' ``score()`` returns, e.g. ``MLPRegressor``'s validation score.
    For a whole data set in batches use the streaming ``R2Score`` (``Trainer(metrics=["r2"])``).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 9, Introduction to Artificial Neural
    Networks, Regression MLPs (the validation score, 0.7915, is R²).

    Args:
        predictions: Shape ``(N,)`` or ``(N, D)``.
        targets: The same shape.
        weights: Optional ``(N,)`` non-negative sample weights.
        multioutput: For ``D`` outputs: ``"uniform_average"`` (the mean of the D scores),
            ``"variance_weighted"`` (weighted by each target's variance) or ``"raw_values"`` (the D scores).

    Returns:
        A float32 scalar, or ``(D,)`` with ``"raw_values"``.

    Raises:
        ValueError: Shapes that differ, no examples or only one, negative weights, NaN/inf in concrete
            inputs, an unknown ``multioutput``.
    """
    check_choice(multioutput, "multioutput", _MULTIOUTPUT, who="r2_score")
    p, y, w = _regression_arrays("r2_score", predictions, targets, weights)
    if p.shape[0] < 2:
        raise ValueError(f"r2_score: R² is not defined for fewer than two examples, got {p.shape[0]}")
    return _r2_core(p, y, w, multioutput)


@functools.partial(jax.jit, static_argnums=3)
def _r2_core(p: jax.Array, y: jax.Array, w: jax.Array, multioutput: str) -> jax.Array:
    mean = _weighted_mean(y, w)
    tss = jnp.sum(w[:, None] * jnp.square(y - mean), axis=0)
    rss = jnp.sum(w[:, None] * jnp.square(y - p), axis=0)
    return _r2_from_sums(rss, tss, multioutput)


def mean_absolute_percentage_error(predictions: jax.Array, targets: jax.Array, weights: jax.Array | None = None,
                                   *, multioutput: str = "uniform_average",
                                   epsilon: float = MAPE_EPSILON) -> jax.Array:
    """Mean of ``|y - p| / max(|y|, epsilon)``: a fraction (0.1 is 10%), as scikit-learn and torchmetrics give.

    Equal to ``sklearn.metrics.mean_absolute_percentage_error(targets, predictions,
    sample_weight=weights, multioutput=multioutput)``. Zero targets: the denominator is
    ``max(|y|, epsilon)`` with scikit-learn's ``epsilon``, float64's machine epsilon (2.2e-16), so a
    zero target with any error gives an enormous value (``|p| / 2.2e-16``) rather than inf or NaN, a
    signal that MAPE does not suit that series (torchmetrics uses ``epsilon=1.17e-6``; pass it to match).
    Rows with zero targets are not dropped: drop them yourself if they are missing values.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 13, Processing Sequences Using RNNs and
    CNNs, Forecasting a Time Series (the naive forecast's MAPE).

    Args:
        predictions: Shape ``(N,)`` or ``(N, D)``.
        targets: The same shape.
        weights: Optional ``(N,)`` non-negative sample weights.
        multioutput: ``"uniform_average"`` or ``"raw_values"`` (one value per output).
        epsilon: The smallest denominator (> 0).

    Returns:
        A float32 scalar, or ``(D,)`` with ``"raw_values"``.

    Raises:
        ValueError: Shapes that differ, no examples, negative weights, NaN/inf in concrete inputs, a bad
            ``multioutput`` or ``epsilon``.
    """
    who = "mean_absolute_percentage_error"
    check_choice(multioutput, "multioutput", _MULTIOUTPUT[:2], who=who)
    epsilon = check_float(epsilon, "epsilon", low=0, low_open=True, who=who)
    p, y, w = _regression_arrays(who, predictions, targets, weights)
    return _mape_core(p, y, w, epsilon, multioutput)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _mape_core(p: jax.Array, y: jax.Array, w: jax.Array, epsilon: float, multioutput: str) -> jax.Array:
    ratios = jnp.abs(y - p) / jnp.maximum(jnp.abs(y), epsilon)
    per_output = jnp.sum(w[:, None] * ratios, axis=0) / jnp.sum(w)
    return per_output if multioutput == "raw_values" else jnp.mean(per_output)


# --------------------------------------------------------------------------------------------------
# Streaming metrics
# --------------------------------------------------------------------------------------------------


class Metric:
    """Protocol of a streaming metric: ``init``, ``update`` and ``compute``, all pure.

    Subclasses are frozen dataclasses (hashable, usable as static ``jit`` arguments) with a ``name``
    field: the key under which the training loop reports the value.
    """

    name: str

    def init(self) -> Accumulator:
        """Returns the empty accumulator: a dict of float32 scalar sums."""
        raise NotImplementedError

    def update(
        self,
        acc: Accumulator,
        outputs: jax.Array,
        targets: jax.Array,
        weights: jax.Array | None = None,
    ) -> Accumulator:
        """Folds one batch into the accumulator.

        Args:
            acc: The accumulator so far.
            outputs: Model outputs for the batch, shape ``(B, ...)``.
            targets: Targets for the batch, shape ``(B, ...)``.
            weights: Optional ``(B,)`` weights; a 0/1 mask leaves padded rows out.

        Returns:
            The new accumulator.
        """
        raise NotImplementedError

    def compute(self, acc: Accumulator) -> jax.Array:
        """Returns the metric's value (a scalar) from the accumulator."""
        raise NotImplementedError

    def __call__(
        self, outputs: jax.Array, targets: jax.Array, weights: jax.Array | None = None
    ) -> jax.Array:
        """The metric on one batch: ``compute(update(init(), outputs, targets, weights))``."""
        return self.compute(self.update(self.init(), outputs, targets, weights))


class _WeightedMean(Metric):
    """A weighted mean of per-element values, accumulated as ``total`` and ``count`` sums."""

    def values(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Per-element values, shape ``(B, ...)``."""
        raise NotImplementedError

    def init(self) -> Accumulator:
        return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

    def update(self, acc, outputs, targets, weights=None):
        values = jnp.asarray(self.values(outputs, targets), jnp.float32)
        if values.ndim == 0:
            values = values[None]
        if weights is None:
            w = jnp.ones(values.shape, jnp.float32)
        else:
            weights = jnp.asarray(weights, jnp.float32)
            if weights.shape != values.shape[:1]:
                raise ValueError(
                    f"{self.name}: weights shape {weights.shape} must be (B,) = {values.shape[:1]}, "
                    "one weight per example."
                )
            # A row's weight covers every element of the row (e.g. each time step of a sequence).
            w = jnp.broadcast_to(weights.reshape(weights.shape + (1,) * (values.ndim - 1)), values.shape)
        # where, not multiply: a padded row may hold garbage (NaN, inf) that 0 * x would let through.
        weighted = jnp.where(w != 0, values * w, 0.0)
        return {"total": acc["total"] + jnp.sum(weighted), "count": acc["count"] + jnp.sum(w)}

    def compute(self, acc):
        return acc["total"] / acc["count"]


@dataclasses.dataclass(frozen=True)
class Mean(_WeightedMean):
    """The weighted mean of any per-example function, e.g. ``Mean("loss", per_example_loss)``.

    Attributes:
        name: Report name.
        fn: ``fn(outputs, targets) -> (B,)`` (or ``(B, ...)``) values; must be hashable (a plain
            function is) so that the metric can be a static ``jit`` argument.
    """

    name: str
    fn: Callable[[Any, Any], jax.Array]

    def values(self, outputs, targets):
        return self.fn(outputs, targets)


@dataclasses.dataclass(frozen=True)
class Accuracy(_WeightedMean):
    """Streaming ``accuracy``: correct predictions over real examples (see ``accuracy``).

    Attributes:
        name: Report name.
        threshold: Decision threshold for single-logit (binary) outputs; 0.5 for probabilities.
    """

    name: str = "accuracy"
    threshold: float = 0.0

    def values(self, outputs, targets):
        return _correct(outputs, targets, self.threshold)


@dataclasses.dataclass(frozen=True)
class TopKAccuracy(_WeightedMean):
    """Streaming ``top_k_accuracy`` over real examples.

    Attributes:
        k: How many top classes count as a hit.
        name: Report name; ``f"top{k}_accuracy"`` when left empty.
    """

    k: int = 5
    name: str = ""

    def __post_init__(self):
        check_int(self.k, "k", low=1, who="TopKAccuracy")
        if not self.name:
            object.__setattr__(self, "name", f"top{self.k}_accuracy")

    def values(self, outputs, targets):
        return _top_k_correct(outputs, targets, self.k)


@dataclasses.dataclass(frozen=True)
class MAE(_WeightedMean):
    """Streaming mean absolute error over all real elements."""

    name: str = "mae"

    def values(self, outputs, targets):
        return _abs_error(outputs, targets)


@dataclasses.dataclass(frozen=True)
class MSE(_WeightedMean):
    """Streaming mean squared error over all real elements."""

    name: str = "mse"

    def values(self, outputs, targets):
        return _squared_error(outputs, targets)


@dataclasses.dataclass(frozen=True)
class RMSE(_WeightedMean):
    """Streaming root mean squared error: ``sqrt(sum of squared errors / count)`` over the whole set.

    It accumulates squared errors and takes the root once, in ``compute``; the mean of per-batch roots
    underestimates it (Jensen), the mistake Géron, Hands-On Machine Learning, PyTorch ed., ch. 10, Implementing a
    Regression MLP, Model Evaluation warns about.
    """

    name: str = "rmse"

    def values(self, outputs, targets):
        return _squared_error(outputs, targets)

    def compute(self, acc):
        return jnp.sqrt(acc["total"] / acc["count"])


@dataclasses.dataclass(frozen=True)
class MeanAbsolutePercentageError(_WeightedMean):
    """Streaming ``mean_absolute_percentage_error`` over all real elements (a fraction; 0.1 is 10%).

    The weighted mean of ``|y - p| / max(|y|, epsilon)`` over every element of every real row, equal to
    scikit-learn's ``mean_absolute_percentage_error`` (``multioutput="uniform_average"``) on the whole
    set at once. Zero targets are handled as scikit-learn does, with ``epsilon`` (see the function).
    By name: ``"mape"``.

    Attributes:
        name: Report name.
        epsilon: The smallest denominator (> 0); scikit-learn's float64 machine epsilon by default.
    """

    name: str = "mape"
    epsilon: float = MAPE_EPSILON

    def __post_init__(self):
        check_float(self.epsilon, "epsilon", low=0, low_open=True, who="MeanAbsolutePercentageError")

    def values(self, outputs, targets):
        _check_same_shape(self.name, outputs, targets)
        y = jnp.asarray(targets, jnp.float32)
        return jnp.abs(y - jnp.asarray(outputs, jnp.float32)) / jnp.maximum(jnp.abs(y), self.epsilon)


@dataclasses.dataclass(frozen=True)
class R2Score(Metric):
    """Streaming R² (coefficient of determination) over the whole set, equal to ``r2_score`` on it at once.

    Not a mean of per-batch R²s (each batch's own target mean would make them too low). The accumulator
    holds, per output, the weighted count, mean and sum of squared deviations of the targets, merged batch
    by batch with Chan et al.'s pairwise update (1979), and the residual sum of squares. The merge avoids
    the ``sum(y^2) - sum(y)^2 / n`` cancellation that float32 sums would suffer on targets far from 0.
    Scores follow scikit-learn's ``force_finite`` rules (see ``r2_score``); with fewer than two real rows
    the result is NaN. By name: ``"r2"`` (``Trainer(metrics=["r2"])`` logs ``val_r2``).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 9, Introduction to Artificial Neural
    Networks, Regression MLPs (``MLPRegressor``'s validation score is R²).

    Attributes:
        name: Report name.
        num_outputs: D, the number of regression outputs: outputs and targets are ``(B, D)`` (``(B,)`` is
            accepted for D = 1).
        multioutput: ``"uniform_average"`` (default), ``"variance_weighted"`` or ``"raw_values"`` (a
            ``(D,)`` result: for use outside the Trainer, whose logs are scalars).
    """

    name: str = "r2"
    num_outputs: int = 1
    multioutput: str = "uniform_average"

    def __post_init__(self):
        check_int(self.num_outputs, "num_outputs", low=1, who="R2Score")
        check_choice(self.multioutput, "multioutput", _MULTIOUTPUT, who="R2Score")

    def init(self) -> Accumulator:
        zeros = jnp.zeros((self.num_outputs,), jnp.float32)
        return {"count": jnp.zeros((), jnp.float32), "weight": jnp.zeros((), jnp.float32),
                "mean": zeros, "m2": zeros, "rss": zeros}

    def update(self, acc, outputs, targets, weights=None):
        _check_same_shape(self.name, outputs, targets)
        p = jnp.asarray(outputs, jnp.float32)
        y = jnp.asarray(targets, jnp.float32)
        if p.ndim == 1:
            p, y = p[:, None], y[:, None]
        if p.ndim != 2 or p.shape[1] != self.num_outputs:
            raise ValueError(f"{self.name}: outputs of shape {tuple(jnp.shape(outputs))} do not match "
                             f"num_outputs={self.num_outputs}; expected (B, {self.num_outputs})"
                             + (" or (B,)" if self.num_outputs == 1 else ""))
        if weights is None:
            w = jnp.ones(p.shape[:1], jnp.float32)
        else:
            w = jnp.asarray(weights, jnp.float32)
            if w.shape != p.shape[:1]:
                raise ValueError(f"{self.name}: weights shape {w.shape} must be (B,) = {p.shape[:1]}, "
                                 "one weight per example.")
        real = (w != 0)[:, None]
        # where, not multiply: a padded row may hold garbage (NaN, inf) that 0 * x would let through.
        y = jnp.where(real, y, 0.0)
        p = jnp.where(real, p, 0.0)
        wc = w[:, None]
        n_b = jnp.sum(w)
        mean_b = _weighted_mean(y, w)
        m2_b = jnp.sum(wc * jnp.square(jnp.where(real, y - mean_b, 0.0)), axis=0)
        n_a = acc["weight"]
        n = n_a + n_b
        safe_n = jnp.where(n > 0, n, 1.0)
        delta = mean_b - acc["mean"]
        return {"count": acc["count"] + jnp.sum(real),
                "weight": n,
                "mean": acc["mean"] + delta * (n_b / safe_n),
                "m2": acc["m2"] + m2_b + jnp.square(delta) * (n_a * n_b / safe_n),
                "rss": acc["rss"] + jnp.sum(wc * jnp.square(y - p), axis=0)}

    def compute(self, acc):
        r2 = _r2_from_sums(acc["rss"], acc["m2"], self.multioutput)
        return jnp.where(acc["count"] >= 2, r2, jnp.nan)


@dataclasses.dataclass(frozen=True)
class Perplexity(Metric):
    """Streaming perplexity: ``exp`` of the mean token cross-entropy over every real token of the set.

    Language-model figures (Stevens/Antiga, Subramanian and Jha report perplexity per epoch) are the
    exponential of the mean negative log-likelihood per token; like RMSE it is taken once over all
    tokens, not averaged over batches. Tokens whose target is ``ignore_index`` (padding) and rows of
    weight 0 count nowhere.

    Shapes: logits ``(B, T, V)`` (or ``(B, V)``), integer targets ``(B, T)`` (or ``(B,)``).
    """

    name: str = "perplexity"
    ignore_index: int | None = None

    def init(self) -> Accumulator:
        return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

    def update(self, acc, outputs, targets, weights=None):
        logits = jnp.asarray(outputs, jnp.float32)
        targets = jnp.asarray(targets)
        if logits.shape[:-1] != targets.shape:
            raise ValueError(f"perplexity: targets shape {targets.shape} must equal logits.shape[:-1] = "
                             f"{logits.shape[:-1]} (class axis last)")
        mask = jnp.ones(targets.shape, jnp.float32)
        if self.ignore_index is not None:
            mask = (targets != self.ignore_index).astype(jnp.float32)
        if weights is not None:
            w = jnp.asarray(weights, jnp.float32)
            mask = mask * w.reshape(w.shape + (1,) * (targets.ndim - 1))
        safe = jnp.where(mask > 0, targets, 0).astype(jnp.int32)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), safe[..., None], axis=-1)[..., 0]
        return {"total": acc["total"] + jnp.sum(jnp.where(mask > 0, nll * mask, 0.0)),
                "count": acc["count"] + jnp.sum(mask)}

    def compute(self, acc):
        return jnp.exp(acc["total"] / acc["count"])


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


METRICS: Registry[Callable[[], Metric]] = Registry("metric", normalize=str.lower)
METRICS.register("accuracy", Accuracy)
METRICS.register("top_k_accuracy", TopKAccuracy)
METRICS.register("mae", MAE)
METRICS.register("mse", MSE)
METRICS.register("rmse", RMSE)
METRICS.register("precision", Precision)
METRICS.register("recall", Recall)
METRICS.register("f1", F1, aliases=["f1_score"])
METRICS.register("perplexity", Perplexity, aliases=["ppl"])
METRICS.register("r2", R2Score, aliases=["r2_score"])
METRICS.register("mape", MeanAbsolutePercentageError, aliases=["mean_absolute_percentage_error"])
_TOP_K = re.compile(r"top(\d+)_accuracy")
# Names that exist as functions but cannot be streamed exactly, and what to do instead.
_NOT_STREAMING = {
    "roc_auc": "metric 'roc_auc' cannot stream: it ranks every score of the set at once, which no "
               "per-batch sum gives exactly; compute it on all the predictions instead, "
               "dlcore.metrics.roc_auc(trainer.predict(x), y)",
}


def names() -> list[str]:
    """The metric names ``get`` resolves (``"topK_accuracy"`` stands for any ``K``, e.g. ``top5``)."""
    return sorted([*METRICS.names(), "topK_accuracy"])


def get(name_or_metric: str | Metric) -> Metric:
    """Resolves a metric name to a streaming metric; a ``Metric`` is returned as is.

    Args:
        name_or_metric: ``"accuracy"``, ``"top_k_accuracy"`` (k = 5), ``"top5_accuracy"`` (any k),
            ``"mae"``, ``"mse"``, ``"rmse"``, ``"r2"``, ``"mape"``, ``"precision"``, ``"recall"``, ``"f1"``,
            ``"perplexity"`` (any case), or a ``Metric`` instance.

    Returns:
        The ``Metric``.

    Raises:
        ValueError: For an unknown name (`dlcore.registry.UnknownNameError`, naming the close
            matches), or for ``"roc_auc"``, which cannot stream (see ``roc_auc``).
    """
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    if isinstance(name_or_metric, str):
        key = name_or_metric.strip().lower()
        if key in _NOT_STREAMING:
            raise ValueError(_NOT_STREAMING[key])
        match = _TOP_K.fullmatch(key)
        if match and int(match.group(1)) >= 1:
            return TopKAccuracy(k=int(match.group(1)))
    return METRICS.get(name_or_metric)()
