"""The generative models of dlcore.models.gan: the books' sizes, torch parity from a random state dict
(outputs and gradients), and one-line bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import models, weights
from one_line import raises_one_line

torch = pytest.importorskip("torch")
tnn = torch.nn


# --- the books' modules, written as the books write them (NCHW) ------------------------------------

class TorchGenerator(tnn.Module):
    """Subramanian, ch. 7, Defining the generator network."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = tnn.Sequential(
            tnn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), tnn.BatchNorm2d(ngf * 8), tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 4), tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 2), tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf), tnn.ReLU(True),
            tnn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), tnn.Tanh())

    def forward(self, x):
        return self.main(x)


class TorchDiscriminator(tnn.Module):
    """Subramanian, ch. 7, Defining the discriminator network."""

    def __init__(self, nc=3, ndf=64):
        super().__init__()
        self.main = tnn.Sequential(
            tnn.Conv2d(nc, ndf, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 2), tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 4),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 8),
            tnn.LeakyReLU(0.2, inplace=True),
            tnn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), tnn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


class TorchResNetBlock(tnn.Module):
    """Stevens et al., ch. 2, 2.2.3 (the notebook's ResNetBlock)."""

    def __init__(self, dim):
        super().__init__()
        self.conv_block = tnn.Sequential(
            tnn.ReflectionPad2d(1), tnn.Conv2d(dim, dim, 3, padding=0, bias=True), tnn.InstanceNorm2d(dim),
            tnn.ReLU(True),
            tnn.ReflectionPad2d(1), tnn.Conv2d(dim, dim, 3, padding=0, bias=True), tnn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class TorchResNetGenerator(tnn.Module):
    """Stevens et al., ch. 2, 2.2.3 (the notebook's ResNetGenerator)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9):
        super().__init__()
        model = [tnn.ReflectionPad2d(3), tnn.Conv2d(input_nc, ngf, 7, padding=0, bias=True), tnn.InstanceNorm2d(ngf),
                 tnn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [tnn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                      tnn.InstanceNorm2d(ngf * mult * 2), tnn.ReLU(True)]
        model += [TorchResNetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [tnn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True),
                      tnn.InstanceNorm2d(ngf * mult // 2), tnn.ReLU(True)]
        model += [tnn.ReflectionPad2d(3), tnn.Conv2d(ngf, output_nc, 7, padding=0), tnn.Tanh()]
        self.model = tnn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


def _randomise(module, seed):
    """Every tensor of a torch module's state dict redrawn (running statistics positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                r = torch.randn(v.shape, generator=g) * 0.1
                v.copy_(r.abs() + 0.5 if k.endswith("running_var") else (r + 1 if k.endswith("weight") and v.ndim == 1
                                                                          else r))
    return module


def _nhwc(t):
    return np.ascontiguousarray(t.detach().numpy().transpose(0, 2, 3, 1))


def _parity(tmodel, jmodel, x_nchw, *, train, out_fn=lambda y: y, atol=1e-5, seed=0, zero=()):
    """Output, input gradient and weight gradients of sum(out * r) agree between torch and dlcore.

    `zero`: parameters whose exact gradient is 0 (a conv bias before a non-affine instance norm, which
    subtracts it again): both sides must be rounding noise, small beside their layer's weight gradient.
    """
    tmodel.train(train)
    tmodel.zero_grad(set_to_none=True)
    jmodel.train() if train else jmodel.eval()
    xt = torch.tensor(x_nchw, requires_grad=True)
    yt = tmodel(xt)
    r = np.random.default_rng(seed).normal(size=tuple(yt.shape)).astype(np.float32)
    (yt * torch.tensor(r)).sum().backward()
    x = x_nchw.transpose(0, 2, 3, 1) if x_nchw.ndim == 4 and x_nchw.shape[2:] != (1, 1) else \
        x_nchw.reshape(len(x_nchw), -1)
    r_j = r.transpose(0, 2, 3, 1) if r.ndim == 4 else r
    graphdef, params, rest = nnx.split(jmodel, nnx.Param, ...)

    def f(params, x, rest):
        y = out_fn(nnx.merge(graphdef, params, rest, copy=True)(x))
        return jnp.sum(y * r_j), y

    (_, y), (gp, gx) = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(params, jnp.asarray(x), rest)
    yt_np = yt.detach().numpy()
    np.testing.assert_allclose(np.asarray(y), yt_np.transpose(0, 2, 3, 1) if yt_np.ndim == 4 else yt_np,
                               atol=atol, rtol=1e-5)
    # A gradient entry sums thousands of float32 products of either sign, so its rounding error scales
    # with the largest entries, not with its own size (measured: 2e-5 on an entry of 0.05 beside
    # entries of 28 in the generator's input gradient): gradients agree to 1e-5 of their largest entry.
    gx_t = xt.grad.numpy()
    gx_t = gx_t.transpose(0, 2, 3, 1) if x_nchw.shape[2:] != (1, 1) else gx_t.reshape(len(x), -1)
    np.testing.assert_allclose(np.asarray(gx), gx_t, atol=atol * max(1.0, np.abs(gx_t).max()), rtol=1e-5)
    grads = weights.state_dict(nnx.merge(graphdef, gp, rest, copy=True))  # gradients named as torch's weights
    for k, p in tmodel.named_parameters():
        ref = p.grad.numpy()
        if k in zero:
            scale = np.abs(tmodel.get_parameter(k[:-len("bias")] + "weight").grad.numpy()).max()
            assert max(np.abs(ref).max(), np.abs(grads[k]).max()) < 1e-5 * scale, k
            continue
        np.testing.assert_allclose(grads[k], ref, atol=atol * max(1.0, np.abs(ref).max()), rtol=1e-5, err_msg=k)


# Parity runs at the books' depth with narrower layers (the books' own ngf / ndf arguments, 16 instead of
# 64): the same code paths at a quarter of the compile and run time; the full-size state dicts are
# checked to load below.

def test_dcgan_generator_matches_the_books_module_outputs_and_gradients():
    tg = _randomise(TorchGenerator(ngf=16), 0)
    g = weights.load_state_dict(models.create("dcgan_generator", ngf=16), tg.state_dict())
    z = np.random.default_rng(1).normal(size=(3, 100, 1, 1)).astype(np.float32)
    _parity(tg, g, z, train=True)


def test_dcgan_discriminator_matches_the_books_module_in_train_and_eval_mode():
    td = _randomise(TorchDiscriminator(ndf=16), 2)
    d = weights.load_state_dict(models.create("dcgan_discriminator", ndf=16), td.state_dict())
    x = np.random.default_rng(3).uniform(-1, 1, size=(2, 3, 64, 64)).astype(np.float32)
    td.eval()                                   # eval mode: the running statistics
    d.eval()
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(d(x.transpose(0, 2, 3, 1)))),
                               td(torch.tensor(x)).detach().numpy(), atol=1e-5, rtol=1e-5)
    _parity(td, d, x, train=True, out_fn=jax.nn.sigmoid)   # the book's output is the sigmoid of the logit


def test_the_books_full_size_state_dicts_load_and_the_sizes_are_the_books():
    pairs = [(TorchGenerator(), "dcgan_generator", 3_576_704), (TorchDiscriminator(), "dcgan_discriminator", 2_765_568),
             (TorchResNetGenerator(), "cyclegan_generator", 11_378_179)]
    for tmodel, name, n in pairs:
        model = weights.load_state_dict(models.create(name), tmodel.state_dict())   # strict: every tensor
        assert models.count_params(model) == sum(p.numel() for p in tmodel.parameters()) == n, name
        sd = weights.state_dict(model)
        for k, v in tmodel.state_dict().items():
            if v.dtype.is_floating_point:
                np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)
    g, d = models.create("dcgan_generator", seed=0), models.create("dcgan_discriminator", seed=0)
    k = np.asarray(g.main[3].kernel[...])        # N(0, 0.02) conv weights, BN weights N(1, 0.02), bias 0
    assert abs(k.mean()) < 1e-3 and k.std() == pytest.approx(0.02, rel=0.02)
    s = np.asarray(d.main[6].scale[...])
    assert abs(s.mean() - 1) < 5e-3 and s.std() == pytest.approx(0.02, rel=0.2)
    assert not np.asarray(d.main[6].bias[...]).any()


def test_cyclegan_generator_matches_the_books_module_outputs_and_gradients():
    tg = _randomise(TorchResNetGenerator(ngf=16, n_blocks=3), 4)
    g = weights.load_state_dict(models.create("cyclegan_generator", ngf=16, n_blocks=3), tg.state_dict())
    x = np.random.default_rng(5).uniform(0, 1, size=(1, 3, 20, 24)).astype(np.float32)
    # The residual blocks accumulate float32 rounding: with the book's nine (ngf 64), torch's own float32
    # output differs from its float64 output by 2.5e-5 (dlcore's by 3.6e-5), hence 5e-5 rather than 1e-5.
    names = [k for k, _ in tg.named_parameters()]
    before_norm = {k for k in names[:-2] if k.endswith(".bias")}  # every conv but the last feeds a norm
    _parity(tg, g, x, train=False, atol=5e-5, zero=before_norm)
    assert g(jnp.zeros((1, 20, 22, 3))).shape == (1, 20, 24, 3)   # 4 * ceil(W / 4), as torch


def test_bad_input_is_one_line():
    g = models.create("cyclegan_generator", ngf=8, n_blocks=1)
    raises_one_line(lambda: g(jnp.zeros((1, 4, 4, 3))), "cyclegan_generator", "at least 5x5", "4x4")
    raises_one_line(lambda: models.create("dcgan_discriminator")(jnp.zeros((1, 32, 32, 3))), "64x64")
    raises_one_line(lambda: models.create("dcgan_generator")(jnp.zeros((1, 64))), "(N, 100)")
    # a DCGAN generator's state dict is not a CycleGAN generator's: the first tensor it lacks is named
    raises_one_line(lambda: weights.load_state_dict(g, TorchGenerator(ngf=8).state_dict()), "model.1.weight")
