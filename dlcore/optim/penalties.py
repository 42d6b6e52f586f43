"""Penalties and constraints applied through the optimizer: L1 and L2 penalties, the max-norm
constraint, and masks that keep pruned weights at zero.

Each is a stateless optax transform over the gradients (penalties: chain it before the optimizer) or
over the updates (``max_norm``, ``keep_masks``: chain it last). Which parameters it touches is a pattern
of ``dlcore.optim.paths`` (default: weights, not biases or normalisation parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from dlcore.optim._checks import _check
from dlcore.optim.paths import Pattern, mask_of, weights_only

__all__ = ["add_l1", "add_l2", "keep_masks", "max_norm"]


def _penalty(name: str, where: Pattern,
             grad: Callable[[jax.Array], jax.Array]) -> optax.GradientTransformation:
    """Adds ``grad(p)``, a penalty's gradient, to the gradient of every parameter ``where`` matches."""

    def f(updates, params=None):
        if params is None:
            raise ValueError(f"{name} needs the parameters: call tx.update(grads, state, params).")
        mask = mask_of(params, where)
        return jax.tree.map(lambda g, p, m: g + grad(p) if m else g, updates, params, mask)

    return optax.stateless(f)


def add_l1(coef: float, where: Pattern = weights_only) -> optax.GradientTransformation:
    """Adds the gradient of the L1 penalty ``coef * sum(|p|)``: ``g + coef * sign(p)``.

    Chained before the optimizer (``optax.chain(add_l1(1e-4), adam(1e-3))``) this is the book's
    ``loss = main_loss + 1e-4 * sum(p.abs().sum())`` without the penalty in the reported loss;
    ``sign(0) = 0`` as autograd's ``abs`` backward gives.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Avoiding Overfitting Through
    Regularization, ℓ1 and ℓ2 Regularization; Ketkar & Moolayil, Deep Learning with Python, 2nd ed.,
    ch. 5, A Practical Implementation in PyTorch (Listing 5-12, L1 regularization).

    Args:
        coef: Penalty coefficient (>= 0).
        where: Which parameters are penalised (default: weights, not biases or norm parameters).

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    _check("coef", coef, who="add_l1")
    return _penalty("add_l1", where, lambda p: coef * jnp.sign(p))


def add_l2(coef: float, where: Pattern = weights_only) -> optax.GradientTransformation:
    """Adds the gradient of the L2 penalty ``coef * sum(p**2)``: ``g + 2 * coef * p``.

    The book's manual penalty ``main_loss + 1e-4 * sum(p.pow(2).sum())`` (Géron, Hands-On Machine
    Learning, PyTorch ed., ch. 11, Avoiding Overfitting Through Regularization, ℓ1 and ℓ2
    Regularization), applied only ``where`` (default: weights, not biases or norm parameters). Note the
    factor 2: it equals an optimizer ``weight_decay`` of ``2 * coef``.

    Args:
        coef: Penalty coefficient (>= 0).
        where: Which parameters are penalised.

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    _check("coef", coef, who="add_l2")
    return _penalty("add_l2", where, lambda p: 2 * coef * p)


def _norm_axes(ndim: int, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim - 1))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def max_norm(
    max_value: float, axis: int | Sequence[int] | None = None, eps: float = 1e-8, where: Pattern = weights_only
) -> optax.GradientTransformation:
    """Max-norm constraint applied after each step: every unit's incoming weights get ``||w|| <= r``.

    Put it last in the chain: it turns the update ``u`` into ``w' - p`` where ``w = p + u`` and
    ``w' = w * clip(||w||, 0, r) / (eps + ||w||)``, the book's ``apply_max_norm`` called after
    ``optimizer.step()`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Max-Norm
    Regularization). The norm runs over ``axis``; the default (all axes but the
    last) is one norm per output unit for dlcore's ``(in, out)`` kernels and per filter for
    ``(kh, kw, in, out)`` conv kernels, PyTorch's ``dim=1`` / ``dim=[1, 2, 3]``.

    Args:
        max_value: The largest allowed norm ``r`` (> 0).
        axis: Axes of each norm; None for all but the last.
        eps: Smoothing term of the rescaling.
        where: Which parameters are constrained (default: weights, not biases).

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    _check("max_value", max_value, low=0, low_open=True, finite=False, who="max_norm")
    _check("eps", eps, who="max_norm")

    def constrain(u, p, m):
        if not m:
            return u
        w = p + u
        norm = jnp.sqrt(jnp.sum(w * w, axis=_norm_axes(w.ndim, axis), keepdims=True))
        return w * (jnp.clip(norm, 0.0, max_value) / (eps + norm)) - p

    def f(updates, params=None):
        if params is None:
            raise ValueError("max_norm needs the parameters: call tx.update(grads, state, params).")
        return jax.tree.map(constrain, updates, params, mask_of(params, where))

    return optax.stateless(f)


def keep_masks(masks: Any) -> optax.GradientTransformation:
    """Multiplies every update by a 0/1 mask, so pruned weights stay zero while the rest trains.

    PyTorch's pruning reparametrises ``weight = weight_orig * mask``; here the weights are zeroed once
    (``dlcore.nn.regularization.l1_unstructured`` / ``ln_structured``) and this transform, last in the
    chain, keeps them there.

    Args:
        masks: A pytree like the parameters: arrays of 0/1 (or None to leave a leaf free).

    Returns:
        A stateless ``optax.GradientTransformation``.
    """

    def f(updates, params=None):
        del params
        return jax.tree.map(lambda u, m: u if m is None else u * m.astype(u.dtype), updates, masks,
                            is_leaf=lambda x: x is None)

    return optax.stateless(f)
