"""Checkpointing a model directly: `checkpoint.save(dir, step, model)` and `checkpoint.restore(dir, model)`
save and put back parameters, batch statistics and RNG streams; a tree a checkpoint cannot hold (typed keys,
strings, objects) and a model of another architecture are each refused with one line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import checkpoint as ckpt


class Net(nnx.Module):
    """Linear, batch norm, dropout and a Sequential (integer keys in its state)."""

    def __init__(self, width=16, *, rngs):
        self.l1 = dlcore.nn.Linear(6, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Sequential(nnx.Linear(width, 3, rngs=rngs))

    def __call__(self, x):
        return self.head(self.drop(jax.nn.relu(self.bn(self.l1(x)))))


X = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)


def trained(seed=0) -> Net:
    """A model whose batch statistics and RNG counts have moved away from their initial values."""
    model = Net(rngs=nnx.Rngs(seed))
    for _ in range(3):
        model(X)
    return model


def arrays(model) -> list[np.ndarray]:
    """Every array of the model's state, RNG keys as key data."""
    state = nnx.state(model)
    return [np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
            for a in jax.tree.leaves(state)]


def assert_same_model(a, b):
    la, lb = arrays(a), arrays(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert u.dtype == v.dtype and np.array_equal(u, v)


def eval_out(model):
    model.eval()
    out = np.asarray(model(X))
    model.train()
    return out


def test_save_change_restore_gives_identical_arrays_and_outputs(tmp_path):
    model = trained()
    where = ckpt.save(tmp_path, 3, model, {"epoch": 3})
    saved, before = arrays(model), eval_out(model)
    # what is saved: parameters, batch statistics, the RNG stream (key as raw key data), with a digest
    doc = json.loads((where / "digest" / "metadata").read_text())
    assert {"l1/kernel", "bn/mean", "bn/var", "drop/rngs/key", "drop/rngs/count", "head/layers/0/kernel"} <= set(
        doc["arrays"])
    assert doc["arrays"]["drop/rngs/key"] == {**doc["arrays"]["drop/rngs/key"], "dtype": "uint32", "shape": [2]}
    # change its weights, statistics and RNG state
    nnx.update(model, jax.tree.map(lambda a: a + 1, nnx.state(model, nnx.Param)))
    model(X)
    assert not np.array_equal(eval_out(model), before)
    out, meta = ckpt.restore(tmp_path, model)
    assert out is model and meta == {"epoch": 3}
    assert all(np.array_equal(u, v) for u, v in zip(arrays(model), saved))
    np.testing.assert_array_equal(eval_out(model), before)
    # the restored arrays are JAX arrays, keys typed keys of the model's own implementation
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(nnx.state(model)))
    assert jnp.issubdtype(model.drop.rngs.key[...].dtype, jax.dtypes.prng_key)


def test_restore_into_a_fresh_model_gives_same_outputs_and_same_next_dropout(tmp_path):
    model = trained(seed=0)
    ckpt.save(tmp_path, 1, model)  # meta defaults to {}
    fresh = Net(rngs=nnx.Rngs(123))
    _, meta = ckpt.restore(tmp_path, fresh)
    assert meta == {}
    assert_same_model(model, fresh)
    np.testing.assert_array_equal(eval_out(fresh), eval_out(model))
    # training mode: the next dropout masks (and batch-statistics updates) are the same; without the saved
    # RNG state they would not be
    other = Net(rngs=nnx.Rngs(123))
    nnx.update(other, nnx.state(model, nnx.Not(nnx.RngState)))
    assert not np.array_equal(np.asarray(nnx.clone(other)(X)), np.asarray(nnx.clone(model)(X)))
    a, b = np.asarray(model(X)), np.asarray(fresh(X))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(model(X)), np.asarray(fresh(X)))
    assert_same_model(model, fresh)
    # the template-free view, and a template tree, still work for a module checkpoint
    tree, _ = ckpt.load(tmp_path)
    np.testing.assert_array_equal(tree["drop"]["rngs"]["key"], jax.random.key_data(model.drop.rngs.key[...]))
    got, _ = ckpt.restore(tmp_path, tree)
    assert set(got) == {"l1", "bn", "drop", "head"}


def test_registered_model_round_trip(tmp_path):
    model = dlcore.models.create("mnist_bn_cnn")
    x = np.random.default_rng(1).normal(size=(4, 28, 28, 1)).astype(np.float32)
    model(x)  # moves the batch statistics
    model.eval()
    want = np.asarray(model(x))
    ckpt.save(tmp_path, 0, model, {"name": "mnist_bn_cnn"})
    fresh = dlcore.models.create("mnist_bn_cnn", seed=1)
    nnx.update(fresh, jax.tree.map(lambda a: a * 0, nnx.state(fresh, nnx.Param)))
    ckpt.restore(tmp_path, fresh)
    fresh.eval()
    np.testing.assert_array_equal(np.asarray(fresh(x)), want)
    assert_same_model(model, fresh)


@pytest.mark.parametrize("other", [lambda: Net(width=32, rngs=nnx.Rngs(0)),
                                   lambda: dlcore.models.create("mnist_bn_cnn")])
def test_restore_into_another_architecture_is_one_line_naming_the_path(tmp_path, other):
    model = trained()
    ckpt.save(tmp_path, 2, model)
    target = other()
    before = arrays(target)
    with pytest.raises(dlcore.CheckpointError) as e:
        ckpt.restore(tmp_path, target)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"checkpoint {tmp_path / '2'} does not match the model: ")
    if isinstance(target, Net):
        assert msg.endswith("array bn/bias was saved as float32(16,), the model has float32(32,)")
    else:
        assert "bn/bias (float32(16,)) is not in the model" in msg
    assert all(np.array_equal(u, v) for u, v in zip(arrays(target), before))  # left untouched


def test_restore_template_tree_of_another_shape_names_the_path(tmp_path):
    tree = {"a": np.zeros((2, 3), np.float32), "b": {"c": np.ones(4, np.int32)}}
    ckpt.save(tmp_path, 1, tree, {})
    ckpt.restore(tmp_path, tree)  # backward compatible: (tree, meta)
    cases = {"array a was saved as float32(2, 3), the model has float32(2, 4)":
             {**tree, "a": np.zeros((2, 4), np.float32)},
             "the checkpoint's array b/c (int32(4,)) is not in the model": {"a": tree["a"]},
             "the model's array x (float64(1,)) is not in the checkpoint": {**tree, "x": np.ones(1)}}
    for reason, template in cases.items():
        with pytest.raises(dlcore.CheckpointError) as e:
            ckpt.restore(tmp_path, template)
        assert "\n" not in str(e.value) and str(e.value).endswith(reason) and e.value.reason == reason


@pytest.mark.parametrize("bad, needle", [
    (lambda m: nnx.state(m), "a typed jax.random key at 'drop/rngs/key/value'"),
    (lambda m: {"w": np.ones(3), "key": jax.random.key(0)}, "a typed jax.random key at 'key'"),
    (lambda m: {"w": np.ones(3), "name": "mlp"}, "a string 'mlp' at 'name'"),
    (lambda m: {"w": np.ones(3), "fn": object()}, "an object of type object at 'fn'"),
    (lambda m: {"w": np.array(["a", "b"])}, "an object of type ndarray with dtype <U1 at 'w'"),
])
def test_unsupported_tree_is_one_line_saying_what_to_pass_and_writes_nothing(tmp_path, bad, needle):
    model = trained()
    with pytest.raises(ValueError) as e:
        ckpt.save(tmp_path / "ck", 1, bad(model), {"epoch": 1})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("checkpoint.save: the tree holds ") and needle in msg
    assert "pass the nnx.Module itself" in msg and "nnx.state(model, nnx.Param)" in msg
    assert not (tmp_path / "ck").exists()
    # the advice works
    ckpt.save(tmp_path / "ok", 1, nnx.state(model, nnx.Param))
    ckpt.save(tmp_path / "ok", 2, model)
    assert ckpt.steps(tmp_path / "ok") == [1, 2]


@pytest.mark.parametrize("meta, needle", [([1, 2], "meta must be a JSON-able dict or None, got a list"),
                                          ({"f": object()}, "meta must be JSON-able")])
def test_bad_meta_is_one_line_and_writes_nothing(tmp_path, meta, needle):
    with pytest.raises(ValueError, match=needle) as e:
        ckpt.save(tmp_path / "ck", 1, trained(), meta)
    assert "\n" not in str(e.value) and not (tmp_path / "ck").exists()


def test_scalar_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="checkpoint.save: step must be an int >= 0, got -1"):
        ckpt.save(tmp_path / "ck", -1, trained())
    with pytest.raises(ValueError, match="checkpoint.save: keep must be an int >= 1, got 0"):
        ckpt.save(tmp_path / "ck", 1, trained(), keep=0)
    assert not (tmp_path / "ck").exists()


def test_module_checkpoint_is_verified_and_falls_back(tmp_path):
    model = trained()
    ckpt.save(tmp_path, 1, model, {"epoch": 1})
    first = arrays(model)
    model(X)
    ckpt.save(tmp_path, 2, model, {"epoch": 2})
    # alter a weight of checkpoint 2 by rewriting its digest record: the restore refuses it, naming the array
    doc_path = tmp_path / "2" / "digest" / "metadata"
    doc = json.loads(doc_path.read_text())
    doc["arrays"]["l1/kernel"]["sha256"] = "0" * 64
    doc_path.write_text(json.dumps(doc))
    fresh = Net(rngs=nnx.Rngs(9))
    with pytest.raises(dlcore.CheckpointError, match="2 is corrupt: array l1/kernel does not match its digest"):
        ckpt.restore(tmp_path, fresh)
    with pytest.warns(RuntimeWarning, match="newest good"):
        out, meta, step = ckpt.restore_latest_good(tmp_path, fresh)
    assert out is fresh and step == 1 and meta == {"epoch": 1}
    assert all(np.array_equal(u, v) for u, v in zip(arrays(fresh), first))
