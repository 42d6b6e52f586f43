"""Populations: N models of one structure (N seeds, N learning rates) trained at once by `jax.vmap`.

The training step is a pure function of a `TrainState` (see `dlcore.train.step`), so a state whose
arrays carry a leading member axis (`TrainState.stack`, `TrainState.population`) trains N models in
one call: `population_epoch` is ``jit(vmap(epoch-as-scan))`` over the members, each with its own
weights, optimizer state (per-member learning rates injected there, `dlcore.optim.injectable`),
shuffle order and dropout keys. It compiles once for all N members and all epochs.

`population_evaluate` measures every member on validation data (vmapped, eval mode), `population_select`
keeps some members, and `successive_halving` puts them together into a search: K trials that differ in
learning rate, weight decay or seed, trained at once, the worse half dropped every few epochs.

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

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import metrics as metrics_lib
from dlcore.checks import check_choice, check_float, check_int, is_int
from dlcore.data import protocol as P
from dlcore.train import step as S
from dlcore.train.state import TrainState

__all__ = ["HalvingResult", "population_epoch", "population_evaluate", "population_fit", "population_keys",
           "population_metrics", "population_select", "successive_halving"]

# trace counts: the tests show an epoch compiles once per shape
_traces = {"population_epoch": 0, "population_evaluate": 0}


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


def _split(data: Any, name: str = "data") -> dict:
    """In-memory data as the Trainer takes it ({"x", "y", "w"} or (x, y)), checked the same way."""
    if isinstance(data, dict) and all(isinstance(a, jax.Array) for a in jax.tree.leaves(data)) and "w" in data:
        return data  # already on the device (population_fit's)
    split, _ = P.handle_nonfinite(P.as_split(data, name), "raise", name)
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


# -- evaluation, selection and successive halving ----------------------------------------------------


def _evaluate(states, data, *, batch_size, task):
    """Every member's loss and metrics over all of ``data`` in eval mode: the Trainer's validation
    (`step.eval_batches` over the rows in order, in batches of ``batch_size``), vmapped over the members."""
    _traces["population_evaluate"] += 1
    idx, w = P.batch_plan(None, data["w"].shape[0], batch_size, False)

    def member(state):
        return S.eval_batches(state, None, task.init_acc(eval=True), data, idx, w, task=task)[1]

    return jax.vmap(member)(states)


_evaluate_jit = jax.jit(_evaluate, static_argnames=("batch_size", "task"))


def population_evaluate(states: TrainState, data: Any, *, loss_fn: S.LossFn, metrics: Sequence[Any] = (),
                        batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Every member's loss and metrics over ``data`` in eval mode (dropout off), as one jitted ``vmap``.

    What `Trainer.fit(validation=...)` measures after each epoch, for N members at once: member ``i``'s
    figures equal a Trainer's ``val_`` figures with member ``i``'s weights (up to float rounding).

    Args:
        states: a stacked `TrainState` (N members).
        data: in-memory rows with targets: {"x": (R, ...), "y": (R, ...), "w": (R,)} ("w" optional) or (x, y).
        loss_fn: per-example loss ``(outputs, targets) -> (B,)``.
        metrics: streaming metrics or their names.
        batch_size: rows per evaluation batch (default: the Trainer's, min(R, 500)); the figures do not
            depend on it beyond float rounding.

    Returns:
        name -> (N,) float array ("loss" and each metric).

    Raises:
        ValueError: (one line) not a stacked state, data without targets, a bad batch size.
    """
    _check_states(states, "population_evaluate")
    split = _split(data, "population_evaluate: data")
    if "y" not in split:
        raise ValueError("population_evaluate: data needs targets 'y' to compute the loss and metrics")
    rows = P.num_rows(split["x"])
    batch_size = min(rows, 500 if batch_size is None else
                     check_int(batch_size, "batch_size", low=1, who="population_evaluate"))
    if not callable(loss_fn):
        raise ValueError("population_evaluate: loss_fn must be a per-example loss such as "
                         "dlcore.losses.cross_entropy")
    task = S.Supervised(loss_fn, tuple(metrics_lib.get(m) for m in metrics))
    return population_metrics(_evaluate_jit(states, split, batch_size=batch_size, task=task), metrics)


def population_select(states: TrainState, members: Sequence[int]) -> TrainState:
    """The stacked state of some members only (in the order given), e.g. the survivors of a rung.

    Args:
        states: a stacked `TrainState` of N members.
        members: indices into the member axis, each in [0, N).

    Returns:
        A stacked `TrainState` of ``len(members)`` members.
    """
    n = _check_states(states, "population_select")
    members = [check_int(m, "each member index", low=0, high=n - 1, who="population_select")
               for m in ([members] if is_int(members) else list(members))]
    if not members:
        raise ValueError("population_select needs at least one member index")
    rows = np.asarray(members)
    return jax.tree.map(lambda a: a[rows], states)


@dataclasses.dataclass
class HalvingResult:
    """What `successive_halving` found.

    Attributes:
        states: the survivors' stacked `TrainState` (the members that trained every epoch), in the
            order of ``survivors``.
        survivors: the survivors' member indices.
        params: per member, its hyperparameters and seed, e.g. ``{"lr": 0.1, "seed": 0}``.
        history: per member, name -> its per-epoch figures ("loss" and the metrics during the epoch,
            "val_loss" and "val_" metrics after it), for the epochs it trained.
        dropped_at: per member, the epoch after which it was dropped; None for a survivor.
        monitor: the figure that ranked the members; mode: "min" or "max".
        best: the member index of the best survivor (by its last ``monitor`` value).
    """

    states: TrainState
    survivors: list[int]
    params: list[dict[str, float]]
    history: list[dict[str, list[float]]]
    dropped_at: list[int | None]
    monitor: str
    mode: str
    best: int

    @property
    def best_params(self) -> dict[str, float]:
        """The best survivor's hyperparameters and seed."""
        return dict(self.params[self.best])

    @property
    def best_value(self) -> float:
        """The best survivor's last ``monitor`` value."""
        return self.history[self.best][self.monitor][-1]

    def best_state(self) -> TrainState:
        """The best survivor's `TrainState` (unstacked): ``best_state().write_to(model)`` puts its
        weights into a model of the same structure."""
        return self.states.unstack()[self.survivors.index(self.best)]

    def trials(self) -> list[dict[str, Any]]:
        """One row per member: its index, hyperparameters, epochs trained, last ``monitor`` value, and
        the epoch it was dropped after (None for a survivor)."""
        return [{"member": i, **p, "epochs": len(h[self.monitor]), self.monitor: h[self.monitor][-1],
                 "dropped_at": d} for i, (p, h, d) in enumerate(zip(self.params, self.history, self.dropped_at))]

    def table(self) -> str:
        """`trials()` as a text table, the best member marked with ``*``."""
        rows = self.trials()
        names = [k for k in rows[0] if k != "member"]
        lines = ["member " + " ".join(f"{k:>12}" for k in names)]
        for r in rows:
            cells = []
            for k in names:
                v = r[k]
                cells.append(f"{'survived' if v is None else v:>12}" if k == "dropped_at" else
                             f"{v:>12}" if is_int(v) else f"{v:>12.4g}")
            lines.append(f"{r['member']:>5}{'*' if r['member'] == self.best else ' '} " + " ".join(cells))
        return "\n".join(lines)


def _rank(values: Sequence[float], mode: str) -> list[int]:
    """Positions of ``values`` from best to worst; NaN ranks last, ties keep their order."""
    def key(i):
        v = float(values[i])
        return (math.isnan(v), -v if mode == "max" else v, i)

    return sorted(range(len(values)), key=key)


def successive_halving(make_model: Callable[..., Any], tx: Any, train: Any, validation: Any, *,
                       hyperparams: Mapping[str, Sequence[float]] | None = None,
                       seeds: int | Sequence[int] = 0, epochs: int, rungs: int, batch_size: int,
                       loss_fn: S.LossFn, metrics: Sequence[Any] = (), monitor: str = "val_loss",
                       mode: str = "auto", eval_batch_size: int | None = None, shuffle: bool = True,
                       drop_last: bool = False) -> HalvingResult:
    """K trials that differ only in scalar hyperparameters and seed, trained at once, the worse half
    dropped every ``rungs`` epochs (successive halving).

    The K members are one stacked `TrainState` (`TrainState.population`): every epoch is one jitted
    ``vmap`` of the epoch's scan over the members alive (`population_epoch`), then one vmapped
    evaluation of ``validation`` (`population_evaluate`). After every ``rungs`` epochs (and before the
    last) the members are ranked by ``monitor`` and the better half (rounded down, at least one) goes
    on; the others stop there. Each new number of members compiles once (K, K/2, ...).

    Member ``k`` is exactly what ``Trainer(make_model(seed_k), tx with member k's hyperparameters,
    loss_fn, metrics=metrics, seed=seed_k, batch_size=batch_size).fit(train, epochs=e_k,
    validation=validation)`` gives for the ``e_k`` epochs it trained (weights and history, up to float
    rounding): halving only decides who goes on.

    What a population can vary: numbers kept in the optimizer state (``lr``, ``weight_decay``,
    ``momentum``, ...: build ``tx`` with `dlcore.optim.injectable`) and the seed (initial weights,
    shuffling, dropout masks). Not the dropout rate: `flax.nnx.Dropout` keeps it in the module's static
    structure (the graphdef), so members with other rates are other programs; train one population per
    rate. Not the structure (hidden units, layers) for the same reason.

    Successive halving: Jamieson & Talwalkar (2016), Non-stochastic Best Arm Identification and
    Hyperparameter Optimization; Li et al. (2018), Hyperband.

    Args:
        make_model: builds one model (as for `TrainState.population`: ``lambda rngs: ...`` or
            ``lambda seed: ...``).
        tx: the optimizer every member uses; from `dlcore.optim.injectable` when ``hyperparams`` is given.
        train: in-memory training rows ({"x", "y"} or (x, y)), shared by every member.
        validation: in-memory rows with targets, evaluated after each epoch (the ``val_`` figures).
        hyperparams: name -> one value per member, e.g. ``{"lr": [0.3, 0.1, 0.03, 0.01]}``; every list
            the same length K.
        seeds: one seed for every member (they then differ only in ``hyperparams``), or K seeds.
        epochs: epochs of a member that survives every rung.
        rungs: epochs between two halvings (>= epochs: no halving, every member trains every epoch).
        batch_size, loss_fn, metrics, shuffle, drop_last: as for `Trainer`.
        monitor: the figure that ranks the members: "val_loss", "val_" + a metric, or a training
            figure ("loss", a metric).
        mode: "min", "max", or "auto" ("max" when ``monitor`` names an accuracy, as `EarlyStopping`).
        eval_batch_size: rows per validation batch (default: min(rows, 500), as the Trainer's).

    Returns:
        A `HalvingResult` (the survivors' states, every member's history, where each stopped, the best).

    Raises:
        ValueError: (one line, before anything trains) hyperparameter lists of different lengths, seeds
            that do not match them, a hyperparameter the optimizer does not hold, an unknown monitor,
            bad numbers.

    Example:
        >>> result = successive_halving(lambda rngs: models.create("mlp", sizes=(784, 116, 116, 10), rngs=rngs),
        ...                             optim.injectable("sgd", lr=0.01), train, val,
        ...                             hyperparams={"lr": [1e-4, 1e-3, 1e-2, 1e-1]}, epochs=4, rungs=1,
        ...                             batch_size=32, loss_fn=losses.cross_entropy, metrics=["accuracy"],
        ...                             monitor="val_accuracy")
        >>> result.best_params, result.best_value
    """
    who = "successive_halving"
    hyperparams = dict(hyperparams or {})
    lengths = {}
    for name, values in hyperparams.items():
        if "dropout" in str(name):
            raise ValueError(f"{who}: {name!r} cannot vary within a population: nnx.Dropout keeps its rate in the "
                             f"module's static structure (graphdef), so other rates are other programs; run one "
                             f"population per rate")
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise ValueError(f"{who}: hyperparams[{name!r}] must be a list of numbers, one per member, got {values!r}")
        lengths[name] = len(values)
        for v in values:
            check_float(v, f"each value of hyperparams[{name!r}]", who=who)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{who}: the hyperparameter lists differ in length ("
                         + ", ".join(f"{k}: {n}" for k, n in lengths.items()) + "); give each one value per member")
    if is_int(seeds):
        k = next(iter(lengths.values()), 1)
        seeds = [int(seeds)] * k
    else:
        seeds = _seeds(seeds, who)
        k = next(iter(lengths.values()), len(seeds))
        if len(seeds) != k:
            raise ValueError(f"{who}: {len(seeds)} seeds for {k} members (hyperparams have {k} values each); pass "
                             f"one seed per member, or one int for all")
    if k < 1:
        raise ValueError(f"{who}: the hyperparameter lists are empty; give at least one member")
    check_int(epochs, "epochs", low=1, who=who)
    check_int(rungs, "rungs (epochs between halvings)", low=1, who=who)
    check_int(batch_size, "batch_size", low=1, who=who)
    check_choice(mode, "mode", ("auto", "min", "max"), who=who)
    if not callable(loss_fn):
        raise ValueError(f"{who}: loss_fn must be a per-example loss such as dlcore.losses.cross_entropy")
    metric_objs = tuple(metrics_lib.get(m) for m in metrics)
    known = ["loss", *(m.name for m in metric_objs)]
    known += [f"val_{n}" for n in known]
    if monitor not in known:
        raise ValueError(f"{who}: monitor {monitor!r} is none of the figures this search computes {known}; pass "
                         f"metrics=[...] for another")
    mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
    split = jax.device_put(_split(train, "train"))
    val = _split(validation, "validation")
    if "y" not in val:
        raise ValueError(f"{who}: validation needs targets 'y'")
    val = jax.device_put(val)
    states = TrainState.population(make_model, tx, seeds, hyperparams=hyperparams)

    params = [{**{n: float(v[i]) for n, v in hyperparams.items()}, "seed": seeds[i]} for i in range(k)]
    history: list[dict[str, list[float]]] = [{} for _ in range(k)]
    dropped_at: list[int | None] = [None] * k
    alive = list(range(k))
    shuffle_keys = population_keys(seeds)[1]
    for epoch in range(1, epochs + 1):
        states, acc = population_epoch(states, split, shuffle_keys[np.asarray(alive)], epoch, batch_size=batch_size,
                                       loss_fn=loss_fn, metrics=metric_objs, shuffle=shuffle, drop_last=drop_last)
        figures = population_metrics(acc, metric_objs)
        figures.update({f"val_{n}": v for n, v in population_evaluate(
            states, val, loss_fn=loss_fn, metrics=metric_objs, batch_size=eval_batch_size).items()})
        for j, m in enumerate(alive):
            for name, values in figures.items():
                history[m].setdefault(name, []).append(float(values[j]))
        if epoch % rungs == 0 and epoch < epochs and len(alive) > 1:
            order = _rank(figures[monitor], mode)
            keep = sorted(order[:max(1, len(alive) // 2)])
            for j in order[len(keep):]:
                dropped_at[alive[j]] = epoch
            states = population_select(states, keep)
            alive = [alive[j] for j in keep]
    best = alive[_rank([history[m][monitor][-1] for m in alive], mode)[0]]
    return HalvingResult(states=states, survivors=alive, params=params, history=history, dropped_at=dropped_at,
                         monitor=monitor, mode=mode, best=best)
