"""Argument checks shared by the optimizers, penalties, clipping and L-BFGS.

Every numeric hyperparameter is checked when the optimizer is built, so that a bad one (a string such as
``"0.1"``, a bool, None, NaN, a number out of range) is one ``ValueError`` line that names the optimizer
and the argument, not a failure at the first step::

    sgd: lr must be a finite number >= 0 or a schedule (a function of the step), got '0.1'

Accepted: Python and NumPy real numbers (not bools), concrete 0-d JAX or NumPy arrays of a real dtype,
traced values (``optax.inject_hyperparams``, vmapped sweeps: left unchecked but for their dtype), and a
callable where the argument may be a schedule. Only plain Python numbers decide the structure of a chain,
so that init and update always build the same chain.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import _range, check_float

SCHEDULE = " or a schedule (a function of the step)"

# Set by ``injectable``: optax.inject_hyperparams turns a callable for any numeric argument into a schedule.
_ANY_SCHEDULE: contextvars.ContextVar[bool] = contextvars.ContextVar("dlcore_optim_any_schedule", default=False)


@contextlib.contextmanager
def any_schedule() -> Iterator[None]:
    """Within the block every numeric argument may be a schedule (what ``inject_hyperparams`` supports)."""
    token = _ANY_SCHEDULE.set(True)
    try:
        yield
    finally:
        _ANY_SCHEDULE.reset(token)


class HyperparameterError(ValueError):
    """A bad hyperparameter; ``arg`` is its name (``param_groups`` uses it to name the group)."""

    def __init__(self, message: str, arg: str):
        super().__init__(message)
        self.arg = arg


def _real_dtype(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


def _real_scalar(x: Any) -> float | None:
    """``x`` as a float when it is a concrete real scalar (not a bool, a string, a callable); else None."""
    if isinstance(x, (bool, np.bool_, str, bytes)) or callable(x) or isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)) and np.ndim(x) == 0 and _real_dtype(x.dtype):
        return float(x)
    return None


def _concrete(x: Any) -> float | None:
    """``x`` as a float when it is a concrete number; None for a schedule, a tracer or a non-number."""
    return _real_scalar(x)


def _check(name: str, value: Any, low: float = 0, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, finite: bool = True, schedule: bool = False, who: str | None = None) -> None:
    """Raises one ValueError line naming ``who`` and ``name`` unless ``value`` is a number in range.

    A traced value passes when its dtype is real (its value is unknown until it runs); a callable passes
    when ``schedule`` (or inside ``any_schedule``). The range check is ``dlcore.checks.check_float``'s.
    """
    if isinstance(value, jax.core.Tracer):
        if _real_dtype(value.dtype):
            return
    elif callable(value):
        if schedule or _ANY_SCHEDULE.get():
            return
    else:
        v = _real_scalar(value)
        if v is not None:
            try:
                check_float(v, name, low=low, high=high, low_open=low_open, high_open=high_open, finite=finite,
                            who=who)
                return
            except ValueError:
                pass
    kind = "a finite number" if finite else "a number"
    prefix = f"{who}: " if who else ""
    accepted = kind + _range(low, high, low_open, high_open) + (SCHEDULE if schedule else "")
    raise HyperparameterError(f"{prefix}{name} must be {accepted}, got {value!r}", name)


def _check_flag(name: str, value: Any, who: str | None = None) -> None:
    """A switch (``nesterov``, ``amsgrad``, ...) must be a bool: ``"False"`` would be true."""
    if not isinstance(value, (bool, np.bool_)):
        prefix = f"{who}: " if who else ""
        raise HyperparameterError(f"{prefix}{name} must be True or False, got {value!r}", name)


def _is_zero(x: Any) -> bool:
    """True only for a plain Python zero: an array, even a concrete one, may be traced in update."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0
