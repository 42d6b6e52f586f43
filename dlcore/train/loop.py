"""Trainer: fit / evaluate / predict over any batch source and any step, on the pure steps of `step.py`.

What the Trainer takes:

- data: any source of `dlcore.data.protocol` (in-memory arrays, a dict of inputs, a `Loader`, a grain or
  TFDS random-access source, a list or generator of batches, a function ``epoch -> batches``);
- a step: the supervised one built from ``(model, optimizer, loss, metrics)``, or a user's
  ``step(states, batch, key, carry) -> (states, logs, carry)`` over a pytree of models and optimizers
  (a GAN's discriminator and generator) with a ``carry`` from batch to batch (truncated BPTT).

Every shape gets the same progress bar, callbacks, early stopping, checkpoints, exact resume and
non-finite guard.

In-memory training data up to `max_device_bytes` goes to the device once and an epoch is one jitted
`lax.scan` over shuffled batches gathered there. Other sources feed one jitted step per batch. The
key of every step is ``fold_in(trainer.key, count)`` where ``count`` counts the steps of the run, so
all paths draw the same dropout masks and a resumed run is bit-identical to an uninterrupted one.

One exception, written down because it breaks the scan rule: XLA:CPU runs its own convolutions inside
a loop body about 20x slower than outside one (jax-ml/jax#12868; measured here on the MNIST ConvNet with
XLA's convolutions: 12.5 s vs 0.6 s an epoch of the digits). The convolutions dlcore lowers itself on a
CPU (oneDNN's kernels and im2col, chosen per shape by `dlcore.nn.conv_tuning`) do not slow down in a
loop, and there the scan is the faster form (measured on this project's 2-core CPU, a step: the MNIST
ConvNet at batch 32 4.3-4.6 -> 2.9-3.5 ms, the batch-norm CNN at 64 4.4 -> 3.6-3.8 ms and at 256 16-18 ->
14-15 ms). So on a CPU, under ``epoch_mode="auto"``, a convolutional model's epoch is a scan when its
traced step holds none of XLA's own convolutions, and else one jitted step per batch (`"step"`, the data
still on the device, each batch gathered inside the step; ResNet-18 in a scan took 590 instead of 54 ms a
step).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import metrics as metrics_lib
from dlcore import precision as precision_lib
from dlcore.checks import check_choice, check_int
from dlcore.data import protocol as P
from dlcore.train import parallel as par
from dlcore.train import step as S
from dlcore.train.callbacks import Callback, Checkpoint, ProgressBar
from dlcore.train.state import TrainState

__all__ = ["NonFiniteError", "Trainer"]


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss, gradient or parameter; training stopped."""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _xla_convolutions(jaxpr) -> int:
    """How many of XLA's own convolutions (`lax.conv_general_dilated`) a jaxpr holds, sub-jaxprs included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "conv_general_dilated"
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jex_core.ClosedJaxpr):
                    count += _xla_convolutions(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    count += _xla_convolutions(sub)
    return count


def _is_module(x) -> bool:
    return isinstance(x, nnx.Module)


def _is_tx(x) -> bool:
    return hasattr(x, "init") and hasattr(x, "update") and callable(x.init)


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


class Trainer:
    """Fits NNX modules with optax optimizers, on any batch source, with the supervised step or yours.

    Args:
        model: the `nnx.Module` to train, or a pytree (dict, tuple) of modules for a custom step; the
            trained weights are written back into them.
        optimizer: an `optax.GradientTransformation` (e.g. from `dlcore.optim`), or a pytree of them
            matching `model` (each module gets its own optimizer state).
        loss: per-example loss `(outputs, targets) -> (B,)`, e.g. `dlcore.losses.cross_entropy`
            (`loss(outputs)` for batches without targets). Not with `step`.
        step: a custom step `(states, batch, key, carry) -> (states, logs, carry)`: `states` has the
            structure of `model` with a `TrainState` for each module, `logs` is a dict of scalars
            (their epoch means are the history), `carry` persists from batch to batch. It must return
            states and carry of the structure it was given. The key is this step's alone.
        eval_step: for a custom step, `(states, batch, carry) -> (logs, carry)` used by validation
            and `evaluate` (in eval mode: `state.model()`).
        carry: the initial carry of a custom step: a pytree of arrays, or a function
            `batch_size -> pytree`. None: the step gets None.
        reset_carry: start every epoch (and every evaluation) from the initial carry; False carries
            it across epochs too. Either way the carry is saved in checkpoints.
        metrics: streaming metrics or their names ("accuracy", "rmse", "precision", ...).
        batch_size: rows per training batch of in-memory data; None for full-batch gradient descent.
            Loaders and iterables bring their own batches.
        eval_batch_size: rows per evaluation batch (default: max(batch_size, 500)).
        shuffle: reshuffle the training rows every epoch.
        drop_last: drop a short last batch instead of padding it with weight-0 rows. Padded rows count
            in no loss, gradient or metric, but they do enter batch-norm batch statistics of that one
            batch: for batch-norm models that must match PyTorch exactly, pass drop_last=True.
        seed: seeds the shuffling and the dropout masks (the model's init has its own seed).
        callbacks: e.g. `EarlyStopping`, `Checkpoint`.
        progress: draw a progress bar; None draws one when stderr is a terminal.
        max_device_bytes: in-memory training data up to this size is kept on the device.
        epoch_mode: "scan" (an epoch is one `lax.scan`), "step" (one jitted step per batch, data on
            the device) or "auto" ("scan", except on a CPU where a model's traced step holds one of
            XLA's own convolutions: "step"; decided at the first epoch, see the module docstring).
        on_nonfinite: "stop": at the first step whose loss (or logs) or new parameters are not finite,
            `fit` raises `NonFiniteError` naming the epoch and the step, with the weights of the step
            before written back (found by replaying the epoch; the last checkpoint stays the last good
            one). It checks the loss at every step and the parameters once an epoch, at no cost you
            will see. "skip": such a step is not applied, training goes on, and the epoch logs count
            them as "skipped_steps" (a pass over the parameters every step). "off": no check (for runs
            meant to diverge, such as the learning-rate finder).
        nonfinite_rows: data rows whose inputs or targets hold NaN or inf: "raise" a one-line error
            before anything trains, or "drop" them (each epoch's logs count them as "dropped_rows").
            Only host (NumPy) arrays are looked at; device arrays are left to `on_nonfinite`.
        precision: a mixed-precision policy (`dlcore.precision`): "float32" (None, the default: nothing
            is cast) or "bfloat16" (also "mixed_bfloat16"): parameters, gradients and optimizer state
            float32, the model run in bfloat16 (floating parameters and inputs cast inside the step),
            its outputs cast to float32 before the loss and metrics; `evaluate` and `predict` run under
            the same policy (float32 outputs). No loss scaling is needed for bfloat16; float16 is
            refused. A model built with bfloat16 parameters is stored (and written back) in float32.
            Supervised step only: a custom `step=` applies a policy itself (`Policy.model`, `Policy.call`).
        mesh: train data-parallel over a device mesh (None: one device, the default): a
            `jax.sharding.Mesh` with a data axis (e.g. `dlcore.train.parallel.data_mesh()`) splits each
            batch over its devices and replicates the states; `parallel.DataParallel(mesh, fsdp=True)`
            also shards the parameters and optimizer state (see `dlcore.train.parallel`). The training
            batch size must be divisible by the devices of the data axis (one line otherwise). Figures
            equal a one-device run's up to float32 summation order.

    Example:
        >>> trainer = Trainer(model, optim.adadelta(0.5), losses.nll, metrics=["accuracy"], batch_size=32)
        >>> history = trainer.fit(train, epochs=2, validation=test)
        >>> history = trainer.fit(train, epochs=4)  # two more: epochs 3 and 4 (Keras's initial_epoch)

    A GAN (two models, two optimizers, updated in turn in one step):
        >>> def gan_step(states, batch, key, carry):
        ...     d, g = states["d"], states["g"]
        ...     ...  # update d on real and fake, then g through d
        ...     return {"d": d, "g": g}, {"d_loss": d_loss, "g_loss": g_loss}, carry
        >>> Trainer({"d": D, "g": G}, {"d": optim.adam(2e-4), "g": optim.adam(2e-4)}, step=gan_step)
    """

    def __init__(self, model: Any, optimizer: Any, loss: Callable | None = None, *,
                 step: Callable | None = None, eval_step: Callable | None = None, carry: Any = None,
                 reset_carry: bool = True, metrics: Sequence[Any] = (), batch_size: int | None = 32,
                 eval_batch_size: int | None = None, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, callbacks: Sequence[Callback] = (), progress: bool | None = None,
                 max_device_bytes: int = 2 << 30, epoch_mode: str = "auto", on_nonfinite: str = "stop",
                 nonfinite_rows: str = "raise", mesh: Any = None, precision: Any = None):
        modules, self._treedef = jax.tree.flatten(model, is_leaf=_is_module)
        if not modules or not all(_is_module(m) for m in modules):
            raise ValueError(f"model must be a flax.nnx.Module or a dict/tuple of them, got {type(model).__name__}")
        self.precision = precision_lib.get(precision)
        if step is not None and not self.precision.noop:
            raise ValueError(f"precision={self.precision.name!r} applies to the supervised step; a custom step= "
                             f"applies it itself: policy.model(state, train, key, params) and policy.call(model, x) "
                             f"(see dlcore.precision)")
        if _is_tx(optimizer):
            txs = [optimizer] * len(modules)
        else:
            txs, tx_def = jax.tree.flatten(optimizer, is_leaf=_is_tx)
            if tx_def != self._treedef or not all(_is_tx(t) for t in txs):
                raise ValueError("optimizer must be an optax.GradientTransformation (e.g. dlcore.optim.sgd(0.01)) "
                                 f"or a pytree of them with the structure of model ({self._treedef})")
        if step is None:
            if loss is None or not callable(loss):
                raise ValueError("pass a per-example loss (e.g. dlcore.losses.cross_entropy), or a custom step=")
            if len(modules) != 1 or not _is_module(model):
                raise ValueError("several models need a custom step= that says how each is updated")
            if eval_step is not None or carry is not None:
                raise ValueError("eval_step= and carry= belong to a custom step=; pass step= too")
            self.task = S.Supervised(loss, tuple(metrics_lib.get(m) for m in metrics),
                                     None if self.precision.noop else self.precision)
        else:
            if loss is not None or metrics:
                raise ValueError("a custom step= computes its own loss and logs: pass no loss or metrics")
            if not callable(step) or (eval_step is not None and not callable(eval_step)):
                raise ValueError("step= and eval_step= must be functions")
            self.task = S.Custom(step, eval_step)
        if batch_size is not None:
            check_int(batch_size, "batch_size (None: full batch)", low=1, who="Trainer")
        if eval_batch_size is not None:
            check_int(eval_batch_size, "eval_batch_size (None: max(batch_size, 500))", low=1, who="Trainer")
        check_choice(epoch_mode, "epoch_mode", ("auto", "scan", "step"), who="Trainer")
        check_choice(on_nonfinite, "on_nonfinite", ("stop", "skip", "off"), who="Trainer")
        self.nonfinite_rows = check_choice(nonfinite_rows, "nonfinite_rows", ("raise", "drop"), who="Trainer")
        self.parallel = par.DataParallel.of(mesh)
        self.model = model
        self.modules = modules
        self.loss_fn = loss
        self.metrics = getattr(self.task, "metrics", ())
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
        if epoch_mode == "auto":  # a convolutional model on a CPU: decided from its traced step (`_scans`)
            has_conv = any(isinstance(m, (nnx.Conv, nnx.ConvTranspose))
                           for module in modules for _, m in nnx.iter_modules(module))
            epoch_mode = "auto" if has_conv and jax.default_backend() == "cpu" else "scan"
        self.epoch_mode = epoch_mode
        self.on_nonfinite = on_nonfinite
        self.initial_carry = carry
        self.reset_carry = reset_carry
        root = jax.random.PRNGKey(seed)
        self.key = jax.random.fold_in(root, 0)  # step c draws fold_in(key, c)
        self._shuffle_key = jax.random.fold_in(root, 1)
        if not self.precision.noop:  # parameters are stored, and updated, in the policy's param_dtype
            for m in modules:
                nnx.update(m, self.precision.cast_to_param(nnx.state(m, nnx.Param)))
        states = [TrainState.create(m, tx, key=self.key if len(modules) == 1 else jax.random.fold_in(self.key, i))
                  for i, (m, tx) in enumerate(zip(modules, txs))]
        self.state = self._placed(jax.tree.unflatten(self._treedef, states))
        self.carry = None
        self.count = 0  # steps run, over every fit of this trainer
        self.history: dict[str, list[float]] = {}
        self.stop_training = False
        self.epoch = 0  # epochs completed
        self.epochs = 0  # the last epoch of the current fit
        self.batches_per_epoch = 0
        self.examples_per_epoch = 0
        self._compiled: dict[Any, Callable] = {}
        self._acc0: dict[Any, dict] = {}
        self._checked: dict[Any, Any] = {}  # batch signature -> the model's abstract output (see check)
        self.trace_counts: dict[str, int] = {}
        self._listeners: list[Callback] = []
        self._bar_every = 0
        self._epoch_start = (0, 0)

    # -- the states --------------------------------------------------------------------------------

    def states(self) -> list[TrainState]:
        """The `TrainState` of each module, in the order of `self.modules`."""
        return jax.tree.leaves(self.state, is_leaf=S.is_state)

    def weights(self):
        """Each module's weights and other variables: what early stopping keeps and restores."""
        return jax.tree.map(lambda s: {"params": s.params, "rest": s.rest}, self.state, is_leaf=S.is_state)

    def load_weights(self, tree) -> None:
        self.state = self._placed(jax.tree.map(lambda s, t: s.replace(**t), self.state, tree,
                                               is_leaf=lambda x: S.is_state(x)))

    def _placed(self, states):
        """``states`` on the mesh with their shardings (replicated, or FSDP's); as they are without a mesh."""
        return states if self.parallel is None else self.parallel.place(states)

    def checkpoint_tree(self) -> dict:
        """The arrays a checkpoint needs: every state's weights, optimizer state, step and key; the
        run's step count and key; the carry."""
        tree = {"state": jax.tree.map(lambda s: s.checkpoint_tree(), self.state, is_leaf=S.is_state),
                "loop": {"count": np.int64(self.count), "key": self.key}}
        if self.carry is not None:
            tree["loop"]["carry"] = self.carry
        return tree

    def load_checkpoint_tree(self, tree: dict) -> None:
        tree = jax.tree.map(jnp.asarray, tree)
        self.state = self._placed(jax.tree.map(lambda s, t: s.replace_from_checkpoint(t), self.state, tree["state"],
                                               is_leaf=S.is_state))
        self.count = int(tree["loop"]["count"])
        self.key = tree["loop"]["key"]
        if "carry" in tree["loop"]:
            self.carry = tree["loop"]["carry"]

    def _write_back(self) -> None:
        """The trained arrays back into the user's modules, left in eval mode (dropout off, batch norm on
        its running averages), as a trained model is used; `model.train()` switches back."""
        for module, state in zip(self.modules, self.states()):
            state.write_to(module)
            module.eval()

    # -- compiled functions, keyed by what they depend on ------------------------------------------

    def _count(self, name: str) -> None:
        # Runs at trace time only: the tests read it to show a step compiles once per shape.
        self.trace_counts[name] = self.trace_counts.get(name, 0) + 1

    def _jit(self, name: str, fn: Callable, **static) -> Callable:
        """`fn` jitted with `static` bound: one entry per (name, static values); jit itself keys the
        traced arguments by shape and dtype."""
        key = (name, fn, tuple(sorted(static.items())))
        if key not in self._compiled:
            self._compiled[key] = jax.jit(self._bind(name, fn, **static))
        return self._compiled[key]

    def _zero_acc(self, eval: bool = False) -> dict:
        """The task's zeroed accumulators, made once per task: arrays are immutable, so every epoch can start
        from the same ones, and starting an epoch dispatches nothing to the device."""
        key = (self.task, eval)
        if key not in self._acc0:
            self._acc0[key] = self.task.init_acc(eval=eval)
        return self._acc0[key]

    def _bind(self, name: str, fn: Callable, **static) -> Callable:
        """`fn` with `static` bound as the Trainer traces it, not jitted: under a mesh the task splits the
        batches over it and keeps the states placed; each trace is counted under `name`."""
        if self.parallel is not None and "task" in static:
            static = {**static, "task": par.ShardedTask(static["task"], self.parallel)}

        def traced(*args):
            self._count(name)
            return fn(*args, **static)
        return traced

    def _scans(self, name: str, fn: Callable, args: tuple, **static) -> bool:
        """Whether an epoch runs as one `lax.scan` of the one-step function `name` (`fn` with `static`,
        called with `args`): as `epoch_mode` says, or under "auto" (a convolutional model on a CPU) when
        the traced step holds none of XLA's own convolutions. The trace is the one the step's first call
        would make (jit keeps it), so deciding costs nothing where the epoch then runs step by step."""
        if self.epoch_mode != "auto":
            return self.epoch_mode == "scan"
        if self.parallel is not None:  # each device convolves its rows in one XLA call (`conv_tuning`)
            return False
        return _xla_convolutions(self._jit(name, fn, **static).trace(*args).jaxpr.jaxpr) == 0

    # -- sources and checks --------------------------------------------------------------------------

    def _source(self, data, name: str, *, train: bool, steps: int | None = None) -> P.BatchSource:
        if train:
            return P.source(data, batch_size=self.batch_size, shuffle=self.shuffle, key=self._shuffle_key,
                            drop_last=self.drop_last, steps_per_epoch=steps, name=name, nonfinite=self.nonfinite_rows)
        src = P.source(data, batch_size=None, shuffle=False, name=name, steps_per_epoch=steps,
                       nonfinite=self.nonfinite_rows)
        if isinstance(src, P.ArraySplit):
            src = P.ArraySplit(src.split, min(src.n, self.eval_batch_size or max(self.batch_size or src.n, 500)),
                               dropped=src.dropped)
        return src

    def _init_carry(self, batch_size: int):
        c = self.initial_carry
        c = c(batch_size) if callable(c) else c
        return None if c is None else jax.tree.map(jnp.asarray, c)

    def check(self, src: P.BatchSource, name: str = "data", *, train: bool = True, first_epoch: int = 1) -> None:
        """Fail fast, with one line, when the batches do not fit the model, the loss or the classes, or a
        custom step returns something of another structure.

        Traces with `jax.eval_shape` on one batch (no compilation).
        """
        batch = src.example(first_epoch)
        shapes = {k: jax.tree.map(lambda a: tuple(np.shape(a)[1:]), v) for k, v in batch.items() if k != "w"}
        if isinstance(self.task, S.Custom):
            self._check_custom(batch, src, name, train)
            return
        abstract = _abstract(batch)
        # The traces depend on the batch's structure, shapes and dtypes only: a later fit of the same kind of
        # batches (an epoch at a time, say) skips them. The label check below looks at the data every time.
        signature = (train, jax.tree.structure(abstract),
                     tuple((a.shape[1:], a.dtype) for a in jax.tree.leaves(abstract)))
        out = self._checked.get(signature)
        if out is None:
            out = self._check_traces(abstract, shapes, name)
            self._checked[signature] = out
        # every label where the rows are at hand (an in-memory split, a Loader's), else the example batch's
        rows = src.split if isinstance(src, P.ArraySplit) else getattr(src, "host_split", None) or batch
        y = rows.get("y")
        out = out[0] if isinstance(out, tuple) else out
        if (isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer) and hasattr(out, "ndim")
                and out.ndim == y.ndim + 1 and out.shape[-1] > 1):
            n_classes = out.shape[-1]
            outside = (y < 0) | (y >= n_classes)
            if outside.any() and not self._loss_ignores(rows, outside):
                raise ValueError(f"{name}: {int(outside.sum())} labels lie outside [0, {n_classes}) (min "
                                 f"{int(y.min())}, max {int(y.max())}); the model has {n_classes} outputs (a loss "
                                 f"with ignore_index gives such rows 0 and is let through)")

    def _check_traces(self, abstract, shapes, name: str):
        """The model's abstract output for `abstract` batches; one line if the model, loss or metrics do not fit."""
        try:
            out = jax.eval_shape(lambda v: S.predict_step(self.state, v, self.task.precision), abstract["x"])
        except Exception as exc:
            raise ValueError(f"{name}: inputs of shape {shapes['x']} per example do not fit "
                             f"{type(self.model).__name__}: {_first_line(exc)}") from None
        if "y" not in abstract and self.metrics:
            raise ValueError(f"{name} has no targets 'y', which the metrics {[m.name for m in self.metrics]} need")
        try:
            jax.eval_shape(lambda o, t: S.per_example_loss(self.loss_fn, o, t), out, abstract.get("y"))
        except Exception as exc:
            raise ValueError(f"{name}: targets of shape {shapes.get('y')} per example do not fit the model's "
                             f"outputs under the loss: {_first_line(exc)}") from None
        for m in self.metrics:
            try:
                jax.eval_shape(lambda o, t, w, m=m: m.update(m.init(), o[0] if isinstance(o, tuple) else o, t, w),
                               out, abstract["y"], abstract["w"])
            except Exception as exc:
                raise ValueError(f"{name}: metric {m.name!r} does not fit the model's outputs and targets: "
                                 f"{_first_line(exc)}") from None
        return out

    def _loss_ignores(self, split: dict, outside: np.ndarray) -> bool:
        """Whether the loss gives 0 to every distinct out-of-range label (as `cross_entropy(...,
        ignore_index=-100)` does), tried on one row of `split` of each: then those rows are padding."""
        labels, first = np.unique(split["y"][outside], return_index=True)
        if len(labels) > 8:
            return False
        rows = np.flatnonzero(outside)[first]
        x = P.take_rows(split["x"], rows)
        values = S.per_example_loss(self.loss_fn, S.predict_step(self.state, x, self.task.precision),
                                    split["y"][rows])
        return bool(np.all(np.asarray(values) == 0))

    def _check_custom(self, batch, src, name: str, train: bool) -> None:
        import dataclasses

        if train and self.carry is not None and callable(self.initial_carry):
            fresh, kept = S._spec(jax.eval_shape(lambda: self._init_carry(src.batch_size))), S._spec(self.carry)
            if fresh != kept:
                raise ValueError(f"{name}: the carry kept from the last fit (reset_carry=False) has shapes "
                                 f"{list(kept[1])}, but batches of {src.batch_size} rows start from "
                                 f"{list(fresh[1])}: keep the batch size, or set trainer.carry = None to start "
                                 f"this fit from the initial carry")
        carry = self._init_carry(src.batch_size) if self.carry is None or not train else self.carry
        abstract = _abstract(batch)
        if train:
            new_states, logs, new_carry = jax.eval_shape(self.task.step, self.state, abstract, self.key, carry)
            S.check_returned(self.state, new_states, carry, new_carry, logs, "step")
            self.task = dataclasses.replace(self.task, names=tuple(sorted(logs)))
        else:
            if self.task.eval_step is None:
                raise ValueError(f"{name}: evaluating a custom step needs eval_step=(states, batch, carry) -> "
                                 f"(logs, carry) in the Trainer")
            logs, new_carry = jax.eval_shape(self.task.eval_step, self.state, abstract, carry)
            S.check_returned(None, None, carry, new_carry, logs, "eval_step")
            self.task = dataclasses.replace(self.task, eval_names=tuple(sorted(logs)))

    # -- fit -----------------------------------------------------------------------------------------

    def fit(self, train: Any, *, epochs: int, validation: Any = None, resume: bool = False,
            initial_epoch: int | None = None, steps_per_epoch: int | None = None) -> dict[str, list[float]]:
        """Train until epoch `epochs`, counting the epochs of earlier fits (Keras's `epochs` and
        `initial_epoch`).

        A second `fit(train, epochs=4)` after `fit(train, epochs=2)` trains epochs 3 and 4 and appends to
        the same history; shapes may change between fits (another batch size, another dataset size):
        each new shape compiles once.

        Args:
            train: a batch source (see `dlcore.data.protocol`): {"x", "y"} arrays or (x, y), a dict of
                inputs under "x", a `Loader`, a random-access source, an iterable of batches, or a
                function `epoch -> batches`.
            epochs: the number of the last epoch to train.
            validation: optional source evaluated after each epoch (logged with a "val_" prefix).
            resume: continue from the latest checkpoint of the `Checkpoint` callback, if any.
            initial_epoch: the epoch to continue after; default: the epochs this trainer has completed
                (the checkpoint's epoch when resuming).
            steps_per_epoch: batches per epoch instead of one pass over the data (a generator that
                never ends needs it).

        Returns:
            The history: log name -> list of per-epoch values, over every fit of this trainer. As in
            Keras, a training figure ("loss", "accuracy", ...) is measured during the epoch: the mean
            over its steps' batches (each with the weights of that step), while a validation figure
            ("val_loss", ...) is measured after the epoch, with its final weights, in eval mode. After
            `fit` the model holds the trained weights and is in eval mode.

        Raises:
            ValueError: bad data or arguments, before anything compiles.
            NonFiniteError: a step's loss, gradients or parameters were not finite (`on_nonfinite="stop"`).
        """
        check_int(epochs, "epochs", low=1)
        if initial_epoch is not None:
            check_int(initial_epoch, "initial_epoch (None: the epochs this trainer has completed)", low=0)
        saver = [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]
        if resume and not saver:
            raise ValueError("resume=True needs a Checkpoint callback that says where the checkpoints are")
        src = self._source(train, "train", train=True, steps=steps_per_epoch)
        val = self._source(validation, "validation", train=False) if validation is not None else None
        start = self.epoch if initial_epoch is None else initial_epoch
        self.check(src, "train", first_epoch=start + 1)
        if self.parallel is not None:
            self.parallel.check_batch(src.batch_size, "train (Trainer(mesh=...))",
                                      local=not isinstance(src, P.ArraySplit))
        if val is not None:
            self.check(val, "validation", train=False)
        if self.carry is None:
            self.carry = self._init_carry(src.batch_size)
        stopped = False
        if resume:
            restored = saver[0].restore(self)
            if restored:
                start, stopped = restored, self.stop_training
        if epochs <= start and not resume:
            raise ValueError(f"epochs={epochs} is the number of the last epoch, and this trainer has completed "
                             f"{start}; pass epochs={start + epochs} to train {epochs} more")
        self.stop_training = stopped
        self.epochs = epochs
        self.batches_per_epoch = src.batches_per_epoch or 0
        self.examples_per_epoch = src.examples_per_epoch or 0
        callbacks = self.callbacks + ([self.progress] if self.progress else [])
        for cb in callbacks:
            cb.on_fit_start(self)
        try:
            self._epochs(src, val, start, epochs, callbacks)
        except KeyboardInterrupt:  # Ctrl-C: the model keeps the weights of the last whole step
            if self.progress:
                self.progress.close()
            self._write_back()
            raise
        for cb in callbacks:
            cb.on_fit_end(self)
        self._write_back()
        return self.history

    def _epochs(self, src: P.BatchSource, val: P.BatchSource | None, start: int, epochs: int, callbacks) -> None:
        for epoch in range(start + 1, epochs + 1):
            if self.stop_training:
                break
            for cb in callbacks:
                cb.on_epoch_start(self, epoch)
            if self.reset_carry:
                self.carry = self._init_carry(src.batch_size)
            before = (self.state, self.carry, self.count)
            acc, guard = self._train_epoch(src, epoch)
            logs = self.task.compute(acc)
            self._after_guard(guard, epoch, logs, src, before)
            if self.nonfinite_rows == "drop":
                logs["dropped_rows"] = float(src.dropped)
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate(val).items()})
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            self.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_end(self, epoch, logs)

    def _on_device(self, src: P.BatchSource) -> bool:
        return isinstance(src, P.ArraySplit) and src.nbytes() <= self.max_device_bytes

    def _step_args(self, src: P.BatchSource, epoch: int):
        """The arguments `(data, idx, w, i)` of each step of `epoch`, for the jitted one-step functions:
        batch `i` of the device-resident split and its plan, or a host batch with `idx = arange(B)`."""
        if self._on_device(src):
            data, (idx, w) = self._device_data(src), src.plan(epoch)
            return ((data, idx, w, np.int32(i)) for i in range(len(idx)))
        return self._host_batches(src.epoch(epoch), local=not isinstance(src, P.ArraySplit))

    def _device_data(self, src: P.ArraySplit) -> dict:
        """The split on the device (replicated over the mesh, if any), placed once."""
        return src.on_device(None if self.parallel is None else self.parallel.replicate)

    def _host_batches(self, batches, local: bool = True):
        """Host batches as step arguments ``(batch, arange(B)[None], ones, 0)``; under a mesh each batch is
        first made a global array split over the data axis (B: the global rows). ``local``: each host's
        batches are its own rows (a Loader, a generator); else every host has the whole batch (a split)."""
        for b in batches:
            if self.parallel is not None:
                b = self.parallel.put_batch(b, local=local)
            n = P.num_rows(b)
            yield b, np.arange(n, dtype=np.int32)[None], np.ones((1, n), np.float32), np.int32(0)

    def _train_epoch(self, src: P.BatchSource, epoch: int):
        task, policy = self.task, self.on_nonfinite
        acc, guard = self._zero_acc(), S.new_guard(self.count)
        if self.parallel is not None:
            acc, guard, self.carry = self.parallel.replicate((acc, guard, self.carry))
        bar = self.progress
        self._listeners = [cb for cb in self.callbacks if getattr(cb, "every_n_steps", 0)]
        self._bar_every = max(1, (src.batches_per_epoch or 1) // bar.updates_per_epoch) if bar else 0
        self._epoch_start = (epoch, self.count)
        every = 1 if self._listeners else self._bar_every  # per-step logging asks for every step
        hook = self._on_batch if every else None
        plan = src.plan(epoch) if self._on_device(src) else None
        scan = plan is not None and self._scans(
            "train_step", S.one_step, (self.state, self.carry, guard, acc, self.key, self._device_data(src), *plan,
                                       np.int32(0)), task=task, policy=policy)
        if scan and self.parallel is not None and hook is not None:
            # JAX runs no ordered host callback on several devices: under a mesh a scanned epoch moves the
            # progress bar at its end only, and per-step logging (every_n_steps) runs one step per batch.
            scan, hook = not self._listeners, None
        if scan:
            fn = self._jit("train_epoch", S.run_epoch, task=task, policy=policy, on_batch=hook)
            idx, w = plan
            self.state, self.carry, acc, guard = fn(self.state, self.carry, guard, acc, self.key,
                                                    self._device_data(src), idx, w, np.int32(every))
        else:
            fn = self._jit("train_step", S.one_step, task=task, policy=policy)
            before = task.running(acc)
            for i, args in enumerate(self._step_args(src, epoch)):
                self.state, self.carry, acc, guard = fn(self.state, self.carry, guard, acc, self.key, *args)
                if every and (i + 1) % every == 0:
                    now = task.running(acc)
                    self._on_batch(i + 1, *now, now[0] - before[0], now[1] - before[1])
                    before = now
        return acc, guard

    def _on_batch(self, i, total, count, batch_total, batch_count) -> None:
        """After batch `i` of the epoch: move the progress bar, and give the callbacks that log per step
        (those with `every_n_steps`) that step's figure (its batch's mean of the main log)."""
        i = int(i)
        if self.progress and i % self._bar_every == 0:
            self.progress.on_batch(i, total, count)
        epoch, start = self._epoch_start
        step = start + i
        for cb in self._listeners:
            if step % cb.every_n_steps == 0:
                value = float(batch_total) / max(float(batch_count), 1.0)
                cb.on_batch_end(self, epoch, step, {self.task.display: value})

    def _after_guard(self, guard: dict, epoch: int, logs: dict, src: P.BatchSource, before: tuple) -> None:
        """Count the skipped steps, or, under "stop", make sure the epoch ended finite: a non-finite loss in
        the epoch, or non-finite parameters at its end, replays the epoch from `before` (its starting
        states, carry and count) step by step to find the first bad step and the weights before it."""
        guard = jax.device_get(guard)
        self.count = int(guard["count"])
        if self.on_nonfinite == "skip":
            logs["skipped_steps"] = float(guard["bad"])
            return
        if self.on_nonfinite == "off" or (not int(guard["bad"]) and
                                          bool(self._jit("states_finite", S.states_finite)(self.state))):
            return
        if self.progress:
            self.progress.close()
        states, carry, count = before
        step_fn = self._jit("checked_step", S.checked_step, task=self.task)
        where = "step unknown: this source cannot be replayed; weights of the epoch's start kept"
        try:
            for i, args in enumerate(self._step_args(src, epoch)):
                new_states, new_carry, ok = step_fn(states, carry, jax.random.fold_in(self.key, count + i), *args)
                if not bool(ok):
                    where = f"step {count + i + 1} (batch {i + 1} of the epoch)"
                    break
                states, carry = new_states, new_carry
        except ValueError:  # a one-shot generator
            states, carry = before[:2]
        self.state, self.carry = states, carry
        self._write_back()
        raise NonFiniteError(
            f"non-finite loss or parameters at epoch {epoch}, {where}: training stopped with the weights of the "
            f"step before (a checkpoint, if any, is the last good one). Check the data for NaN or inf, lower "
            f"the learning rate, clip gradients, or pass on_nonfinite='skip'")

    # -- evaluate and predict ------------------------------------------------------------------------

    def evaluate(self, data: Any) -> dict[str, float]:
        """Loss and metrics (or a custom step's eval logs) over `data` in eval mode (dropout off,
        batch-norm running averages). `data` is any batch source."""
        src = self._source(data, "evaluation data", train=False)
        self.check(src, "evaluation data", train=False)
        return self._evaluate(src)

    def _evaluate(self, src: P.BatchSource) -> dict[str, float]:
        task = self.task
        carry = self._init_carry(src.batch_size)
        acc = self._zero_acc(eval=True)
        if self.parallel is not None:
            acc, carry = self.parallel.replicate((acc, carry))
        if isinstance(src, P.ArraySplit):
            data, (idx, w) = self._device_data(src), src.plan(1)
            if self._scans("eval_step", S.eval_one, (self.state, carry, acc, data, idx, w, np.int32(0)), task=task):
                carry, acc = self._jit("eval_epoch", S.eval_batches, task=task)(self.state, carry, acc, data, idx, w)
            else:  # one jitted step per batch, for the reason in the module docstring
                fn = self._jit("eval_step", S.eval_one, task=task)
                for i in range(len(idx)):
                    carry, acc = fn(self.state, carry, acc, data, idx, w, np.int32(i))
        else:
            fn = self._jit("eval_step", S.eval_one, task=task)
            for batch, local, ones, i in self._host_batches(src.epoch(1), local=not isinstance(src, P.ArraySplit)):
                carry, acc = fn(self.state, carry, acc, batch, local, ones, i)
        return task.compute(acc)

    def predict(self, x: Any, batch_size: int | None = None, *, which: Any = None) -> np.ndarray:
        """Model outputs in eval mode, as NumPy arrays.

        Args:
            x: inputs (N, ...), or a tuple / dict of such for several inputs; or a batch source (a
                Loader, an iterable of batches), whose batches' "x" are predicted in order.
            batch_size: rows per call (default: the evaluation batch size).
            which: for several models, the key (or index) of the one to run.
        """
        state = self.state
        if not S.is_state(state):
            if which is None:
                raise ValueError("this trainer holds several models: pass which= (the key of the one to run)")
            state = state[which]
        policy = getattr(self.task, "precision", None)
        if batch_size is not None:
            check_int(batch_size, "predict: batch_size (None: the evaluation batch size)", low=1)
        fn = self._jit("predict", S.predict_step, precision=policy)
        if isinstance(x, dict) and "x" in x:  # a split: predict its inputs
            x = x["x"]
        if isinstance(x, (np.ndarray, jax.Array, tuple, dict, list)) and not (
                isinstance(x, list) and x and isinstance(x[0], dict)):
            inputs = jax.tree.map(np.asarray, x if not isinstance(x, list) else np.asarray(x))
            n = P.num_rows(inputs)
            if n == 0:
                raise ValueError("predict: no rows")
            bs = min(n, batch_size or self.eval_batch_size or max(self.batch_size or n, 500))
            chunks = [P.take_rows(inputs, np.arange(i, min(i + bs, n))) for i in range(0, n, bs)]
        else:
            chunks = [b["x"] for b in P.source(x, batch_size=batch_size, name="predict").raw(1)]
            bs = P.num_rows(chunks[0])
        for leaf in jax.tree.leaves(chunks[0]):
            P.check_numeric(leaf, "predict: the inputs")
        try:
            jax.eval_shape(lambda v: S.predict_step(state, v, policy), _abstract(chunks[0]))
        except Exception as exc:
            shapes = jax.tree.map(lambda a: tuple(np.shape(a)[1:]), chunks[0])
            raise ValueError(f"predict: inputs of shape {shapes} per example do not fit the model: "
                             f"{_first_line(exc)}") from None
        out = []
        for chunk in chunks:
            m = P.num_rows(chunk)
            if m < bs:  # keep one shape, so one compilation
                chunk = P.take_rows(chunk, np.arange(bs) % m)
            to_host = np.asarray if self.parallel is None else self.parallel.to_host
            out.append(jax.tree.map(lambda a, m=m: to_host(a)[:m], fn(state, chunk)))
        return jax.tree.map(lambda *a: np.concatenate(a), *out)
