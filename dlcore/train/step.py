"""Pure train and eval steps, whole epochs as one `lax.scan`, and the step shapes the Trainer runs.

Every function here is pure. The model is merged from the state only inside the traced function,
so `jax.jit`, `jax.vmap` and `lax.scan` apply as is.

A batch follows `dlcore.data.protocol`: a dict with ``"x"`` (an array, or a tuple / dict of arrays
for models with several inputs), ``"y"`` (targets; absent for self-supervised data) and ``"w"``
(per-example weights, shape (B,); absent means all ones). The loop pads a short last batch with
weight-0 rows, so every batch has one shape (one compilation) and the padded rows count nowhere
(loss, gradients, metrics).

The Trainer runs one of two step shapes, both written as a `Task`:

- `Supervised`: one model, one optax optimizer, one per-example loss, streaming metrics;
- `Custom`: a user-written ``step(states, batch, key, carry) -> (states, logs, carry)`` over a pytree
  of `TrainState`s (a GAN's generator and discriminator with their own optimizers) and a ``carry``
  that persists from batch to batch (truncated BPTT's hidden state).

Both run under the same non-finite guard (see `guarded_train`): a run stops at the first step whose
loss (or logs) or new parameters are not finite, or skips such steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import precision as precision_lib
from dlcore.data.protocol import batch_plan, call_model, gather
from dlcore.train.state import _REST, TrainState, fresh_rngs

__all__ = ["Custom", "Supervised", "batch_plan", "compute_metrics", "eval_epoch", "eval_step", "gather",
           "init_metrics", "per_example_loss", "predict_step", "train_epoch", "train_step", "update_metrics",
           "weighted_mean"]

LossFn = Callable[..., jax.Array]  # (outputs, targets) -> per-example (B,); (outputs) without targets


def weighted_mean(per_example: jax.Array, w: jax.Array) -> jax.Array:
    """sum(l * w) / sum(w), the mean over real rows of a padded batch (0 for an all-pad batch)."""
    return jnp.sum(per_example * w) / jnp.maximum(jnp.sum(w), 1.0)


def _weights(batch: dict) -> jax.Array:
    if "w" in batch:
        return jnp.asarray(batch["w"], jnp.float32)
    return jnp.ones((jax.tree.leaves(batch["x"])[0].shape[0],), jnp.float32)


def unlabelled_weights(w: jax.Array, outputs, targets, losses: jax.Array) -> jax.Array:
    """`w` with 0 for the rows the loss ignores: rows of one integer class label that lies outside the outputs'
    classes and whose loss is exactly 0 (`cross_entropy(..., ignore_index=-100)`'s padding). So the epoch's loss
    is PyTorch's mean over the labelled rows, its gradient has PyTorch's scale, and the metrics leave those rows
    out. A loss that does not ignore such labels keeps their rows (its NaN shows). `outputs` (B, C) (or a tuple
    whose first is), `targets` (B,), `losses` (B,)."""
    main = outputs[0] if isinstance(outputs, tuple) else outputs
    if (targets is None or not hasattr(targets, "dtype") or not jnp.issubdtype(targets.dtype, jnp.integer)
            or targets.ndim != 1 or getattr(main, "ndim", 0) != 2 or main.shape[-1] < 2
            or losses.shape != targets.shape):
        return w
    ignored = ((targets < 0) | (targets >= main.shape[-1])) & (losses == 0)
    return jnp.where(ignored, jnp.zeros_like(w), w)


def init_metrics(metrics: Sequence[Any]) -> dict:
    """Zeroed accumulators for the loss and each streaming metric.

    The accumulator is ``{"loss": {"total", "count"}, metric.name: metric.init(), ...}``: sums, so the
    epoch figure (`compute_metrics`) is exact, not a mean of per-batch means.
    """
    acc = {"loss": {"total": jnp.zeros(()), "count": jnp.zeros(())}}
    for m in metrics:
        acc[m.name] = m.init()
    return acc


def update_metrics(acc: dict, metrics: Sequence[Any], outputs, targets, per_example_loss, w) -> dict:
    """Add one batch to the accumulators (sums, so the epoch figure is exact, not a mean of means)."""
    if isinstance(outputs, tuple):  # (main, *auxiliary) outputs, e.g. GoogLeNet's: metrics score the main one
        outputs = outputs[0]
    new = {"loss": {"total": acc["loss"]["total"] + jnp.sum(per_example_loss * w),
                    "count": acc["loss"]["count"] + jnp.sum(w)}}
    for m in metrics:
        new[m.name] = m.update(acc[m.name], outputs, targets, w)
    return new


def mean_of(sums: dict) -> float:
    """`total / count` of a host accumulator; NaN where nothing was counted (every step of an epoch skipped,
    every row weighted 0), never a loss of 0 that early stopping would take for the best."""
    count = float(sums["count"])
    return float(sums["total"] / count) if count > 0 else math.nan  # in the accumulator's dtype, as always


def compute_metrics(acc: dict, metrics: Sequence[Any] = ()) -> dict[str, float]:
    """Final figures from accumulators, as Python floats (one transfer from the device)."""
    acc = jax.device_get(acc)
    out = {"loss": mean_of(acc["loss"])}
    for m in metrics:
        out[m.name] = float(m.compute(acc[m.name]))
    return out


def per_example_loss(loss_fn: LossFn, outputs, targets=None) -> jax.Array:
    """`loss_fn(outputs, targets)` (or `loss_fn(outputs)` without targets), checked to give one value per
    example."""
    values = loss_fn(outputs) if targets is None else loss_fn(outputs, targets)
    n = jax.tree.leaves(outputs)[0].shape[0]
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"the loss must return one value per example, shape ({n},); "
                         f"got {values.shape}. Pass a per-example loss (reduction='none').")
    return values


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
              if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _policy(precision) -> precision_lib.Policy | None:
    """The policy to apply, or None for float32 (the no-op policy leaves the traced step as it was)."""
    policy = precision_lib.get(precision)
    return None if policy.noop else policy


def _run(graphdef, params, rest, rngs, x, policy):
    """The model merged from its arrays and its outputs on inputs ``x``: ``(outputs, model)``; under a policy
    its floating parameters and inputs in the compute dtype and its outputs in the output dtype."""
    if policy is not None:
        params = policy.cast_params(params)
    model = nnx.merge(graphdef, params, rest, rngs, copy=True)
    return (call_model(model, x) if policy is None else policy.call(model, x)), model


def _supervised_update(state: TrainState, batch: dict, key: jax.Array, loss_fn: LossFn, metrics, acc,
                       precision=None):
    """One optimizer step; also whether its loss was finite (a scalar check, free).

    Under a mixed-precision ``precision`` (see `dlcore.precision`) the loss is differentiated with
    respect to the stored (float32) parameters through their cast to the compute dtype, so the gradients
    and the optimizer update are float32; the model's other variables keep their stored dtypes."""
    rngs = fresh_rngs(state.rngs, key)
    w = _weights(batch)
    targets = batch.get("y")
    policy = _policy(precision)

    def objective(params):
        outputs, model = _run(state.graphdef, params, state.rest, rngs, batch["x"], policy)
        losses = per_example_loss(loss_fn, outputs, targets)
        rows = unlabelled_weights(w, outputs, targets, jax.lax.stop_gradient(losses))
        return weighted_mean(losses, rows), (outputs, losses, rows, nnx.state(model, _REST))

    (loss, (outputs, losses, w, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    if policy is not None:
        rest = precision_lib.restore_dtypes(rest, state.rest)
    new_state = state.apply_gradients(grads).replace(rest=rest)
    acc = init_metrics(metrics) if acc is None else acc
    acc = update_metrics(acc, metrics if targets is not None else (), outputs, targets, losses, w)
    return new_state, acc, jnp.isfinite(loss)


def train_step(state: TrainState, batch: dict, key: jax.Array, *, loss_fn: LossFn,
               metrics: Sequence[Any] = (), acc: dict | None = None, precision=None):
    """One optimizer step on one batch.

    Args:
        state: the training state.
        batch: {"x": (B, ...) or a tuple/dict of such, "y": (B, ...), "w": (B,)}; "w" may be absent
            (every row counts), "y" too (the loss is then called as ``loss_fn(outputs)``).
        key: PRNG key for this step's dropout masks.
        loss_fn: per-example loss `(outputs, targets) -> (B,)`.
        metrics: streaming metrics (objects with init/update/compute, see `dlcore.metrics`).
        acc: accumulators to add this batch to (fresh ones when None; see `init_metrics`).
        precision: a `dlcore.precision` policy or its name ("bfloat16": float32 parameters, gradients
            and optimizer state, bfloat16 compute, float32 outputs and loss); None: float32 as is.

    Returns:
        (new state, accumulators including this batch); `compute_metrics(acc, metrics)` gives the figures.

    Example (an explicit jitted loop):
        >>> step = jax.jit(lambda st, b, acc: train_step(st, b, jax.random.fold_in(st.key, st.step),
        ...                                              loss_fn=losses.cross_entropy, acc=acc))
        >>> acc = init_metrics(())
        >>> for batch in batches:
        ...     state, acc = step(state, batch, acc)
        >>> compute_metrics(acc)["loss"]
    """
    new_state, acc, _ = _supervised_update(state, batch, key, loss_fn, metrics, acc, precision)
    return new_state, acc


def eval_step(state: TrainState, batch: dict, *, loss_fn: LossFn, metrics: Sequence[Any] = (),
              acc: dict | None = None, precision=None):
    """Loss and metrics of one batch in eval mode (dropout off, batch-norm running averages).

    ``precision``: as in `train_step` (the outputs are then in the policy's output dtype, float32).

    Returns:
        (model outputs (B, ...), accumulators including this batch).
    """
    outputs = predict_step(state, batch["x"], precision)
    targets = batch.get("y")
    losses = per_example_loss(loss_fn, outputs, targets)
    acc = init_metrics(metrics) if acc is None else acc
    return outputs, update_metrics(acc, metrics if targets is not None else (), outputs, targets, losses,
                                   unlabelled_weights(_weights(batch), outputs, targets, losses))


def predict_step(state: TrainState, x, precision=None) -> jax.Array:
    """Model outputs in eval mode for inputs `x`: (B, ...), or a tuple / dict of such for several inputs;
    under a `dlcore.precision` policy computed in its compute dtype and returned in its output dtype."""
    return _run(state.eval_graphdef, state.params, state.rest, state.rngs, x, _policy(precision))[0]


# -- the two step shapes the Trainer runs -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Supervised:
    """One model, one optimizer, one per-example loss and streaming metrics (hashable: a jit static);
    ``precision`` a `dlcore.precision.Policy` for training and evaluation (None: float32)."""

    loss_fn: LossFn
    metrics: tuple = ()
    precision: Any = None

    display = "loss"

    def init_acc(self, eval: bool = False) -> dict:
        return init_metrics(self.metrics)

    def train(self, state, batch, key, carry, acc):
        state, acc, finite = _supervised_update(state, batch, key, self.loss_fn, self.metrics, acc, self.precision)
        return state, carry, acc, finite

    def eval(self, state, batch, carry, acc):
        return carry, eval_step(state, batch, loss_fn=self.loss_fn, metrics=self.metrics, acc=acc,
                                precision=self.precision)[1]

    def compute(self, acc) -> dict[str, float]:
        return compute_metrics(acc, self.metrics)

    @staticmethod
    def running(acc):
        return acc["loss"]["total"], acc["loss"]["count"]


@dataclasses.dataclass(frozen=True)
class Custom:
    """A user-written step over a pytree of `TrainState`s, with a carry from batch to batch.

    Attributes:
        step: ``(states, batch, key, carry) -> (states, logs, carry)``; ``logs`` is a dict of scalars
            (batch means); the epoch figure of each is its mean over the epoch's real rows.
        eval_step: ``(states, batch, carry) -> (logs, carry)`` for validation and `evaluate`, or None.
        names: the log names, learnt from tracing the step once (see `Trainer.check`).

    Mixed precision in a custom step: the step runs its models itself, so it applies the policy itself,
    ``policy.model(state, train, key, params)`` for the module with bfloat16 weights (differentiate with
    respect to the float32 ``params``), ``policy.call(model, x)`` to run it (bfloat16 in, float32 out)
    and ``policy.restore(model, state)`` before ``state.apply_gradients(grads, model)`` (see
    `dlcore.precision`).
    """

    step: Callable
    eval_step: Callable | None = None
    names: tuple = ()
    eval_names: tuple = ()

    @property
    def display(self) -> str:
        return self.names[0] if self.names else "loss"

    def init_acc(self, eval: bool = False) -> dict:
        return {k: {"total": jnp.zeros(()), "count": jnp.zeros(())} for k in (self.eval_names if eval else self.names)}

    @staticmethod
    def _add(acc, logs, w):
        n = jnp.sum(w)
        return {k: {"total": acc[k]["total"] + jnp.asarray(logs[k], jnp.float32) * n,
                    "count": acc[k]["count"] + n} for k in acc}

    def train(self, states, batch, key, carry, acc):
        new_states, logs, new_carry = self.step(states, batch, key, carry)
        check_returned(states, new_states, carry, new_carry, logs, "step")
        return new_states, new_carry, self._add(acc, logs, _weights(batch)), _all_finite(logs)

    def eval(self, states, batch, carry, acc):
        logs, new_carry = self.eval_step(states, batch, carry)
        check_returned(None, None, carry, new_carry, logs, "eval_step")
        return new_carry, self._add(acc, logs, _weights(batch))

    @staticmethod
    def compute(acc) -> dict[str, float]:
        acc = jax.device_get(acc)
        return {k: mean_of(v) for k, v in acc.items()}

    def running(self, acc):
        if not acc:
            return jnp.zeros(()), jnp.zeros(())
        a = acc[self.display]
        return a["total"], a["count"]


def is_state(x) -> bool:
    return isinstance(x, TrainState)


def _weights_of(states):
    """The parameters of every `TrainState` in ``states`` (what a step must keep finite)."""
    return [s.params for s in jax.tree.leaves(states, is_leaf=is_state) if is_state(s)]


def _spec(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda x: x is None)
    return treedef, tuple((tuple(getattr(a, "shape", ())), str(getattr(a, "dtype", type(a).__name__)))
                          for a in leaves)


def check_returned(states, new_states, carry, new_carry, logs, what: str) -> None:
    """At trace time: a user step must return states and carry of the structure it was given, and logs
    that are a dict of scalars. One clear line otherwise."""
    if states is not None and _spec(states) != _spec(new_states):
        raise ValueError(f"the {what} returned states of another structure than it was given: got "
                         f"{jax.tree.structure(new_states, is_leaf=is_state)}, expected "
                         f"{jax.tree.structure(states, is_leaf=is_state)} (same TrainStates, same shapes and "
                         f"dtypes: return state.replace(...) or the result of a step on it)")
    if _spec(carry) != _spec(new_carry):
        raise ValueError(f"the {what} returned a carry of another structure, shape or dtype than it was given: "
                         f"got {_spec(new_carry)[1]}, expected {_spec(carry)[1]}")
    if not isinstance(logs, dict) or not all(isinstance(k, str) for k in logs):
        raise ValueError(f"the {what} must return logs as a dict of name -> scalar, got {type(logs).__name__}")
    bad = {k: jnp.shape(v) for k, v in logs.items() if jnp.ndim(v) != 0}
    if bad:
        raise ValueError(f"the {what}'s logs must be scalars (batch means); got shapes {bad}")


# -- whole epochs ------------------------------------------------------------------------------------


def states_finite(states) -> jax.Array:
    """Whether the parameters of every `TrainState` in ``states`` are finite (a NaN or inf gradient
    reaches them through every optimizer)."""
    return _all_finite(_weights_of(states))


def guarded_train(states, carry, batch, key, acc, guard, *, task, policy: str):
    """`task.train` under the non-finite guard.

    ``guard`` is {"bad": int32 count of flagged steps, "first": the loop count of the first (-1),
    "count": the loop count}. Policies:

    - "stop": every step is applied and only its loss (or logs) is checked, a scalar test that costs
      nothing and leaves the compiled step as it is. The Trainer checks the parameters after each epoch
      and, on a non-finite loss or parameter, replays the epoch step by step to find the first bad
      step and the weights before it (`checked_step`).
    - "skip": a step whose loss or new parameters are not finite is not applied, and counted. The
      parameters are checked at every step (behind an optimization barrier, so the check does not change
      how XLA fuses the step) and the new or old state is picked with `lax.cond` (an element-wise
      select would change the compiled step and so the last bits of a long run). It costs a pass over
      the parameters per step.
    - "off": every step is applied, unchecked.
    """
    new_states, new_carry, new_acc, finite = task.train(states, batch, key, carry, acc)
    if policy == "skip":
        new_states, new_carry, new_acc, finite = jax.lax.optimization_barrier((new_states, new_carry, new_acc, finite))
        finite = finite & states_finite(new_states)
        states, carry, acc = jax.lax.cond(finite, lambda: (new_states, new_carry, new_acc),
                                          lambda: (states, carry, acc))
    else:
        states, carry, acc = new_states, new_carry, new_acc
    if policy == "off":
        return states, carry, acc, {**guard, "count": guard["count"] + 1}
    guard = {"bad": guard["bad"] + (~finite).astype(jnp.int32),
             "first": jnp.where((guard["first"] < 0) & ~finite, guard["count"], guard["first"]),
             "count": guard["count"] + 1}
    return states, carry, acc, guard


def checked_step(states, carry, key, data: dict, idx, w, i, *, task):
    """Batch ``i`` of the plan, fully checked: (new states, new carry, whether its loss or logs and its new
    parameters are finite). The Trainer replays an epoch with it to find where a run went non-finite."""
    batch = gather(data, idx[i], w[i])
    new_states, new_carry, _, finite = task.train(states, batch, key, carry, task.init_acc())
    return new_states, new_carry, finite & states_finite(new_states)


def new_guard(count) -> dict:
    """The step guard at loop count ``count``: non-finite steps seen, the first one's count (-1: none), and the
    count. NumPy scalars for a Python count (starting a Trainer epoch dispatches nothing), traced ones under jit."""
    xp = jnp if isinstance(count, jax.Array) else np
    return {"bad": xp.zeros((), xp.int32), "first": xp.full((), -1, xp.int32), "count": xp.asarray(count, xp.int32)}


def run_epoch(states, carry, guard, acc, key, data: dict, idx, w, every=0, *, task, policy: str, on_batch=None):
    """The batches ``idx``/``w`` (num_batches, B) of device-resident ``data`` as one ``lax.scan``.

    The key of the step with loop count ``c`` is ``fold_in(key, c)``, whichever way the epoch runs.
    ``on_batch(i, total, count, batch_total, batch_count)`` (the running sums of the main log over the
    epoch, and batch ``i``'s own) is called after every ``every``-th batch through an ordered
    ``jax.debug.callback`` (0: never).
    """
    def body(c, inputs):
        st, ca, acc, g = c
        i, bidx, bw = inputs
        before = task.running(acc)
        st, ca, acc, g = guarded_train(st, ca, gather(data, bidx, bw), jax.random.fold_in(key, g["count"]), acc, g,
                                       task=task, policy=policy)
        if on_batch is not None:
            total, count = task.running(acc)
            jax.lax.cond((every > 0) & ((i + 1) % jnp.maximum(every, 1) == 0),
                         lambda: jax.debug.callback(on_batch, i + 1, total, count, total - before[0],
                                                    count - before[1], ordered=True),
                         lambda: None)
        return (st, ca, acc, g), None

    steps = jnp.arange(idx.shape[0])
    (states, carry, acc, guard), _ = jax.lax.scan(body, (states, carry, acc, guard), (steps, idx, w))
    return states, carry, acc, guard


def one_step(states, carry, guard, acc, key, data: dict, idx, w, i, *, task, policy: str):
    """Batch ``i`` of the plan ``idx``/``w``, gathered from ``data`` inside the step (``data`` may be the
    device-resident split, or one host batch with ``idx = arange(B)[None]``)."""
    return guarded_train(states, carry, gather(data, idx[i], w[i]), jax.random.fold_in(key, guard["count"]), acc,
                         guard, task=task, policy=policy)


def eval_batches(states, carry, acc, data: dict, idx, w, *, task):
    """Evaluation over the batches ``idx``/``w`` of ``data`` as one ``lax.scan``."""
    def body(c, inputs):
        ca, acc = c
        bidx, bw = inputs
        return task.eval(states, gather(data, bidx, bw), ca, acc), None

    (carry, acc), _ = jax.lax.scan(body, (carry, acc), (idx, w))
    return carry, acc


def eval_one(states, carry, acc, data: dict, idx, w, i, *, task):
    return task.eval(states, gather(data, idx[i], w[i]), carry, acc)


def train_epoch(state: TrainState, data: dict, shuffle_key: jax.Array | None, *, batch_size: int,
                loss_fn: LossFn, metrics: Sequence[Any] = (), drop_last: bool = False, precision=None):
    """One epoch of the supervised step as a single `lax.scan` over shuffled batches of `data`.

    Args:
        state: the training state.
        data: {"x": (N, ...), "y": (N, ...), "w": (N,)} on the device ("w" optional).
        shuffle_key: key of this epoch's permutation (None: no shuffling).
        batch_size, loss_fn, metrics, drop_last, precision: as in `train_step` / `batch_plan`.

    Returns:
        (state after the epoch, accumulators over the epoch).
    """
    data = dict(data)
    data.setdefault("w", jnp.ones((jax.tree.leaves(data["x"])[0].shape[0],), jnp.float32))
    idx, w = batch_plan(shuffle_key, data["w"].shape[0], batch_size, drop_last)
    task = Supervised(loss_fn, tuple(metrics), precision_lib.get(precision))
    state, _, acc, _ = run_epoch(state, None, new_guard(state.step), task.init_acc(), state.key, data, idx, w,
                                 task=task, policy="off")
    return state, acc


def eval_epoch(state: TrainState, data: dict, *, batch_size: int, loss_fn: LossFn, metrics: Sequence[Any] = (),
               precision=None):
    """Loss and metrics over all of `data` in eval mode, as one `lax.scan` (no shuffling); ``precision`` as
    in `train_step`."""
    data = dict(data)
    data.setdefault("w", jnp.ones((jax.tree.leaves(data["x"])[0].shape[0],), jnp.float32))
    idx, w = batch_plan(None, data["w"].shape[0], batch_size)
    task = Supervised(loss_fn, tuple(metrics), precision_lib.get(precision))
    return eval_batches(state, None, task.init_acc(), data, idx, w, task=task)[1]
