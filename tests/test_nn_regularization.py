"""Tests for dlcore.nn.regularization: alpha dropout, MC dropout, penalties and magnitude pruning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore.nn import activations as A
from dlcore.nn import regularization as R
from dlcore.nn.layers import Linear


def test_alpha_dropout_formula_and_self_normalisation():
    p = 0.2
    d = R.AlphaDropout(p, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.RandomState(0).normal(size=(400_000,)).astype(np.float32))
    y = d(x)
    # kept units: a * x + a * alpha' * p; dropped: a * (-alpha') + a * alpha' * p  (alpha' ~ 1.7581)
    neg = 1.7580993408473766
    a = 1 / math.sqrt((neg ** 2 * p + 1) * (1 - p))
    dropped = np.isclose(np.asarray(y), -a * neg + a * neg * p, atol=1e-6)
    assert abs(dropped.mean() - p) < 0.01
    np.testing.assert_allclose(np.asarray(y)[~dropped], a * np.asarray(x)[~dropped] + a * neg * p, rtol=1e-5,
                               atol=1e-6)
    assert abs(float(y.mean())) < 0.01 and abs(float(y.std()) - 1) < 0.01  # mean and variance kept
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(ValueError, match="needs rngs"):
        R.AlphaDropout(0.1)(x)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\]"):
        R.AlphaDropout(1.5)


def test_alpha_dropout_keeps_a_selu_stack_normalised():
    # 20 SELU layers with LeCun-normal weights and alpha dropout: activations stay ~N(0, 1) (Géron, ch. 11, ELU and SELU)
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.normal(size=(2000, 100)).astype(np.float32))
    d = R.AlphaDropout(0.1, rngs=nnx.Rngs(1))
    for _ in range(20):
        w = jnp.asarray(rng.normal(size=(100, 100)).astype(np.float32) / 10.0)
        x = d(A.selu(x @ w))
    assert abs(float(x.mean())) < 0.15 and abs(float(x.std()) - 1) < 0.15


class _Net(nnx.Module):
    def __init__(self, rngs, mc=False):
        self.fc = Linear(4, 16, rngs=rngs)
        self.drop = R.MCDropout(0.5, rngs=rngs) if mc else nnx.Dropout(0.5, rngs=rngs)
        self.out = Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.relu(self.fc(x))))


def test_mc_dropout_stays_on_in_eval():
    net = _Net(nnx.Rngs(0), mc=True)
    net.eval()
    x = jnp.ones((1, 4))
    assert not np.allclose(net(x), net(x))


def test_mc_predict_averages_samples_and_leaves_the_model_alone():
    net = _Net(nnx.Rngs(0))
    net.eval()
    x = jnp.asarray(np.random.RandomState(0).normal(size=(3, 4)).astype(np.float32))
    before = net(x)
    mean, std = R.mc_predict(net, x, n_samples=200, seed=0)
    assert mean.shape == std.shape == (3, 3)
    np.testing.assert_allclose(jnp.sum(mean, axis=-1), 1.0, rtol=1e-5)
    assert float(jnp.min(std)) > 0
    np.testing.assert_array_equal(net(x), before)  # still in eval mode, dropout off
    assert net.drop.deterministic is True
    mean2, _ = R.mc_predict(net, x, n_samples=200, seed=0)
    np.testing.assert_array_equal(mean, mean2)  # same seed, same masks
    with pytest.raises(ValueError, match="no dropout layer"):
        R.mc_predict(Linear(4, 2, rngs=nnx.Rngs(0)), x)


def test_penalties_golden():
    params = {"k": jnp.array([[1.0, -2.0], [3.0, 0.0]]), "bias": jnp.array([10.0, -10.0])}
    assert float(R.l1_penalty(params)) == 6.0  # biases excluded by default
    assert float(R.l2_penalty(params)) == 14.0
    assert float(R.l1_penalty(params, where=".*")) == 26.0


def test_l1_unstructured_golden():
    params = {"w": jnp.array([[0.5, -0.1], [0.3, -2.0]]), "b": jnp.array([0.0, 0.01])}
    pruned, masks = R.l1_unstructured(params, amount=0.5)
    np.testing.assert_allclose(pruned["w"], [[0.5, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(masks["w"], [[1, 0], [0, 1]])
    np.testing.assert_allclose(pruned["b"], params["b"])  # biases untouched
    np.testing.assert_allclose(masks["b"], [1, 1])
    assert R.sparsity(pruned) == 0.5
    pruned, _ = R.l1_unstructured(params, amount=3)
    assert int(jnp.sum(pruned["w"] == 0)) == 3


def test_ln_structured_golden():
    # (in, out) kernel: output units are columns; column L2 norms 5, 0.5, 2
    k = jnp.array([[3.0, 0.3, 0.0], [4.0, 0.4, 2.0]])
    pruned, masks = R.ln_structured({"k": k}, amount=1)
    np.testing.assert_allclose(pruned["k"], [[3.0, 0.0, 0.0], [4.0, 0.0, 2.0]])
    pruned, _ = R.ln_structured({"k": k}, amount=0.5, n=1, axis=0)  # rows, L1 norms 3.3 and 6.4
    np.testing.assert_allclose(pruned["k"], [[0, 0, 0], [4.0, 0.4, 2.0]])


@pytest.mark.parametrize("amount", [0.3, 7, 0.0])
def test_pruning_matches_torch_prune(amount):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    rng = np.random.RandomState(4)
    weight = rng.normal(size=(6, 5)).astype(np.float32)  # torch (out, in)
    lin = torch.nn.Linear(5, 6)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
    prune.l1_unstructured(lin, "weight", amount=amount)
    ours, _ = R.l1_unstructured({"kernel": jnp.asarray(weight.T)}, amount)
    np.testing.assert_array_equal(np.asarray(ours["kernel"]).T, lin.weight.detach().numpy())

    lin2 = torch.nn.Linear(5, 6)
    with torch.no_grad():
        lin2.weight.copy_(torch.tensor(weight))
    units = amount if isinstance(amount, float) else 2
    prune.ln_structured(lin2, "weight", amount=units, n=2, dim=0)  # whole output units
    ours2, _ = R.ln_structured({"kernel": jnp.asarray(weight.T)}, units, n=2, axis=-1)
    np.testing.assert_array_equal(np.asarray(ours2["kernel"]).T, lin2.weight.detach().numpy())


def test_pruning_on_a_model_and_errors():
    model = Linear(8, 4, rngs=nnx.Rngs(0))
    pruned, masks = R.l1_unstructured(model, 0.25)
    nnx.update(model, pruned)
    assert R.sparsity(model) == 0.25
    with pytest.raises(ValueError, match=r"amount .* must be a finite number in \[0, 1\]"):
        R.l1_unstructured(model, 1.5)
    with pytest.raises(ValueError, match=r"amount must be an int in \[0, 32\], got 40"):
        R.l1_unstructured(model, 40)
    with pytest.raises(ValueError, match="no parameter matches"):
        R.ln_structured(model, 1, where="conv")
