"""Populations: N models of one structure (N seeds, N learning rates) trained at once by `jax.vmap`.

The training step is a pure function of a `TrainState` (see `dlcore.train.step`), so a state whose
arrays carry a leading member axis (`TrainState.stack`, `TrainState.population`) trains N models in
one call: `population_epoch` is ``jit(vmap(epoch-as-scan))`` over the members, each with its own
weights, optimizer state (per-member learning rates injected there, `dlcore.optim.injectable`),
shuffle order and dropout keys. It compiles once for all N members and all epochs.

Keys follow the Trainer's, so member ``i`` trained here for E epochs has the weights and per-epoch
losses of ``Trainer(model_i, tx, loss, seed=seeds[i], batch_size=B).fit(data, epochs=E)`` (same
numbers up to float rounding; the Trainer's one-scan epoch, as it runs for in-memory data and models
without convolutions on a CPU):

- ``root = PRNGKey(seed)``; step ``c`` draws its dropout masks from ``fold_in(fold_in(root, 0), c)``;
- epoch ``e`` (from 1) shuffles with ``fold_in(fold_in(root, 1), e)``.

Example (the "vmap many models" idea of JAX's documentation, `jax.vmap`):
    >>> seeds = [0, 1, 2, 3]
    >>> states = TrainState.population(lambda rngs: models.create("mlp", sizes=(64, 32, 10), rngs=rngs),
    ...                                optim.sgd(0.1), seeds)
    >>> states, history = population_fit(states, data, seeds, epochs=3, batch_size=64,
    ...                                  loss_fn=losses.cross_entropy, metrics=["accuracy"])
    >>> history["loss"].shape  # (epochs, members)
    (3, 4)
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import metrics as metrics_lib
from dlcore.checks import check_int, is_int
from dlcore.data import protocol as P
from dlcore.train import step as S
from dlcore.train.state import TrainState

__all__ = ["population_epoch", "population_fit", "population_keys", "population_metrics"]

_traces = {"population_epoch": 0}  # trace counts: the tests show an epoch compiles once per shape


def population_keys(seeds: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """The keys a `Trainer` with ``seed=s`` derives, for every seed: (step keys, shuffle keys), each
    (N, 2) raw keys.

    The step key of member ``i`` is its `TrainState.key` (`TrainState.population` sets it); the
    shuffle key is what `population_epoch` takes.
    """
    seeds = _seeds(seeds, "population_keys")
    roots = [jax.random.PRNGKey(s) for s in seeds]
    return (jnp.stack([jax.random.fold_in(r, 0) for r in roots]),
            jnp.stack([jax.random.fold_in(r, 1) for r in roots]))


def _seeds(seeds, who: str) -> list[int]:
    seeds = [seeds] if is_int(seeds) else list(seeds)
    if not seeds:
        raise ValueError(f"{who} needs at least one seed")
    return [check_int(s, "each seed", who=who) for s in seeds]


def _epoch(states, data, shuffle_keys, epoch, *, batch_size, task, shuffle, drop_last):
    """One member's epoch: the Trainer's scan (`run_epoch`, non-finite guard off, which it never lets
    change the numbers) over this member's permutation of the rows."""
    _traces["population_epoch"] += 1
    n = data["w"].shape[0]

    def member(state, shuffle_key):
        key = jax.random.fold_in(shuffle_key, epoch) if shuffle else None
        idx, w = P.batch_plan(key, n, batch_size, drop_last)
        state, _, acc, _ = S.run_epoch(state, None, S.new_guard(state.step), task.init_acc(), state.key, data,
                                       idx, w, task=task, policy="off")
        return state, acc

    return jax.vmap(member)(states, shuffle_keys)


_epoch_jit = jax.jit(_epoch, static_argnames=("batch_size", "task", "shuffle", "drop_last"))


def _split(data: Any) -> dict:
    """In-memory data as the Trainer takes it ({"x", "y", "w"} or (x, y)), checked the same way."""
    if isinstance(data, dict) and all(isinstance(a, jax.Array) for a in jax.tree.leaves(data)) and "w" in data:
        return data  # already on the device (population_fit's)
    split, _ = P.handle_nonfinite(P.as_split(data, "data"), "raise", "data")
    return split


def population_epoch(states: TrainState, data: Any, shuffle_keys: jax.Array, epoch: int = 1, *,
                     batch_size: int, loss_fn: S.LossFn, metrics: Sequence[Any] = (), shuffle: bool = True,
                     drop_last: bool = False):
    """One epoch of every member of a stacked state, as one jitted ``vmap`` of the epoch's ``lax.scan``.

    Args:
        states: a stacked `TrainState` (N members; `TrainState.population` or `TrainState.stack`).
        data: in-memory rows shared by every member: {"x": (R, ...), "y": (R, ...), "w": (R,)} ("w"
            optional) or (x, y); NumPy arrays go to the device on every call (`population_fit` puts
            them there once).
        shuffle_keys: (N, 2) one base shuffle key per member (`population_keys(seeds)[1]`).
        epoch: the epoch's number, from 1 (member ``i`` shuffles with ``fold_in(shuffle_keys[i], epoch)``);
            a traced value, so a new epoch does not recompile.
        batch_size: rows per batch (at most R).
        loss_fn: per-example loss ``(outputs, targets) -> (B,)``.
        metrics: streaming metrics or their names (``"accuracy"``).
        shuffle: reshuffle every epoch (the Trainer's default) or keep the data's order.
        drop_last: drop a short last batch instead of padding it.

    Returns:
        (the stacked states after the epoch, accumulators with a leading member axis);
        `population_metrics(acc, metrics)` gives each member's figures.

    Raises:
        ValueError: bad arguments or data, before anything compiles.
    """
    members = _check_states(states, "population_epoch")
    split = _split(data)
    rows = P.num_rows(split["x"])
    batch_size = min(check_int(batch_size, "batch_size", low=1, who="population_epoch"), rows)
    shuffle_keys = jnp.asarray(shuffle_keys)
    if shuffle_keys.shape != (members, 2):
        raise ValueError(f"population_epoch: shuffle_keys must be ({members}, 2), one raw key per member "
                         f"(population_keys(seeds)[1]), got shape {shuffle_keys.shape}")
    check_int(epoch, "epoch", low=0, who="population_epoch")
    if not callable(loss_fn):
        raise ValueError("population_epoch: loss_fn must be a per-example loss such as dlcore.losses.cross_entropy")
    task = S.Supervised(loss_fn, tuple(metrics_lib.get(m) for m in metrics))
    return _epoch_jit(states, split, shuffle_keys, jnp.asarray(epoch, jnp.int32), batch_size=batch_size,
                      task=task, shuffle=bool(shuffle), drop_last=bool(drop_last))


def population_metrics(acc: dict, metrics: Sequence[Any] = ()) -> dict[str, np.ndarray]:
    """Each member's figures from stacked accumulators: name -> (N,) float array (one transfer)."""
    metrics = tuple(metrics_lib.get(m) for m in metrics)
    acc = jax.device_get(acc)
    n = np.shape(acc["loss"]["count"])[0]
    rows = [S.compute_metrics(jax.tree.map(lambda a, i=i: a[i], acc), metrics) for i in range(n)]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def population_fit(states: TrainState, data: Any, seeds: Sequence[int], *, epochs: int, batch_size: int,
                   loss_fn: S.LossFn, metrics: Sequence[Any] = (), initial_epoch: int = 0,
                   shuffle: bool = True, drop_last: bool = False):
    """Train every member for epochs ``initial_epoch + 1 .. epochs`` (`population_epoch` each epoch).

    Member ``i`` ends with the weights of ``Trainer(model_i, tx, loss_fn, seed=seeds[i],
    batch_size=batch_size).fit(data, epochs=epochs)`` when ``states`` came from
    ``TrainState.population(make_model, tx, seeds)``.

    Args:
        states: the stacked `TrainState`.
        data: in-memory rows, as for `population_epoch`; they go to the device once.
        seeds: the members' seeds (their shuffle keys, as the Trainer derives them).
        epochs: the number of the last epoch (Keras's ``epochs``, as `Trainer.fit`).
        initial_epoch: the epochs already trained (to continue a population).
        batch_size, loss_fn, metrics, shuffle, drop_last: as for `population_epoch`.

    Returns:
        (the stacked states, the history: name -> (epochs run, N) array of per-epoch figures).
    """
    members = _check_states(states, "population_fit")
    seeds = _seeds(seeds, "population_fit")
    if len(seeds) != members:
        raise ValueError(f"population_fit: {len(seeds)} seeds for a population of {members} members")
    check_int(initial_epoch, "initial_epoch", low=0, who="population_fit")
    check_int(epochs, "epochs", low=initial_epoch + 1, who="population_fit")
    split = jax.device_put(_split(data))
    shuffle_keys = population_keys(seeds)[1]
    history: dict[str, list] = {}
    for epoch in range(initial_epoch + 1, epochs + 1):
        states, acc = population_epoch(states, split, shuffle_keys, epoch, batch_size=batch_size, loss_fn=loss_fn,
                                       metrics=metrics, shuffle=shuffle, drop_last=drop_last)
        for k, v in population_metrics(acc, metrics).items():
            history.setdefault(k, []).append(v)
    return states, {k: np.stack(v) for k, v in history.items()}


def _check_states(states, who: str) -> int:
    if not isinstance(states, TrainState) or not states.members:
        raise ValueError(f"{who}: states must be a stacked TrainState (TrainState.population(...) or "
                         f"TrainState.stack([...])), got {type(states).__name__}"
                         + (" with no member axis" if isinstance(states, TrainState) else ""))
    return states.members
