"""Hyperparameter search: Optuna studies that prune through the Trainer, and vmapped populations.

Two ways to search, for two kinds of hyperparameters:

- **Optuna** (any hyperparameter, the model's structure included): `create_study` builds a study with
  Optuna's TPE sampler and median pruner, seeded, in memory or in a SQLite file that several processes
  share; `SearchSpace` declares the space and checks it before anything trains; `PruningCallback`
  reports each epoch's validation figure to the trial and stops a bad trial early by raising
  ``optuna.TrialPruned`` out of `Trainer.fit`. Optuna is an optional dependency
  (``pip install "dlcore[tune]"``), imported only when one of these is used.
- **A population** (scalar hyperparameters kept in the optimizer state, and the seed):
  `successive_halving` trains K trials at once as one jitted ``vmap`` over K stacked `TrainState`s and
  drops the worse half every few epochs (`dlcore.train.population`). This needs no Optuna.

The recipe is Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 10, Fine-Tuning
Neural Network Hyperparameters with Optuna:

    >>> space = tune.SearchSpace(learning_rate=tune.Param("float", 1e-5, 1e-1, log=True),
    ...                          n_hidden=tune.Param("int", 20, 300))
    >>> def objective(trial):
    ...     p = space.suggest(trial)
    ...     model = models.create("mlp", sizes=(784, p["n_hidden"], p["n_hidden"], 10))
    ...     trainer = Trainer(model, optim.sgd(p["learning_rate"]), losses.cross_entropy, metrics=["accuracy"],
    ...                       callbacks=[tune.PruningCallback(trial, "val_accuracy")])
    ...     return trainer.fit(train, epochs=20, validation=val)["val_accuracy"][-1]
    >>> study = tune.create_study(direction="maximize", seed=42)
    >>> study.optimize(objective, n_trials=5)
    >>> study.best_params
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Mapping

from dlcore.checks import check_choice, check_int, is_int
from dlcore.train.callbacks import Callback
from dlcore.train.population import HalvingResult, successive_halving

if TYPE_CHECKING:  # pragma: no cover
    from dlcore.train.loop import Trainer

__all__ = ["HalvingResult", "Param", "PruningCallback", "SearchSpace", "create_study", "successive_halving"]

KINDS = ("float", "int", "categorical")


def _optuna():
    """The optuna module, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ModuleNotFoundError('dlcore.tune needs Optuna for studies and pruning: pip install "dlcore[tune]" '
                                  '(or pip install optuna)') from None
    return optuna


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter's range: what ``trial.suggest_float / suggest_int / suggest_categorical`` takes.

    Checked when built, so a bad range fails in one line before any trial trains.

    Args:
        kind: "float", "int" or "categorical".
        low, high: the bounds, inclusive (float and int); ``low <= high``.
        log: sample on a log scale (Géron: "explore all possible scales"); needs ``low > 0``.
        step: a grid step (float or int; not with ``log``).
        choices: the values of a categorical (None, bool, int, float or str, as Optuna stores them).

    Example:
        >>> Param("float", 1e-5, 1e-1, log=True), Param("int", 20, 300), Param("categorical", choices=("sgd", "adam"))
    """

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"Param: kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        if self.kind == "categorical":
            choices = tuple(self.choices) if isinstance(self.choices, (list, tuple)) else None
            if not choices:
                raise ValueError(f"Param: a categorical needs a non-empty list of choices, got {self.choices!r}")
            bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
            if bad:
                raise ValueError(f"Param: categorical choices must be None, bool, int, float or str (what Optuna "
                                 f"stores), got {bad[0]!r}")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("Param: a categorical takes choices= only (no low, high, log or step)")
            object.__setattr__(self, "choices", choices)
            return
        if self.choices:
            raise ValueError(f"Param: choices= belongs to a categorical, not to kind {self.kind!r}")
        want = is_int if self.kind == "int" else _number
        what = "an int" if self.kind == "int" else "a finite number"
        for name in ("low", "high"):
            if not want(getattr(self, name)):
                raise ValueError(f"Param: {name} of a {self.kind} must be {what}, got {getattr(self, name)!r}")
        if self.low > self.high:
            raise ValueError(f"Param: low ({self.low!r}) is greater than high ({self.high!r})")
        if not isinstance(self.log, bool):
            raise ValueError(f"Param: log must be True or False, got {self.log!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"Param: a log scale needs low > 0, got low={self.low!r}")
        if self.step is not None:
            if self.log:
                raise ValueError("Param: step and log=True do not go together (Optuna samples either a grid or a "
                                 "log scale)")
            if not want(self.step) or self.step <= 0:
                raise ValueError(f"Param: step of a {self.kind} must be {what} > 0, got {self.step!r}")

    def suggest(self, trial: Any, name: str) -> Any:
        """This range's value for ``trial`` (an ``optuna.Trial``), under ``name``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid(self, n: int) -> list:
        """``n`` values evenly spaced over the range, on its scale (log or linear), both ends included:
        the learning rates of a population, or a grid to compare a search with. Ints are rounded, a ``step``
        rounds onto the grid ``low + k * step`` (as `sample`), and repeated values are dropped; a categorical
        gives its choices."""
        if self.kind == "categorical":
            return list(self.choices)
        n = check_int(n, "n", low=1, who="Param.grid")
        if n == 1:
            values = [self.low]
        elif self.log:
            a, b = math.log(self.low), math.log(self.high)
            values = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        else:
            values = [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]
        if self.step is not None:  # onto the grid low + k * step that sample and Optuna use
            top = math.floor((self.high - self.low) / self.step + 1e-9)
            values = [self.low + min(max(round((v - self.low) / self.step), 0), top) * self.step for v in values]
        if self.kind == "int":
            return list(dict.fromkeys(int(round(v)) for v in values))
        return list(dict.fromkeys(values)) if self.step is not None else values

    def sample(self, n: int, seed: int = 0) -> list:
        """``n`` values drawn at random over the range, on its scale (uniform in ``log`` for a log scale),
        from ``numpy.random.default_rng(seed)``: a random search's trials, e.g. the learning rates of
        a population. A ``step`` rounds them onto the grid ``low + k * step``."""
        import numpy as np

        n = check_int(n, "n", low=1, who="Param.sample")
        rng = np.random.default_rng(check_int(seed, "seed", low=0, who="Param.sample"))
        if self.kind == "categorical":
            return [self.choices[i] for i in rng.integers(0, len(self.choices), n)]
        if self.log:
            values = np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        elif self.kind == "int":
            values = rng.uniform(self.low - 0.5, self.high + 0.5, n)
        else:
            values = rng.uniform(self.low, self.high, n)
        if self.step is not None:  # the nearest grid point that lies in the range (Optuna's last is <= high)
            k = np.clip(np.round((values - self.low) / self.step), 0, math.floor((self.high - self.low) / self.step
                                                                                  + 1e-9))
            values = self.low + k * self.step
        values = np.clip(values, self.low, self.high)
        return [int(round(v)) for v in values] if self.kind == "int" else [float(v) for v in values]


class SearchSpace:
    """Named hyperparameter ranges, checked when declared: ``suggest(trial)`` gives one trial's values.

    Args:
        params: name -> `Param` (as keywords, or one mapping).

    Raises:
        ValueError: (one line naming the hyperparameter) a range with low > high, a log scale with
            low <= 0, an unknown kind, or a value that is not a `Param`.

    Example (Géron, ch. 10, Fine-Tuning Neural Network Hyperparameters with Optuna):
        >>> space = SearchSpace(learning_rate=Param("float", 1e-5, 1e-1, log=True), n_hidden=Param("int", 20, 300))
        >>> space.suggest(trial)
        {'learning_rate': 0.0853..., 'n_hidden': 116}
    """

    def __init__(self, params: Mapping[str, Param] | None = None, **kwargs: Param):
        given = {**dict(params or {}), **kwargs}
        if not given:
            raise ValueError("SearchSpace needs at least one hyperparameter, e.g. SearchSpace(lr=Param('float', "
                             "1e-5, 1e-1, log=True))")
        self.params: dict[str, Param] = {}
        for name, p in given.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"SearchSpace: hyperparameter names must be non-empty strings, got {name!r}")
            if isinstance(p, Mapping):  # {"kind": "float", "low": ..., ...}, e.g. read from JSON
                try:
                    p = Param(**p)
                except TypeError as err:
                    raise ValueError(f"SearchSpace: hyperparameter {name!r}: {err}") from None
                except ValueError as err:
                    raise ValueError(f"SearchSpace: hyperparameter {name!r}: {str(err).removeprefix('Param: ')}") \
                        from None
            if not isinstance(p, Param):
                raise ValueError(f"SearchSpace: hyperparameter {name!r} must be a dlcore.tune.Param (e.g. "
                                 f"Param('float', 1e-5, 1e-1, log=True)), got {p!r}")
            self.params[name] = p

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per hyperparameter, asked of ``trial`` (an ``optuna.Trial``) in declaration order."""
        if not (hasattr(trial, "suggest_float") and hasattr(trial, "suggest_int")):
            raise ValueError(f"SearchSpace.suggest needs an optuna.Trial (the objective's argument), got "
                             f"{type(trial).__name__}")
        return {name: p.suggest(trial, name) for name, p in self.params.items()}


def create_study(*, direction: str = "minimize", seed: int | None = None, sampler: Any = None, pruner: Any = None,
                 storage: Any = None, study_name: str | None = None, load_if_exists: bool = True) -> Any:
    """An Optuna study: TPE sampler and median pruner by default, seeded, in memory or in a database.

    Géron, ch. 10, Fine-Tuning Neural Network Hyperparameters with Optuna: ``TPESampler(seed=42)``,
    ``MedianPruner(n_startup_trials=5, n_warmup_steps=0, interval_steps=1)`` and, for several processes
    (or machines) working on one study, a SQL database with a study name and ``load_if_exists=True``.

    Args:
        direction: "minimize" (a loss) or "maximize" (an accuracy).
        seed: seeds the default TPE sampler (default 0: the same seed, the same suggestions). Give
            each process of a shared study its own seed, or they suggest the same values. Not with
            ``sampler``, which carries its own.
        sampler: any Optuna sampler (default ``TPESampler(seed=seed)``).
        pruner: any Optuna pruner (default ``MedianPruner()``: Optuna's defaults are the book's).
        storage: None (in memory), a database URL such as ``"sqlite:///study.db"``, or an Optuna
            storage object.
        study_name: the study's name in ``storage`` (needed with a storage: it is how processes find it).
        load_if_exists: join the study when the storage already holds one of that name.

    Returns:
        An ``optuna.Study`` (``study.optimize(objective, n_trials=5)``, ``study.best_params``, ...).

    Raises:
        ValueError: (one line) a bad direction, a seed beside a sampler, a storage without a study
            name, a SQLite file in a folder that does not exist or that is not a database.
        ModuleNotFoundError: Optuna is not installed (``pip install "dlcore[tune]"``).
    """
    check_choice(direction, "direction", ("minimize", "maximize"), who="create_study")
    if sampler is not None and seed is not None:
        raise ValueError("create_study: seed= seeds the default TPE sampler; the sampler you pass carries its own "
                         "seed (e.g. optuna.samplers.RandomSampler(seed=...))")
    if seed is not None:
        check_int(seed, "seed", low=0, who="create_study")
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise ValueError(f"create_study: study_name must be a non-empty string, got {study_name!r}")
    if storage is not None and study_name is None:
        raise ValueError("create_study: a storage is shared by study name: pass study_name= (and the same name in "
                         "every process)")
    if isinstance(storage, str):
        _check_sqlite(storage)
    optuna = _optuna()
    if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ValueError(f"create_study: sampler must be an Optuna sampler, got {type(sampler).__name__}")
    if pruner is not None and not isinstance(pruner, optuna.pruners.BasePruner):
        raise ValueError(f"create_study: pruner must be an Optuna pruner, got {type(pruner).__name__}")
    sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=0 if seed is None else seed)
    pruner = pruner if pruner is not None else optuna.pruners.MedianPruner()
    try:
        return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner, storage=storage,
                                   study_name=study_name, load_if_exists=load_if_exists)
    except optuna.exceptions.DuplicatedStudyError:
        raise ValueError(f"create_study: the storage already holds a study {study_name!r}; pass "
                         f"load_if_exists=True to join it, or another name") from None
    except Exception as exc:  # a database that cannot be opened: SQLAlchemy's errors are many lines
        if storage is None:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"create_study: the storage {storage!r} could not be used as an Optuna study database "
                         f"({type(exc).__name__}: {first})") from None


def _check_sqlite(url: str) -> None:
    """A SQLite URL whose folder exists and whose file, if present, is a SQLite database."""
    if not url.startswith("sqlite:///"):
        return
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"create_study: the folder of the SQLite file {path!r} does not exist ({folder})")
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ValueError(f"create_study: {path!r} is not a SQLite database (another file of that name?); "
                                 f"give another file")


class PruningCallback(Callback):
    """Report each epoch's validation figure to an Optuna trial, and stop the trial when it says prune.

    After epoch ``E`` the callback calls ``trial.report(logs[monitor], E)`` and asks
    ``trial.should_prune()`` (Géron, ch. 10: "add the following code so it runs after each epoch";
    dlcore counts epochs from 1). On prune it stops the fit there: the remaining callbacks see epoch
    ``E``'s end and the fit's end, the weights of epoch ``E`` go back into the model as after any fit,
    and then ``optuna.TrialPruned("trial 3 pruned at epoch E: ...")`` leaves `Trainer.fit`; ``study.optimize``
    records the trial as pruned (its last intermediate value at step ``E``; its user attribute
    ``"pruned_epoch"`` says ``E`` too). The trainer stays consistent: ``trainer.epoch == E``, the
    history holds ``E`` epochs, and another ``fit`` would continue from there.

    Args:
        trial: the ``optuna.Trial`` the objective got (an ``optuna.trial.FixedTrial``, to rerun the best
            parameters through the same objective, never prunes).
        monitor: a key of the epoch logs, e.g. "val_accuracy" (pass validation data to the fit) or "val_loss";
            the study's direction says whether higher is better.

    Raises:
        ValueError: (one line) not a trial, a multi-objective study (Optuna cannot prune those), or a
            monitor the epoch logs lack.
    """

    def __init__(self, trial: Any, monitor: str = "val_loss"):
        optuna = _optuna()
        if not isinstance(trial, optuna.trial.BaseTrial):
            raise ValueError(f"PruningCallback needs the optuna.Trial the objective got, got {type(trial).__name__}")
        if isinstance(trial, optuna.trial.Trial) and len(trial.study.directions) > 1:
            raise ValueError("PruningCallback: Optuna does not prune multi-objective studies; report and return "
                             "the objectives yourself")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"PruningCallback: monitor must be the name of an epoch log such as 'val_accuracy', "
                             f"got {monitor!r}")
        self.trial = trial
        self.monitor = monitor
        self.pruned_epoch: int | None = None
        self._message = ""

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.pruned_epoch, self._message = None, ""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise ValueError(f"PruningCallback monitors {self.monitor!r}, which is not among the epoch logs "
                             f"{sorted(logs)}; pass validation data to fit, or another monitor")
        value = float(logs[self.monitor])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned_epoch = epoch
            self._message = f"trial {self.trial.number} pruned at epoch {epoch}: {self.monitor} {value:.4g}"
            self.trial.set_user_attr("pruned_epoch", epoch)
            trainer.stop_training = True  # the later callbacks still see this epoch's end, then the fit's

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.pruned_epoch is None:
            return
        # Raising here skips what the Trainer does after the callbacks' on_fit_end: the callbacks after this
        # one, and writing the weights back into the model. Do both first, as an unpruned fit would.
        callbacks = trainer.callbacks + ([trainer.progress] if trainer.progress else [])
        for cb in callbacks[callbacks.index(self) + 1:] if self in callbacks else []:
            cb.on_fit_end(trainer)
        for module, state in zip(trainer.modules, trainer.states()):
            state.write_to(module)
            module.eval()
        raise _optuna().TrialPruned(self._message)

