"""TrainState: a model split once into a static graph and arrays, plus optimizer state and step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

# What a model holds besides parameters: batch-norm statistics and any other Variable. RNG
# streams are kept apart because each step reseeds them from its own key (see `fresh_rngs`).
_REST = nnx.All(nnx.Not(nnx.Param), nnx.Not(nnx.RngState))


@struct.dataclass
class TrainState:
    """Everything a training step reads and writes, as one pytree.

    Attributes:
        graphdef: the model's static structure in training mode (dropout on, batch norm updating).
        eval_graphdef: the same structure in eval mode (dropout off, batch norm running averages).
        tx: the optax optimizer.
        params: `nnx.Param` state, what the optimizer updates.
        rest: other variables (batch-norm statistics, ...), updated by the forward pass.
        rngs: the model's RNG stream state; overwritten from the step key at every step.
        opt_state: the optimizer's state.
        step: number of optimizer steps taken, int32 scalar.
        key: base PRNG key (raw uint32[2]); step `s` uses `fold_in(key, s)` for dropout, so a resumed
            run draws the same masks as an uninterrupted one.
    """

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    eval_graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    params: nnx.State
    rest: nnx.State
    rngs: nnx.State
    opt_state: Any
    step: jax.Array
    key: jax.Array

    @classmethod
    def create(cls, model: nnx.Module, tx: optax.GradientTransformation, *, seed: int = 0,
               key: jax.Array | None = None) -> "TrainState":
        """Split `model` once (`nnx.split`) and initialise the optimizer on its parameters.

        Args:
            model: the module; it is left in training mode, as a new PyTorch module is.
            tx: the optax optimizer.
            seed: seeds the base key of the dropout masks, unless `key` is given.
            key: the base key itself (raw uint32[2]).
        """
        model.eval()
        eval_graphdef = nnx.graphdef(model)
        model.train()
        graphdef, params, rngs, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return cls(graphdef=graphdef, eval_graphdef=eval_graphdef, tx=tx, params=params, rest=rest,
                   rngs=rngs, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                   key=jax.random.PRNGKey(seed) if key is None else key)

    def model(self, train: bool = False, key: jax.Array | None = None, params: nnx.State | None = None) -> nnx.Module:
        """Merge the arrays back into a module (inside a traced function, or to inspect one).

        Args:
            train: training mode (dropout on, batch statistics) or eval mode.
            key: when given, reseeds the model's RNG streams for this call (training mode).
            params: parameters to use instead of the state's (the argument a loss is differentiated in).
        """
        rngs = self.rngs if key is None else fresh_rngs(self.rngs, key)
        return nnx.merge(self.graphdef if train else self.eval_graphdef, self.params if params is None else params,
                         self.rest, rngs, copy=True)

    def apply_gradients(self, grads: nnx.State, model: nnx.Module | None = None) -> "TrainState":
        """One optimizer step: this state with `grads` applied by its optimizer and `step` + 1.

        Args:
            grads: gradients with the structure of `params`.
            model: the module the loss ran (from `model(train=True, ...)`), whose other variables
                (batch-norm statistics) the new state takes; None keeps the state's.

        Example (a custom step, see `dlcore.Trainer`):
            >>> def loss(params):
            ...     return losses.reduce(losses.mse(state.model(True, key, params)(x), y))
            >>> state = state.apply_gradients(jax.grad(loss)(state.params))
        """
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        rest = self.rest if model is None else nnx.state(model, _REST)
        return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state, rest=rest,
                            step=self.step + 1)

    def write_to(self, model: nnx.Module) -> None:
        """Copy the trained arrays back into the user's `model` (`nnx.update`)."""
        nnx.update(model, self.params, self.rest)

    def checkpoint_tree(self) -> dict:
        """The arrays a checkpoint needs: weights, other variables, optimizer state, step and key."""
        return {"params": self.params, "rest": self.rest, "opt_state": self.opt_state,
                "step": self.step, "key": self.key}

    def replace_from_checkpoint(self, tree: dict) -> "TrainState":
        """This state with the arrays of `checkpoint_tree()` put back."""
        return self.replace(**tree)


def fresh_rngs(rngs: nnx.State, key: jax.Array) -> nnx.State:
    """RNG stream state with every key replaced by one derived from `key` and counts reset.

    A step's dropout masks then depend only on the step key, not on how many steps ran in this
    process, which is what makes resume bit-exact.
    """
    leaves, treedef = jax.tree.flatten(rngs)
    out = []
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jax.random.fold_in(key, i), impl=jax.random.key_impl(leaf)))
        else:
            out.append(jnp.zeros_like(leaf))
    return jax.tree.unflatten(treedef, out)
