"""Pure train and eval steps, and a whole epoch as one `lax.scan`.

Every function here is pure: `(state, batch, key) -> (state, metrics)`. The model is merged from
the state only inside the traced function, so `jax.jit`, `jax.vmap` and `lax.scan` apply as is.

A batch is a dict with `"x"` (inputs), `"y"` (targets) and `"w"` (per-example weights, shape
(B,)): the loop pads a short last batch with weight-0 rows, so every batch has one shape (one
compilation) and the padded rows count nowhere (loss, gradients, metrics).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dlcore.train.state import _REST, TrainState, fresh_rngs

LossFn = Callable[[jax.Array, jax.Array], jax.Array]  # (outputs, targets) -> per-example (B,)


def weighted_mean(per_example: jax.Array, w: jax.Array) -> jax.Array:
    """sum(l * w) / sum(w), the mean over real rows of a padded batch (0 for an all-pad batch)."""
    return jnp.sum(per_example * w) / jnp.maximum(jnp.sum(w), 1.0)


def init_metrics(metrics: Sequence[Any]) -> dict:
    """Zeroed accumulators for the loss and each streaming metric."""
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


def compute_metrics(acc: dict, metrics: Sequence[Any]) -> dict[str, float]:
    """Final figures from accumulators, as Python floats (one transfer from the device)."""
    acc = jax.device_get(acc)
    out = {"loss": float(acc["loss"]["total"] / max(float(acc["loss"]["count"]), 1.0))}
    for m in metrics:
        out[m.name] = float(m.compute(acc[m.name]))
    return out


def per_example_loss(loss_fn: LossFn, outputs, targets) -> jax.Array:
    """`loss_fn(outputs, targets)` checked to give one value per example."""
    values = loss_fn(outputs, targets)
    n = jax.tree.leaves(outputs)[0].shape[0]
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"the loss must return one value per example, shape ({n},); "
                         f"got {values.shape}. Pass a per-example loss (reduction='none').")
    return values


def train_step(state: TrainState, batch: dict, key: jax.Array, *, loss_fn: LossFn,
               metrics: Sequence[Any] = (), acc: dict | None = None):
    """One optimizer step on one batch.

    Args:
        state: the training state.
        batch: {"x": (B, ...), "y": (B, ...), "w": (B,)}.
        key: PRNG key for this step's dropout masks.
        loss_fn: per-example loss `(outputs, targets) -> (B,)`.
        metrics: streaming metrics (objects with init/update/compute).
        acc: accumulators to add this batch to (fresh ones when None).

    Returns:
        (new state, accumulators including this batch).
    """
    rngs = fresh_rngs(state.rngs, key)
    w = batch["w"].astype(jnp.float32)

    def objective(params):
        model = nnx.merge(state.graphdef, params, state.rest, rngs, copy=True)
        outputs = model(batch["x"])
        losses = per_example_loss(loss_fn, outputs, batch["y"])
        return weighted_mean(losses, w), (outputs, losses, nnx.state(model, _REST))

    (_, (outputs, losses, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(params=params, rest=rest, opt_state=opt_state, step=state.step + 1)
    acc = init_metrics(metrics) if acc is None else acc
    return new_state, update_metrics(acc, metrics, outputs, batch["y"], losses, w)


def eval_step(state: TrainState, batch: dict, *, loss_fn: LossFn, metrics: Sequence[Any] = (),
              acc: dict | None = None):
    """Loss and metrics of one batch in eval mode (dropout off, batch-norm running averages).

    Returns:
        (model outputs (B, ...), accumulators including this batch).
    """
    model = nnx.merge(state.eval_graphdef, state.params, state.rest, state.rngs, copy=True)
    outputs = model(batch["x"])
    losses = per_example_loss(loss_fn, outputs, batch["y"])
    acc = init_metrics(metrics) if acc is None else acc
    return outputs, update_metrics(acc, metrics, outputs, batch["y"], losses, batch["w"].astype(jnp.float32))


def predict_step(state: TrainState, x: jax.Array) -> jax.Array:
    """Model outputs in eval mode for a batch `x` of shape (B, ...)."""
    return nnx.merge(state.eval_graphdef, state.params, state.rest, state.rngs, copy=True)(x)


def batch_plan(key: jax.Array | None, n: int, batch_size: int, drop_last: bool = False):
    """Row indices and weights of every batch of one epoch.

    Args:
        key: shuffle key, or None for the data's order.
        n: number of rows.
        batch_size: rows per batch.
        drop_last: drop a short last batch instead of padding it.

    Returns:
        idx (num_batches, batch_size) int32 and w (num_batches, batch_size) float32, where padded
        slots repeat real rows with weight 0.
    """
    order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
    nb = n // batch_size if drop_last else -(-n // batch_size)
    total = nb * batch_size
    if total > n:
        order = jnp.concatenate([order, order[: total - n]])
    idx = order[:total].reshape(nb, batch_size)
    w = (jnp.arange(total) < n).astype(jnp.float32).reshape(nb, batch_size)
    return idx.astype(jnp.int32), w


def gather(data: dict, idx: jax.Array, w: jax.Array) -> dict:
    """The batch of device-resident `data` at rows `idx`, with weights `w`."""
    return {"x": data["x"][idx], "y": data["y"][idx], "w": w}


def train_epoch(state: TrainState, data: dict, shuffle_key: jax.Array | None, *, batch_size: int,
                loss_fn: LossFn, metrics: Sequence[Any] = (), drop_last: bool = False,
                on_batch: Callable | None = None, report_every: int = 0):
    """One epoch as a single `lax.scan` over shuffled batches of device-resident arrays.

    Args:
        state: the training state.
        data: {"x": (N, ...), "y": (N, ...)} on the device.
        shuffle_key: key of this epoch's permutation (None: no shuffling).
        batch_size, loss_fn, metrics, drop_last: as in `train_step` / `batch_plan`.
        on_batch: host callback `(batch_index, loss_total, count)` for a progress bar, called every
            `report_every` batches through `jax.debug.callback`.
        report_every: 0 disables the callback.

    Returns:
        (state after the epoch, accumulators over the epoch).
    """
    idx, w = batch_plan(shuffle_key, data["x"].shape[0], batch_size, drop_last)

    def body(carry, inputs):
        st, acc = carry
        i, bidx, bw = inputs
        st, acc = train_step(st, gather(data, bidx, bw), jax.random.fold_in(st.key, st.step),
                             loss_fn=loss_fn, metrics=metrics, acc=acc)
        if on_batch is not None and report_every:
            jax.lax.cond((i + 1) % report_every == 0,
                         lambda: jax.debug.callback(on_batch, i + 1, acc["loss"]["total"], acc["loss"]["count"]),
                         lambda: None)
        return (st, acc), None

    steps = jnp.arange(idx.shape[0])
    (state, acc), _ = jax.lax.scan(body, (state, init_metrics(metrics)), (steps, idx, w))
    return state, acc


def eval_epoch(state: TrainState, data: dict, *, batch_size: int, loss_fn: LossFn,
               metrics: Sequence[Any] = ()):
    """Loss and metrics over all of `data` in eval mode, as one `lax.scan` (no shuffling)."""
    idx, w = batch_plan(None, data["x"].shape[0], batch_size)

    def body(acc, inputs):
        bidx, bw = inputs
        _, acc = eval_step(state, gather(data, bidx, bw), loss_fn=loss_fn, metrics=metrics, acc=acc)
        return acc, None

    acc, _ = jax.lax.scan(body, init_metrics(metrics), (idx, w))
    return acc
