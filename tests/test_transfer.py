"""dlcore.transfer: heads, freezing, differential learning rates, precomputed features, ensembles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dlcore import losses, optim, transfer
from dlcore.nn.layers import Linear, Sequential
from dlcore.train import Trainer


class Net(nnx.Module):
    def __init__(self, rngs):
        self.body = Sequential(Linear(4, 8, rngs=rngs), nnx.relu, Linear(8, 6, rngs=rngs))
        self.fc = Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc(jax.nn.relu(self.body(x)))


def _params(model):
    return nnx.state(model, nnx.Param)


def _grads(model):
    return jax.tree.map(jnp.ones_like, _params(model))


def test_replace_head_swaps_the_submodule_and_returns_the_model():
    m = Net(nnx.Rngs(0))
    head = Linear(6, 2, rngs=nnx.Rngs(1))
    assert transfer.replace_head(m, "fc", head) is m
    assert m.fc is head
    assert m(jnp.ones((5, 4))).shape == (5, 2)
    transfer.replace_head(m, "body.2", Linear(8, 6, rngs=nnx.Rngs(2)))   # nested, dotted
    assert m.body[2].kernel[...].shape == (8, 6)


def test_replace_head_reaches_into_an_nnx_list():
    from dlcore.nn import MLP

    m = MLP((4, 5, 3), "relu", rngs=nnx.Rngs(0))
    transfer.replace_head(m, "layers.1", Linear(5, 1, rngs=nnx.Rngs(1)))
    assert m(jnp.ones((2, 4))).shape == (2, 1)
    with pytest.raises(AttributeError, match="'layers.5'.*0, 1"):
        transfer.replace_head(m, "layers.5", Linear(5, 1, rngs=nnx.Rngs(1)))


def test_replace_head_names_the_missing_attribute():
    m = Net(nnx.Rngs(0))
    with pytest.raises(AttributeError, match="'classifier'.*fc"):
        transfer.replace_head(m, "classifier", Linear(6, 2, rngs=nnx.Rngs(1)))
    with pytest.raises(AttributeError, match="'body.7'"):
        transfer.replace_head(m, "body.7", Linear(6, 2, rngs=nnx.Rngs(1)))


def test_frozen_parameters_get_no_update_and_no_optimizer_state():
    m = Net(nnx.Rngs(0))
    params = _params(m)
    tx = transfer.freeze(m, r"^body\.", "sgd", lr=0.1, momentum=0.9)
    state = tx.init(params)
    # momentum buffers exist only for fc.kernel and fc.bias: 6*3 + 3 numbers
    sizes = [x.size for x in jax.tree.leaves(state)]
    assert sum(sizes) == 6 * 3 + 3
    updates, _ = tx.update(_grads(m), state, params)
    named = dict(optim.named_leaves(updates))
    assert all(np.all(np.asarray(v) == 0) for k, v in named.items() if k.startswith("body."))
    assert np.allclose(np.asarray(named["fc.kernel"]), -0.1)
    assert transfer.frozen_paths(m, r"^body\.") == ["body.0.bias", "body.0.kernel", "body.2.bias",
                                                    "body.2.kernel"]


def test_trainable_is_the_converse_of_freeze():
    m = Net(nnx.Rngs(0))
    params = _params(m)
    tx = transfer.trainable(m, r"^fc\.", "adam", lr=1e-3)
    state = tx.init(params)
    # Adam: two moments for the 21 head numbers, plus scalar step counts
    arrays = [x for x in jax.tree.leaves(state) if x.ndim > 0]
    assert sum(x.size for x in arrays) == 2 * (6 * 3 + 3)
    updates, _ = tx.update(_grads(m), state, params)
    named = dict(optim.named_leaves(updates))
    assert np.all(np.asarray(named["body.0.kernel"]) == 0)
    assert np.all(np.asarray(named["fc.bias"]) != 0)
    with pytest.raises(ValueError, match="matches no parameter"):
        transfer.trainable(m, "nope", "sgd", lr=0.1)
    with pytest.raises(ValueError, match="every parameter"):
        transfer.freeze(m, ".", "sgd", lr=0.1)


def test_differential_lr_gives_each_group_its_rate():
    m = Net(nnx.Rngs(0))
    params = _params(m)
    tx = transfer.differential_lr(m, {r"^fc\.": 1e-2}, "sgd", lr=1e-4, frozen=r"^body\.0\.")
    updates, _ = tx.update(_grads(m), tx.init(params), params)
    named = dict(optim.named_leaves(updates))
    assert np.allclose(np.asarray(named["fc.kernel"]), -1e-2)
    assert np.allclose(np.asarray(named["body.2.kernel"]), -1e-4)
    assert np.all(np.asarray(named["body.0.kernel"]) == 0)


def test_freezing_inside_a_trainer_keeps_the_backbone_fixed():
    m = Net(nnx.Rngs(0))
    before = {k: np.asarray(v) for k, v in optim.named_leaves(m)}
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(64, 4)).astype(np.float32), "y": rng.integers(0, 3, 64).astype(np.int32)}
    t = Trainer(m, transfer.trainable(m, r"^fc\.", "sgd", lr=0.1), losses.cross_entropy, batch_size=16,
                progress=False)
    t.fit(data, epochs=2)
    after = dict(optim.named_leaves(m))
    assert all(np.array_equal(before[k], np.asarray(after[k])) for k in before if k.startswith("body."))
    assert not np.allclose(before["fc.kernel"], np.asarray(after["fc.kernel"]))


def test_extract_and_precompute_features_match_the_backbone():
    m = Net(nnx.Rngs(0))
    x = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    expected = np.asarray(m.body(jnp.asarray(x)))
    got = transfer.extract_features(m, x, upto="body", batch_size=4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    split = {"x": x, "y": np.arange(10)}
    feats = transfer.precompute_features(m.body, split, batch_size=3)
    np.testing.assert_allclose(feats["x"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(feats["y"], np.arange(10))
    # a head trained on the features and put on the backbone gives the same outputs end to end
    head = Linear(6, 3, rngs=nnx.Rngs(3))
    np.testing.assert_allclose(np.asarray(head(jax.nn.relu(jnp.asarray(feats["x"])))),
                               np.asarray(transfer.replace_head(m, "fc", head)(jnp.asarray(x))),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no layer named"):
        transfer.extract_features(m, x, upto="nope")


def test_extract_features_uses_eval_mode_and_leaves_the_model_alone():
    class Drop(nnx.Module):
        def __init__(self, rngs):
            self.lin = Linear(4, 4, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.drop(self.lin(x))

    m = Drop(nnx.Rngs(0))
    m.train()
    x = np.ones((8, 4), np.float32)
    a = transfer.extract_features(m, x, upto="drop")
    b = transfer.precompute_features(m, {"x": x})["x"]
    np.testing.assert_allclose(a, np.asarray(m.lin(jnp.asarray(x))), rtol=1e-6)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    assert m.drop.deterministic is False   # the caller's module is still in train mode


def test_ensemble_predict_is_the_mean_of_softmax_probabilities():
    x = np.random.default_rng(2).normal(size=(7, 4)).astype(np.float32)
    a, b = Net(nnx.Rngs(0)), Net(nnx.Rngs(1))
    log_b = lambda z: jax.nn.log_softmax(b(z))  # noqa: E731  log-probabilities give the same probabilities
    p = transfer.ensemble_predict([a, log_b], x, batch_size=3)
    expected = (jax.nn.softmax(a(jnp.asarray(x))) + jax.nn.softmax(b(jnp.asarray(x)))) / 2
    np.testing.assert_allclose(p, np.asarray(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="no models"):
        transfer.ensemble_predict([], x)
    single = transfer.ensemble_predict([a], x, transform=None)
    np.testing.assert_allclose(single, np.asarray(a(jnp.asarray(x))), rtol=1e-5, atol=1e-6)
