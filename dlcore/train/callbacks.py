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
from dlcore.checks import check_choice, check_int

if TYPE_CHECKING:  # pragma: no cover
    from dlcore.train.loop import Trainer


class Callback:
    """Base class: every hook is optional."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...

    # A callback that sets `every_n_steps` (> 0) also gets, after every that many steps of the run,
    # `on_batch_end(trainer, epoch, step, logs)` with the step's batch figure ({"loss": ...}).
    every_n_steps: int = 0

    def on_batch_end(self, trainer: "Trainer", epoch: int, step: int, logs: dict[str, float]) -> None: ...


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
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"Checkpoint: directory {str(self.directory)!r} is a file; it needs a folder")
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
        for key, cb in zip(_callback_keys(trainer.callbacks), trainer.callbacks):
            if hasattr(cb, "state_dict"):
                meta["callbacks"][key] = cb.state_dict()
            if hasattr(cb, "arrays") and cb.arrays() is not None:
                tree["callbacks"][key] = cb.arrays()
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
            # every callback's saved arrays (a best epoch's weights), whether or not that callback is here now
            saved = meta.get("has_arrays", [])
            return {**trainer.checkpoint_tree(), "callbacks": {k: trainer.weights() for k in saved}}

        tree, meta, _ = ckpt.restore_latest_good(self.directory, template, stacklevel=4)  # the line calling fit
        trainer.load_checkpoint_tree({k: v for k, v in tree.items() if k != "callbacks"})
        trainer.history = {k: list(v) for k, v in meta["history"].items()}
        saved = [*meta["callbacks"], *tree["callbacks"]]
        keys = ([str(i) for i in range(len(trainer.callbacks))] if saved and all(k.isdigit() for k in saved)
                else _callback_keys(trainer.callbacks))  # checkpoints before 2026-12: by position
        for key, cb in zip(keys, trainer.callbacks):
            if key in meta["callbacks"] and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(meta["callbacks"][key])
            if key in tree["callbacks"] and hasattr(cb, "load_arrays"):
                cb.load_arrays(tree["callbacks"][key])
        trainer.stop_training = bool(meta.get("stopped", False))
        return int(meta["epoch"])


def _callback_keys(callbacks) -> list[str]:
    """The key of each callback's state in a checkpoint: its class name, then "_2", "_3", ... for a second and
    third of one class. Adding, removing or reordering other callbacks (a logger, say) between a run and its
    resumption then hands no callback another's state."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys


# -- loggers: training logs where people look ------------------------------------------------------------

def _replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file beside it, fsynced, then `os.replace`): a reader
    or a killed run sees the old file or the new one, never a part; no temporary file is left behind."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch``, ``step`` (the run's step count, `trainer.count`) and every figure
    of the epoch logs (loss, metrics, ``val_*``), written and flushed to disk at the end of each epoch.

    Columns: ``epoch, step`` and the first epoch's log names, in their order. A log name that appears
    later (say ``val_loss`` when a second `fit` adds validation data) extends the header: the file is
    rewritten atomically with the new column, and earlier rows get an empty cell there (as does any row
    missing a column). Values are written exactly (``repr`` of the float), so they read back equal to
    `trainer.history`.

    Resume: at the first epoch of every `fit`, rows of that epoch or later are dropped (the file is
    rewritten atomically), then rows are appended. So ``fit(resume=True)`` after a run killed between
    writing epoch 3's row and saving checkpoint 3 leaves one row per epoch, and a second
    ``fit(epochs=4)`` after ``fit(epochs=2)`` adds rows 3 and 4. A fresh run (from epoch 1) into an
    existing file replaces the file. A row cut short by a kill (no line end) is dropped too. A `fit`
    that trains no epoch (a resumed run that had stopped) leaves the file as it is.

    Per step on request: with ``every_n_steps=N``, a second file beside it (``log.steps.csv`` for
    ``log.csv``) gets a row ``epoch, step, loss`` every N steps of the run: the loss (or a custom step's
    first log) of that step's batch. It follows the same resume rule (rows of re-run epochs dropped).
    It asks the Trainer for a host callback after every step: a small cost, only when asked.

    Args:
        path: the CSV file (its folder is created).
        append: keep the rows of earlier epochs already in the file (the default, what a resume
            needs); False: the first `fit` with this logger starts the file afresh.
        every_n_steps: also log every this many steps (0: epochs only).

    Example:
        >>> trainer = Trainer(..., callbacks=[CSVLogger("run/log.csv"), Checkpoint("run/ckpt")])
    """

    _FIXED = ("epoch", "step")

    def __init__(self, path: str | os.PathLike, *, append: bool = True, every_n_steps: int = 0):
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"CSVLogger: path must be a file path (str or PathLike), got {path!r}")
        self.path = Path(path).expanduser().absolute()
        if self.path.is_dir():
            raise ValueError(f"CSVLogger: path {str(path)!r} is a directory; it needs a file name")
        self.append = check_choice(append, "append", (True, False), who="CSVLogger")
        self.columns: list[str] | None = None
        self._fits = 0
        self._first = False
        self.every_n_steps = check_int(every_n_steps, "every_n_steps", low=0, who="CSVLogger")
        self._steps = (CSVLogger(self.path.with_name(self.path.stem + ".steps" + (self.path.suffix or ".csv")),
                                 append=append) if self.every_n_steps else None)

    # reading and writing the whole file

    def _read(self) -> tuple[list[str] | None, list[list[str]], bool]:
        """The header, the complete rows of the file, and whether it ended with a whole line (a last line
        without its line end, cut short by a kill, is left out)."""
        import csv
        import io

        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, [], True
        whole = text[:text.rfind("\n") + 1]
        lines = list(csv.reader(io.StringIO(whole, newline="")))
        if not lines:
            return None, [], not text
        header, rows = lines[0], [r for r in lines[1:] if r]
        if header[:1] != ["epoch"]:
            raise ValueError(f"CSVLogger: {self.path} exists and is not a CSVLogger log (its first column is "
                             f"not 'epoch'); pass append=False to replace it, or another path")
        return header, rows, whole == text

    @staticmethod
    def _line(cells: list[str]) -> str:
        import csv
        import io

        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerow(cells)
        return out.getvalue()

    def _rewrite(self, header: list[str], rows: list[list[str]]) -> None:
        _replace_text(self.path, "".join(self._line(r) for r in [header, *rows]))

    def _start(self, first_epoch: int) -> None:
        """At a fit's first epoch: drop the rows of that epoch and later (or all, when not appending)."""
        if not self.append and self._fits == 1:
            header, rows, kept, clean = None, [], [], True
            self.path.unlink(missing_ok=True)
        else:
            header, rows, clean = self._read()
            kept = []
            for r in rows:
                try:
                    if int(float(r[0])) < first_epoch:
                        kept.append(r)
                except ValueError:
                    pass  # not an epoch number: a damaged row
        if header is not None and not kept:  # a fresh run (from epoch 1): a fresh file and header
            self.path.unlink(missing_ok=True)
            header = None
        elif header is not None and (len(kept) != len(rows) or not clean):
            self._rewrite(header, kept)
        self.columns = header

    # the hooks

    def on_fit_start(self, trainer):
        self._fits += 1
        self._first = True
        if self._steps is not None:
            self._steps.on_fit_start(trainer)

    def on_epoch_start(self, trainer, epoch):
        if self._first:  # the fit's first epoch: known only now (a resume restores it inside fit)
            self._first = False
            self._start(epoch)
        if self._steps is not None:
            self._steps.on_epoch_start(trainer, epoch)

    def on_epoch_end(self, trainer, epoch, logs):
        self._write(epoch, trainer.count, logs)

    def on_batch_end(self, trainer, epoch, step, logs):
        if self._steps is not None:
            self._steps._write(epoch, step, logs)

    def _write(self, epoch: int, step: int, logs: dict[str, float]) -> None:
        clash = [k for k in logs if k in self._FIXED]
        if clash:
            raise ValueError(f"CSVLogger: the epoch logs hold {clash}, which are CSVLogger's own columns; "
                             f"rename those logs")
        values = {"epoch": str(int(epoch)), "step": str(int(step)),
                  **{k: repr(float(v)) for k, v in logs.items()}}
        new = [k for k in values if k not in (self.columns or [])]
        if new or not self.path.exists():  # a new file, a log not there before, or a file deleted under us
            header, rows = self._read()[:2] if self.columns is not None else (None, [])
            base = header or self.columns or []
            self.columns = base + [k for k in values if k not in base]  # a wider header, rewritten atomically
            rows = [r + [""] * (len(self.columns) - len(r)) for r in rows]
            self._rewrite(self.columns, rows + [[values.get(c, "") for c in self.columns]])
            return
        line = self._line([values.get(c, "") for c in self.columns]).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of the whole row
            os.fsync(fd)
        finally:
            os.close(fd)


def _tensorboardx():
    try:
        import tensorboardX
    except ImportError:
        raise ImportError("TensorBoard logging needs tensorboardX: pip install dlcore[tensorboard]") from None
    return tensorboardX


class TensorBoard(Callback):
    """Every figure of the epoch logs as a TensorBoard scalar (tag: the log name, global step: the
    epoch), written and flushed to disk (fsynced) at the end of each epoch. Needs no TensorFlow: it
    writes through `tensorboardX` (``pip install dlcore[tensorboard]``). View with
    ``tensorboard --logdir <log_dir>``.

    Each `fit` writes a new event file that starts with tensorboardX's ``purge_step`` marker at the
    fit's first epoch: TensorBoard then drops the events of that epoch and later from the earlier files.
    So ``fit(resume=True)`` after a run killed between logging epoch 3 and saving checkpoint 3 shows one
    value per epoch, a second ``fit`` continues the curves, and a fresh run (from epoch 1) into the same
    folder replaces the old curves.

    The events are written synchronously with tensorboardX's `EventsWriter` and the same two marker
    events `SummaryWriter(purge_step=...)` writes: `SummaryWriter.flush` does not wait for its
    background queue, so it could not promise that an epoch is on disk when the epoch ends.

    Per step on request: with ``every_n_steps=N`` the loss (or a custom step's first log) of every N-th
    step's batch goes to ``<log_dir>/steps`` (its own run in TensorBoard, global step: the run's step
    count), with the same purge rule at the fit's first step.

    Args:
        log_dir: the folder of the event files (created).
        every_n_steps: also log every this many steps (0: epochs only).
    """

    def __init__(self, log_dir: str | os.PathLike, *, every_n_steps: int = 0):
        _tensorboardx()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"TensorBoard: log_dir must be a folder path (str or PathLike), got {log_dir!r}")
        self.log_dir = Path(log_dir).expanduser().absolute()
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"TensorBoard: log_dir {str(log_dir)!r} is a file; it needs a folder")
        self.writer = None
        self._first = False
        self.every_n_steps = check_int(every_n_steps, "every_n_steps", low=0, who="TensorBoard")
        self._steps = TensorBoard(self.log_dir / "steps") if self.every_n_steps else None

    def _open(self, purge_step: int) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.close()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # the time in ns after the name tensorboardX gives (whole seconds, host) keeps two files of one second
        # apart (tensorboardX would truncate the first) and in the order TensorBoard reads them (by name)
        self.writer = EventsWriter(str(self.log_dir / "events"), filename_suffix=f".{time.time_ns():020d}")
        now = time.time()
        self.writer.write_event(Event(wall_time=now, step=purge_step, file_version="brain.Event:2"))
        self.writer.write_event(Event(wall_time=now, step=purge_step,
                                      session_log=SessionLog(status=SessionLog.START)))
        self.writer.flush()

    def close(self) -> None:
        """Close the event files (the end of every fit does)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._steps is not None:
            self._steps.close()

    def on_fit_start(self, trainer):
        self._first = True

    def on_epoch_start(self, trainer, epoch):
        if self._first:  # the fit's first epoch: known only now (a resume restores it inside fit)
            self._first = False
            self._open(int(epoch))
            if self._steps is not None:
                self._steps._open(int(trainer.count) + 1)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.writer is None:
            self._open(int(epoch))
        self._write(int(epoch), logs)

    def on_batch_end(self, trainer, epoch, step, logs):
        if self._steps is not None:
            if self._steps.writer is None:
                self._steps._open(int(step))
            self._steps._write(int(step), logs)

    def _write(self, step: int, logs: dict[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        now = time.time()
        for name, value in logs.items():
            self.writer.write_event(Event(wall_time=now, step=step, summary=scalar(name, float(value))))
        self.writer.flush()

    def on_fit_end(self, trainer):
        self.close()
