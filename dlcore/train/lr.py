"""Learning rates between epochs: per-epoch schedules, reduce-on-plateau, and the learning-rate finder.

The callbacks change the learning rate that an ``optim.injectable`` optimizer keeps in its state
(``optax.inject_hyperparams``), between two jitted epochs: the compiled epoch takes the state as an
argument, so a new rate costs no recompilation. They log the rate of every epoch in
``trainer.history["lr"]``.

References:
    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 10, Fine-Tuning Neural Network
    Hyperparameters, Learning Rate (finding the learning rate); ch. 11, Learning Rate Scheduling
    (per-epoch schedules, Performance Scheduling).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dlcore import optim
from dlcore import schedules as schedules_lib
from dlcore.train import step as S
from dlcore.train.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from dlcore.train.loop import Trainer

__all__ = ["LRFinderResult", "LRScheduler", "ReduceLROnPlateau", "lr_find"]


def _record(trainer: "Trainer", lrs: list[float]) -> None:
    trainer.history.setdefault("lr", []).append(lrs[0] if len(lrs) == 1 else lrs)


class LRScheduler(Callback):
    """Sets the learning rate of every epoch from a schedule of the epoch count (PyTorch's per-epoch
    ``scheduler.step()``).

    Epoch ``e`` (1-based) trains with ``schedule(e - 1)``, the rate a PyTorch optimizer holds after
    ``e - 1`` calls of ``scheduler.step()`` at the ends of the previous epochs. Stateless, so a resumed
    fit continues the schedule. The optimizer must come from ``optim.injectable`` (or
    ``optim.param_groups(..., inject=True)``).

    Args:
        schedule: A ``dlcore.schedules`` schedule (``t -> lr``) or any function of the epoch count.
        relative: Treat ``schedule`` as a factor of each injected optimizer's initial rate (build it with
            ``lr=1.0``): PyTorch scales each parameter group from its own ``initial_lr``. When False every
            group gets the schedule's value.

    Example:
        >>> tx = optim.injectable("sgd", lr=0.05)
        >>> Trainer(model, tx, loss, callbacks=[LRScheduler(schedules.exponential_lr(0.05, gamma=0.9))])
    """

    def __init__(self, schedule: Callable[[int], Any], relative: bool = False):
        if not callable(schedule):
            raise ValueError(f"LRScheduler: schedule must be a function of the epoch, got {schedule!r}.")
        self.schedule = schedule
        self.relative = relative
        self.base: list[float] | None = None

    def on_fit_start(self, trainer):
        current = optim.get_hyperparams(trainer.state.opt_state, "lr")  # fails early when not injectable
        if self.base is None:
            self.base = current

    def on_epoch_start(self, trainer, epoch):
        value = float(self.schedule(epoch - 1))
        lrs = [b * value for b in self.base] if self.relative else [value] * len(self.base)
        trainer.state = trainer.state.replace(opt_state=optim.set_hyperparams(trainer.state.opt_state, "lr", lrs))
        self._lrs = lrs

    def on_epoch_end(self, trainer, epoch, logs):
        _record(trainer, self._lrs)

    def state_dict(self) -> dict:
        return {"base": self.base}

    def load_state_dict(self, d: dict) -> None:
        self.base = d["base"]


class ReduceLROnPlateau(Callback):
    """PyTorch's ``ReduceLROnPlateau`` as a callback: divide the rate when ``monitor`` stops improving.

    After each epoch, ``schedules.Plateau.step(logs[monitor])`` (PyTorch's rule, tested against it)
    decides the rates of the following epochs. The optimizer must come from ``optim.injectable``;
    the rates start from its own (one per parameter group).

    Args:
        monitor: A key of the epoch logs ("val_loss", "val_accuracy", ...).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for names containing "acc", else min).
        factor, patience, threshold, threshold_mode, cooldown, min_lr, eps: as ``schedules.Plateau``
            (PyTorch's names and defaults: 0.1, 10, 1e-4, "rel", 0, 0, 1e-8).
        verbose: print a line when the rate changes.

    Example (Géron, ch. 11, Learning Rate Scheduling, Performance Scheduling):
        >>> ReduceLROnPlateau("val_accuracy", mode="max", patience=2, factor=0.1)
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8, verbose: bool = False):
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min', 'max' or 'auto', got {mode!r}.")
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.options = dict(mode=self.mode, factor=factor, patience=patience, threshold=threshold,
                            threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, eps=eps)
        schedules_lib.Plateau(1.0, **{**self.options, "min_lr": 0.0})  # checks the options now
        self.verbose = verbose
        self.plateau: schedules_lib.Plateau | None = None
        self._saved: dict | None = None

    def on_fit_start(self, trainer):
        lrs = optim.get_hyperparams(trainer.state.opt_state, "lr")
        if self.plateau is None:
            self.plateau = schedules_lib.Plateau(lrs, **self.options)
            if self._saved is not None:
                self.plateau.load_state_dict(self._saved)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not among the epoch logs "
                             f"{sorted(logs)}; pass validation data or another monitor")
        before = list(self.plateau.lrs)
        _record(trainer, before)
        after = self.plateau.step(logs[self.monitor])
        if after != before:
            trainer.state = trainer.state.replace(
                opt_state=optim.set_hyperparams(trainer.state.opt_state, "lr", after))
            if self.verbose:
                print(f"epoch {epoch}: {self.monitor} has not improved for {self.options['patience'] + 1} "
                      f"epochs; learning rate {before} -> {after}")

    def state_dict(self) -> dict:
        return self.plateau.state_dict() if self.plateau is not None else (self._saved or {})

    def load_state_dict(self, d: dict) -> None:
        self._saved = d or None
        if self.plateau is not None and d:
            self.plateau.load_state_dict(d)


# --------------------------------------------------------------------------------------------------
# Learning-rate finder
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LRFinderResult:
    """What ``lr_find`` measured.

    Attributes:
        lrs: The learning rate of each step, shape (steps,).
        losses: The training loss of each step's batch (before its update), shape (steps,).
        smoothed: Exponentially smoothed, bias-corrected losses, shape (steps,).
        suggestion: A good learning rate: a tenth of the rate at the lowest smoothed loss.
        stopped_at: Steps kept (the sweep is cut where the smoothed loss exceeds ``diverge`` times its
            minimum).
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    stopped_at: int

    def plot(self, path: str | None = None):
        """Loss against learning rate on a log axis, with the suggestion marked (matplotlib, optional).

        Args:
            path: Save the figure there; None returns the figure without saving.

        Returns:
            The matplotlib figure, or None when matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, alpha=0.3, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed")
        ax.axvline(self.suggestion, color="k", linestyle="--", label=f"suggestion {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.legend()
        fig.tight_layout()
        if path:
            fig.savefig(path)
            plt.close(fig)
        return fig


def lr_find(model: nnx.Module, optimizer: str | Callable[..., optax.GradientTransformation], loss: Callable,
            train: dict | tuple, *, start_lr: float = 1e-5, end_lr: float = 10.0, steps: int = 500,
            batch_size: int = 32, seed: int = 0, beta: float = 0.98, diverge: float = 4.0, skip_start: int = 10,
            **optimizer_kwargs: Any) -> LRFinderResult:
    """The book's learning-rate sweep: train briefly while the rate grows exponentially, watch the loss.

    The rate of step ``i`` is ``start_lr * (end_lr / start_lr) ** (i / steps)`` (Géron, ch. 10, Fine-Tuning Neural Network Hyperparameters, Learning Rate:
    from 1e-5 to 10 in 500 iterations, multiplying by ``(10 / 1e-5) ** (1 / 500)`` each time). The
    sweep is one jitted ``lax.scan`` over shuffled mini-batches on a copy of the model's state: the
    model itself is not changed (the book reinitialises it after the sweep). It runs through the
    `Trainer` with a custom step that records each batch's loss in the step's carry. The suggestion is a tenth
    of the rate at the lowest smoothed loss ("about 10 times lower than the turning point").

    Args:
        model: The model, in its initial state.
        optimizer: An optimizer name (``optim.names()``) or a factory taking ``lr``.
        loss: Per-example loss ``(outputs, targets) -> (B,)``.
        train: ``{"x", "y"}`` arrays or ``(x, y)``.
        start_lr: First rate (> 0).
        end_lr: Rate after ``steps`` steps (> start_lr).
        steps: Number of updates.
        batch_size: Rows per batch.
        seed: Shuffling and dropout seed.
        beta: Smoothing of the losses (the bias-corrected exponential average).
        diverge: Cut the sweep once the smoothed loss exceeds this multiple of its minimum.
        skip_start: Steps at the start that the suggestion ignores (at most a quarter of those kept).
        **optimizer_kwargs: Other arguments of the optimizer (momentum, ...).

    Returns:
        An ``LRFinderResult`` (call ``.plot(path)`` for the figure).
    """
    from dlcore.train.loop import Trainer

    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"lr_find: steps must be an int >= 2, got {steps!r}.")
    ratio = end_lr / start_lr

    def lr_at(count):
        return start_lr * ratio ** (jnp.asarray(count, jnp.float32) / steps)

    make = (lambda **kw: optim.create(optimizer, **kw)) if isinstance(optimizer, str) else optimizer
    tx = make(lr=lr_at, **optimizer_kwargs)

    def recording_step(state, batch, key, carry):
        # the supervised step, with each batch's loss (before its update) written into the carry
        state, acc = S.train_step(state, batch, key, loss_fn=loss)
        batch_loss = acc["loss"]["total"] / jnp.maximum(acc["loss"]["count"], 1.0)
        i, losses = carry
        return state, {"loss": batch_loss}, (i + 1, losses.at[i].set(batch_loss))

    # The sweep runs on a copy, so the model keeps its initial state (the book reinitialises it after).
    # The loss is expected to blow up at the end of the sweep: no non-finite guard.
    trainer = Trainer(nnx.clone(model), tx, step=recording_step, batch_size=batch_size, seed=seed, progress=False,
                      carry=(jnp.zeros((), jnp.int32), jnp.zeros((steps,), jnp.float32)), on_nonfinite="off")
    trainer.fit(train, epochs=1, steps_per_epoch=steps)
    losses = np.asarray(trainer.carry[1], np.float64)
    lrs = np.asarray(jax.vmap(lr_at)(jnp.arange(steps)), np.float64)
    smoothed = np.empty_like(losses)
    avg = 0.0
    for i, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * (value if math.isfinite(value) else 1e30)
        smoothed[i] = avg / (1 - beta ** (i + 1))
    stop = steps
    best = math.inf
    for i, value in enumerate(smoothed):
        best = min(best, value)
        if i > 0 and value > diverge * best:
            stop = i
            break
    keep = slice(0, stop)
    # the first smoothed values rest on a handful of batches: one lucky batch is not a minimum
    skip = min(skip_start, stop // 4)
    i_min = skip + int(np.argmin(smoothed[skip:stop]))
    return LRFinderResult(lrs=lrs[keep], losses=losses[keep], smoothed=smoothed[keep],
                          suggestion=float(lrs[i_min] / 10), stopped_at=stop)
