"""Argument checks shared by the optimizers, penalties and L-BFGS.

Hyperparameters may be traced (``optax.inject_hyperparams``, vmapped sweeps): those are left unchecked,
and only plain Python numbers decide the structure of a chain, so that init and update always build the
same chain.
"""

from __future__ import annotations

import math
from typing import Any

import jax


def _concrete(x: Any) -> float | None:
    """``x`` as a float when it is a concrete number; None for a schedule, a tracer or a non-number."""
    if callable(x) or isinstance(x, jax.core.Tracer):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _check(name: str, value: Any, low: float = 0.0, high: float | None = None, *, high_open=False):
    """Raises PyTorch's ``ValueError("Invalid ...")`` when a concrete ``value`` is outside ``[low, high]``."""
    v = _concrete(value)
    if v is None:
        return
    bad = v < low or (high is not None and (v >= high if high_open else v > high))
    if bad or math.isnan(v):
        bracket = ")" if high_open else "]"
        where = f">= {low}" if high is None else f"in [{low}, {high}{bracket}"
        raise ValueError(f"Invalid {name}: {value!r}; it must be {where}.")


def _is_zero(x: Any) -> bool:
    """True only for a plain Python zero: an array, even a concrete one, may be traced in update."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0
