"""Callbacks the Trainer calls at the edges of a fit and of each epoch.

A callback may set `trainer.stop_training = True`; one whose state must survive a resume
implements `state_dict()` / `load_state_dict(d)` (JSON-able) and, for arrays,
`arrays()` / `load_arrays(tree)`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any


from dlcore import checkpoint as ckpt
from dlcore.checks import check_int

if TYPE_CHECKING:  # pragma: no cover
    from dlcore.train.loop import Trainer


class Callback:
    """Base class: every hook is optional."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...


class ProgressBar(Callback):
    """One tqdm bar per epoch: batch count, running loss, then the epoch's metrics and examples/s.

    Args:
        updates_per_epoch: how many times the bar moves during an epoch (each move is one host
            callback out of the compiled epoch, so a few dozen cost nothing noticeable).
        stream: where to draw (stderr).
    """

    def __init__(self, updates_per_epoch: int = 50, stream=None):
        self.updates_per_epoch = updates_per_epoch
        self.stream = stream or sys.stderr
        self.bar = None
        self._t0 = 0.0

    def on_epoch_start(self, trainer, epoch):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.batches_per_epoch or None, desc=f"epoch {epoch}/{trainer.epochs}",
                        unit="batch", file=self.stream, leave=True, dynamic_ncols=True)
        self.label = trainer.task.display
        self._t0 = time.perf_counter()

    def on_batch(self, i, total, count):
        """Move the bar to batch ``i``, showing the running mean ``total / count`` of the main log."""
        if self.bar is not None:
            self.bar.n = int(i)
            self.bar.set_postfix_str(f"{self.label} {float(total) / max(float(count), 1.0):.4f}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer, epoch, logs):
        if self.bar is None:
            return
        seconds = time.perf_counter() - self._t0
        self.bar.n = trainer.batches_per_epoch or self.bar.n
        shown = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
        speed = (f" | {trainer.examples_per_epoch / max(seconds, 1e-9):,.0f} ex/s" if trainer.examples_per_epoch
                 else f" | {seconds:.1f} s")
        self.bar.set_postfix_str(shown + speed, refresh=True)
        self.close()


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; optionally restore the best weights.

    Args:
        monitor: a key of the epoch logs, e.g. "val_loss" or "val_accuracy".
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for names containing "acc", else min).
        restore_best_weights: at the end of fit, put back the weights of the best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True):
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0
        self.best_state = None
        self.stopped_epoch = 0

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not among the epoch "
                             f"logs {sorted(logs)}; pass validation data or another monitor")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = trainer.weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True

    def on_fit_end(self, trainer):
        if self.restore_best_weights and self.best_state is not None:
            trainer.load_weights(self.best_state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.best_epoch, self.wait = d["best"], d["best_epoch"], d["wait"]

    def arrays(self):
        return self.best_state

    def load_arrays(self, tree) -> None:
        self.best_state = tree


class Checkpoint(Callback):
    """Save a checkpoint at the end of every `every` epochs; `Trainer.fit(resume=True)` continues from it.

    A checkpoint holds every model's weights, other variables, optimizer state, step and PRNG key, the
    run's step count and key, a custom step's carry, the epoch, the history, the state of the other
    callbacks and `hyperparameters`.

    Args:
        directory: the run's checkpoint directory.
        every: save every this many epochs (the last epoch is always saved).
        keep: how many checkpoints to keep.
        hyperparameters: JSON-able dict stored with every checkpoint.
    """

    def __init__(self, directory: str | os.PathLike, every: int = 1, keep: int = 2,
                 hyperparameters: dict[str, Any] | None = None):
        self.directory = Path(directory).expanduser().absolute()
        self.every = check_int(every, "every", low=1, who="Checkpoint")
        self.keep = check_int(keep, "keep", low=1, who="Checkpoint")
        self.hyperparameters = dict(hyperparameters or {})

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch % self.every == 0 or epoch == trainer.epochs or trainer.stop_training:
            self.save(trainer, epoch)

    def save(self, trainer: "Trainer", epoch: int) -> None:
        tree = {**trainer.checkpoint_tree(), "callbacks": {}}
        meta = {"epoch": epoch, "hyperparameters": self.hyperparameters, "history": trainer.history,
                "stopped": trainer.stop_training, "callbacks": {}}
        for i, cb in enumerate(trainer.callbacks):
            if hasattr(cb, "state_dict"):
                meta["callbacks"][str(i)] = cb.state_dict()
            if hasattr(cb, "arrays") and cb.arrays() is not None:
                tree["callbacks"][str(i)] = cb.arrays()
        meta["has_arrays"] = sorted(tree["callbacks"])
        ckpt.save(self.directory, epoch, tree, meta, keep=self.keep)

    def restore(self, trainer: "Trainer") -> int:
        """Load the newest good checkpoint into `trainer`; returns its epoch (0 when there is none).

        A newest checkpoint that is unreadable or fails verification is skipped with one warning line
        naming it, why, and the one used instead (`dlcore.checkpoint.restore_latest_good`); when none is
        good, a `CheckpointError` says so. Checkpoints written before digests restore unverified.
        """
        if ckpt.latest_step(self.directory) is None:
            return 0

        def template(meta: dict) -> dict:
            tree = {**trainer.checkpoint_tree(), "callbacks": {}}
            for i, cb in enumerate(trainer.callbacks):
                if hasattr(cb, "arrays") and str(i) in meta.get("has_arrays", []):
                    tree["callbacks"][str(i)] = trainer.weights()
            return tree

        tree, meta, _ = ckpt.restore_latest_good(self.directory, template, stacklevel=4)  # the line calling fit
        trainer.load_checkpoint_tree({k: v for k, v in tree.items() if k != "callbacks"})
        trainer.history = {k: list(v) for k, v in meta["history"].items()}
        for i, cb in enumerate(trainer.callbacks):
            if str(i) in meta["callbacks"]:
                cb.load_state_dict(meta["callbacks"][str(i)])
            if str(i) in tree["callbacks"]:
                cb.load_arrays(tree["callbacks"][str(i)])
        trainer.stop_training = bool(meta.get("stopped", False))
        return int(meta["epoch"])
