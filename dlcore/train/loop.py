"""Trainer: fit / evaluate / predict over epochs, on top of the pure steps of `step.py`.

When the training arrays fit in `max_device_bytes`, they go to the device once and an epoch is one
jitted `lax.scan` over shuffled batches gathered on the device. Larger data is fed a batch at a
time from the host to one jitted step. All paths draw the same permutation and the same dropout
keys, so they train the same model.

One exception, written down because it breaks the rule above: XLA:CPU runs convolutions inside a
loop body about 20x slower than outside one (jax-ml/jax#12868; measured here on the MNIST ConvNet:
12.5 s vs 0.6 s an epoch of the digits). So on a CPU, a model with convolutions keeps its data on
the device but runs one jitted step per batch (`epoch_mode="step"`), gathering each batch on the
device inside the step.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dlcore import metrics as metrics_lib
from dlcore.train import step as S
from dlcore.train.callbacks import Callback, Checkpoint, ProgressBar
from dlcore.train.state import TrainState

Data = dict | tuple


def as_split(data: Data, name: str = "data") -> dict[str, np.ndarray]:
    """A dataset split as {"x", "y"} NumPy arrays, checked for equal, non-zero length.

    Args:
        data: {"x": (N, ...), "y": (N, ...)} or a tuple (x, y).
        name: how the error messages call it.
    """
    if isinstance(data, tuple) and len(data) == 2:
        data = {"x": data[0], "y": data[1]}
    if not isinstance(data, dict) or "x" not in data or "y" not in data:
        raise ValueError(f"{name} must be a dict with 'x' and 'y' arrays or a tuple (x, y)")
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: 'x' and 'y' must have the same first dimension, got {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return {"x": x, "y": y}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class Trainer:
    """Fits an NNX module with an optax optimizer and a per-example loss.

    Args:
        model: the `nnx.Module` to train; the trained weights are written back into it.
        optimizer: an `optax.GradientTransformation` (e.g. from `dlcore.optim`).
        loss: per-example loss `(outputs, targets) -> (B,)`, e.g. `dlcore.losses.cross_entropy`.
        metrics: streaming metrics or their names ("accuracy", "rmse", ...).
        batch_size: rows per training batch; None for full-batch gradient descent.
        eval_batch_size: rows per evaluation batch (default: max(batch_size, 500)).
        shuffle: reshuffle the training rows every epoch.
        drop_last: drop a short last batch instead of padding it with weight-0 rows. Padded rows count
            in no loss, gradient or metric, but they do enter batch-norm batch statistics of that one
            batch: for batch-norm models that must match PyTorch exactly, pass drop_last=True.
        seed: seeds the shuffling and the dropout masks (the model's init has its own seed).
        callbacks: e.g. `EarlyStopping`, `Checkpoint`.
        progress: draw a progress bar; None draws one when stderr is a terminal.
        max_device_bytes: training data up to this size is kept on the device.
        epoch_mode: "scan" (an epoch is one `lax.scan`), "step" (one jitted step per batch, data on
            the device) or "auto" ("step" for convolutional models on a CPU, else "scan").

    Example:
        >>> trainer = Trainer(model, optim.adadelta(0.5), losses.nll, metrics=["accuracy"], batch_size=32)
        >>> history = trainer.fit(train, epochs=2, validation=test)
    """

    def __init__(self, model: nnx.Module, optimizer: optax.GradientTransformation, loss: Callable,
                 *, metrics: Sequence[Any] = (), batch_size: int | None = 32,
                 eval_batch_size: int | None = None, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, callbacks: Sequence[Callback] = (), progress: bool | None = None,
                 max_device_bytes: int = 2 << 30, epoch_mode: str = "auto"):
        if not isinstance(model, nnx.Module):
            raise ValueError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise ValueError("optimizer must be an optax.GradientTransformation, e.g. dlcore.optim.sgd(0.01)")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (full batch), got {batch_size}")
        self.model = model
        self.loss_fn = loss
        self.metrics = tuple(metrics_lib.get(m) for m in metrics)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.callbacks = list(callbacks)
        if progress is None:
            progress = sys.stderr.isatty()
        self.progress = ProgressBar() if progress else None
        self.max_device_bytes = max_device_bytes
        if epoch_mode not in ("auto", "scan", "step"):
            raise ValueError(f"epoch_mode must be 'auto', 'scan' or 'step', got {epoch_mode!r}")
        if epoch_mode == "auto":
            has_conv = any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_modules(model))
            epoch_mode = "step" if has_conv and jax.default_backend() == "cpu" else "scan"
        self.epoch_mode = epoch_mode
        root = jax.random.PRNGKey(seed)
        self.state = TrainState.create(model, optimizer, key=jax.random.fold_in(root, 0))
        self._shuffle_root = jax.random.fold_in(root, 1)
        self.history: dict[str, list[float]] = {}
        self.stop_training = False
        self.epochs = 0
        self.batches_per_epoch = 0
        self.examples_per_epoch = 0
        self._compiled: dict[Any, Callable] = {}
        self.trace_counts: dict[str, int] = {}

    # -- compiled functions, built once per trainer and shape -------------------------------------

    def _count(self, name: str) -> None:
        # Runs at trace time only: the tests read it to show a step compiles once.
        self.trace_counts[name] = self.trace_counts.get(name, 0) + 1

    def _jit(self, name: str, fn: Callable, **static) -> Callable:
        if name not in self._compiled:
            def traced(*args):
                self._count(name)
                return fn(*args, **static)
            self._compiled[name] = jax.jit(traced)
        return self._compiled[name]

    def _train_epoch_fn(self, batch_size: int):
        bar = self.progress
        every = max(1, self.batches_per_epoch // bar.updates_per_epoch) if bar else 0
        return self._jit("train_epoch", S.train_epoch, batch_size=batch_size, loss_fn=self.loss_fn,
                         metrics=self.metrics, drop_last=self.drop_last,
                         on_batch=bar.on_batch if bar else None, report_every=every)

    def _train_step_fn(self):
        # One step on the batch at row `i` of the epoch's plan, gathered from `data` inside the step
        # (so `data` may be device-resident arrays or a host batch with idx = arange(B)).
        def step(state, data, idx, w, i, acc, **static):
            batch = S.gather(data, idx[i], w[i])
            return S.train_step(state, batch, jax.random.fold_in(state.key, state.step), acc=acc, **static)
        return self._jit("train_step", step, loss_fn=self.loss_fn, metrics=self.metrics)

    def _eval_epoch_fn(self, batch_size: int):
        return self._jit(f"eval_epoch_{batch_size}", S.eval_epoch, batch_size=batch_size,
                         loss_fn=self.loss_fn, metrics=self.metrics)

    # -- checks that run before anything compiles ------------------------------------------------

    def check(self, split: dict[str, np.ndarray], name: str = "data") -> None:
        """Fail fast, with one line, when `split` does not fit the model, the loss or the classes.

        Uses `jax.eval_shape` (tracing, no compilation) on one batch.
        """
        x, y = split["x"], split["y"]
        b = min(len(x), self.batch_size or len(x))
        xs = jax.ShapeDtypeStruct((b,) + x.shape[1:], jnp.asarray(x[:1]).dtype)
        ys = jax.ShapeDtypeStruct((b,) + y.shape[1:], jnp.asarray(y[:1]).dtype)
        try:
            out = jax.eval_shape(lambda v: S.predict_step(self.state, v), xs)
        except Exception as exc:
            raise ValueError(f"{name}: inputs of shape {x.shape[1:]} per example do not fit "
                             f"{type(self.model).__name__}: {_first_line(exc)}") from None
        try:
            jax.eval_shape(lambda o, t: S.per_example_loss(self.loss_fn, o, t), out, ys)
        except Exception as exc:
            raise ValueError(f"{name}: targets of shape {y.shape[1:]} per example do not fit the model's "
                             f"outputs {out.shape[1:]} under the loss: {_first_line(exc)}") from None
        if np.issubdtype(y.dtype, np.integer) and out.ndim == y.ndim + 1 and out.shape[-1] > 1:
            n_classes = out.shape[-1]
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= n_classes:
                bad = int(np.sum((y < 0) | (y >= n_classes)))
                raise ValueError(f"{name}: {bad} labels lie outside [0, {n_classes}) (min {lo}, max {hi}); "
                                 f"the model has {n_classes} outputs")

    # -- public API --------------------------------------------------------------------------------

    def fit(self, train: Data, *, epochs: int, validation: Data | None = None,
            resume: bool = False) -> dict[str, list[float]]:
        """Train for `epochs` epochs (counting any already done when resuming).

        Args:
            train: {"x": (N, ...), "y": (N, ...)} or (x, y), NumPy or JAX arrays.
            epochs: total number of epochs.
            validation: optional split evaluated after each epoch (logged with a "val_" prefix).
            resume: continue from the latest checkpoint of the `Checkpoint` callback, if any.

        Returns:
            The history: metric name -> list of per-epoch values.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        train = as_split(train, "train")
        self.check(train, "train")
        if validation is not None:
            validation = as_split(validation, "validation")
            self.check(validation, "validation")
        n = len(train["x"])
        bs = min(self.batch_size or n, n)
        self.epochs = epochs
        self.batches_per_epoch = n // bs if self.drop_last else math.ceil(n / bs)
        self.examples_per_epoch = self.batches_per_epoch * bs if self.drop_last else n
        callbacks = self.callbacks + ([self.progress] if self.progress else [])
        start = 0
        if resume:
            saver = [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]
            if not saver:
                raise ValueError("resume=True needs a Checkpoint callback that says where the checkpoints are")
            start = saver[0].restore(self)
        self.stop_training = self.stop_training and start > 0
        for cb in callbacks:
            cb.on_fit_start(self)

        on_device = train["x"].nbytes + train["y"].nbytes <= self.max_device_bytes
        data = jax.device_put(train) if on_device else train
        val_data = jax.device_put(validation) if validation is not None else None
        for epoch in range(start + 1, epochs + 1):
            if self.stop_training:
                break
            for cb in callbacks:
                cb.on_epoch_start(self, epoch)
            key = jax.random.fold_in(self._shuffle_root, epoch) if self.shuffle else None
            if on_device and self.epoch_mode == "scan":
                self.state, acc = self._train_epoch_fn(bs)(self.state, data, key)
            else:
                self.state, acc = self._stepwise_epoch(data, key, bs, on_device)
            logs = S.compute_metrics(acc, self.metrics)
            if val_data is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate(val_data).items()})
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            for cb in callbacks:
                cb.on_epoch_end(self, epoch, logs)
        for cb in callbacks:
            cb.on_fit_end(self)
        self.state.write_to(self.model)
        return self.history

    def _stepwise_epoch(self, data: dict, key, bs: int, on_device: bool):
        """One jitted step per batch: gathered on the device, or sliced on the host and sent."""
        idx, w = S.batch_plan(key, len(data["x"]), bs, self.drop_last)
        step = self._train_step_fn()
        acc = S.init_metrics(self.metrics)
        every = max(1, len(idx) // self.progress.updates_per_epoch) if self.progress else 0
        if not on_device:
            idx, w = np.asarray(idx), np.asarray(w)
            local = np.arange(bs, dtype=np.int32)[None]
        for i in range(len(idx)):
            if on_device:
                self.state, acc = step(self.state, data, idx, w, np.int32(i), acc)
            else:
                batch = {"x": data["x"][idx[i]], "y": data["y"][idx[i]]}
                self.state, acc = step(self.state, batch, local, w[i:i + 1], np.int32(0), acc)
            if every and (i + 1) % every == 0:
                self.progress.on_batch(i + 1, acc["loss"]["total"], acc["loss"]["count"])
        return self.state, acc

    def _eval_bs(self, n: int) -> int:
        return min(n, self.eval_batch_size or max(self.batch_size or n, 500))

    def evaluate(self, data: Data) -> dict[str, float]:
        """Loss and metrics over `data` in eval mode (dropout off, batch-norm running averages)."""
        split = as_split(data, "evaluation data")
        self.check(split, "evaluation data")
        return self._evaluate(jax.device_put(split))

    def _evaluate(self, split: dict) -> dict[str, float]:
        bs = self._eval_bs(len(split["x"]))
        if self.epoch_mode == "scan":
            acc = self._eval_epoch_fn(bs)(self.state, split)
        else:  # one jitted step per batch, for the reason in the module docstring
            def step(state, data, idx, w, i, acc, **static):
                return S.eval_step(state, S.gather(data, idx[i], w[i]), acc=acc, **static)[1]
            fn = self._jit(f"eval_step_{bs}", step, loss_fn=self.loss_fn, metrics=self.metrics)
            idx, w = S.batch_plan(None, len(split["x"]), bs)
            acc = S.init_metrics(self.metrics)
            for i in range(len(idx)):
                acc = fn(self.state, split, idx, w, np.int32(i), acc)
        return S.compute_metrics(acc, self.metrics)

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """Model outputs for inputs `x` of shape (N, ...), in eval mode, as a NumPy array."""
        x = np.asarray(x)
        bs = min(len(x), batch_size or self._eval_bs(len(x)))
        fn = self._jit("predict", S.predict_step)
        out = []
        for i in range(0, len(x), bs):
            chunk = x[i:i + bs]
            pad = bs - len(chunk)
            if pad:  # keep one shape, so one compilation
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            out.append(np.asarray(fn(self.state, chunk))[: bs - pad])
        return np.concatenate(out)
