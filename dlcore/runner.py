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
import json
import os
import pkgutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import jax

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
        checkpoint: directory for a checkpoint each epoch.
        resume: continue from the checkpoint directory's latest checkpoint.
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
    progress: bool | None = None
    out: Any = None  # None: sys.stdout at the time of printing
    dataset: str = ""

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
            why = "chosen with --data" if self.data else f"{ex.data} is not available locally"
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
        path = self.plot_dir() / f"{name}.png"
        fig = draw(plt)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        self.print(f"plot: {path}")
        return path

    def inline(self, name: str) -> None:
        """Declare that the example's data is defined inline (no dataset to load)."""
        self.dataset = name
        self.print(f"data: {name} (embedded)")

    def trainer_kwargs(self, hyperparameters: dict[str, Any], *, tag: str | None = None) -> dict[str, Any]:
        """Trainer options that follow the run's flags: seed, progress bar, checkpointing.

        Args:
            hyperparameters: recorded in each checkpoint's metadata.
            tag: for an example that trains several models: with --checkpoint DIR, this trainer saves
                under DIR/tag, so the models' checkpoints do not overwrite each other.
        """
        from dlcore.train import Checkpoint

        callbacks = []
        if self.checkpoint:
            directory = os.path.join(self.checkpoint, tag) if tag else self.checkpoint
            callbacks.append(Checkpoint(directory, hyperparameters={"example": self.example.name,
                                                                    "seed": self.seed, **hyperparameters}))
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


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)}"


def run(name: str, *, json_path: str | None = None, **options) -> dict[str, Any]:
    """Run example `name` and print its figures beside the book's.

    Args:
        name: an example name (see `examples()`).
        json_path: also write the report as one JSON object to this file.
        **options: `Context` fields (quick, data, epochs, seed, checkpoint, resume, progress, out).

    Returns:
        The report: example, dataset, metrics, book, seconds, device.
    """
    mod = get(name)
    ctx = Context(example=mod.EXAMPLE, **options)
    if ctx.epochs is not None and ctx.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {ctx.epochs}")
    allowed = [d for d in (ctx.example.data, ctx.example.standin) if d]
    if ctx.data is not None and ctx.data not in allowed:
        raise ValueError(f"example {name!r} runs on {' or '.join(allowed)}, not {ctx.data!r}")
    if ctx.resume and not ctx.checkpoint:
        raise ValueError("--resume needs --checkpoint DIR, the directory of the run to continue")
    t0 = time.perf_counter()
    metrics = mod.run(ctx)
    seconds = time.perf_counter() - t0
    report = {"example": name, "dataset": ctx.dataset,
              "metrics": {k: float(v) for k, v in metrics.items()},
              "book": dict(mod.EXAMPLE.book_figures), "seconds": round(seconds, 3), "device": _device(),
              "quick": ctx.quick}
    ctx.print(format_table(report))
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)
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
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the report as JSON")
    p.add_argument("--checkpoint", metavar="DIR", help="save a checkpoint every epoch in DIR")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run`'s keyword arguments from parsed `add_run_arguments` flags."""
    return dict(json_path=args.json_path, quick=args.quick, data=args.data, epochs=args.epochs, seed=args.seed,
                checkpoint=args.checkpoint, resume=args.resume, progress=False if args.no_progress else None)


def guarded(fn: Callable[[], Any]) -> int:
    """Run a command: bad input and a diverging run are one line on stderr (exit 2); Ctrl-C (SIGINT) and
    SIGTERM end it between two steps, never inside a checkpoint write, with one line (exit 130 / 143)."""
    try:
        with signals_as_interrupts():
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
