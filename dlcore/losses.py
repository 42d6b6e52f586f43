"""Per-example losses with PyTorch's semantics and JAX's layout.

Every loss returns one value per example, as optax does, and leaves the reduction to the caller:
``losses.reduce(per_example, "mean", weights=mask)``. For the regression losses and the binary
cross-entropies the per-example value is the mean over all non-batch axes of the element-wise loss, so
the mean over the batch equals PyTorch's default ``reduction="mean"``. ``cross_entropy`` and ``nll`` return
one value per labelled position (the labels' shape) and also take a ``reduction`` argument, because
PyTorch's weighted mean divides by the sum of the target classes' weights, which a plain mean of the
per-position values cannot reproduce.

Layout: the class axis is LAST (``(..., C)``), the JAX convention. PyTorch puts it at dim 1
(``(N, C, d1, ...)``); move it with ``jnp.moveaxis(x, 1, -1)`` when porting.

Shapes are checked when the function is traced, from static shapes, and a mismatch raises a
``ValueError`` instead of broadcasting silently: PyTorch only warns when ``(B, 1)`` predictions meet
``(B,)`` targets, and the broadcast ``(B, B)`` loss it then computes is a classic silent bug.

References:
    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch: ch. 9, Regression MLPs (MSE, MAE,
    Huber); ch. 10, Building the Classifier and Other Classification Losses (cross-entropy on logits, NLL,
    BCE, label smoothing, class weights);
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2016) for label
    smoothing;
    Subramanian, Deep Learning with PyTorch, ch. 7, Generative Networks: Neural style transfer (content
    and style losses, the Gram matrix) and Generative adversarial networks (the DCGAN's losses).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from dlcore.boxes import sigmoid_focal_loss  # RetinaNet's loss lives with the boxes
from dlcore.checks import check_choice, check_float

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "content_loss",
    "cross_entropy",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "gram_matrix",
    "huber",
    "mae",
    "mse",
    "nll",
    "reduce",
    "sigmoid_focal_loss",
    "style_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _check_same_shape(fn: str, a_name: str, a, b_name: str, b) -> None:
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{fn}: {a_name} shape {jnp.shape(a)} != {b_name} shape {jnp.shape(b)}. Shapes must match "
            "exactly (no silent broadcasting); reshape one of them, e.g. predictions[:, 0] for a "
            "(B, 1) model output against (B,) targets."
        )


def _check_broadcastable_to(fn: str, name: str, value, shape: Sequence[int]) -> None:
    vshape = jnp.shape(value)
    try:
        out = jnp.broadcast_shapes(vshape, tuple(shape))
    except ValueError:
        out = None
    if out != tuple(shape):
        raise ValueError(f"{fn}: {name} of shape {vshape} does not broadcast to shape {tuple(shape)}.")


def _per_example(x: jax.Array) -> jax.Array:
    """Mean over every axis but the first: (B, ...) -> (B,)."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def _as_float(x) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


# --------------------------------------------------------------------------------------------------
# Reduction
# --------------------------------------------------------------------------------------------------


def reduce(losses: jax.Array, reduction: str = "mean", *, weights: jax.Array | None = None) -> jax.Array:
    """Reduces per-example losses, optionally weighted or masked.

    With weights, ``"mean"`` is the weighted mean ``sum(l * w) / sum(w)``; a 0/1 mask is such a weight,
    so padded rows of a last partial batch do not count. As in PyTorch, a mean over nothing (all weights
    zero) is NaN.

    Args:
        losses: Per-example (or per-position) losses, any shape ``S``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weights: Optional weights broadcastable to ``S`` (e.g. a ``(B,)`` 0/1 mask for ``(B,)`` losses).

    Returns:
        A scalar for ``"mean"`` and ``"sum"``; for ``"none"`` the (weighted) losses, shape ``S``.

    Raises:
        ValueError: For an unknown reduction or weights that do not broadcast to the losses' shape.
    """
    check_choice(reduction, "reduction", _REDUCTIONS, who="reduce")
    losses = jnp.asarray(losses)
    if weights is None:
        if reduction == "mean":
            return jnp.mean(losses)
        if reduction == "sum":
            return jnp.sum(losses)
        return losses
    _check_broadcastable_to("reduce", "weights", weights, losses.shape)
    w = jnp.broadcast_to(jnp.asarray(weights, losses.dtype), losses.shape)
    # where, not only multiply: a padded row's loss may be NaN or inf, and 0 * NaN is NaN.
    weighted = jnp.where(w != 0, losses * w, 0.0)
    if reduction == "mean":
        return jnp.sum(weighted) / jnp.sum(w)
    if reduction == "sum":
        return jnp.sum(weighted)
    return weighted


# --------------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------------


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error per example (PyTorch ``nn.MSELoss``).

    Reference: Géron, ch. 10, Linear Regression Using PyTorch's High-Level API;
    ``mean(mse(p, t)) == F.mse_loss(p, t)``.

    Args:
        predictions: Shape ``(B, ...)``.
        targets: Same shape as ``predictions``.

    Returns:
        Shape ``(B,)``: the mean of ``(p - t)**2`` over the non-batch axes.
    """
    _check_same_shape("mse", "predictions", predictions, "targets", targets)
    return _per_example(optax.losses.squared_error(_as_float(predictions), _as_float(targets)))


def mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean absolute error per example (PyTorch ``nn.L1Loss``).

    Reference: Géron, ch. 9, Regression MLPs (MSE, MAE and Huber compared).

    Args:
        predictions: Shape ``(B, ...)``.
        targets: Same shape as ``predictions``.

    Returns:
        Shape ``(B,)``: the mean of ``|p - t|`` over the non-batch axes.
    """
    _check_same_shape("mae", "predictions", predictions, "targets", targets)
    return _per_example(jnp.abs(_as_float(predictions) - _as_float(targets)))


def huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
    """Huber loss per example (PyTorch ``nn.HuberLoss``).

    Element-wise ``0.5 * d**2`` for ``|d| <= delta`` and ``delta * (|d| - 0.5 * delta)`` beyond, with
    ``d = p - t``: quadratic near zero, linear (robust to outliers) far from it.

    Reference: Géron, ch. 9, Regression MLPs; ch. 13, Forecasting Using a Linear Model; Huber, "Robust
    Estimation of a Location Parameter" (1964).

    Args:
        predictions: Shape ``(B, ...)``.
        targets: Same shape as ``predictions``.
        delta: Where the loss turns from quadratic to linear; must be positive.

    Returns:
        Shape ``(B,)``: the mean element-wise Huber loss over the non-batch axes.
    """
    _check_same_shape("huber", "predictions", predictions, "targets", targets)
    if isinstance(delta, (int, float)):  # an array (traced or not) is the caller's to check
        check_float(delta, "delta", low=0, low_open=True, finite=False, who="huber")
    return _per_example(optax.losses.huber_loss(_as_float(predictions), _as_float(targets), delta=delta))


# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------


def _check_class_weight(fn: str, weight, num_classes: int) -> None:
    if weight is not None and jnp.shape(weight) != (num_classes,):
        raise ValueError(
            f"{fn}: weight must have shape (C,) = ({num_classes},), one weight per class; "
            f"got {jnp.shape(weight)}."
        )


def _hard_label_terms(
    fn: str,
    log_probs: jax.Array,
    labels: jax.Array,
    weight: jax.Array | None,
    ignore_index: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(-w[y] * log_probs[y], w[y], keep)`` per position; ignored positions give zeros."""
    if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        raise ValueError(
            f"{fn}: labels of shape {jnp.shape(labels)} (= logits.shape[:-1]) are class indices and must "
            f"be integers, got dtype {jnp.asarray(labels).dtype}. For probability (soft) targets pass "
            "an array with the logits' shape."
        )
    labels = jnp.asarray(labels)
    keep = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    # Ignored positions hold an arbitrary id (PyTorch's -100): gather at class 0 instead, then zero it.
    # Any other label outside [0, C) must give NaN, not a silently clamped or wrapped real class (PyTorch
    # raises, which traced code cannot): negatives go to C, and mode="fill" maps C and above to NaN.
    num_classes = log_probs.shape[-1]
    safe = jnp.where(keep, jnp.where(labels < 0, num_classes, labels), 0)
    picked = jnp.take_along_axis(log_probs, safe[..., None], axis=-1, mode="fill", fill_value=jnp.nan)
    picked = picked[..., 0]
    w_y = (
        jnp.ones_like(picked)
        if weight is None
        else jnp.asarray(weight, log_probs.dtype)[jnp.minimum(safe, num_classes - 1)]
    )
    w_y = jnp.where(keep, w_y, 0.0)
    return jnp.where(keep, -w_y * picked, 0.0), w_y, keep


def nll(
    log_probs: jax.Array,
    labels: jax.Array,
    *,
    weight: jax.Array | None = None,
    ignore_index: int | None = None,
    reduction: str = "none",
) -> jax.Array:
    """Negative log-likelihood of class labels given log-probabilities (PyTorch ``F.nll_loss``).

    Use after a ``log_softmax`` head (Jha, Mastering PyTorch, ch. 1); on raw logits use ``cross_entropy``.

    Reference: Géron, ch. 10, Other Classification Losses (``nn.LogSoftmax`` + ``nn.NLLLoss``); Jha,
    Mastering PyTorch, ch. 1 (MNIST ConvNet).

    Args:
        log_probs: Log-probabilities, shape ``(..., C)`` (class axis last; PyTorch's is dim 1).
        labels: Integer class ids, shape ``(...)`` = ``log_probs.shape[:-1]``.
        weight: Optional per-class weights, shape ``(C,)``.
        ignore_index: Optional label value whose positions give loss 0 and do not count in the mean.
        reduction: ``"none"`` (shape ``(...)``), ``"sum"`` or ``"mean"``. With ``weight`` the mean divides
            by the sum of the target classes' weights over non-ignored positions, as PyTorch does.

    Returns:
        ``-weight[y] * log_probs[..., y]`` per position, or its reduction (a scalar).

    Raises:
        ValueError: On mismatched shapes, non-integer labels, a bad ``weight`` shape or reduction.
    """
    check_choice(reduction, "reduction", _REDUCTIONS, who="nll")
    log_probs = _as_float(log_probs)
    if log_probs.ndim < 1 or jnp.shape(labels) != log_probs.shape[:-1]:
        raise ValueError(
            f"nll: labels shape {jnp.shape(labels)} must equal log_probs.shape[:-1] = "
            f"{log_probs.shape[:-1]} (the class axis is last)."
        )
    _check_class_weight("nll", weight, log_probs.shape[-1])
    losses, w_y, _ = _hard_label_terms("nll", log_probs, labels, weight, ignore_index)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return jnp.sum(losses)
    return jnp.sum(losses) / jnp.sum(w_y)


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    weight: jax.Array | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
) -> jax.Array:
    """Softmax cross-entropy on logits (PyTorch ``F.cross_entropy``), with every PyTorch option.

    Two kinds of target, as in PyTorch:

    * **class indices**: integer ``labels`` of shape ``logits.shape[:-1]``. With ``label_smoothing`` = e
      the loss is ``(1 - e) * nll + e / C * smooth`` where ``nll = -w[y] log p_y`` and
      ``smooth = -sum_c w[c] log p_c``; ignored positions give 0 in both terms. ``"mean"`` divides the sum
      by ``sum(w[y])`` over non-ignored positions (their count without weights), exactly as PyTorch.
    * **probabilities** (soft labels): float ``labels`` with the logits' shape. The loss is
      ``-sum_c w[c] q_c log p_c`` with ``q = (1 - e) * labels + e / C``; ``"mean"`` divides by the number
      of positions (PyTorch does not normalise by weights here).

    A mean over no positions (all ignored) is NaN, as in PyTorch.

    Reference: Géron, ch. 10, Building the Classifier (loss on logits) and Other Classification Losses
    (label smoothing, class weights);
    Szegedy et al. (2016) for label smoothing.

    Args:
        logits: Unnormalised scores, shape ``(..., C)``: class axis LAST (PyTorch's is dim 1).
        labels: Integer class ids of shape ``(...)`` = ``logits.shape[:-1]``, or class probabilities
            of shape ``(..., C)``.
        weight: Optional per-class weights, shape ``(C,)``.
        ignore_index: Optional label value whose positions give loss 0 and are left out of the mean
            (class-index labels only).
        label_smoothing: In ``[0, 1]``; mixes the target with the uniform distribution over classes.
        reduction: ``"none"`` (shape ``logits.shape[:-1]``), ``"mean"`` or ``"sum"`` (scalars).

    Returns:
        The loss per position, shape ``logits.shape[:-1]``, or its reduction.

    Raises:
        ValueError: If the labels fit neither target kind, class-index labels are not integers, the
            weight is not ``(C,)``, ``label_smoothing`` is outside ``[0, 1]``, ``ignore_index`` is given
            with soft labels, or the reduction is unknown.
    """
    check_choice(reduction, "reduction", _REDUCTIONS, who="cross_entropy")
    logits = _as_float(logits)
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits must have a class axis, shape (..., C).")
    num_classes = logits.shape[-1]
    _check_class_weight("cross_entropy", weight, num_classes)
    if isinstance(label_smoothing, (int, float)):  # an array (traced or not) is the caller's to check
        check_float(label_smoothing, "label_smoothing", low=0, high=1, who="cross_entropy")
    labels_shape = jnp.shape(labels)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    w = None if weight is None else jnp.asarray(weight, logits.dtype)

    if labels_shape == logits.shape:
        # Probability targets.
        if ignore_index is not None:
            raise ValueError(
                "cross_entropy: ignore_index only applies to class-index labels, not probability targets."
            )
        q = _as_float(labels)
        q = q * (1.0 - label_smoothing) + label_smoothing / num_classes
        wlp = log_probs if w is None else log_probs * w
        losses = -jnp.sum(q * wlp, axis=-1)
        return reduce(losses, reduction)

    if labels_shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: labels shape {labels_shape} must equal logits.shape[:-1] = "
            f"{logits.shape[:-1]} (class ids) or logits.shape = {logits.shape} (probabilities). "
            "The class axis is last; PyTorch's (N, C, ...) logits need jnp.moveaxis(logits, 1, -1)."
        )
    nll_terms, w_y, keep = _hard_label_terms("cross_entropy", log_probs, labels, w, ignore_index)
    losses = nll_terms
    if not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0):
        wlp = log_probs if w is None else log_probs * w
        smooth = jnp.where(keep, -jnp.sum(wlp, axis=-1), 0.0)
        losses = (1.0 - label_smoothing) * nll_terms + (label_smoothing / num_classes) * smooth
    if reduction == "none":
        return losses
    if reduction == "sum":
        return jnp.sum(losses)
    return jnp.sum(losses) / jnp.sum(w_y)


# --------------------------------------------------------------------------------------------------
# Binary classification
# --------------------------------------------------------------------------------------------------


def binary_cross_entropy(
    probs: jax.Array, targets: jax.Array, *, weight: jax.Array | None = None
) -> jax.Array:
    """Binary cross-entropy on probabilities per example (PyTorch ``nn.BCELoss``).

    As in PyTorch, each log is clamped at -100 so that a probability of exactly 0 or 1 gives a finite
    loss. Prefer ``binary_cross_entropy_with_logits`` on raw scores: it is exact where the sigmoid
    saturates.

    Reference: Géron, ch. 10, Other Classification Losses; Ketkar & Moolayil, ch. 3, Listing 3-4
    (``nn.BCELoss``).

    Args:
        probs: Probabilities in ``[0, 1]``, shape ``(B, ...)``.
        targets: Targets in ``[0, 1]``, same shape as ``probs``.
        weight: Optional rescaling weight broadcastable to ``probs``'s shape (PyTorch's ``weight``).

    Returns:
        Shape ``(B,)``: the mean over non-batch axes of
        ``-weight * (t * log p + (1 - t) * log(1 - p))``.
    """
    _check_same_shape("binary_cross_entropy", "probs", probs, "targets", targets)
    p = _as_float(probs)
    t = jnp.asarray(targets, p.dtype)

    def clamped_log(x):
        # The inner where keeps log's gradient (1/x = inf) out of the clamped branch, so the gradient at
        # x = 0 is 0 rather than NaN.
        positive = x > 0
        return jnp.maximum(jnp.where(positive, jnp.log(jnp.where(positive, x, 1.0)), -100.0), -100.0)

    loss = -(t * clamped_log(p) + (1.0 - t) * clamped_log(1.0 - p))
    if weight is not None:
        _check_broadcastable_to("binary_cross_entropy", "weight", weight, p.shape)
        loss = loss * jnp.asarray(weight, p.dtype)
    return _per_example(loss)


def binary_cross_entropy_with_logits(
    logits: jax.Array,
    targets: jax.Array,
    *,
    pos_weight: jax.Array | None = None,
    weight: jax.Array | None = None,
) -> jax.Array:
    """Sigmoid binary cross-entropy on logits per example (PyTorch ``nn.BCEWithLogitsLoss``).

    Computed as ``pos_weight * t * softplus(-x) + (1 - t) * softplus(x)`` (since
    ``-log sigmoid(x) = softplus(-x)``), which never takes the log of a rounded-off 0.

    Reference: Géron, ch. 10, Other Classification Losses, and ch. 11, Transfer Learning with PyTorch
    (``nn.BCEWithLogitsLoss``).

    Args:
        logits: Raw scores, shape ``(B, ...)``.
        targets: Targets in ``[0, 1]``, same shape as ``logits``.
        pos_weight: Optional weight of the positive term, broadcastable to the logits' shape; a ``(C,)``
            vector weights each of ``C`` labels (last axis), as in PyTorch.
        weight: Optional rescaling weight broadcastable to the logits' shape.

    Returns:
        Shape ``(B,)``: the mean element-wise loss over non-batch axes.
    """
    _check_same_shape("binary_cross_entropy_with_logits", "logits", logits, "targets", targets)
    x = _as_float(logits)
    t = jnp.asarray(targets, x.dtype)
    positive = t * jax.nn.softplus(-x)
    if pos_weight is not None:
        _check_broadcastable_to("binary_cross_entropy_with_logits", "pos_weight", pos_weight, x.shape)
        positive = positive * jnp.asarray(pos_weight, x.dtype)
    loss = positive + (1.0 - t) * jax.nn.softplus(x)
    if weight is not None:
        _check_broadcastable_to("binary_cross_entropy_with_logits", "weight", weight, x.shape)
        loss = loss * jnp.asarray(weight, x.dtype)
    return _per_example(loss)


# --------------------------------------------------------------------------------------------------
# Generative models: GANs and neural style transfer
# --------------------------------------------------------------------------------------------------


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """The GAN discriminator's loss per example: BCE of real images against 1 plus fake ones against 0.

    ``-log D(x) - log(1 - D(G(z)))`` with ``D = sigmoid(logits)``, computed on logits
    (``binary_cross_entropy_with_logits``) so a saturated discriminator gives a finite loss and gradient.
    Its batch mean is the book's ``errD_real + errD_fake`` with ``nn.BCELoss`` on a sigmoid output, or
    ``nn.BCEWithLogitsLoss()(real, ones) + nn.BCEWithLogitsLoss()(fake, zeros)``.

    Reference: Subramanian, Deep Learning with PyTorch, ch. 7, Generative adversarial networks, Training the
    discriminator; Goodfellow et al., "Generative Adversarial Networks" (2014).

    Args:
        real_logits: The discriminator's logits on real images, ``(B,)`` or ``(B, ...)`` (e.g. ``(B, 1, 1, 1)``).
        fake_logits: Its logits on generated images, the same shape: example ``i`` of each batch is paired.

    Returns:
        Shape ``(B,)``: ``bce(real_i, 1) + bce(fake_i, 0)``, each the mean over non-batch axes.
    """
    _check_same_shape("gan_discriminator_loss", "real_logits", real_logits, "fake_logits", fake_logits)
    real, fake = _as_float(real_logits), _as_float(fake_logits)
    return _per_example(jax.nn.softplus(-real)) + _per_example(jax.nn.softplus(fake))


def gan_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating GAN generator loss per example: BCE of the fakes' logits against 1, ``-log D(G(z))``.

    Minimising ``-log D(G(z))`` instead of ``log(1 - D(G(z)))`` keeps the generator's gradient large while the
    discriminator still rejects its samples (Goodfellow et al., 2014, section 3); it is what the book's
    ``criterion(output, real_label)`` on fake images computes.

    Reference: Subramanian, Deep Learning with PyTorch, ch. 7, Generative adversarial networks, Training the
    generator network.

    Args:
        fake_logits: The discriminator's logits on generated images, ``(B,)`` or ``(B, ...)``.

    Returns:
        Shape ``(B,)``: ``softplus(-logits)``, the mean over non-batch axes.
    """
    return _per_example(jax.nn.softplus(-_as_float(fake_logits)))


def gram_matrix(features: jax.Array) -> jax.Array:
    """Channel correlations of feature maps, normalised by the number of positions: ``F^T F / (H * W)``.

    With ``F`` the ``(H * W, C)`` matrix of one example's features, entry ``(c, d)`` is the mean over positions of
    ``f_c * f_d``; dividing by ``H * W`` keeps a large feature map from dominating the style loss, as the book
    does (``gram_matrix.div_(h * w)``; channels are not divided).

    Reference: Subramanian, Deep Learning with PyTorch, ch. 7, Neural style transfer, Style loss.

    Args:
        features: Channels-last feature maps ``(B, H, W, C)`` (any ``(B, *spatial, C)``).

    Returns:
        Shape ``(B, C, C)``, symmetric.
    """
    x = _as_float(features)
    if x.ndim < 3:
        raise ValueError(f"gram_matrix: features must be (B, H, W, C) (channels last), got shape {x.shape}.")
    f = x.reshape(x.shape[0], -1, x.shape[-1])                                   # (B, H*W, C)
    # HIGHEST: no reduced-precision (TF32 / bf16) passes on accelerators for a loss the optimiser follows
    return jnp.einsum("bnc,bnd->bcd", f, f, precision=jax.lax.Precision.HIGHEST) / f.shape[1]


def content_loss(features: jax.Array, target_features: jax.Array) -> jax.Array:
    """Style transfer's content loss per example: the MSE between an image's features and the content image's.

    Reference: Subramanian, Deep Learning with PyTorch, ch. 7, Neural style transfer, Content loss (``nn.MSELoss``
    between the outputs of one VGG layer for the content image and the image being optimised).

    Args:
        features: Feature maps of the images being optimised, ``(B, H, W, C)`` (any ``(B, ...)``).
        target_features: The content image's, the same shape or broadcastable to it (``(1, H, W, C)``).

    Returns:
        Shape ``(B,)``: the mean squared difference over non-batch axes; its batch mean is ``nn.MSELoss()``.
    """
    x = _as_float(features)
    _check_broadcastable_to("content_loss", "target_features", target_features, x.shape)
    return _per_example(jnp.square(x - jnp.asarray(target_features, x.dtype)))


def style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Style transfer's style loss per example at one layer: the MSE between Gram matrices.

    ``mean((gram_matrix(features) - target_gram) ** 2)`` over the ``C x C`` entries; the book weights each
    style layer's loss by ``1e3 / n**2`` (n its channels) and sums over the style layers.

    Reference: Subramanian, Deep Learning with PyTorch, ch. 7, Neural style transfer, Style loss.

    Args:
        features: Feature maps of the images being optimised, ``(B, H, W, C)``.
        target_gram: The style image's ``gram_matrix``, ``(C, C)`` or ``(1 or B, C, C)``.

    Returns:
        Shape ``(B,)``.
    """
    shape = jnp.shape(features)
    if len(shape) >= 3:                                   # check before computing anything
        _check_broadcastable_to("style_loss", "target_gram", target_gram, (shape[0], shape[-1], shape[-1]))
    g = gram_matrix(features)
    return _per_example(jnp.square(g - jnp.asarray(target_gram, g.dtype)))
