"""A small in-memory batch loader over split dicts of NumPy arrays."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["batches", "num_batches", "validate_split"]


def validate_split(split: Mapping[str, Any]) -> int:
    """Checks that ``split`` is a usable split and returns its length.

    Args:
        split: A mapping of names to arrays, with at least ``"x"``; every value
            has a leading example axis of the same length ``N``.

    Returns:
        ``N``, the number of examples (>= 1).

    Raises:
        ValueError: If ``split`` is not a mapping, lacks ``"x"``, holds a
            value without a leading axis, has arrays of different lengths, or
            is empty.
    """
    if not isinstance(split, Mapping):
        raise ValueError(
            f"a split must be a dict of arrays with at least an 'x' key, got "
            f"{type(split).__name__}"
        )
    if "x" not in split:
        raise ValueError(
            f"split has no 'x' key (keys: {list(split)}); put the inputs under 'x'"
        )
    lengths = {}
    for key, value in split.items():
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"split[{key!r}] must be an array with a leading example axis, got "
                f"{type(value).__name__} with shape {shape}; wrap it with np.asarray "
                "and give it one row per example"
            )
        lengths[key] = int(shape[0])
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(
            f"split arrays differ in length ({listing}); every array needs one row "
            "per example"
        )
    n = lengths["x"]
    if n == 0:
        raise ValueError("split is empty (0 examples); check how it was built or sliced")
    return n


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches `batches` yields for ``n`` examples.

    Args:
        n: Number of examples, >= 0.
        batch_size: Examples per batch, >= 1.
        drop_last: Whether a final short batch is dropped.

    Returns:
        ``n // batch_size`` with ``drop_last``, else ``ceil(n / batch_size)``.

    Raises:
        ValueError: If ``n`` < 0 or ``batch_size`` < 1.
    """
    _check_batch_size(batch_size)
    if not _is_int(n) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    split: Mapping[str, Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | Any | None = None,
    drop_last: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterates over ``split`` in batches.

    The split is validated when this is called, not on the first ``next``.
    Each call makes one pass (one epoch); pass a different seed per epoch to
    reshuffle.

    Args:
        split: A split as accepted by `validate_split`, ``N`` examples.
        batch_size: Examples per batch, >= 1.
        shuffle: Visit the examples in a random order.
        seed: For ``shuffle``: an int (NumPy generator), a ``jax.random`` key
            (the order is ``jax.random.permutation(seed, N)``), or None for a
            fresh random order. Ignored without ``shuffle``.
        drop_last: Drop the final batch when it has fewer than ``batch_size``
            examples, so that every batch has the same shape (one jit trace).

    Yields:
        Dicts with the keys of ``split``; each value has ``batch_size`` rows
        (the last may have fewer unless ``drop_last``). Without ``shuffle``
        the values may be views of the split's arrays.

    Raises:
        ValueError: For an invalid split, ``batch_size`` or ``seed``.
    """
    n = validate_split(split)
    _check_batch_size(batch_size)
    arrays = {k: np.asarray(v) for k, v in split.items()}
    order = _permutation(n, seed) if shuffle else None
    stop = num_batches(n, batch_size, drop_last) * batch_size
    return _iterate(arrays, order, batch_size, n, stop)


def _iterate(
    arrays: dict[str, np.ndarray],
    order: np.ndarray | None,
    batch_size: int,
    n: int,
    stop: int,
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            yield {k: a[start:end] for k, a in arrays.items()}
        else:
            idx = order[start:end]
            yield {k: a[idx] for k, a in arrays.items()}


def _permutation(n: int, seed: Any) -> np.ndarray:
    if seed is None:
        return np.random.default_rng().permutation(n)
    if isinstance(seed, bool):
        raise ValueError(f"seed must be None, an int >= 0 or a jax.random key, got {seed!r}")
    if _is_int(seed):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(int(seed)).permutation(n)
    import jax

    try:
        return np.asarray(jax.random.permutation(seed, n))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"seed must be None, an int >= 0 or a jax.random key, got "
            f"{type(seed).__name__} ({err})"
        ) from None


def _check_batch_size(batch_size: Any) -> None:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
