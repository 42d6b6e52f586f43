"""The training loop written out: state, loss, pure step and jitted epoch as separate functions (Géron, ch. 10).

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 10, writes its training loop by hand
(the `train()` function of Implementing Mini-Batch Gradient Descent Using DataLoaders) and trains the
Fashion MNIST classifier of Building an Image Classifier with PyTorch with it. `dlcore.Trainer.fit` hides
that loop; this example writes it out the JAX way, as flax's MNIST example does, from the pieces the
Trainer itself is made of:

* model: the `fashion_mlp` example's 784-300-100-10 ReLU MLP, recipe and data (SGD lr 0.1, batch 32);
* state: `dlcore.TrainState.create` splits the model once into a static graph and arrays (parameters,
  optimizer state, step counter, dropout key);
* loss: a per-example function `(logits, labels) -> (B,)`;
* step: `dlcore.train.train_step(state, batch, key, loss_fn=..., metrics=..., acc=...)`, pure: one SGD
  step on a batch `{"x", "y", "w"}` (`w` is 0 on the rows that pad the last batch);
* epoch: a `jax.lax.scan` of that step over the epoch's shuffled batches, the whole epoch one jitted call;
* figures: `dlcore.train.step.compute_metrics` turns the summed accumulators into loss and accuracy.

The keys are derived as `Trainer(seed=...)` derives them, so on the same data and seed the figures are
`dlcore run fashion_mlp`'s (tests/examples checks it). The book reports 92.8% train and 87.2% validation
accuracy on Fashion-MNIST; without it this runs on scikit-learn's 8x8 digits resized to 28x28, where the
figures are not comparable.

Run: `dlcore run explicit_loop` or `python examples/explicit_loop.py`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

import dlcore
from dlcore import losses, metrics, optim
from dlcore.examples import fashion_mlp
from dlcore.runner import Context, Example
from dlcore.train import eval_step, train_step
from dlcore.train.step import batch_plan, compute_metrics, init_metrics

EXAMPLE = Example(
    name="explicit_loop",
    title="The Fashion-MNIST MLP trained by an explicit jitted loop: TrainState, pure step, scan over batches",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 10, Building Neural Networks with PyTorch, Implementing Mini-Batch Gradient Descent "
             "Using DataLoaders; Building an Image Classifier with PyTorch"),
    source="the train() function, applied to the 784-300-100-10 classifier",
    data="fashion_mnist",
    standin="digits",
    book_figures={"train_accuracy": 0.928, "val_accuracy": 0.872},
)

METRICS = (metrics.get("accuracy"),)


def loss_fn(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of each example: logits `(B, 10)`, labels `(B,)` -> `(B,)`."""
    return losses.cross_entropy(logits, labels)


@partial(jax.jit, static_argnames="batch_size")
def train_epoch(state: dlcore.TrainState, data: dict, shuffle_key: jax.Array, *, batch_size: int):
    """One epoch: the step scanned over shuffled batches of device-resident `data` `{"x", "y"}`."""
    rows, weights = batch_plan(shuffle_key, data["x"].shape[0], batch_size)  # (num_batches, batch_size)

    def body(carry, plan):
        state, acc = carry
        batch_rows, batch_w = plan
        batch = {"x": data["x"][batch_rows], "y": data["y"][batch_rows], "w": batch_w}
        step_key = jax.random.fold_in(state.key, state.step)  # this step's dropout masks
        state, acc = train_step(state, batch, step_key, loss_fn=loss_fn, metrics=METRICS, acc=acc)
        return (state, acc), None

    (state, acc), _ = jax.lax.scan(body, (state, init_metrics(METRICS)), (rows, weights))
    return state, acc


@jax.jit
def evaluate(state: dlcore.TrainState, data: dict) -> dict:
    """Loss and metric accumulators of all of `data` in eval mode, as one batch."""
    batch = {"x": data["x"], "y": data["y"], "w": jnp.ones(data["y"].shape[0])}
    _, acc = eval_step(state, batch, loss_fn=loss_fn, metrics=METRICS)
    return acc


def fit(model, tx, train: dict, val: dict, *, epochs: int, batch_size: int, seed: int, ctx: Context):
    """Train `model` in place; returns the final state and each epoch's figures."""
    root = jax.random.PRNGKey(seed)
    state = dlcore.TrainState.create(model, tx, key=jax.random.fold_in(root, 0))  # dropout keys, as Trainer
    shuffle_root = jax.random.fold_in(root, 1)  # one permutation per epoch, as Trainer
    train, val = jax.device_put(train), jax.device_put(val)  # on the device once
    history = []
    for epoch in range(1, epochs + 1):
        state, acc = train_epoch(state, train, jax.random.fold_in(shuffle_root, epoch), batch_size=batch_size)
        logs = compute_metrics(acc, METRICS)
        logs.update({f"val_{k}": v for k, v in compute_metrics(evaluate(state, val), METRICS).items()})
        history.append(logs)
        ctx.print(f"epoch {epoch}/{epochs}: train loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} | "
                  f"val loss {logs['val_loss']:.4f} accuracy {logs['val_accuracy']:.4f}")
    state.write_to(model)
    return state, history


def run(ctx: Context) -> dict[str, float]:
    train, val = fashion_mlp.splits(ctx)
    epochs = ctx.n_epochs(fashion_mlp.EPOCHS, quick=1)
    model = dlcore.models.create("mlp", sizes=fashion_mlp.SIZES, seed=ctx.seed)
    state, history = fit(model, optim.sgd(lr=fashion_mlp.LR), train, val, epochs=epochs,
                         batch_size=fashion_mlp.BATCH_SIZE, seed=ctx.seed, ctx=ctx)
    train_figures = compute_metrics(evaluate(state, jax.device_put(train)), METRICS)  # the final weights
    return {"train_accuracy": train_figures["accuracy"], "val_accuracy": history[-1]["val_accuracy"],
            "val_loss": history[-1]["val_loss"]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
