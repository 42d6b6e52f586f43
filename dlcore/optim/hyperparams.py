"""Hyperparameters kept in the optimizer state, so that they change between epochs without recompiling.

PyTorch's schedulers and plateau callbacks write ``group["lr"]`` between steps. Here ``injectable``
builds the optimizer with ``optax.inject_hyperparams``, which keeps every numeric hyperparameter as an
array of the state; ``get_hyperparams`` reads them and ``set_hyperparams`` returns a state with new values
(the callbacks of ``dlcore.train.lr`` use them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore.optim._checks import any_schedule
from dlcore.optim.optimizers import _factory, create

__all__ = ["get_hyperparams", "injectable", "set_hyperparams"]


def injectable(name: str, **kwargs: Any) -> optax.GradientTransformation:
    """``create(name, **kwargs)`` with its numeric hyperparameters kept in the optimizer state.

    ``optax.inject_hyperparams`` stores ``lr`` (and every other number) as an array of the state, so a
    callback can change it between epochs (``set_hyperparams``) without recompiling the jitted step: the
    PyTorch habit of writing ``group["lr"]`` in a scheduler. The arguments are checked now, as
    ``create`` checks them. The trajectory is the plain optimizer's (the injected numbers are float32,
    as PyTorch's are float64 on the host: Adam's bias corrections may move by ~1e-7). Any numeric
    hyperparameter may be a schedule here (``inject_hyperparams`` evaluates it every update), not only
    those the plain factory schedules.

    Args:
        name: An optimizer name (see ``names()``).
        **kwargs: Its arguments.

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose state is an ``InjectStatefulHyperparamsState``.
    """
    with any_schedule():
        create(name, **kwargs)  # validates names and values at construction
    return optax.inject_hyperparams(_factory(name))(**kwargs)


def _inject_states(x: Any) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState)


def get_hyperparams(opt_state: Any, name: str = "lr") -> list[float]:
    """The current values of hyperparameter ``name`` in every injected optimizer of ``opt_state``.

    One value per ``injectable`` optimizer, in the order the state flattens (parameter groups by
    label). A scheduled hyperparameter reports the value of its last update.

    Raises:
        ValueError: If no injected optimizer has ``name``.
    """
    found = [float(st.hyperparams[name]) for st in jax.tree.leaves(opt_state, is_leaf=_inject_states)
             if _inject_states(st) and name in st.hyperparams]
    if not found:
        raise ValueError(f"The optimizer state holds no injected hyperparameter {name!r}; build the optimizer "
                         f"with dlcore.optim.injectable(...) (or param_groups(..., inject=True)).")
    return found


def set_hyperparams(opt_state: Any, name: str, values: float | Sequence[float]) -> Any:
    """A copy of ``opt_state`` with hyperparameter ``name`` set (one value, or one per injected optimizer).

    The new values keep the old arrays' dtype and shape, so a jitted step that takes the state as an
    argument does not recompile.

    Raises:
        ValueError: If ``name`` is not injected, is a schedule (its value is recomputed every update),
            or the number of values is wrong.
    """
    count = len(get_hyperparams(opt_state, name))
    vals = [values] * count if np.ndim(values) == 0 else list(values)  # one number (Python, NumPy or JAX)
    if len(vals) != count:
        raise ValueError(f"set_hyperparams: {count} injected optimizer(s) hold {name!r}, got {len(vals)} values.")
    it = iter(vals)

    def put(st):
        if not (_inject_states(st) and name in st.hyperparams):
            return st
        if name in st.hyperparams_states:
            raise ValueError(f"{name!r} is a schedule in this optimizer; it cannot be set by hand.")
        old = st.hyperparams[name]
        return st._replace(hyperparams={**st.hyperparams, name: jnp.asarray(next(it), old.dtype)})

    return jax.tree.map(put, opt_state, is_leaf=_inject_states)
