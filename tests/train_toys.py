"""Toys for the training tests: `Net` and `toy` (a classifier with dropout and batch norm, and its data),
and two small trainers of the custom-step shapes for tests/test_train_core.py (also run as a script to be
killed).

- `gan`: a generator and a discriminator on 2-D points, each with its own Adam, updated in turn in
  every step (discriminator on real and fake, then generator through the discriminator).
- `bptt`: a stateful recurrence trained by truncated BPTT: the hidden state is the step's carry,
  passed from batch to batch (gradients stopped), kept across epochs (reset_carry=False).

Run: python tests/train_toys.py {gan|bptt} CHECKPOINT_DIR EPOCHS OUT.npz [--resume] [--sleep-after K]
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim


class Net(nnx.Module):
    """A small classifier with dropout and batch norm, so RNG and batch statistics are exercised."""

    def __init__(self, din=8, classes=3, *, rngs):
        self.l1 = dlcore.nn.Linear(din, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.l2 = dlcore.nn.Linear(16, classes, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.bn(self.l1(x)))))


def toy(n=100, din=8, classes=3, seed=0):
    """A toy classification split for Net: x (n, din), y (n,) in [0, classes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, din)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
    return {"x": x, "y": y % classes}


class MLP2(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.l1 = dlcore.nn.Linear(din, 16, rngs=rngs)
        self.l2 = dlcore.nn.Linear(16, dout, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.leaky_relu(self.l1(x), 0.2))


def points(n=256, seed=0):
    """Real data: points on a ring of radius 2, (n, 2)."""
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return {"x": np.stack([2 * np.cos(angle), 2 * np.sin(angle)], 1).astype(np.float32)}


def gan_step(states, batch, key, carry):
    d, g = states["d"], states["g"]
    real, w = batch["x"], batch["w"]
    z = jax.random.normal(key, real.shape)

    def d_loss(params):
        disc = d.model(True, params=params)
        fake = jax.lax.stop_gradient(g.model(True)(z))
        per = losses.binary_cross_entropy_with_logits(disc(real)[:, 0], jnp.ones(len(real))) + \
            losses.binary_cross_entropy_with_logits(disc(fake)[:, 0], jnp.zeros(len(real)))
        return jnp.sum(per * w) / jnp.sum(w)

    ld, gd = jax.value_and_grad(d_loss)(d.params)
    d = d.apply_gradients(gd)

    def g_loss(params):  # the non-saturating generator loss, through the updated discriminator
        fake = g.model(True, params=params)(z)
        per = losses.binary_cross_entropy_with_logits(d.model(True)(fake)[:, 0], jnp.ones(len(real)))
        return jnp.sum(per * w) / jnp.sum(w)

    lg, gg = jax.value_and_grad(g_loss)(g.params)
    g = g.apply_gradients(gg)
    return {"d": d, "g": g}, {"d_loss": ld, "g_loss": lg}, carry


def gan_trainer(**kw):
    models = {"d": MLP2(2, 1, rngs=nnx.Rngs(0)), "g": MLP2(2, 2, rngs=nnx.Rngs(1))}
    return dlcore.Trainer(models, {"d": optim.adam(2e-3, betas=(0.5, 0.999)), "g": optim.adam(2e-3, betas=(0.5, 0.999))},
                          step=gan_step, batch_size=32, progress=False, **kw)


class Recurrence(nnx.Module):
    """h' = tanh(x W + h U + b), y = h' V: one step per time position."""

    def __init__(self, hidden=8, *, rngs):
        self.inp = dlcore.nn.Linear(1, hidden, rngs=rngs)
        self.rec = dlcore.nn.Linear(hidden, hidden, bias=False, rngs=rngs)
        self.out = dlcore.nn.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x, h):  # x (B, T, 1), h (B, H) -> (B, T, 1), (B, H)
        def cell(h, xt):
            h = jnp.tanh(self.inp(xt) + self.rec(h))
            return h, self.out(h)

        h, ys = jax.lax.scan(cell, h, jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1), h


def sine_chunks(batch=4, length=64, chunk=8):
    """A list of consecutive chunks of `batch` noisy sine streams: predict the next value. Batch i holds
    time steps [i*chunk, (i+1)*chunk) of every stream, so the hidden state carries over."""
    rng = np.random.default_rng(0)
    t = np.arange(length + 1)[None] * 0.3 + rng.uniform(0, 6, (batch, 1))
    s = (np.sin(t) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
    return [{"x": s[:, i:i + chunk, None], "y": s[:, i + 1:i + chunk + 1, None]} for i in range(0, length, chunk)]


def bptt_step(state, batch, key, carry):
    h0 = jax.lax.stop_gradient(carry)  # truncated BPTT: no gradient into earlier chunks

    def loss(params):
        out, h = state.model(True, key, params)(batch["x"], h0)
        per = jnp.mean((out - batch["y"]) ** 2, axis=(1, 2))
        return jnp.sum(per * batch["w"]) / jnp.sum(batch["w"]), h

    (value, h), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    return state.apply_gradients(grads), {"loss": value}, h


def bptt_eval(state, batch, carry):
    out, h = state.model()(batch["x"], carry)
    return {"loss": jnp.mean((out - batch["y"]) ** 2)}, h


def bptt_trainer(**kw):
    return dlcore.Trainer(Recurrence(rngs=nnx.Rngs(0)), optim.adam(1e-2), step=bptt_step, eval_step=bptt_eval,
                          carry=lambda b: jnp.zeros((b, 8)), reset_carry=False, progress=False, **kw)


def snapshot(trainer) -> dict[str, np.ndarray]:
    """Every array of the run (weights, optimizer states, steps, carry) by path, for bit-for-bit comparison."""
    flat = jax.tree_util.tree_flatten_with_path(trainer.checkpoint_tree())[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


class SleepAfter(dlcore.train.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            print("checkpointed", flush=True)
            time.sleep(600)


def main(argv):
    kind, directory, epochs, out = argv[:4]
    callbacks = [dlcore.Checkpoint(directory)]
    if "--sleep-after" in argv:
        callbacks.append(SleepAfter(int(argv[argv.index("--sleep-after") + 1])))
    trainer = (gan_trainer if kind == "gan" else bptt_trainer)(callbacks=callbacks)
    data = points() if kind == "gan" else sine_chunks()
    trainer.fit(data, epochs=int(epochs), resume="--resume" in argv)
    np.savez(out, **snapshot(trainer))


if __name__ == "__main__":
    main(sys.argv[1:])
