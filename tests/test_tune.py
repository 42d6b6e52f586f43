"""dlcore.tune: search spaces that check themselves, Optuna studies (seeded, shared through SQLite), pruning
through the Trainer, and the acceptance of issue 16: an Optuna study and a vmapped population with successive
halving each find a learning rate in the best quarter of a grid, and a population member is a separate fit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, optim, tune
from dlcore.train import Callback
from one_line import raises_one_line

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS, BATCH = 3, 16
LR = tune.Param("float", 1e-3, 10.0, log=True)


def _problem(seed=0):
    """200 training and 100 validation rows of 8 features, 3 classes: a tiny problem whose validation loss
    after 3 epochs of SGD has its best learning rates inside [1e-3, 10] (the largest diverge)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
    return {"x": x[:200], "y": y[:200]}, {"x": x[200:], "y": y[200:]}


TRAIN, VAL = _problem()


def make(rngs):
    return dlcore.models.create("mlp", sizes=(8, 16, 3), rngs=rngs)


def _trainer(tx, callbacks=(), seed=0):
    return dlcore.Trainer(make(nnx.Rngs(seed)), tx, losses.cross_entropy, metrics=["accuracy"], batch_size=BATCH,
                          seed=seed, progress=False, on_nonfinite="off", callbacks=list(callbacks))


def _halving(lrs, rungs):
    return tune.successive_halving(make, optim.injectable("sgd", lr=0.1), TRAIN, VAL, hyperparams={"lr": lrs},
                                   epochs=EPOCHS, rungs=rungs, batch_size=BATCH, loss_fn=losses.cross_entropy,
                                   metrics=["accuracy"], monitor="val_loss")


@pytest.fixture(scope="module", autouse=True)
def worker(tmp_path_factory):
    """A second process that joins a SQLite study and runs 3 trials, started with the module's first test so
    that its start-up (importing dlcore) overlaps the other tests; test_a_sqlite_study_is_shared_by_two_processes
    waits for it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'shared.db'}"
    tune.create_study(storage=url, study_name="shared", seed=1)  # created once, before the workers start
    code = textwrap.dedent(f"""
        import optuna
        from dlcore import tune
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = tune.create_study(storage={url!r}, study_name="shared", seed=2)
        study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=3)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield url, process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def grid():
    """16 learning rates log-spaced over the space, every one trained 3 epochs: a population without halving
    (each member equals a Trainer fit: test_population_member_k_is_a_separate_trainer_fit). Returns (lrs, the
    validation loss of each, the worst value of the best quarter)."""
    lrs = LR.grid(16)
    result = _halving(lrs, rungs=EPOCHS)
    assert all(d is None and len(h["val_loss"]) == EPOCHS for d, h in zip(result.dropped_at, result.history))
    values = np.array([h["val_loss"][-1] for h in result.history])
    ranked = np.sort(np.where(np.isfinite(values), values, np.inf))
    return lrs, values, ranked[len(lrs) // 4 - 1]


@pytest.fixture(scope="module")
def halving():
    """16 random learning rates (log-uniform over the space, seeded), halved after epoch 2: 16, then 8 members."""
    lrs = LR.sample(16, seed=0)
    return lrs, _halving(lrs, rungs=2)


# -- search spaces ----------------------------------------------------------------------------------------


def test_search_space_checks_itself_in_one_line():
    P = tune.Param
    raises_one_line(lambda: tune.SearchSpace(lr=P("float", 0.1, 1e-5, log=True)), "low (0.1) is greater than high")
    raises_one_line(lambda: P("float", 0.0, 1.0, log=True), "log scale needs low > 0", "low=0.0")
    raises_one_line(lambda: P("int", -3, 5, log=True), "log scale needs low > 0")
    raises_one_line(lambda: P("loguniform", 1e-5, 1e-1), "kind must be one of 'float', 'int', 'categorical'")
    raises_one_line(lambda: P("int", 20.5, 300), "low of a int must be an int")
    raises_one_line(lambda: P("float", float("nan"), 1.0), "finite number")
    raises_one_line(lambda: P("float", 1e-5, 1e-1, log=True, step=0.01), "step and log=True")
    raises_one_line(lambda: P("categorical"), "non-empty list of choices")
    raises_one_line(lambda: P("categorical", choices=[object()]), "None, bool, int, float or str")
    # the space names the hyperparameter, including ranges given as dicts (read from a file)
    raises_one_line(lambda: tune.SearchSpace({"n_hidden": {"kind": "int", "low": 300, "high": 20}}),
                    "'n_hidden'", "low (300) is greater than high (20)")
    raises_one_line(lambda: tune.SearchSpace(lr=(1e-5, 1e-1)), "'lr' must be a dlcore.tune.Param")
    raises_one_line(lambda: tune.SearchSpace(), "at least one hyperparameter")
    raises_one_line(lambda: tune.SearchSpace(lr=LR).suggest({"lr": 0.1}), "needs an optuna.Trial")


def test_search_space_suggests_within_its_ranges_and_grids_by_hand():
    space = tune.SearchSpace(learning_rate=tune.Param("float", 1e-5, 1e-1, log=True),
                             n_hidden=tune.Param("int", 20, 300),
                             opt=tune.Param("categorical", choices=["sgd", "adam"]))
    study = tune.create_study(seed=1)
    for _ in range(20):
        p = space.suggest(study.ask())
        assert 1e-5 <= p["learning_rate"] <= 1e-1 and 20 <= p["n_hidden"] <= 300 and isinstance(p["n_hidden"], int)
        assert p["opt"] in ("sgd", "adam")
    dists = study.trials[0].distributions
    assert dists["learning_rate"].log and dists["n_hidden"].low == 20 and dists["n_hidden"].high == 300
    # grids worked by hand: 1e-5 .. 1e-1 in 5 log steps is the powers of ten; 20 .. 300 in 3 steps
    np.testing.assert_allclose(tune.Param("float", 1e-5, 1e-1, log=True).grid(5), [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                               rtol=1e-12)
    assert tune.Param("int", 20, 300).grid(3) == [20, 160, 300]
    assert tune.Param("float", 0.0, 1.0).grid(3) == [0.0, 0.5, 1.0]


# -- studies --------------------------------------------------------------------------------------------------


def test_create_study_defaults_are_the_books_seeded_and_bad_input_is_one_line(tmp_path):
    study = tune.create_study(direction="maximize", seed=42)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE

    def first_values(seed):
        s = tune.create_study(seed=seed)
        s.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
        return [t.params["x"] for t in s.trials]

    assert first_values(7) == first_values(7) != first_values(8)
    raises_one_line(lambda: tune.create_study(direction="max"), "direction must be one of 'minimize', 'maximize'")
    raises_one_line(lambda: tune.create_study(seed=1, sampler=optuna.samplers.RandomSampler()),
                    "seed= seeds the default TPE sampler")
    raises_one_line(lambda: tune.create_study(sampler="tpe"), "sampler must be an Optuna sampler")
    raises_one_line(lambda: tune.create_study(storage=f"sqlite:///{tmp_path}/s.db"), "pass study_name=")
    raises_one_line(lambda: tune.create_study(storage=f"sqlite:///{tmp_path}/no/such/s.db", study_name="s"),
                    "does not exist")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is no database" * 10)
    raises_one_line(lambda: tune.create_study(storage=f"sqlite:///{corrupt}", study_name="s"),
                    "not a SQLite database")
    tune.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    raises_one_line(lambda: tune.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s",
                                              load_if_exists=False), "already holds a study 's'")


# -- pruning through the Trainer -------------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append(("epoch_end", epoch))

    def on_fit_end(self, trainer):
        self.events.append(("fit_end", trainer.epoch))


def test_a_pruned_trial_stops_at_its_epoch_says_so_and_leaves_the_trainer_consistent():
    # ThresholdPruner(lower=0.99) must prune a trial whose validation accuracy is below 0.99 at the first epoch
    study = tune.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.99))
    trial = study.ask()
    after = Recorder()
    trainer = _trainer(optim.sgd(0.1), callbacks=[tune.PruningCallback(trial, "val_accuracy"), after])
    with pytest.raises(optuna.TrialPruned, match=f"trial {trial.number} pruned at epoch 1: val_accuracy 0.") as err:
        trainer.fit(TRAIN, epochs=5, validation=VAL)
    assert "\n" not in str(err.value)
    # the epoch ran to its end for every callback, the fit ended for those after the pruner, and nothing more ran
    assert after.events == [("epoch_end", 1), ("fit_end", 1)]
    assert trainer.epoch == 1 and len(trainer.history["loss"]) == 1 and int(trainer.state.step) == 13
    assert trial.user_attrs["pruned_epoch"] == 1
    # the model holds the trained weights, in eval mode, as after any fit
    np.testing.assert_array_equal(trainer.model.layers[0].kernel[...], trainer.state.params["layers"][0]["kernel"][...])
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.PRUNED and frozen.last_step == 1
    assert frozen.intermediate_values[1] == pytest.approx(trainer.history["val_accuracy"][0])
    # the trainer can go on from there (a pruner is advice, not a broken state)
    trainer.callbacks = []
    assert len(trainer.fit(TRAIN, epochs=2, validation=VAL)["loss"]) == 2


def test_pruning_callback_bad_input_is_one_line():
    study = tune.create_study()
    raises_one_line(lambda: tune.PruningCallback("trial", "val_loss"), "needs the optuna.Trial")
    multi = optuna.create_study(directions=["minimize", "maximize"])
    raises_one_line(lambda: tune.PruningCallback(multi.ask(), "val_loss"), "multi-objective")
    trainer = _trainer(optim.sgd(0.1), callbacks=[tune.PruningCallback(study.ask(), "val_accuracy")])
    raises_one_line(lambda: trainer.fit(TRAIN, epochs=1), "monitors 'val_accuracy'", "pass validation data")


# -- the acceptance of issue 16 ---------------------------------------------------------------------------------


def test_the_study_and_the_population_find_a_learning_rate_in_the_grids_best_quarter(grid, halving):
    """Not a lucky seed: with the sampler's and the population's seeds 0 to 5 both searches land in the best
    quarter every time (checked when this test was written; 8 trials and 8 members missed at 1 seed in 5)."""
    lrs, values, quarter = grid
    assert np.isnan(values[-1]) or values[-1] > 10 * quarter  # lr 10 diverges: the grid's range has a bad end
    # a vmapped population of 16 random learning rates, halved after epoch 2 (16, then 8 members)
    pop_lrs, result = halving
    assert sorted(d for d in result.dropped_at if d is not None) == [2] * 8
    assert result.best_value <= quarter, (result.best_params, result.best_value, quarter)
    # an Optuna study (TPE, median pruning) of 10 trials over the same space, each a Trainer fit
    study = tune.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))

    def objective(trial):
        lr = tune.SearchSpace(lr=LR).suggest(trial)["lr"]
        trainer = _trainer(optim.sgd(lr), callbacks=[tune.PruningCallback(trial, "val_loss")])
        return trainer.fit(TRAIN, epochs=EPOCHS, validation=VAL)["val_loss"][-1]

    study.optimize(objective, n_trials=10)
    # the median pruner (its defaults, the book's) stopped some trials early, each saying at which epoch
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.user_attrs["pruned_epoch"] == t.last_step <= EPOCHS for t in pruned)
    assert study.best_value <= quarter, (study.best_params, study.best_value, quarter)


def test_population_member_k_is_a_separate_trainer_fit(halving):
    """A survivor (3 epochs) and a member dropped after epoch 2 equal plain-SGD Trainer fits with their rates."""
    lrs, result = halving
    dropped = result.dropped_at.index(2)
    for k in (result.best, dropped):
        epochs = len(result.history[k]["loss"])
        trainer = _trainer(optim.sgd(lrs[k]))
        history = trainer.fit(TRAIN, epochs=epochs, validation=VAL)
        assert sorted(history) == sorted(result.history[k])
        for name, values in history.items():
            np.testing.assert_allclose(result.history[k][name], values, rtol=2e-5, atol=1e-6, err_msg=name)
        if k == result.best:
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                         result.best_state().params, trainer.state.params)
    assert result.best in result.survivors and result.dropped_at[result.best] is None
    assert result.best_params == {"lr": pytest.approx(lrs[result.best]), "seed": 0}


def test_a_sqlite_study_is_shared_by_two_processes(worker):
    url, other = worker
    study = tune.create_study(storage=url, study_name="shared", seed=1)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=2)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, out.decode()[-2000:]
    trials = tune.create_study(storage=url, study_name="shared", seed=3).trials
    assert len(trials) == 5 and len({t.number for t in trials}) == 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_param_sample_stays_in_range_on_its_scale_and_repeats_with_its_seed():
    lr = tune.Param("float", 1e-5, 1e-1, log=True)
    values = np.array(lr.sample(400, seed=3))
    assert values.min() >= 1e-5 and values.max() <= 1e-1 and lr.sample(5, seed=3) == list(values[:5])
    # log-uniform: each decade holds about a quarter of the draws (a uniform draw would put 90% in the last)
    decades = np.histogram(np.log10(values), bins=[-5, -4, -3, -2, -1])[0]
    assert decades.min() > 60, decades
    ints = tune.Param("int", 20, 300).sample(200, seed=0)
    assert all(isinstance(v, int) and 20 <= v <= 300 for v in ints)
    assert set(tune.Param("float", 0.0, 1.0, step=0.25).sample(50)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    # a range that is not a whole number of steps: the top grid point is the last below high (10 and 1.08 were
    # drawn before, clipped off the grid), as Optuna suggests
    assert set(tune.Param("int", 0, 10, step=4).sample(100)) == {0, 4, 8}
    assert tune.Param("int", 0, 10, step=4).grid(3) == [0, 4, 8]
    floats = tune.Param("float", 0.0, 1.08, step=0.3).sample(100)
    np.testing.assert_allclose(sorted(set(np.round(floats, 9))), [0.0, 0.3, 0.6, 0.9])
    assert set(tune.Param("categorical", choices=["sgd", "adam"]).sample(20)) == {"sgd", "adam"}
    raises_one_line(lambda: lr.sample(0), "n must be an int >= 1")


def test_without_optuna_spaces_still_check_and_studies_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    assert tune.SearchSpace(lr=LR).names == ["lr"] and len(LR.sample(3)) == 3
    raises_one_line(lambda: tune.create_study(), 'pip install "dlcore[tune]"', exc=ModuleNotFoundError)
    raises_one_line(lambda: tune.PruningCallback(None), 'pip install "dlcore[tune]"', exc=ModuleNotFoundError)
