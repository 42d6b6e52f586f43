"""Gradient clipping with PyTorch's formulas: as transforms that go before the optimizer
(``clip_grad_norm``, ``clip_grad_value``, ``with_clipping``) and as pure functions on gradient pytrees
(``clip_by_norm``, ``clip_by_value``).

References:
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Gradient Clipping;
    Pascanu et al., "On the difficulty of training recurrent neural networks" (2013).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from dlcore.optim._checks import _check

__all__ = ["clip_by_norm", "clip_by_value", "clip_grad_norm", "clip_grad_value", "with_clipping"]


def _total_norm(grads: optax.Updates, norm_type: float) -> jax.Array:
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(grads)]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    if norm_type == math.inf:
        return jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in leaves]))
    if norm_type == 2.0:
        return optax.tree.norm(grads)
    return jnp.sum(jnp.stack([jnp.sum(jnp.abs(g) ** norm_type) for g in leaves])) ** (1.0 / norm_type)


def clip_by_norm(grads: optax.Updates, max_norm: float, norm_type: float = 2.0) -> optax.Updates:
    """Scales a gradient pytree so that its total norm is at most ``max_norm`` (``clip_grad_norm_``).

    The norm is over all leaves together; the scale is ``min(1, max_norm / (norm + 1e-6))``, PyTorch's
    formula (optax.clip_by_global_norm has no 1e-6 and leaves gradients under the limit untouched).
    Clipping by norm keeps the gradient's direction: ``[0.9, 100.0]`` becomes ``[0.00899964, 0.9999595]``
    for ``max_norm=1`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Gradient Clipping).

    Args:
        grads: A pytree of gradient arrays.
        max_norm: Largest allowed total norm (> 0).
        norm_type: The p of the p-norm (2.0 by default; ``math.inf`` for the max norm).

    Returns:
        The clipped pytree, same structure and shapes.
    """
    _check("max_norm", max_norm, low=0, low_open=True, finite=False, who="clip_by_norm")
    _check("norm_type", norm_type, low=0, low_open=True, finite=False, who="clip_by_norm")
    norm = _total_norm(grads, norm_type)
    scale = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: (g * scale).astype(jnp.asarray(g).dtype), grads)


def clip_by_value(grads: optax.Updates, clip_value: float) -> optax.Updates:
    """Clips every gradient component to ``[-clip_value, clip_value]`` (``clip_grad_value_``).

    Unlike clipping by norm this can turn the gradient: ``[0.9, 100.0]`` becomes ``[0.9, 1.0]`` for
    ``clip_value=1`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Gradient Clipping).

    Args:
        grads: A pytree of gradient arrays.
        clip_value: Largest allowed magnitude of a component (> 0).

    Returns:
        The clipped pytree, same structure and shapes.
    """
    _check("clip_value", clip_value, low=0, low_open=True, finite=False, who="clip_by_value")
    return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads)


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """Transform form of ``clip_by_norm`` (PyTorch's ``clip_grad_norm_`` at every step).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Gradient Clipping;
    Pascanu et al., "On the difficulty of training recurrent neural networks" (2013).

    Args:
        max_norm: Largest allowed total norm (> 0).
        norm_type: The p of the p-norm.

    Returns:
        A stateless ``optax.GradientTransformation``.
    """
    _check("max_norm", max_norm, low=0, low_open=True, finite=False, who="clip_grad_norm")
    _check("norm_type", norm_type, low=0, low_open=True, finite=False, who="clip_grad_norm")
    return optax.stateless(lambda updates, params=None: clip_by_norm(updates, max_norm, norm_type))


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """Transform form of ``clip_by_value`` (PyTorch's ``clip_grad_value_``; it is optax.clip).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Gradient Clipping.

    Args:
        clip_value: Largest allowed magnitude of a component (> 0).

    Returns:
        A stateless ``optax.GradientTransformation``.
    """
    _check("clip_value", clip_value, low=0, low_open=True, finite=False, who="clip_grad_value")
    return optax.clip(clip_value)


def with_clipping(
    tx: optax.GradientTransformation,
    *,
    max_norm: float | None = None,
    clip_value: float | None = None,
) -> optax.GradientTransformation:
    """Clips gradients before the optimizer: ``optax.chain(clip, tx)``.

    This is the order of a PyTorch loop that calls ``clip_grad_norm_`` (or ``clip_grad_value_``) between
    ``loss.backward()`` and ``optimizer.step()``: clipping sees the raw gradients, before weight decay.

    Args:
        tx: The optimizer.
        max_norm: Clip by total norm (see ``clip_grad_norm``).
        clip_value: Clip each component (see ``clip_grad_value``).

    Returns:
        The chained transformation; ``tx`` itself when neither limit is given.

    Raises:
        ValueError: If both limits are given: choose one, the order of two clippings changes the result.
    """
    if max_norm is not None and clip_value is not None:
        raise ValueError(
            "with_clipping: give max_norm or clip_value, not both (their order changes the result); "
            "chain clip_grad_value and clip_grad_norm yourself to have both."
        )
    if max_norm is not None:
        return optax.chain(clip_grad_norm(max_norm), tx)
    if clip_value is not None:
        return optax.chain(clip_grad_value(clip_value), tx)
    return tx
