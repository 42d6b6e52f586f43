"""Worked examples: how each declares itself, finds its data, and reports its figures beside the book's.

An example is a module in `examples/` (importable as `dlcore.examples.NAME`) with an `EXAMPLE`
(`Example`) and a function `run(ctx: Context) -> dict[str, float]` returning its metrics. The
`dlcore` command lists and runs them; `python examples/NAME.py` runs one too.
"""

from __future__ import annotations

import argparse

import dataclasses
import importlib
import importlib.util
import os
import pkgutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax

from dlcore import checks, rundir
from dlcore.registry import Registry
from dlcore.signals import Interrupted, signals_as_interrupts


@dataclasses.dataclass(frozen=True)
class Example:
    """What an example reproduces and where from.

    Attributes:
        name: command-line name.
        title: one line.
        book: the book's short title.
        section: chapter or section.
        source: where in that section to look: the listing, figure, equation or exercise numbers the book
            prints, e.g. "Listing 4-1" or "Figures 8-15 to 8-19"; never line numbers of a copy the reader
            does not have.
        data: the real dataset's name ("" when the data is defined inline).
        standin: the embedded dataset used when the real one is absent.
        book_figures: the book's figures, by metric name.
    """

    name: str
    title: str
    book: str
    section: str
    source: str
    data: str
    standin: str
    book_figures: dict[str, float] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Context:
    """Options of one run, and the helpers an example uses to honour them.

    Attributes:
        example: the example being run.
        quick: finish in seconds (fewer epochs, a subset), for smoke tests.
        data: force this dataset (the real one or the stand-in); None picks the real one when present.
        epochs: override the recipe's number of epochs.
        seed: seed for initialisation, shuffling and dropout.
        checkpoint: directory for a checkpoint each epoch (locked while the run uses it).
        resume: continue from the checkpoint directory's latest checkpoint.
        overwrite: start afresh in a checkpoint directory that holds another run (its checkpoints are
            removed first).
        progress: draw progress bars.
        out: where the example prints.
    """

    example: Example
    quick: bool = False
    data: str | None = None
    epochs: int | None = None
    seed: int = 0
    checkpoint: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool | None = None
    out: Any = None  # None: sys.stdout at the time of printing
    dataset: str = ""
    data_pinned: bool = False  # --data was taken from the resumed run's checkpoints

    def print(self, *args) -> None:
        print(*args, file=self.out or sys.stdout, flush=True)

    def n_epochs(self, recipe: int, quick: int = 1) -> int:
        """The number of epochs: --epochs if given, else `quick` in quick mode, else the recipe's."""
        if self.epochs is not None:
            return self.epochs
        return quick if self.quick else recipe

    def load(self, **options) -> dict:
        """Load the example's data: the real dataset when present, otherwise the embedded stand-in.

        The choice is printed as the run's first line and recorded as `dataset`.
        """
        from dlcore import data

        ex = self.example
        standin_options = options.pop("standin_options", {})
        if self.data == ex.standin or not ex.data:
            splits, used = data.load(ex.standin, **standin_options), ex.standin
        elif self.data == ex.data:
            splits, used = data.load(ex.data, **options), ex.data
        else:
            splits, used = data.load_or_standin(ex.data, ex.standin, standin_options=standin_options, **options)
        self.dataset = used
        if used == ex.data:
            self.print(f"data: {used}")
        elif not ex.data:  # the recipe's own data is an embedded one
            self.print(f"data: {used} (embedded)")
        else:
            why = ("as in the resumed run" if self.data_pinned else "chosen with --data") if self.data \
                else f"{ex.data} is not available locally"
            self.print(f"data: {used} (embedded stand-in for {ex.data}; {why})")
        return splits

    def plot_dir(self) -> Path:
        """Where plots go: `$DLCORE_PLOTS` or ./plots; a temporary folder under --quick. Created."""
        if self.quick:
            folder = Path(tempfile.gettempdir()) / "dlcore-plots"
        else:
            folder = Path(os.environ.get("DLCORE_PLOTS", "plots"))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_plot(self, name: str, draw) -> Path | None:
        """Save the figure `draw(plt)` returns as NAME.png in `plot_dir()`; nothing without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig = draw(plt)
        try:  # a plot that cannot be written costs the plot, never the run's figures
            path = self.plot_dir() / f"{name}.png"
            fig.savefig(path, dpi=100)
        except OSError as exc:
            self.print(f"plot: not saved ({exc.strerror or type(exc).__name__}: {exc.filename or name})")
            return None
        finally:
            plt.close(fig)
        self.print(f"plot: {path}")
        return path

    def inline(self, name: str) -> None:
        """Declare that the example's data is defined inline (no dataset to load)."""
        self.dataset = name
        self.print(f"data: {name} (embedded)")

    def trainer_kwargs(self, hyperparameters: dict[str, Any], *, tag: str | None = None) -> dict[str, Any]:
        """Trainer options that follow the run's flags: seed, progress bar, checkpointing.

        The checkpoints record `hyperparameters` with the example, seed, dataset and --quick; under
        --resume, a hyperparameter that differs from the one the checkpoints recorded, or an `epochs`
        below the epochs they have done, is a ValueError before this trainer trains.

        Args:
            hyperparameters: recorded in each checkpoint's metadata.
            tag: for an example that trains several models: with --checkpoint DIR, this trainer saves
                under DIR/tag, so the models' checkpoints do not overwrite each other.
        """
        from dlcore.train import Checkpoint

        callbacks = []
        if self.checkpoint:
            directory = os.path.join(self.checkpoint, tag) if tag else self.checkpoint
            recorded = {"example": self.example.name, "seed": self.seed, "data": self.dataset or self.data or "",
                        "quick": self.quick, **hyperparameters}
            if self.resume:
                _check_resumed_trainer(directory, recorded)
            callbacks.append(Checkpoint(directory, hyperparameters=recorded))
        return {"seed": self.seed, "progress": self.progress, "callbacks": callbacks}

    def image_splits(self, *, quick: tuple[int, int], mean: float | None = None,
                     std: float | None = None) -> tuple[dict, dict]:
        """The train and test splits of a 28x28 image example: MNIST-shaped images `(N, 28, 28, 1)`.

        The stand-in digits are resized to 28x28; under --quick only the first `quick = (n_train,
        n_test)` images are kept; with `mean` and `std` the pixels are normalised as the recipe says.
        """
        splits = self.load(standin_options={"image_size": 28})
        train, test = splits["train"], splits["test"]
        if self.quick:  # a subset: seconds, not minutes
            train = {k: v[:quick[0]] for k, v in train.items()}
            test = {k: v[:quick[1]] for k, v in test.items()}
        if mean is not None:
            train, test = ({**s, "x": (s["x"] - mean) / std} for s in (train, test))
        return train, test

    def fit_classifier(self, model, optimizer, loss, train: dict, held_out: dict, *, epochs: int,
                       batch_size: int, hyperparameters: dict[str, Any], held_out_name: str = "val",
                       eval_batch_size: int | None = None):
        """Train a classifier with the run's flags, print its learning curve, return its figures.

        The shared body of the image-classifier examples: one `Trainer` with accuracy, `fit` with
        `held_out` evaluated after each epoch (and --resume honoured), a line per epoch (about five
        lines for long runs).

        Args:
            model, optimizer, loss: as for `Trainer`.
            train, held_out: {"x", "y"} splits.
            epochs, batch_size, eval_batch_size: the recipe's.
            hyperparameters: recorded in checkpoints, beside batch_size and epochs.
            held_out_name: "val" or "test": how the book names the held-out split.

        Returns:
            (trainer, figures): `{NAME_accuracy, NAME_loss, train_loss}` after the last epoch.
        """
        import dlcore

        trainer = dlcore.Trainer(model, optimizer, loss, metrics=["accuracy"], batch_size=batch_size,
                                 eval_batch_size=eval_batch_size,
                                 **self.trainer_kwargs({**hyperparameters, "batch_size": batch_size,
                                                        "epochs": epochs}))
        h = trainer.fit(train, epochs=epochs, validation=held_out, resume=self.resume)
        n, name = len(h["loss"]), held_out_name
        for e in sorted({*range(0, n, max(1, n // 5)), n - 1}):
            self.print(f"epoch {e + 1}/{n}: train loss {h['loss'][e]:.4f} accuracy {h['accuracy'][e]:.4f} | "
                       f"{name} loss {h['val_loss'][e]:.4f} accuracy {h['val_accuracy'][e]:.4f}")
        return trainer, {f"{name}_accuracy": h["val_accuracy"][-1], f"{name}_loss": h["val_loss"][-1],
                         "train_loss": h["loss"][-1]}


def discover(package: str, attr: str) -> dict[str, Any]:
    """The modules of `package` (skipping `_private` ones) that define `attr` and `run`, by `attr.name`.

    How examples (`EXAMPLE`) and benchmarks (`BENCHMARK`) register themselves: by existing.
    """
    try:
        pkg = importlib.import_module(package)
    except ImportError:  # installed without that folder
        return {}
    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if hasattr(mod, attr) and hasattr(mod, "run"):
            found[getattr(mod, attr).name] = mod
    return found


def declared(package: str, attr: str, cls: type) -> dict[str, tuple[str, Any]]:
    """What `discover` finds, without importing a module whose `attr` is a literal `cls(...)` call.

    Reads each module's source: `ATTR = Cls(keyword=literal, ...)` beside a top-level `def run` is
    the declaration itself; any other module is imported and looked at as `discover` does. Listing
    the examples this way costs milliseconds instead of importing every example's dependencies.

    Returns:
        `{declaration.name: (module name, declaration)}`.
    """
    try:
        spec = importlib.util.find_spec(package)
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:  # installed without that folder
        return {}
    found = {}
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        if info.name.startswith("_"):
            continue
        module = f"{package}.{info.name}"
        decl = _literal_declaration(Path(info.module_finder.path) / f"{info.name}.py", attr, cls)
        if decl is None:
            mod = importlib.import_module(module)
            if not (hasattr(mod, attr) and hasattr(mod, "run")):
                continue
            decl = getattr(mod, attr)
        found[decl.name] = (module, decl)
    return found


def _literal_declaration(path: Path, attr: str, cls: type):
    """`cls(**kwargs)` when `path` assigns `attr = Cls(literal keywords)` and defines `run`; else None."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    call, has_run = None, False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run":
            has_run = True
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [attr]:
            call = node.value
    func = getattr(call, "func", None)
    if not has_run or not isinstance(call, ast.Call) or call.args or \
            getattr(func, "id", getattr(func, "attr", None)) != cls.__name__:
        return None
    try:
        return cls(**{k.arg: ast.literal_eval(k.value) for k in call.keywords})
    except (ValueError, TypeError, SyntaxError):  # not literals, or a ** splat: import it instead
        return None


def _load_examples() -> None:
    for name, entry in declared("dlcore.examples", "EXAMPLE", Example).items():
        EXAMPLES.register(name, entry)


EXAMPLES: Registry[tuple[str, Example]] = Registry("example", listing="dlcore list", loader=_load_examples)


def examples() -> list[Example]:
    """Every registered example, sorted by name (read from the example files, not imported)."""
    return [EXAMPLES.get(name)[1] for name in EXAMPLES.names()]


def get(name: str):
    """The module of example `name` (imported now).

    Raises:
        ValueError: for an unknown name (`UnknownNameError`, with the close matches).
    """
    return importlib.import_module(EXAMPLES.get(name)[0])


def _check_resumed_trainer(directory: str, recorded: dict[str, Any]) -> None:
    """Under --resume: this trainer's hyperparameters against those its checkpoints recorded."""
    from dlcore import checkpoint as ckpt

    if ckpt.latest_step(directory) is None:  # this model had not started: it trains from its first epoch
        return
    meta = ckpt.latest_good_meta(directory)
    where = Path(directory)
    rundir.compare(meta.get("hyperparameters", {}), recorded, where)
    done, epochs = int(meta.get("epoch", 0)), recorded.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < done:
        raise ValueError(f"resuming: the run in {where} has done {done} epochs, more than the {epochs} asked "
                         f"for now; --epochs is the new total, counting the epochs done (give {done} or more)")


def _check_run_dir(ctx: Context, name: str, allowed: list[str]) -> None:
    """Before anything loads: may this run write into --checkpoint DIR (holding its lock), and does a
    --resume continue a run made with the same example, seed, data and --quick? --overwrite removes the
    old checkpoints here."""
    directory = Path(ctx.checkpoint).expanduser().absolute()
    found = rundir.checkpoint_dirs(directory)
    if not ctx.resume:
        if not found:
            return
        if not ctx.overwrite:
            held = f"epoch {found[directory]}" if directory in found else \
                f"{len(found)} model folders, up to epoch {max(found.values())}"
            raise ValueError(f"--checkpoint {ctx.checkpoint} holds another run's checkpoints ({held}): "
                             f"continue it with --resume, start afresh with --overwrite (deletes them), "
                             f"or give another directory")
        rundir.remove_checkpoints(directory, found)
        return
    if not found:
        raise ValueError(f"--resume: no checkpoint in {ctx.checkpoint}, nothing to continue; check the path, "
                         f"or drop --resume to start a run there")
    from dlcore import checkpoint as ckpt

    top = directory if directory in found else min(found)
    meta = ckpt.latest_good_meta(top)
    rec = meta.get("hyperparameters", {})
    where = ctx.checkpoint
    if rec.get("example", name) != name:
        raise ValueError(f"--resume: {where} holds a run of {rec['example']}, not of {name}")
    if rec.get("seed", ctx.seed) != ctx.seed:
        raise ValueError(f"--seed {ctx.seed} differs from the run's seed {rec['seed']} in {where}: resume with "
                         f"--seed {rec['seed']}, or start afresh with --overwrite")
    if rec.get("quick", ctx.quick) != ctx.quick:
        raise ValueError(f"--resume: the run in {where} was made {'with' if rec['quick'] else 'without'} --quick; "
                         f"resume it {'with' if rec['quick'] else 'without'} --quick, or start afresh with "
                         f"--overwrite")
    data = rec.get("data")
    if data and ctx.data is not None and ctx.data != data:
        raise ValueError(f"--data {ctx.data} differs from the run's data {data} in {where}: resume with "
                         f"--data {data} (or without --data), or start afresh with --overwrite")
    if data and ctx.data is None and data in allowed:  # continue on the data the run started on
        ctx.data, ctx.data_pinned = data, True
    done = int(meta.get("epoch", 0))
    if top == directory and ctx.epochs is not None and ctx.epochs < done:
        raise ValueError(f"--epochs {ctx.epochs} is fewer than the {done} epochs the run in {where} has done; "
                         f"--epochs is the new total, counting the epochs done (give {done} or more)")


def _check_outputs(ctx: Context, mod, json_path: str | None) -> None:
    """Every path the run will write, checked before it starts (one line each)."""
    if json_path:
        rundir.check_output_file(json_path, "--json")
    if ctx.checkpoint:
        rundir.check_output_dir(ctx.checkpoint, "--checkpoint")
    try:
        import inspect

        plots = any(w in inspect.getsource(mod) for w in ("save_plot", "plot_dir"))
    except (OSError, TypeError):
        plots = True
    if plots:
        folder = Path(tempfile.gettempdir()) / "dlcore-plots" if ctx.quick else \
            Path(os.environ.get("DLCORE_PLOTS", "plots"))
        rundir.check_output_dir(folder, "the plot folder ($DLCORE_PLOTS)" if not ctx.quick else "the plot folder")


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)}"


def run(name: str, *, json_path: str | None = None, **options) -> dict[str, Any]:
    """Run example `name` and print its figures beside the book's.

    Before anything loads, every output path is checked, and with `checkpoint` the directory is locked
    for this process (released when `run` returns or raises) and checked: a directory holding another
    run's checkpoints needs `resume` or `overwrite`; `resume` needs a checkpoint made with the same
    example, seed, data and quick mode, and `epochs` (the new total) no fewer than the epochs done.

    Args:
        name: an example name (see `examples()`).
        json_path: also write the report as one JSON object to this file (atomically).
        **options: `Context` fields (quick, data, epochs, seed, checkpoint, resume, overwrite, progress,
            out).

    Returns:
        The report: example, dataset, metrics, book, seconds, device.

    Raises:
        ValueError: bad options, an output that cannot be written, a directory in use or holding another
            run: before training.
    """
    mod = get(name)
    ctx = Context(example=mod.EXAMPLE, **options)
    if ctx.epochs is not None and (not checks.is_int(ctx.epochs) or ctx.epochs < 1):
        raise ValueError(f"--epochs must be >= 1, got {ctx.epochs}")
    checks.check_int(ctx.seed, "--seed", low=0)
    allowed = [d for d in (ctx.example.data, ctx.example.standin) if d]
    if ctx.data is not None and ctx.data not in allowed:
        raise ValueError(f"example {name!r} runs on {' or '.join(allowed)}, not {ctx.data!r}")
    if ctx.resume and not ctx.checkpoint:
        raise ValueError("--resume needs --checkpoint DIR, the directory of the run to continue")
    if ctx.overwrite and not ctx.checkpoint:
        raise ValueError("--overwrite needs --checkpoint DIR, the directory to start afresh in")
    if ctx.resume and ctx.overwrite:
        raise ValueError("--resume continues the run in --checkpoint DIR and --overwrite deletes it: give one")
    if ctx.resume and not Path(ctx.checkpoint).expanduser().is_dir():
        raise ValueError(f"--resume: {ctx.checkpoint} is not a directory, so there is nothing to continue; "
                         f"check the path, or drop --resume to start a run there")
    _check_outputs(ctx, mod, json_path)
    lock = rundir.RunLock(ctx.checkpoint).acquire() if ctx.checkpoint else None
    try:
        if ctx.checkpoint:
            _check_run_dir(ctx, name, allowed)
        t0 = time.perf_counter()
        metrics = mod.run(ctx)
        seconds = time.perf_counter() - t0
        report = {"example": name, "dataset": ctx.dataset,
                  "metrics": {k: float(v) for k, v in metrics.items()},
                  "book": dict(mod.EXAMPLE.book_figures), "seconds": round(seconds, 3), "device": _device(),
                  "quick": ctx.quick}
        ctx.print(format_table(report))
        if json_path:
            rundir.write_json(json_path, report)
    finally:
        if lock is not None:
            lock.release()
    return report


def format_table(report: dict[str, Any]) -> str:
    """The metrics as a small table, the book's figure beside dlcore's."""
    rows = [("metric", "book", "dlcore")]
    for k, v in report["metrics"].items():
        b = report["book"].get(k)
        rows.append((k, "-" if b is None else f"{b:.7g}", f"{v:.7g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({report['dataset']}, {report['seconds']:.1f} s on {report['device']})")
    return "\n".join(lines)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `dlcore run NAME` (and of `python examples/NAME.py`)."""
    p.add_argument("--quick", action="store_true", help="finish in seconds (fewer epochs, a subset)")
    p.add_argument("--data", help="force a dataset: the real one or the embedded stand-in")
    p.add_argument("--epochs", type=int,
                   help="override the recipe's number of epochs; with --resume, the new total, counting the "
                        "epochs already done (--epochs 10 on a run at epoch 6 trains 4 more)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the report as JSON")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="save a checkpoint every epoch in DIR (locked while the run uses it; a DIR holding "
                        "another run's checkpoints needs --resume or --overwrite)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --checkpoint DIR, with the same example, "
                        "seed, data and --quick")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in --checkpoint DIR: its old checkpoints are deleted first")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run`'s keyword arguments from parsed `add_run_arguments` flags."""
    return dict(json_path=args.json_path, quick=args.quick, data=args.data, epochs=args.epochs, seed=args.seed,
                checkpoint=args.checkpoint, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                progress=False if args.no_progress else None)


def guarded(fn: Callable[[], Any]) -> int:
    """Run a command: bad input and a diverging run are one line on stderr (exit 2); Ctrl-C (SIGINT) and
    SIGTERM end it between two steps, never inside a checkpoint write, with one line (exit 130 / 143);
    a warning (a skipped bad checkpoint, dropped rows) is one line too."""
    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"dlcore: warning: {message}", file=sys.stderr)

    try:
        with signals_as_interrupts(), warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            fn()
    except (ValueError, FloatingPointError) as exc:  # bad input, or NonFiniteError: one line, no traceback
        print(f"dlcore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
        print(f"dlcore: interrupted ({name}); the last checkpoint, if any, is intact: continue with --resume",
              file=sys.stderr)
        return code
    return 0


def exit_process(code: int) -> None:
    """Leave the process with ``code``. After an interrupt, without the interpreter's teardown: threads
    of XLA, tqdm or a loader may still be running, and tearing them down can crash the process."""
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main_for(name: str) -> None:
    """`python examples/NAME.py [--quick] ...`: the same flags as `dlcore run NAME`."""
    p = argparse.ArgumentParser(prog=f"python examples/{name}.py", description=f"dlcore run {name}")
    add_run_arguments(p)
    args = p.parse_args()
    exit_process(guarded(lambda: run(name, **run_options(args))))
