"""One registry of models: `create(name, **kw)`, `names()`, parameter counts."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from flax import nnx

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


def register(name: str):
    """Class or factory decorator that registers a model under `name`."""

    def deco(factory):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = factory
        return factory

    return deco


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def create(name: str, *, seed: int = 0, rngs: nnx.Rngs | None = None, **kwargs) -> nnx.Module:
    """Build the model registered as `name`.

    Args:
        name: a name from `names()`.
        seed: seed of the `nnx.Rngs` used for initialisation and dropout, when `rngs` is not given.
        rngs: explicit random streams (overrides `seed`).
        **kwargs: the model's own constructor arguments.

    Raises:
        ValueError: for an unknown name.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}") from None
    return factory(**kwargs, rngs=rngs if rngs is not None else nnx.Rngs(seed))


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (`nnx.Param` leaves), as `sum(p.numel() for p in model.parameters())`."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
