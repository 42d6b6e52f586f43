"""Populations trained with vmap (dlcore/train/population.py and TrainState.stack / unstack / population).

successive_halving's member-equals-a-Trainer-fit acceptance test is in test_tune.py, beside the search it serves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.train import (TrainState, Trainer, population_epoch, population_fit, population_keys,
                          population_metrics, train_step)
from dlcore.train import population as pop
from dlcore.train.population import population_evaluate, population_select, successive_halving
from one_line import raises_one_line

SEEDS = list(range(8))
EPOCHS = 2
BATCH = 16


class Net(nnx.Module):
    """A small MLP with dropout, so each member's dropout keys matter."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.l1 = dlcore.nn.Linear(6, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = dlcore.nn.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


def make(rngs):
    return Net(rngs=rngs)


def _data(n=100, seed=0):  # 100 rows, batch 16: the last batch is padded
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)}


def _np(a):
    return np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)


def _assert_close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(_np(u), _np(v), rtol=1e-5, atol=1e-6), a, b)


def _assert_equal(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(_np(u), _np(v)), a, b)


def _trainer(seed, tx, data, epochs=EPOCHS, compiled=None):
    """A separate `Trainer(seed=seed)` fit: (its final state, its history).

    ``compiled`` (another trainer's jitted functions) spares the ~3 s compile of each of the eight fits
    on 2 cores: every input of the jitted epoch (state, keys, data, plan) is an argument, so it is the
    same computation a fresh compile would give."""
    trainer = Trainer(make(nnx.Rngs(seed)), tx, losses.cross_entropy, metrics=["accuracy"], seed=seed,
                      batch_size=BATCH, progress=False)
    if compiled is not None:
        trainer._compiled = compiled
    history = trainer.fit(data, epochs=epochs)
    return trainer, history


def test_stack_unstack_round_trip_and_population_keys():
    tx = optim.adam(1e-2)
    singles = [TrainState.create(make(nnx.Rngs(s)), tx, seed=s) for s in range(3)]
    stacked = TrainState.stack(singles)
    assert stacked.members == 3 and stacked.params["l1"]["kernel"][...].shape == (3, 6, 16)
    for a, b in zip(stacked.unstack(), singles):
        assert a.graphdef == b.graphdef and a.tx is b.tx
        _assert_equal(a, b)
    # population() = the states a Trainer(seed=s) starts from
    states = TrainState.population(make, tx, [3, 5])
    keys, _ = population_keys([3, 5])
    np.testing.assert_array_equal(states.key, keys)
    trainer = Trainer(make(nnx.Rngs(5)), tx, losses.cross_entropy, seed=5, progress=False)
    _assert_equal(states.unstack()[1], trainer.state)
    # an int-seed factory (no `rngs` parameter) gets the seed
    by_seed = TrainState.population(lambda s: dlcore.models.create("mlp", sizes=(6, 4, 3), seed=s), tx, [0, 1])
    by_rngs = TrainState.population(lambda rngs: dlcore.models.create("mlp", sizes=(6, 4, 3), rngs=rngs), tx, [0, 1])
    _assert_close(by_seed.params, by_rngs.params)


def test_mismatched_members_fail_with_one_line():
    tx = optim.sgd(0.1)
    a = TrainState.create(dlcore.models.create("mlp", sizes=(6, 4, 3)), tx)
    cases = [
        ([a, TrainState.create(dlcore.models.create("mlp", sizes=(6, 5, 3)), tx)], "another graphdef"),
        ([a, TrainState.create(dlcore.models.create("mlp", sizes=(6, 4, 3)), optim.sgd(0.1))], "another tx"),
        ([a, a.replace(step=jnp.zeros((), jnp.float32))], "leaf"),
        ([], "non-empty"),
        ([a, "b"], "not a TrainState"),
    ]
    for states, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            TrainState.stack(states)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not stacked"):
        a.unstack()
    with pytest.raises(ValueError, match="one value per seed"):
        TrainState.population(make, optim.injectable("sgd", lr=0.1), [0, 1], hyperparams={"lr": [0.1]})
    with pytest.raises(ValueError, match="stacked TrainState"):
        population_epoch(a, _data(), population_keys([0])[1], batch_size=8, loss_fn=losses.cross_entropy)


def test_eight_seeds_in_one_vmapped_call_equal_eight_trainer_fits():
    """The acceptance test: 8 members, one jit(vmap(scan)) per epoch, equal 8 separate Trainer fits."""
    data, tx = _data(), optim.adam(1e-2)
    states = TrainState.population(make, tx, SEEDS)
    states, history = population_fit(states, data, SEEDS, epochs=EPOCHS, batch_size=BATCH,
                                     loss_fn=losses.cross_entropy, metrics=["accuracy"])
    assert history["loss"].shape == (EPOCHS, len(SEEDS))
    finals, compiled = states.unstack(), None
    for i, seed in enumerate(SEEDS):
        trainer, hist = _trainer(seed, tx, data, compiled=compiled)
        compiled, expected = trainer._compiled, trainer.state
        _assert_close(finals[i].params, expected.params)
        _assert_close(finals[i].opt_state, expected.opt_state)
        assert int(finals[i].step) == int(expected.step) == EPOCHS * 7
        np.testing.assert_allclose(history["loss"][:, i], hist["loss"], rtol=1e-5)
        np.testing.assert_allclose(history["accuracy"][:, i], hist["accuracy"], rtol=1e-5)
    assert len({round(float(v), 6) for v in history["loss"][-1]}) == len(SEEDS)  # the members differ


def test_per_member_learning_rates():
    data, lrs = _data(), [0.3, 0.1, 0.03, 0.01]
    tx = optim.injectable("sgd", lr=0.1, momentum=0.9)
    states = TrainState.population(make, tx, [0] * len(lrs), hyperparams={"lr": lrs})
    np.testing.assert_allclose(states.opt_state.hyperparams["lr"], lrs, rtol=1e-7)

    # one vmapped train_step trains the four learning rates from the same weights
    batch = {k: jnp.asarray(v[:BATCH]) for k, v in data.items()}
    step = jax.jit(jax.vmap(lambda st: train_step(st, batch, jax.random.fold_in(st.key, st.step),
                                                  loss_fn=losses.cross_entropy)[0]))
    one = step(states)
    moved = [float(jnp.abs(s.params["l1"]["kernel"][...] - s0.params["l1"]["kernel"][...]).max())
             for s, s0 in zip(one.unstack(), states.unstack())]
    np.testing.assert_allclose(np.array(moved) / moved[0], np.array(lrs) / lrs[0], rtol=1e-3)

    states, history = population_fit(states, data, [0] * len(lrs), epochs=EPOCHS, batch_size=BATCH,
                                     loss_fn=losses.cross_entropy)
    assert len({round(float(v), 6) for v in history["loss"][-1]}) == len(lrs)
    for i in (0, 3):  # member i = a Trainer with that learning rate
        trainer, hist = _trainer(0, optim.injectable("sgd", lr=lrs[i], momentum=0.9), data)
        expected = trainer.state
        _assert_close(states.unstack()[i].params, expected.params)
        np.testing.assert_allclose(history["loss"][:, i], hist["loss"], rtol=1e-5)


def test_a_second_epoch_does_not_recompile():
    data = jax.device_put(pop._split(_data()))
    states = TrainState.population(make, optim.adam(1e-2), [0, 1, 2])
    keys = population_keys([0, 1, 2])[1]
    before = pop._traces["population_epoch"]
    for epoch in (1, 2, 3):
        states, acc = population_epoch(states, data, keys, epoch, batch_size=BATCH, loss_fn=losses.cross_entropy,
                                       metrics=["accuracy"])
    assert pop._traces["population_epoch"] - before == 1
    figures = population_metrics(acc, ["accuracy"])
    assert figures["loss"].shape == figures["accuracy"].shape == (3,)
    assert int(states.step[0]) == 3 * 7


def test_population_evaluate_is_each_members_trainer_evaluate_in_eval_mode():
    """Untrained members with dropout: the figures must be eval mode's (dropout off), as Trainer.evaluate's."""
    data, seeds = _data(), [0, 1, 2]
    states = TrainState.population(make, optim.adam(1e-2), seeds)
    figures = population_evaluate(states, data, loss_fn=losses.cross_entropy, metrics=["accuracy"], batch_size=32)
    assert set(figures) == {"loss", "accuracy"} and figures["loss"].shape == (3,)
    compiled = None
    for i, seed in enumerate(seeds):
        trainer = Trainer(make(nnx.Rngs(seed)), optim.adam(1e-2), losses.cross_entropy, metrics=["accuracy"],
                          seed=seed, progress=False)
        if compiled is not None:
            trainer._compiled = compiled
        expected = trainer.evaluate(data)
        compiled = trainer._compiled
        np.testing.assert_allclose(figures["loss"][i], expected["loss"], rtol=1e-5)
        np.testing.assert_allclose(figures["accuracy"][i], expected["accuracy"], rtol=1e-6)
    assert len(set(np.round(figures["loss"], 6))) == 3
    # population_select keeps the members asked for, in that order
    picked = population_select(states, [2, 0]).unstack()
    _assert_equal(picked[0], states.unstack()[2])
    _assert_equal(picked[1], states.unstack()[0])


def test_population_and_halving_bad_input_is_one_line():
    data, tx = _data(), optim.injectable("sgd", lr=0.1)
    states = TrainState.population(make, tx, [0, 1])
    raises_one_line(lambda: population_select(states, [0, 2]), "each member index must be an int in [0, 1]")
    raises_one_line(lambda: population_select(states, []), "at least one member")
    raises_one_line(lambda: population_evaluate(states, {"x": data["x"]}, loss_fn=losses.cross_entropy),
                    "needs targets 'y'")

    def halving(**kw):
        args = dict(hyperparams={"lr": [0.1, 0.01]}, epochs=2, rungs=1, batch_size=BATCH,
                    loss_fn=losses.cross_entropy, metrics=["accuracy"], monitor="val_accuracy")
        args.update(kw)
        return lambda: successive_halving(make, args.pop("tx", tx), data, args.pop("validation", data), **args)

    raises_one_line(halving(hyperparams={"lr": [0.1, 0.01, 0.001], "weight_decay": [0.0, 1e-4]}),
                    "hyperparameter lists differ in length (lr: 3, weight_decay: 2)")
    raises_one_line(halving(seeds=[0, 1, 2]), "3 seeds for 2 members")
    raises_one_line(halving(hyperparams={"dropout": [0.1, 0.5]}), "'dropout' cannot vary within a population",
                    "graphdef")
    raises_one_line(halving(hyperparams={"lr": [0.1, float("nan")]}), "hyperparams['lr']", "finite number")
    raises_one_line(halving(hyperparams={"lr": 0.1}), "must be a list of numbers")
    raises_one_line(halving(monitor="val_f1"), "monitor 'val_f1' is none of the figures")
    raises_one_line(halving(rungs=0), "rungs (epochs between halvings) must be an int >= 1")
    raises_one_line(halving(tx=optim.sgd(0.1)), "holds no injected hyperparameter 'lr'", "injectable")
    raises_one_line(halving(validation={"x": data["x"]}), "validation needs targets 'y'")
    raises_one_line(halving(hyperparams={"lr": [0.1, 0.01], "momentum": [0.9]}), "differ in length")


def test_halving_ranks_nan_last_and_keeps_ties_in_member_order():
    nan = float("nan")
    assert pop._rank([0.5, nan, 0.2, 0.9], "max") == [3, 0, 2, 1]
    assert pop._rank([0.5, nan, 0.2, 0.9], "min") == [2, 0, 3, 1]
    assert pop._rank([0.3, 0.3, 0.1], "max") == [0, 1, 2]
