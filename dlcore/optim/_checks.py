"""Argument checks shared by the optimizers, penalties and L-BFGS.

Hyperparameters may be traced (``optax.inject_hyperparams``, vmapped sweeps): those are left unchecked,
and only plain Python numbers decide the structure of a chain, so that init and update always build the
same chain.
"""

from __future__ import annotations

from typing import Any

import jax

from dlcore.checks import check_float


def _concrete(x: Any) -> float | None:
    """``x`` as a float when it is a concrete number; None for a schedule, a tracer or a non-number."""
    if callable(x) or isinstance(x, jax.core.Tracer):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _check(name: str, value: Any, low: float = 0, high: float | None = None, *, high_open: bool = False,
           who: str | None = None) -> None:
    """`dlcore.checks.check_float` on a concrete ``value`` (NaN rejected, infinity allowed, as PyTorch)."""
    v = _concrete(value)
    if v is not None:
        check_float(v, name, low=low, high=high, high_open=high_open, finite=False, who=who)


def _is_zero(x: Any) -> bool:
    """True only for a plain Python zero: an array, even a concrete one, may be traced in update."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0
