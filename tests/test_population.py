"""Populations trained with vmap (dlcore/train/population.py and TrainState.stack / unstack / population)."""

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
