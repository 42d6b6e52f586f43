"""PRNG keys: how dlcore makes them and which ones it accepts.

The choice: where dlcore makes a key itself it makes a raw one, ``jax.random.PRNGKey(seed)`` (a
``uint32[2]`` array). A raw key is a plain array, so it is saved in Orbax checkpoints and NumPy files as
it is (the ``TrainState`` and ``Trainer`` keep theirs this way) and it has the same bits as the typed
``jax.random.key(seed)``, so both give the same numbers. Every function that takes a key accepts
either kind, a typed ``jax.random.key`` or a raw ``uint32[2]`` one; code that takes a key or a seed from
the user passes it through `as_key`, which returns the raw form.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import is_int

__all__ = ["as_key"]


def as_key(key_or_seed: Any, name: str = "key", *, who: str | None = None) -> jax.Array:
    """A raw ``uint32[2]`` PRNG key from an int seed, a typed ``jax.random.key`` or a raw key.

    Args:
        key_or_seed: an int seed (``jax.random.PRNGKey(seed)``), a typed key (its key data, default
            threefry implementation), or a raw ``uint32[2]`` key (returned as it is). Works on traced
            keys too.
        name: the argument's name, for the message.
        who: the function or class, for the message.

    Raises:
        ValueError: for anything else (a bool, a float, None, a batch of keys, another key shape).
    """
    if is_int(key_or_seed):
        return jax.random.PRNGKey(int(key_or_seed))
    dtype, shape = getattr(key_or_seed, "dtype", None), getattr(key_or_seed, "shape", None)
    if dtype is not None and not isinstance(key_or_seed, (bool, numbers.Number)):
        key = key_or_seed
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            key = jax.random.key_data(key)
        if key.dtype == np.uint32 and key.shape == (2,):
            return jnp.asarray(key)
    got = repr(key_or_seed) if dtype is None else f"{type(key_or_seed).__name__} of {dtype}{list(shape)}"
    prefix = f"{who}: " if who else ""
    raise ValueError(f"{prefix}{name} must be an int seed or one jax.random key (typed, or raw uint32[2]), "
                     f"got {got}")
