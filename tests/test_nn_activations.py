"""Tests for dlcore.nn.activations: PyTorch parity, golden values, learnable and random variants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore.nn import activations as A

X = np.linspace(-25.0, 25.0, 101).astype(np.float32)
X = np.concatenate([X, np.linspace(-4, 4, 81).astype(np.float32), [0.0, 1e-4, -1e-4]]).astype(np.float32)


def test_golden_values_without_torch():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(A.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(A.leaky_relu(x, 0.2), [-0.4, -0.1, 0, 0.5, 2])
    np.testing.assert_allclose(A.elu(x), [math.expm1(-2), math.expm1(-0.5), 0, 0.5, 2], rtol=1e-6)
    np.testing.assert_allclose(A.relu_squared(x), [0, 0, 0, 0.25, 4])
    np.testing.assert_allclose(A.hardsigmoid(x), [1 / 6, 2.5 / 6, 0.5, 3.5 / 6, 5 / 6], rtol=1e-6)
    np.testing.assert_allclose(A.hardswish(x), [-2 / 6, -0.5 * 2.5 / 6, 0, 0.5 * 3.5 / 6, 2 * 5 / 6], rtol=1e-6)
    np.testing.assert_allclose(A.hardtanh(x), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(A.hardshrink(x), [-2, 0, 0, 0, 2])
    np.testing.assert_allclose(A.swish(x, 1.0), A.silu(x), rtol=1e-6)
    # SELU's constants: selu(1) = scale, selu(-inf) -> -scale * alpha ~ -1.7581
    assert float(A.selu(jnp.array(1.0))) == pytest.approx(1.0507009873554805)
    assert float(A.selu(jnp.array(-30.0))) == pytest.approx(-1.7580993408473766, rel=1e-6)
    # GELU: the book's low point ~ -0.17 near z ~ -0.75 (Géron, ch. 11, GELU, Swish, SwiGLU, Mish, and ReLU²)
    z = jnp.linspace(-3, 0, 3001)
    g = A.gelu(z)
    assert float(jnp.min(g)) == pytest.approx(-0.17, abs=0.005)
    assert float(z[jnp.argmin(g)]) == pytest.approx(-0.75, abs=0.02)
    # mish(0) = 0, softplus linear above the threshold, glu / swiglu halves
    assert float(A.mish(jnp.array(0.0))) == 0.0
    assert float(A.softplus(jnp.array(30.0))) == 30.0
    np.testing.assert_allclose(A.glu(jnp.array([[2.0, 0.0]])), [[1.0]])
    np.testing.assert_allclose(A.swiglu(jnp.array([[2.0, 3.0]])), [[3.0 * 2.0 / (1 + math.exp(-2.0))]], rtol=1e-6)
    np.testing.assert_allclose(A.softmax(jnp.log(jnp.array([1.0, 3.0]))), [0.25, 0.75], rtol=1e-6)


TORCH_FUNCS = [
    ("sigmoid", lambda F, t: F.sigmoid(t), A.sigmoid),
    ("tanh", lambda F, t: F.tanh(t), A.tanh),
    ("relu", lambda F, t: F.relu(t), A.relu),
    ("relu6", lambda F, t: F.relu6(t), A.relu6),
    ("leaky_relu", lambda F, t: F.leaky_relu(t, 0.2), lambda x: A.leaky_relu(x, 0.2)),
    ("elu", lambda F, t: F.elu(t, 0.7), lambda x: A.elu(x, 0.7)),
    ("celu", lambda F, t: F.celu(t, 1.5), lambda x: A.celu(x, 1.5)),
    ("selu", lambda F, t: F.selu(t), A.selu),
    ("gelu", lambda F, t: F.gelu(t), A.gelu),
    ("gelu_tanh", lambda F, t: F.gelu(t, approximate="tanh"), lambda x: A.gelu(x, "tanh")),
    ("silu", lambda F, t: F.silu(t), A.silu),
    ("mish", lambda F, t: F.mish(t), A.mish),
    ("softplus", lambda F, t: F.softplus(t, beta=2.0, threshold=10.0), lambda x: A.softplus(x, 2.0, 10.0)),
    ("softsign", lambda F, t: F.softsign(t), A.softsign),
    ("log_sigmoid", lambda F, t: F.logsigmoid(t), A.log_sigmoid),
    ("hardtanh", lambda F, t: F.hardtanh(t, -2.0, 3.0), lambda x: A.hardtanh(x, -2.0, 3.0)),
    ("hardsigmoid", lambda F, t: F.hardsigmoid(t), A.hardsigmoid),
    ("hardswish", lambda F, t: F.hardswish(t), A.hardswish),
    ("hardshrink", lambda F, t: F.hardshrink(t, 0.3), lambda x: A.hardshrink(x, 0.3)),
    ("rrelu_eval", lambda F, t: F.rrelu(t, 0.1, 0.3, training=False), lambda x: A.rrelu(x, 0.1, 0.3)),
    ("prelu", lambda F, t: F.prelu(t, t.new_tensor([0.3])), lambda x: A.prelu(x, 0.3)),
]


@pytest.mark.parametrize("name,theirs,ours", TORCH_FUNCS, ids=[c[0] for c in TORCH_FUNCS])
def test_matches_torch_functions_and_gradients(name, theirs, ours):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.tensor(X, requires_grad=True)
    y = theirs(F, t)
    y.sum().backward()
    np.testing.assert_allclose(ours(jnp.asarray(X)), y.detach().numpy(), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(ours(x)))(jnp.asarray(X))
    keep = np.abs(X) > 1e-3  # the kinks at 0 (and hard edges) are conventions
    for edge in (-3.0, 3.0, -2.0, 6.0, 0.3, -0.3):
        keep &= np.abs(X - edge) > 1e-3
    np.testing.assert_allclose(np.asarray(grad)[keep], t.grad.numpy()[keep], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax_glu_match_torch(dim):
    torch = pytest.importorskip("torch")
    x = np.random.RandomState(0).normal(size=(3, 4, 6)).astype(np.float32)
    t = torch.tensor(x)
    np.testing.assert_allclose(A.Softmax(dim)(jnp.asarray(x)), torch.softmax(t, dim).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A.LogSoftmax(dim)(jnp.asarray(x)), torch.log_softmax(t, dim).numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(A.GLU(dim)(jnp.asarray(x)), torch.nn.functional.glu(t, dim).numpy(), rtol=1e-5,
                               atol=1e-7)


def test_modules_apply_their_functions():
    x = jnp.asarray(X)
    pairs = [(A.ReLU(), A.relu), (A.Sigmoid(), A.sigmoid), (A.SELU(), A.selu), (A.Mish(), A.mish),
             (A.ReLUSquared(), A.relu_squared), (A.Hardswish(), A.hardswish), (A.SiLU(), A.silu),
             (A.LeakyReLU(0.3), lambda v: A.leaky_relu(v, 0.3)), (A.ELU(0.5), lambda v: A.elu(v, 0.5)),
             (A.GELU("sigmoid"), lambda v: v * jax.nn.sigmoid(1.702 * v)), (A.Softplus(), A.softplus),
             (A.Hardtanh(-2, 2), lambda v: jnp.clip(v, -2, 2)), (A.CELU(2.0), lambda v: A.celu(v, 2.0))]
    for module, fn in pairs:
        np.testing.assert_allclose(module(x), fn(x), rtol=1e-6, err_msg=type(module).__name__)


def test_prelu_per_channel_learns_its_slopes():
    m = A.PReLU(3, init=0.25)
    x = jnp.array([[-1.0, -2.0, 3.0]])
    np.testing.assert_allclose(m(x), [[-0.25, -0.5, 3.0]])
    params = nnx.state(m, nnx.Param)
    grad = jax.grad(lambda p: jnp.sum(nnx.merge(nnx.graphdef(m), p)(x)))(params)
    np.testing.assert_allclose(grad["weight"][...], [-1.0, -2.0, 0.0])  # d/da of a*x for x < 0
    with pytest.raises(ValueError, match="3 channels on the last axis"):
        m(jnp.ones((2, 4)))


def test_prelu_matches_torch_channel_last():
    torch = pytest.importorskip("torch")
    x = np.random.RandomState(1).normal(size=(2, 5, 5, 3)).astype(np.float32)
    tm = torch.nn.PReLU(3, init=0.1)
    with torch.no_grad():
        tm.weight.copy_(torch.tensor([0.1, 0.2, 0.3]))
    m = A.PReLU(3)
    m.weight[...] = jnp.array([0.1, 0.2, 0.3])
    want = tm(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(m(jnp.asarray(x)), want, rtol=1e-6)


def test_swish_learnable_beta():
    s = A.Swish(beta=1.5)
    x = jnp.array([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(s(x), x * jax.nn.sigmoid(1.5 * x), rtol=1e-6)
    params = nnx.state(s, nnx.Param)
    g = jax.grad(lambda p: jnp.sum(nnx.merge(nnx.graphdef(s), p)(x)))(params)
    want = jnp.sum(x * x * jax.nn.sigmoid(1.5 * x) * (1 - jax.nn.sigmoid(1.5 * x)))
    assert float(g["beta"][...]) == pytest.approx(float(want), rel=1e-5)
    fixed = A.Swish(beta=1.0, learnable=False)
    assert not jax.tree.leaves(nnx.state(fixed, nnx.Param))
    np.testing.assert_allclose(fixed(x), jax.nn.silu(x), rtol=1e-6)
    sw = A.SwiGLU(learnable=True)
    assert sw(jnp.ones((2, 8))).shape == (2, 4)
    with pytest.raises(ValueError, match="must be even"):
        sw(jnp.ones((2, 5)))


def test_rrelu_random_in_training_fixed_in_eval():
    m = A.RReLU(0.1, 0.3, rngs=nnx.Rngs(0))
    x = -jnp.ones((1000,))
    y = m(x)
    slopes = -np.asarray(y)
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.04
    assert float(m(jnp.array([2.0]))[0]) == 2.0
    m.eval()
    np.testing.assert_allclose(m(x), -0.2 * np.ones(1000), rtol=1e-6)
    with pytest.raises(ValueError, match="needs rngs"):
        A.RReLU()(x)
    with pytest.raises(ValueError, match=r"lower must be a number in \[0, 0.1\]"):
        A.RReLU(0.5, 0.1)


def test_get_by_name_and_errors():
    assert "swiglu" in A.names() and "relu_squared" in A.names()
    np.testing.assert_allclose(A.get("leaky_relu", negative_slope=0.2)(jnp.array([-1.0])), [-0.2])
    np.testing.assert_allclose(A.get("GELU_TANH")(jnp.array([1.0])), A.gelu(jnp.array([1.0]), "tanh"))
    with pytest.raises(ValueError, match="unknown activation 'swishy': did you mean 'swish'"):
        A.get("swishy")
    assert A.get("relu2") is A.relu_squared and A.get("LeakyReLU") is A.leaky_relu
    assert A.get(jax.nn.elu) is jax.nn.elu


@pytest.mark.parametrize("name", ["leaky_relu", "LeakyReLU", "elu", "gelu", "silu", "mish", "selu"])
def test_mlp_and_activation_module_take_any_activation_by_name(name):
    from dlcore import nn

    x = jax.random.normal(jax.random.key(0), (5, 4))
    mlp = nn.MLP((4, 6, 3), activation=name, rngs=nnx.Rngs(0))
    hidden = A.get(name)(mlp.layers[0](x))
    np.testing.assert_allclose(mlp(x), mlp.layers[1](hidden), rtol=1e-6)
    np.testing.assert_allclose(nn.Activation(name)(x), A.get(name)(x))


def test_mlp_takes_a_callable_and_rejects_an_unknown_name_at_construction():
    from dlcore import models, nn

    mlp = nn.MLP((4, 6, 3), activation=jax.nn.softplus, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4))
    np.testing.assert_allclose(mlp(x), mlp.layers[1](jax.nn.softplus(mlp.layers[0](x))), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation 'leaky_rleu': did you mean 'leaky_relu'"):
        nn.MLP((4, 6, 3), activation="leaky_rleu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown activation 'reul'"):
        models.create("mlp", sizes=(4, 3), activation="reul")
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        nn.ConvBNAct(3, 4, activation="relu7", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="approximate must be"):
        A.GELU("erf")
    with pytest.raises(ValueError, match="min_val"):
        A.Hardtanh(1.0, -1.0)
