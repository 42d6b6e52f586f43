"""Argument checks: one helper for every scalar argument dlcore validates.

Each check returns the value (as a plain ``int``, ``float`` or the chosen item) or raises a one-line
``ValueError`` that names the argument, says what is accepted and shows the bad value::

    check_int(0, "batch_size", low=1)            # ValueError: batch_size must be an int >= 1, got 0
    check_float(1.5, "rho", low=0, high=1, who="adadelta")
                                                 # ValueError: adadelta: rho must be a finite number in [0, 1], got 1.5

``who`` (a function or class name) prefixes the message. This module is a leaf: it imports nothing from
dlcore (nor JAX), so every module may use it. Shape and array checks stay with the code that knows the
shapes (``dlcore.models._common.check_image``, ``dlcore.cluster._common.check_array``, ...).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_float", "check_int", "is_int"]


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer, False for a bool, a float or anything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(value: Any, name: str, accepted: str, who: str | None) -> ValueError:
    prefix = f"{who}: " if who else ""
    return ValueError(f"{prefix}{name} must be {accepted}, got {value!r}")


def _range(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _outside(v: float, low: Any, high: Any, low_open: bool, high_open: bool) -> bool:
    return ((low is not None and (v <= low if low_open else v < low))
            or (high is not None and (v >= high if high_open else v > high)))


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None,
              who: str | None = None) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) in ``[low, high]``; else a ValueError."""
    if not is_int(value) or _outside(value, low, high, False, False):
        raise _fail(value, name, "an int" + _range(low, high, False, False), who)
    return int(value)


def check_float(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, finite: bool = True,
                who: str | None = None) -> float:
    """``value`` as a ``float`` when it is a real number (not a bool) within the bounds; else a ValueError.

    Args:
        value: the argument.
        name: its name, for the message.
        low, high: the bounds, inclusive unless ``low_open`` / ``high_open``; None for none.
        finite: reject infinities too (NaN is always rejected).
        who: the function or class, for the message.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if math.isnan(v) or (finite and math.isinf(v)) or _outside(v, low, high, low_open, high_open):
        kind = "a finite number" if finite else "a number"
        raise _fail(value, name, kind + _range(low, high, low_open, high_open), who)
    return v


def check_choice(value: Any, name: str, choices: Iterable[Any], *, who: str | None = None) -> Any:
    """``value`` when it is one of ``choices``; else a ValueError listing them."""
    choices = tuple(choices)
    if not any(value is c or (type(value) is type(c) and value == c) or
               (isinstance(value, str) and isinstance(c, str) and value == c) for c in choices):  # np.str_ too
        raise _fail(value, name, "one of " + ", ".join(map(repr, choices)), who)
    return value
