"""Tests for dlcore.nn.norm: PyTorch parity of batch and layer norm, momentum convention, modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore.nn import norm


def test_batchnorm_golden_running_stats_use_unbiased_variance():
    # batch [1, 3] on one channel: mean 2, biased var 1 (normalises to -1, 1), unbiased var 2.
    bn = norm.BatchNorm1d(1, eps=0.0 + 1e-12, momentum=0.1)
    y = bn(jnp.array([[1.0], [3.0]]))
    np.testing.assert_allclose(y, [[-1.0], [1.0]], rtol=1e-5)
    assert float(bn.mean[...][0]) == pytest.approx(0.9 * 0.0 + 0.1 * 2.0)
    assert float(bn.var[...][0]) == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)  # PyTorch: unbiased in the average
    assert int(bn.num_batches_tracked[...]) == 1
    assert bn.momentum == pytest.approx(0.9)  # Flax's convention on the nnx.BatchNorm attribute
    bn.eval()
    np.testing.assert_allclose(bn(jnp.array([[0.2]])), [[(0.2 - 0.2) / np.sqrt(1.1)]], atol=1e-6)


def test_cumulative_average_with_momentum_none():
    bn = norm.BatchNorm1d(1, momentum=None)
    for batch in ([1.0, 3.0], [5.0, 7.0], [0.0, 0.0]):
        bn(jnp.array(batch)[:, None])
    assert float(bn.mean[...][0]) == pytest.approx((2.0 + 6.0 + 0.0) / 3)  # 1 / num_batches_tracked
    assert float(bn.var[...][0]) == pytest.approx((2.0 + 2.0 + 0.0) / 3)


def _torch_layout(x):
    # channel-last (N, ..., C) -> PyTorch's (N, C, ...)
    return np.moveaxis(x, -1, 1)


@pytest.mark.parametrize(
    "cls,shape,kwargs",
    [
        ("BatchNorm1d", (8, 5), dict()),
        ("BatchNorm1d", (6, 7, 5), dict(momentum=0.3)),
        ("BatchNorm2d", (4, 6, 6, 5), dict(eps=1e-3, momentum=None)),
        ("BatchNorm3d", (3, 4, 4, 4, 5), dict(affine=False)),
        ("BatchNorm2d", (4, 6, 6, 5), dict(track_running_stats=False)),
    ],
)
def test_batchnorm_matches_torch_train_then_eval(cls, shape, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    ours = getattr(norm, cls)(5, **kwargs)
    theirs = getattr(torch.nn, cls)(5, **kwargs)
    if ours.affine:
        w, b = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
        ours.scale[...], ours.bias[...] = jnp.asarray(w), jnp.asarray(b)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    for i in range(4):
        x = (rng.normal(size=shape) * (i + 1) + i).astype(np.float32)
        want = np.moveaxis(theirs(torch.tensor(_torch_layout(x))).detach().numpy(), 1, -1)
        np.testing.assert_allclose(ours(jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)
    if ours.track_running_stats:
        np.testing.assert_allclose(ours.mean[...], theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.var[...], theirs.running_var.numpy(), rtol=1e-5)
        assert int(ours.num_batches_tracked[...]) == int(theirs.num_batches_tracked) == 4
    ours.eval()
    theirs.eval()
    x = rng.normal(size=shape).astype(np.float32)
    want = np.moveaxis(theirs(torch.tensor(_torch_layout(x))).detach().numpy(), 1, -1)
    np.testing.assert_allclose(ours(jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)


def test_batchnorm_is_an_nnx_batchnorm_and_trains_in_a_jitted_step():
    bn = norm.BatchNorm2d(3)
    assert isinstance(bn, nnx.BatchNorm)
    assert {k for k, _ in nnx.state(bn, nnx.Param).items()} == {"scale", "bias"}
    graphdef, params, rest = nnx.split(bn, nnx.Param, ...)

    @jax.jit
    def step(params, rest, x):
        def loss(p):
            m = nnx.merge(graphdef, p, rest, copy=True)
            return jnp.sum(m(x) ** 2), nnx.state(m, nnx.BatchStat)

        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return stats, grads

    stats, grads = step(params, rest, jnp.ones((2, 3, 3, 3)) * jnp.arange(3.0))
    assert int(stats["num_batches_tracked"][...]) == 1
    assert grads["scale"][...].shape == (3,)


def test_batchnorm_errors():
    with pytest.raises(ValueError, match=r"expects input of shape \(N, H, W, C\)"):
        norm.BatchNorm2d(3)(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="got 4 channels on the last axis"):
        norm.BatchNorm1d(3)(jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\]"):
        norm.BatchNorm1d(3, momentum=0.99 + 1)
    with pytest.raises(ValueError, match="num_features"):
        norm.BatchNorm1d(0)


def test_layernorm_golden_and_errors():
    ln = norm.LayerNorm(2, eps=1e-12)
    np.testing.assert_allclose(ln(jnp.array([[1.0, 3.0], [0.0, -4.0]])), [[-1.0, 1.0], [1.0, -1.0]], rtol=1e-5)
    with pytest.raises(ValueError, match=r"needs inputs ending in that shape"):
        norm.LayerNorm((3, 4))(jnp.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="positive ints"):
        norm.LayerNorm((0,))


@pytest.mark.parametrize("normalized_shape,kwargs", [((100, 200), {}), ((3, 100, 200), {}), (200, dict(bias=False)),
                                                     ((100, 200), dict(elementwise_affine=False))])
def test_layernorm_matches_torch_book_example(normalized_shape, kwargs):
    # Géron, ch. 11, Layer Normalization: inputs (32, 3, 100, 200) in PyTorch; 4 images suffice here
    torch = pytest.importorskip("torch")
    x = np.random.RandomState(2).normal(size=(4, 3, 100, 200)).astype(np.float32) * 2 + 1
    ours = norm.LayerNorm(normalized_shape, **kwargs)
    theirs = torch.nn.LayerNorm(normalized_shape, **kwargs)
    if ours.elementwise_affine:
        w = np.random.RandomState(3).normal(size=ours.normalized_shape).astype(np.float32)
        ours.scale[...] = jnp.asarray(w)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
    np.testing.assert_allclose(ours(jnp.asarray(x)), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_training_gradients_match_torch(affine):
    # The training-mode gradient is written out by hand (two passes); torch's autograd is the reference
    # for x, weight and bias, and the running statistics after the step.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 4, 3)).astype(np.float32) * 3 + 1  # NHWC
    g = rng.standard_normal(x.shape).astype(np.float32)
    tb = torch.nn.BatchNorm2d(3, affine=affine)
    if affine:
        with torch.no_grad():
            tb.weight.copy_(torch.tensor([0.5, -2.0, 1.5]))
            tb.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    (tb(xt) * torch.tensor(np.moveaxis(g, -1, 1))).sum().backward()

    jb = norm.BatchNorm2d(3, affine=affine)
    if affine:
        jb.scale[...] = jnp.array([0.5, -2.0, 1.5])
        jb.bias[...] = jnp.array([0.1, 0.2, -0.3])
    graphdef, params, rest = nnx.split(jb, nnx.Param, ...)

    def loss(p, x):
        m = nnx.merge(graphdef, p, rest, copy=True)
        return jnp.sum(m(x) * g), nnx.state(m, nnx.BatchStat)

    (_, stats), (gp, gx) = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(params, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(gx), np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-5)
    if affine:
        np.testing.assert_allclose(np.asarray(gp["scale"][...]), tb.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(gp["bias"][...]), tb.bias.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["mean"][...]), tb.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats["var"][...]), tb.running_var.numpy(), rtol=1e-5, atol=1e-6)


def test_batch_norm_refuses_one_value_per_channel_when_training():
    """A training batch of one row has variance 0: the output was all zeros and every step pulled the running
    variance towards 0. One line now, as PyTorch raises; eval mode and two rows still run."""
    bn = norm.BatchNorm1d(3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"expects more than 1 value per channel when training, got input of "
                                         r"shape \(1, 3\)"):
        bn(jnp.ones((1, 3)))
    np.testing.assert_array_equal(np.asarray(bn.var[...]), 1.0)  # the statistics were left alone
    assert bn(jnp.arange(6.0).reshape(2, 3)).shape == (2, 3)
    bn.eval()
    assert bn(jnp.ones((1, 3))).shape == (1, 3)
