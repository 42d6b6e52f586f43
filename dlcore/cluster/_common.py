"""What every estimator of `dlcore.cluster` shares: input checks, dtype and precision, keys, distances.

Estimators follow scikit-learn's shape (constructor hyperparameters, `fit` returning `self`, fitted
attributes ending in `_` stored as NumPy arrays), but the numbers come from jitted JAX functions.

Precision: `dtype=jnp.float32` (the default) computes in float32. `dtype=jnp.float64` computes in
float64 inside a local `jax.enable_x64(True)` context, which leaves the process-wide setting alone;
use it where figures must equal scikit-learn's (which computes in float64) to many digits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import keys

__all__ = ["NotFittedError"]

HIGHEST = jax.lax.Precision.HIGHEST


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before `fit`."""


def resolve_dtype(dtype: Any) -> np.dtype:
    """`float32` or `float64` as a NumPy dtype; anything else is a ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


@contextlib.contextmanager
def precision(dtype: np.dtype) -> Iterator[None]:
    """Run JAX in float64 for `dtype=float64` (a local context), as configured otherwise."""
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            yield
    else:
        yield


def check_array(X: Any, dtype: np.dtype, *, who: str, n_features: int | None = None,
                min_samples: int = 1, name: str = "X") -> np.ndarray:
    """`X` as a C-contiguous `(n_samples, n_features)` array of `dtype`, or a one-line ValueError.

    Args:
        X: array-like `(n_samples, n_features)`.
        dtype: float32 or float64.
        who: the estimator or function name, for messages.
        n_features: the number of features the estimator was fitted with (predict-time check).
        min_samples: the fewest rows accepted.
        name: the argument's name, for messages.
    """
    if isinstance(X, jax.Array):
        X = np.asarray(X)
    try:
        arr = np.asarray(X)
        if arr.dtype.kind not in "biuf":
            raise TypeError
        arr = np.ascontiguousarray(arr, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a numeric array of shape (n_samples, n_features), "
                         f"got {type(X).__name__}") from None
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1), a single sample with X.reshape(1, -1))" \
            if arr.ndim == 1 else ""
        raise ValueError(f"{who}: {name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{who}: {name} has {arr.shape[0]} samples, at least {min_samples} needed")
    if arr.shape[1] < 1:
        raise ValueError(f"{who}: {name} has no features (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{who}: {name} has {arr.shape[1]} features, but the estimator was fitted "
                         f"with {n_features}; pass data with the same columns as in fit")
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise ValueError(f"{who}: {name} contains NaN or infinity (first at row {row}, as {dtype}); "
                         f"drop or impute those values first")
    return arr


def check_fitted(est: Any, attribute: str, method: str) -> None:
    """Raise NotFittedError when `est` has no `attribute` yet."""
    if getattr(est, attribute, None) is None:
        raise NotFittedError(f"this {type(est).__name__} is not fitted yet; call fit(X) before {method}()")


def as_key(random_state: Any, who: str) -> jax.Array:
    """A raw PRNG key (`dlcore.keys.as_key`) from `random_state`: an int seed, a key, or None (seed 0: runs
    are repeatable)."""
    return keys.as_key(0 if random_state is None else random_state, "random_state", who=who)


def sq_distances(X: jax.Array, C: jax.Array, x_sq: jax.Array | None = None) -> jax.Array:
    """Squared Euclidean distances `(n, k)` between rows of `X (n, d)` and `C (k, d)`.

    Uses |x|^2 - 2 x.c + |c|^2 (one matmul, at full precision: no TF32 on GPUs), clamped at 0.
    Callers centre the data first so the cancellation stays small.
    """
    if x_sq is None:
        x_sq = jnp.sum(X * X, axis=1)
    c_sq = jnp.sum(C * C, axis=1)
    cross = jnp.dot(X, C.T, precision=HIGHEST)
    return jnp.maximum(x_sq[:, None] - 2 * cross + c_sq[None, :], 0)


def batch_for(n_rows: int, per_row: int, budget: int = 1 << 25) -> int:
    """How many rows (inits, chunks) to process at once so `rows * per_row` stays near `budget`."""
    return int(max(1, min(n_rows, budget // max(per_row, 1))))
