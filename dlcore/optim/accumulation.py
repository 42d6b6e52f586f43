"""Gradient accumulation: one optimizer step per k micro-batches."""

from __future__ import annotations

import optax

__all__ = ["accumulate"]


def accumulate(tx: optax.GradientTransformation, every_k: int) -> optax.GradientTransformation:
    """Gradient accumulation: applies ``tx`` once every ``every_k`` calls to the mean of their gradients.

    The intermediate calls return zero updates. With equal-size micro-batches this is one step on a
    ``every_k`` times larger batch (the PyTorch loop that calls ``loss.backward()`` k times, dividing the
    loss by k, before ``optimizer.step()``). ``optax.MultiSteps`` underneath.

    Args:
        tx: The optimizer.
        every_k: Micro-batches per update (>= 1).

    Returns:
        An ``optax.GradientTransformationExtraArgs``.
    """
    if not isinstance(every_k, int) or isinstance(every_k, bool) or every_k < 1:
        raise ValueError(f"accumulate: every_k must be an int >= 1, got {every_k!r}.")
    return optax.MultiSteps(tx, every_k_schedule=every_k).gradient_transformation()
