"""Inspection: summary, activations (forward hooks), batch-norm folding, grids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import inspect


def test_summary_shapes_and_counts_of_the_convnet():
    model = dlcore.models.create("mnist_convnet")
    rows = {r["layer"]: r for r in inspect.summary(model, (2, 28, 28, 1))}
    assert rows["cn1"]["output_shape"] == (2, 26, 26, 16) and rows["cn1"]["params"] == 160
    assert rows["cn2"]["output_shape"] == (2, 24, 24, 32) and rows["cn2"]["params"] == 4640
    assert rows["fc1"]["output_shape"] == (2, 64) and rows["fc1"]["params"] == 4608 * 64 + 64
    assert rows["fc2"]["output_shape"] == (2, 10)
    assert sum(r["params"] for r in rows.values()) == dlcore.models.count_params(model)
    assert "fc1" in inspect.format_summary(list(rows.values()), total=300_426)
    assert type(model.cn1) is dlcore.nn.Conv2d  # classes restored after recording
    with pytest.raises(ValueError, match="does not fit"):
        inspect.summary(model, (2, 28, 28, 3))


def test_activations_equal_the_layer_applied_by_hand():
    model = dlcore.models.create("mnist_convnet")
    model.eval()
    x = jnp.asarray(np.random.default_rng(0).random((3, 28, 28, 1), np.float32))
    acts = inspect.activations(model, x, ["cn1", "fc2"])
    np.testing.assert_allclose(acts["cn1"], model.cn1(x), rtol=1e-6)
    np.testing.assert_allclose(jax.nn.log_softmax(acts["fc2"]), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        inspect.activations(model, x, ["conv9"])


def test_fold_batch_norm_keeps_outputs():
    rngs = nnx.Rngs(0)
    conv = dlcore.nn.Conv2d(3, 8, 3, padding=1, rngs=rngs)
    bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
    r = np.random.default_rng(0)
    bn.mean[...] = jnp.asarray(r.normal(size=8), jnp.float32)
    bn.var[...] = jnp.asarray(r.uniform(0.5, 2, size=8), jnp.float32)
    bn.scale[...] = jnp.asarray(r.normal(size=8), jnp.float32)
    bn.bias[...] = jnp.asarray(r.normal(size=8), jnp.float32)
    bn.eval()
    x = jnp.asarray(r.normal(size=(2, 9, 9, 3)), jnp.float32)
    folded = inspect.fold_batch_norm(conv, bn)
    np.testing.assert_allclose(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_image_and_filter_grids():
    g = inspect.image_grid(np.arange(5 * 2 * 3).reshape(5, 2, 3), ncols=2, pad=1)
    assert g.shape == (3 * 3, 2 * 4, 1)
    assert g.max() == 1.0 and g.min() == 0.0
    k = np.random.default_rng(0).normal(size=(3, 3, 1, 16))
    assert inspect.filter_grid(k, ncols=8).shape == (2 * 4, 8 * 4, 1)
    with pytest.raises(ValueError, match="kernel must be"):
        inspect.filter_grid(np.zeros((3, 3, 1)))
