"""What every estimator of `dlcore.cluster` shares: input checks, dtype and precision, keys, distances.

Estimators follow scikit-learn's shape (constructor hyperparameters, `fit` returning `self`, fitted
attributes ending in `_` stored as NumPy arrays), but the numbers come from jitted JAX functions.

Precision follows the input, as in scikit-learn (`compute_dtype`): float32 data is computed and returned
in float32, float64 data in float64 (inside a local `jax.enable_x64(True)` context, which leaves the
process-wide setting alone), anything else (ints, lists) in float64. An estimator's `dtype=` argument,
where given, overrides the input's dtype.

scikit-learn's conventions a user relies on: `NotFittedError` is scikit-learn's (so `check_is_fitted`
and `except sklearn.exceptions.NotFittedError` see it), a fit that stops at `max_iter` without
converging warns with scikit-learn's `ConvergenceWarning`, and `random_state` takes None, an int, a
`np.random.RandomState` or a JAX key (dlcore's random stream is JAX's, not NumPy's: the same seed gives
other draws than scikit-learn's).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import sklearn.exceptions

from dlcore import keys

__all__ = ["ConvergenceWarning", "NotFittedError"]

ConvergenceWarning = sklearn.exceptions.ConvergenceWarning

HIGHEST = jax.lax.Precision.HIGHEST


class NotFittedError(sklearn.exceptions.NotFittedError):
    """A method that needs a fitted estimator was called before `fit` (scikit-learn's error: a ValueError
    and an AttributeError)."""


def resolve_dtype(dtype: Any) -> np.dtype:
    """`float32` or `float64` as a NumPy dtype; anything else is a ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def compute_dtype(X: Any, dtype: Any = None) -> np.dtype:
    """The dtype to compute in: `dtype` when given (float32 or float64), else the input's as scikit-learn
    does (float32 stays float32, float64 and everything else, ints and lists included, become float64)."""
    if dtype is not None:
        return resolve_dtype(dtype)
    dt = getattr(X, "dtype", None)
    try:
        return np.dtype(np.float32) if dt is not None and np.dtype(dt) == np.float32 else np.dtype(np.float64)
    except TypeError:  # a pandas extension dtype, say
        return np.dtype(np.float64)


def is_sparse(X: Any) -> bool:
    """Whether `X` is a SciPy sparse matrix or array."""
    return sp.issparse(X)


def check_sparse(X: Any, dtype: np.dtype, *, who: str, n_features: int | None = None, min_samples: int = 1,
                 name: str = "X") -> sp.csr_matrix:
    """SciPy sparse `X` (CSR, CSC, any format) as a CSR matrix of `dtype` with sorted, finite entries, or a
    one-line ValueError. Only the stored entries are copied (never a dense copy)."""
    if X.ndim != 2:
        raise ValueError(f"{who}: {name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{who}: {name} must be numeric, got a sparse matrix of {X.dtype}")
    X = sp.csr_matrix(X, dtype=dtype)
    X.sum_duplicates()
    _check_shape(X.shape, who=who, n_features=n_features, min_samples=min_samples, name=name)
    finite = np.isfinite(X.data)
    if not finite.all():
        row = int(np.searchsorted(X.indptr, np.argwhere(~finite)[0, 0], side="right") - 1)
        raise ValueError(f"{who}: {name} contains NaN or infinity (first at row {row}, as {dtype}); "
                         f"drop or impute those values first")
    return X


def _check_shape(shape, *, who, n_features, min_samples, name) -> None:
    if shape[0] < min_samples:
        raise ValueError(f"{who}: {name} has {shape[0]} samples, at least {min_samples} needed")
    if shape[1] < 1:
        raise ValueError(f"{who}: {name} has no features (shape {shape})")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{who}: {name} has {shape[1]} features, but the estimator was fitted "
                         f"with {n_features}; pass data with the same columns as in fit")


def to_device(X: np.ndarray) -> jax.Array:
    """A NumPy array on the default device, without a copy where XLA can alias it (CPU, C-contiguous,
    64-byte aligned); otherwise through one aligned host copy (a plain memcpy: `jnp.asarray` of an
    unaligned array is several times slower). Call under `precision(dtype)` for float64. The result may
    share memory with X: do not modify X while it is in use."""
    X = np.ascontiguousarray(X)
    if X.ctypes.data % 64:
        buf = np.empty(X.nbytes + 64, np.uint8)
        offset = (-buf.ctypes.data) % 64
        aligned = buf[offset:offset + X.nbytes].view(X.dtype).reshape(X.shape)
        np.copyto(aligned, X)
        X = aligned
    return jax.device_put(X)


def warn_not_converged(who: str, max_iter: int, what: str = "") -> None:
    """scikit-learn's `ConvergenceWarning` for a fit that stopped at `max_iter` without converging."""
    warnings.warn(f"{who}: stopped at max_iter={max_iter} without converging{what}; raise max_iter or tol",
                  ConvergenceWarning, stacklevel=3)


@contextlib.contextmanager
def precision(dtype: np.dtype) -> Iterator[None]:
    """Run JAX in float64 for `dtype=float64` (a local context), as configured otherwise."""
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            yield
    else:
        yield


def check_array(X: Any, dtype: np.dtype | None, *, who: str, n_features: int | None = None,
                min_samples: int = 1, name: str = "X", accept_sparse: bool = False) -> np.ndarray | sp.csr_matrix:
    """`X` as a C-contiguous `(n_samples, n_features)` array of `dtype`, or a one-line ValueError.

    Args:
        X: array-like `(n_samples, n_features)`, or a SciPy sparse matrix where `accept_sparse`.
        dtype: float32 or float64; None: `compute_dtype(X)` (the input's, as scikit-learn).
        who: the estimator or function name, for messages.
        n_features: the number of features the estimator was fitted with (predict-time check).
        min_samples: the fewest rows accepted.
        name: the argument's name, for messages.
        accept_sparse: return SciPy sparse input as a CSR matrix (`check_sparse`) instead of refusing it.
    """
    if dtype is None:
        dtype = compute_dtype(X)
    if is_sparse(X):
        if accept_sparse:
            return check_sparse(X, dtype, who=who, n_features=n_features, min_samples=min_samples, name=name)
        raise ValueError(f"{who}: {name} is a SciPy sparse matrix, which {who} does not take; "
                         f"pass a dense array (X.toarray()) if it fits in memory")
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
    _check_shape(arr.shape, who=who, n_features=n_features, min_samples=min_samples, name=name)
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
    """A raw PRNG key (`dlcore.keys.as_key`) from `random_state`.

    Args:
        random_state: None (seed 0: runs are repeatable), an int seed, a `np.random.RandomState` or
            `np.random.Generator` (one seed is drawn from it, so it advances as scikit-learn's estimators
            advance theirs), or a JAX key (typed or raw). dlcore's stream is JAX's: the same seed gives
            other draws than scikit-learn's.
        who: the estimator or function name, for messages.
    """
    if random_state is None:
        random_state = 0
    elif isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(np.iinfo(np.int32).max))
    elif isinstance(random_state, np.random.Generator):
        random_state = int(random_state.integers(np.iinfo(np.int32).max))
    elif isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and not (
            0 <= random_state < 2 ** 32):
        # scikit-learn's range; beyond it JAX's key would depend on jax_enable_x64 (float64 fits turn it on)
        raise ValueError(f"{who}: random_state must be an int in the range [0, 4294967295], got {random_state}")
    try:
        return keys.as_key(random_state, "random_state", who=who)
    except ValueError:
        raise ValueError(f"{who}: random_state must be None, an int seed, a np.random.RandomState or a "
                         f"jax.random key, got {random_state!r}") from None


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
