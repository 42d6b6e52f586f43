"""TrainState: a model split once into a static graph and arrays, plus optimizer state and step."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from dlcore.checks import check_int

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

    @staticmethod
    def other_variables(model: nnx.Module) -> nnx.State:
        """The variables of `model` a TrainState keeps beside its parameters (`rest`): batch-norm statistics
        and the like, RNG streams left out. A custom step that runs a model twice, or hands one model's
        statistics through `jax.vjp`'s aux, takes them with this and puts them back with
        `state.replace(rest=...)`."""
        return nnx.state(model, _REST)

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

    # -- populations: N models of one structure, stacked on a leading axis for `jax.vmap` -------------

    @classmethod
    def stack(cls, states: Sequence["TrainState"]) -> "TrainState":
        """N states of one structure as one state whose array leaves have a leading axis N.

        The stacked state is what `jax.vmap` maps over: one vmapped `train_step` (or
        `dlcore.train.population_epoch`) then trains the N members at once. Per-member
        hyperparameters live in the optimizer state (`dlcore.optim.injectable`), so they stack too.

        Args:
            states: N >= 1 `TrainState`s with equal graphdefs and optimizer (`tx`) and arrays of equal
                shapes and dtypes.

        Returns:
            One `TrainState`: every array leaf (N, ...); the static fields of the first state.

        Raises:
            ValueError: (one line) no states, a non-state, or a member whose structure, shapes, dtypes
                or static fields differ from the first's.
        """
        states = list(states) if not isinstance(states, TrainState) else None
        if not states:
            raise ValueError("TrainState.stack needs a non-empty list of TrainStates (got none, or a single "
                             "state: pass [state, ...])")
        first = states[0]
        for i, st in enumerate(states):
            if not isinstance(st, TrainState):
                raise ValueError(f"TrainState.stack: member {i} is a {type(st).__name__}, not a TrainState")
            for field in ("graphdef", "eval_graphdef", "tx"):
                if getattr(st, field) != getattr(first, field):
                    hint = (" (build every member with the same optimizer object; per-member hyperparameters "
                            "go in its state: dlcore.optim.injectable and TrainState.population(hyperparams=))"
                            if field == "tx" else " (every member needs the same model structure)")
                    raise ValueError(f"TrainState.stack: member {i} has another {field} than member 0{hint}")
            if _spec(st) != _spec(first):
                raise ValueError(f"TrainState.stack: member {i}'s arrays differ from member 0's in structure, "
                                 f"shape or dtype: {_first_difference(_spec(first), _spec(st))}")
        return jax.tree.map(lambda *xs: jnp.stack(xs), *states)

    def unstack(self) -> list["TrainState"]:
        """The N members of a stacked state (`stack`'s inverse), as a list of states.

        Raises:
            ValueError: when the state is not stacked (a scalar `step`) or its leading axes differ.
        """
        sizes = {jnp.shape(a)[0] if jnp.ndim(a) else None for a in jax.tree.leaves(self)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError("TrainState.unstack: this state is not stacked (every array needs one leading "
                             f"member axis; leading sizes found: {sorted(map(str, sizes))})")
        n = sizes.pop()
        return [jax.tree.map(lambda a, i=i: a[i], self) for i in range(n)]

    @property
    def members(self) -> int:
        """The number of members of a stacked state (the leading axis of `step`); 0 for a single state."""
        return int(jnp.shape(self.step)[0]) if jnp.ndim(self.step) else 0

    @classmethod
    def population(cls, make_model: Callable[..., nnx.Module], tx: optax.GradientTransformation,
                   seeds: Sequence[int], *, hyperparams: Mapping[str, Sequence[float]] | None = None
                   ) -> "TrainState":
        """A stacked state of ``len(seeds)`` models, one per seed, built in Python and stacked.

        Building the models inside `jax.vmap` from integer seeds fails in Flax (``nnx.Rngs`` of a traced
        int: "Invalid rng value"); this builds each model eagerly, exactly as a single model is built,
        and stacks the states. Member ``i`` is then the state ``Trainer(make_model(seeds[i]), tx,
        seed=seeds[i])`` starts from: the model initialised from ``seeds[i]`` and the base key of its
        dropout masks ``fold_in(PRNGKey(seeds[i]), 0)`` (see `dlcore.train.population_keys`).

        Args:
            make_model: builds one model. A function with a parameter named ``rngs`` (or annotated
                ``nnx.Rngs``) is called with ``nnx.Rngs(seed)`` (e.g. ``lambda rngs: MLP(..., rngs=rngs)``);
                any other is called with the int seed (e.g. ``lambda seed: models.create("mlp", seed=seed)``).
            tx: the one optax optimizer every member uses.
            seeds: N >= 1 int seeds.
            hyperparams: per-member values of hyperparameters injected into the optimizer state
                (``tx`` from `dlcore.optim.injectable`), e.g. ``{"lr": [0.1, 0.03, 0.01]}``: one value
                per seed, each set with `dlcore.optim.set_hyperparams`. One vmapped step then trains N
                learning rates.

        Returns:
            The stacked `TrainState` (leading axis N; see `stack`).

        Example:
            >>> states = TrainState.population(lambda rngs: models.create("mlp", sizes=(64, 32, 10), rngs=rngs),
            ...                                optim.injectable("sgd", lr=0.1), seeds=range(4),
            ...                                hyperparams={"lr": [0.3, 0.1, 0.03, 0.01]})
        """
        if not callable(make_model):
            raise ValueError(f"TrainState.population: make_model must be a function seed -> module, got "
                             f"{type(make_model).__name__}")
        seeds = [check_int(s, "each seed", who="TrainState.population") for s in
                 ([seeds] if isinstance(seeds, int) else list(seeds))]
        if not seeds:
            raise ValueError("TrainState.population needs at least one seed")
        hyperparams = dict(hyperparams or {})
        for name, values in hyperparams.items():
            if isinstance(values, (int, float)) or len(values) != len(seeds):
                raise ValueError(f"TrainState.population: hyperparams[{name!r}] needs one value per seed "
                                 f"({len(seeds)}), got {values!r}")
        wants_rngs = _wants_rngs(make_model)
        states = []
        for i, seed in enumerate(seeds):
            model = make_model(rngs=nnx.Rngs(seed)) if wants_rngs == "keyword" else \
                make_model(nnx.Rngs(seed)) if wants_rngs == "positional" else make_model(seed)
            if not isinstance(model, nnx.Module):
                raise ValueError(f"TrainState.population: make_model returned a {type(model).__name__}, not a "
                                 f"flax.nnx.Module")
            st = cls.create(model, tx, key=jax.random.fold_in(jax.random.PRNGKey(seed), 0))
            if hyperparams:
                from dlcore.optim import set_hyperparams  # optim does not import train: no circle

                opt_state = st.opt_state
                for name, values in hyperparams.items():
                    opt_state = set_hyperparams(opt_state, name, float(values[i]))
                st = st.replace(opt_state=opt_state)
            states.append(st)
        return cls.stack(states)


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


def _spec(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jnp.shape(a)), str(jnp.result_type(a))) for a in leaves)


def _first_difference(a: tuple, b: tuple) -> str:
    if a[0] != b[0]:
        return "another tree structure (other layers or optimizer state)"
    for i, (x, y) in enumerate(zip(a[1], b[1])):
        if x != y:
            return f"leaf {i} is {y[1]}{list(y[0])}, expected {x[1]}{list(x[0])}"
    return "?"


def _wants_rngs(fn: Callable) -> str | None:
    """How `TrainState.population` passes the seed: "keyword" (``rngs=``), "positional" (an
    ``nnx.Rngs``-annotated parameter) or None (the int seed)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if "rngs" in params and params["rngs"].kind != inspect.Parameter.POSITIONAL_ONLY:
        return "keyword"
    first = next(iter(params.values()), None)
    if first is not None and (first.annotation is nnx.Rngs or str(first.annotation) in ("nnx.Rngs", "Rngs")):
        return "positional"
    return None
