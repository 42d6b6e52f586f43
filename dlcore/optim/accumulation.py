"""Gradient accumulation: one optimizer step per k micro-batches."""

from __future__ import annotations

import optax

from dlcore.checks import check_int

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
    every_k = check_int(every_k, "every_k", low=1, who="accumulate")
    return optax.MultiSteps(tx, every_k_schedule=every_k).gradient_transformation()
