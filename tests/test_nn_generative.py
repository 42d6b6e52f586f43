"""The layers and losses of the generative models (DCGAN, style transfer, CycleGAN): PyTorch parity.

Outputs and gradients (input and parameter gradients under a random cotangent) match torch to 1e-5 for
instance norm (train and eval, affine or not, tracked or not), every interpolation mode, the reflection and
replication pads and ConvTranspose2d's output_padding; the GAN and style-transfer losses match torch's
BCEWithLogits / MSELoss and a hand computation. Bad input is one line naming what is wrong.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore.nn as dnn
from dlcore import losses, weights
from one_line import raises_one_line

RTOL = ATOL = 1e-5


def _nchw(x):
    """channel-last (N, *spatial, C) -> torch's (N, C, *spatial)."""
    return np.moveaxis(np.asarray(x), -1, 1)


def _nhwc(x):
    return np.moveaxis(np.asarray(x), 1, -1)


def _close(a, b, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL, err_msg=what)


def _parity(fn_j, fn_t, x, seed=1):
    """Outputs and input gradients (under one random cotangent) of `fn_j` (channel-last) and `fn_t` (torch)."""
    torch = pytest.importorskip("torch")
    y_shape = jax.eval_shape(fn_j, jnp.asarray(x)).shape
    g = np.random.default_rng(seed).standard_normal(y_shape).astype(np.float32)
    # one compilation per case: faster than eager mode compiling every operation of the backward pass
    y, gx = jax.jit(lambda xj, gj: (lambda out: (out[0], out[1](gj)[0]))(jax.vjp(fn_j, xj)))(jnp.asarray(x),
                                                                                          jnp.asarray(g))
    xt = torch.from_numpy(_nchw(x).copy()).requires_grad_(True)
    yt = fn_t(xt)
    yt.backward(torch.from_numpy(_nchw(g).copy()))
    _close(y, _nhwc(yt.detach().numpy()), "output")
    _close(gx, _nhwc(xt.grad.numpy()), "input gradient")


def _module_parity(j, t, x, seed=1):
    """`_parity` for a dlcore module and a torch module holding the same state dict, plus the parameter
    gradients, compared in torch's layout."""
    torch = pytest.importorskip("torch")
    gd, params, rest = nnx.split(j, nnx.Param, ...)

    @jax.jit
    def run(xj, p, r, gj):
        y, vjp = jax.vjp(lambda xx, pp: nnx.merge(gd, pp, r, copy=True)(xx), xj, p)
        return y, *vjp(gj)

    y_shape = jax.eval_shape(lambda xj: nnx.merge(gd, params, rest, copy=True)(xj), jnp.asarray(x)).shape
    g = np.random.default_rng(seed).standard_normal(y_shape).astype(np.float32)
    y, gx, gp = run(jnp.asarray(x), params, rest, jnp.asarray(g))
    t.zero_grad()
    xt = torch.from_numpy(_nchw(x).copy()).requires_grad_(True)
    yt = t(xt)
    yt.backward(torch.from_numpy(_nchw(g).copy()))
    _close(y, _nhwc(yt.detach().numpy()), "output")
    _close(gx, _nhwc(xt.grad.numpy()), "input gradient")
    grads = weights.state_dict(nnx.merge(gd, gp, rest, copy=True))             # gradients in torch's layout
    for k, p in t.named_parameters():
        _close(grads[k], p.grad.numpy(), f"gradient of {k}")


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2 + 0.5


# ---------------------------------------------------------------------------------------------------------------
# InstanceNorm


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("track", [False, True])
def test_instance_norm2d_matches_torch_in_train_and_eval(affine, track):
    torch = pytest.importorskip("torch")
    x = _x((2, 5, 7, 3))
    j = dnn.InstanceNorm2d(3, momentum=0.3, affine=affine, track_running_stats=track)
    t = torch.nn.InstanceNorm2d(3, momentum=0.3, affine=affine, track_running_stats=track)
    rng = np.random.default_rng(2)
    sd = {k: rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if v.dtype.kind == "f" else v
          for k, v in weights.state_dict(j).items()}
    t.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    weights.load_state_dict(j, sd)
    assert sorted(weights.torch_keys(j)) == sorted(t.state_dict())

    for mode in ("train", "eval"):
        getattr(j, mode)()
        getattr(t, mode)()
        before = weights.state_dict(j)
        _module_parity(j, t, x)                                      # torch's t has now seen x once
        j(jnp.asarray(x))
        for k, v in weights.state_dict(j).items():                   # running statistics as torch's
            _close(v, t.state_dict()[k].numpy(), f"{mode}: {k}")
            if mode == "eval":
                np.testing.assert_array_equal(v, before[k], f"eval changed {k}")


def test_instance_norm1d_matches_torch_unbatched_and_batched():
    torch = pytest.importorskip("torch")
    x = _x((2, 6, 3))
    j = dnn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    t = torch.nn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    _close(j(jnp.asarray(x)), _nhwc(t(torch.from_numpy(_nchw(x).copy())).detach().numpy()))
    _close(j.running_var[...], t.running_var.numpy())
    j.eval()
    t.eval()
    _close(j(jnp.asarray(x[0])), t(torch.from_numpy(x[0].T.copy())).detach().numpy().T)


def test_instance_norm_momentum_none_keeps_running_stats_as_torch():
    j = dnn.InstanceNorm2d(3, momentum=None, track_running_stats=True)
    j(jnp.asarray(_x((2, 5, 7, 3))))
    np.testing.assert_array_equal(j.running_mean[...], 0.0)
    np.testing.assert_array_equal(j.running_var[...], 1.0)
    assert int(j.num_batches_tracked[...]) == 0


def test_instance_norm_bad_input_is_one_line():
    m = dnn.InstanceNorm2d(3)
    raises_one_line(lambda: m(jnp.zeros((2, 4, 4, 5))), "InstanceNorm2d(3)", "5 channels")
    raises_one_line(lambda: m(jnp.zeros((4, 3))), "(N, H, W, C)", "(4, 3)")
    raises_one_line(lambda: m(jnp.zeros((2, 1, 1, 3))), "more than 1 spatial element")
    raises_one_line(lambda: dnn.InstanceNorm1d(0), "num_features")


# ---------------------------------------------------------------------------------------------------------------
# Padding


@pytest.mark.parametrize("name,padding", [
    ("ReflectionPad2d", 2), ("ReflectionPad2d", (3, 0, 1, 2)), ("ReplicationPad2d", (1, 4, 0, 2)),
    ("ZeroPad2d", (1, 2, 3, 0)), ("ReflectionPad1d", (2, 3)), ("ReplicationPad1d", 3),
])
def test_pads_match_torch(name, padding):
    torch = pytest.importorskip("torch")
    nd = int(name[-2])
    x = _x((2, 5, 7, 3) if nd == 2 else (2, 6, 3))
    _parity(getattr(dnn, name)(padding), getattr(torch.nn, name)(padding), x)


def test_constant_pad_crops_with_negative_padding_as_torch():
    torch = pytest.importorskip("torch")
    x = _x((2, 5, 7, 3))
    _parity(dnn.ConstantPad2d((-1, 2, 1, -2), 0.5), torch.nn.ConstantPad2d((-1, 2, 1, -2), 0.5), x)


def test_reflection_pad_golden_and_unbatched():
    row = jnp.asarray([1.0, 2.0, 3.0])[:, None]                      # (L, C) = (3, 1)
    np.testing.assert_array_equal(dnn.ReflectionPad1d((2, 1))(row)[:, 0], [3, 2, 1, 2, 3, 2])
    np.testing.assert_array_equal(dnn.ReplicationPad1d((2, 1))(row)[:, 0], [1, 1, 1, 2, 3, 3])
    assert dnn.ReflectionPad2d((1, 2, 3, 0))(jnp.zeros((4, 5, 2))).shape == (7, 8, 2)


def test_pad_bad_input_is_one_line():
    raises_one_line(lambda: dnn.ReflectionPad2d(4)(jnp.zeros((1, 4, 8, 3))), "ReflectionPad2d", "H size 4")
    raises_one_line(lambda: dnn.ReflectionPad1d((1, 5))(jnp.zeros((1, 5, 3))), "smaller than", "L size 5")
    raises_one_line(lambda: dnn.ReflectionPad2d((1, 2, 3)), "4-tuple", "(left, right, top, bottom)")
    raises_one_line(lambda: dnn.ReplicationPad2d(-1), "negative")
    raises_one_line(lambda: dnn.ZeroPad2d(1)(jnp.zeros((4,))), "(N, H, W, C)")


# ---------------------------------------------------------------------------------------------------------------
# ConvTranspose2d's output_padding


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=(2, 3), padding=1, output_padding=(1, 2))])
def test_conv_transpose2d_output_padding_matches_torch(kw):
    torch = pytest.importorskip("torch")
    j = dnn.ConvTranspose2d(4, 3, rngs=nnx.Rngs(0), **kw)
    t = torch.nn.ConvTranspose2d(4, 3, **kw)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in weights.state_dict(j).items()})
    x = _x((2, 5, 7, 4))
    _module_parity(j, t, x)
    hw = [(n - 1) * s - 2 * kw["padding"] + kw["kernel_size"] + op
          for n, s, op in zip(x.shape[1:3], kw["stride"], kw["output_padding"])]
    assert j(jnp.asarray(x)).shape == (2, *hw, 3)


# ---------------------------------------------------------------------------------------------------------------
# Upsample / interpolate

interp = jax.jit(dnn.interpolate, static_argnames=("size", "scale_factor", "mode", "align_corners"))

# input (5, 7): integer and non-integer scales (1 / scale_factor differs from in / out), a size up and down;
# chosen to share output shapes, since each new shape costs a compilation
_RESIZES = [dict(scale_factor=2), dict(scale_factor=(2.1, 2.05)), dict(scale_factor=(0.7, 0.6)), dict(size=(10, 4))]


@pytest.mark.parametrize("mode,align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True),
                                                ("bicubic", False), ("bicubic", True)])
@pytest.mark.parametrize("resize", _RESIZES, ids=lambda r: "-".join(f"{k}={v}" for k, v in r.items()))
def test_upsample_matches_torch(mode, align_corners, resize):
    torch = pytest.importorskip("torch")
    x = _x((2, 5, 7, 3))
    _parity(dnn.Upsample(mode=mode, align_corners=align_corners, **resize),
            torch.nn.Upsample(mode=mode, align_corners=align_corners, **resize), x)


@pytest.mark.parametrize("mode,shape,resize,align_corners", [
    ("nearest", (2, 6, 3), dict(scale_factor=2.5), None), ("linear", (2, 6, 3), dict(scale_factor=2.5), False),
    ("linear", (2, 6, 3), dict(size=4), True), ("nearest", (1, 3, 4, 5, 2), dict(scale_factor=1.5), None),
    ("trilinear", (1, 3, 4, 5, 2), dict(scale_factor=1.5), False), ("trilinear", (1, 3, 4, 5, 2), dict(size=(2, 6, 5)),
                                                                     True),
])
def test_interpolate_1d_and_3d_match_torch(mode, shape, resize, align_corners):
    torch = pytest.importorskip("torch")
    _parity(lambda xj: dnn.interpolate(xj, mode=mode, align_corners=align_corners, **resize),
            lambda xt: torch.nn.functional.interpolate(xt, mode=mode, align_corners=align_corners, **resize), _x(shape))


@pytest.mark.parametrize("mode,shape", [("nearest", (2, 5, 7, 3)), ("bilinear", (2, 5, 7, 3)),
                                        ("bicubic", (2, 5, 7, 3)), ("nearest", (2, 6, 3))])
def test_interpolate_unchanged_size_follows_torch_forward(mode, shape):
    # scale 1.1 keeps the size: torch's 2-D nearest and its linear modes copy, its 1-D nearest and bicubic resample
    torch = pytest.importorskip("torch")
    x = _x(shape)
    y = interp(jnp.asarray(x), scale_factor=1.1, mode=mode)
    yt = torch.nn.functional.interpolate(torch.from_numpy(_nchw(x).copy()), scale_factor=1.1, mode=mode)
    _close(y, _nhwc(yt.numpy()))


def test_interpolate_golden_values():
    row = jnp.asarray([0.0, 1.0, 2.0, 3.0])[None, :, None]            # (N, L, C) = (1, 4, 1)
    np.testing.assert_array_equal(interp(row, scale_factor=2)[0, :, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    # half-pixel centres: output 1 of 8 sits at 1.5 / 2 - 0.5 = 0.25; the last ones clamp to the edge
    _close(interp(row, scale_factor=2, mode="linear")[0, :, 0], [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3])
    _close(interp(row, size=7, mode="linear", align_corners=True)[0, :, 0], np.arange(7) / 2)
    # a = -0.75 on a step: the kernel's negative lobes over- and undershoot, as PyTorch's bicubic does
    step = jnp.asarray([0.0, 0.0, 1.0, 1.0])[None, None, :, None]     # (1, 1, 4, 1)
    y = interp(step, size=(1, 8), mode="bicubic")[0, 0, :, 0]
    t = 0.25                                                         # output 3 sits at 0.5 * 3.5 - 0.5 = 1 + 0.25
    a = -0.75
    w = [((a * u - 5 * a) * u + 8 * a) * u - 4 * a if u > 1 else ((a + 2) * u - (a + 3)) * u * u + 1
         for u in (t + 1, t, 1 - t, 2 - t)]
    _close(y[3], w[2] + w[3])
    assert float(y.min()) < 0 and float(y.max()) > 1


def test_upsampling_aliases():
    bilinear, nearest = dnn.UpsamplingBilinear2d(scale_factor=2), dnn.UpsamplingNearest2d(size=(3, 4))
    assert (bilinear.mode, bilinear.align_corners, bilinear.scale_factor) == ("bilinear", True, 2)
    assert (nearest.mode, nearest.align_corners, nearest.size) == ("nearest", None, (3, 4))
    assert jax.eval_shape(nearest, jnp.zeros((2, 5, 7, 3))).shape == (2, 3, 4, 3)


def test_interpolate_bad_input_is_one_line():
    x = jnp.zeros((1, 4, 4, 3))
    raises_one_line(lambda: dnn.Upsample(scale_factor=2, mode="bilinaer"), "unknown mode 'bilinaer'", "'bicubic'")
    raises_one_line(lambda: dnn.interpolate(x, size=8, scale_factor=2), "exactly one of size or scale_factor",
                    "both")
    raises_one_line(lambda: dnn.Upsample(), "exactly one of size or scale_factor", "neither")
    raises_one_line(lambda: dnn.Upsample(scale_factor=2, align_corners=True), "align_corners", "'nearest'")
    raises_one_line(lambda: dnn.interpolate(x, scale_factor=2, mode="linear"), "'linear'", "(N, L, C)", "(1, 4, 4, 3)")
    raises_one_line(lambda: dnn.interpolate(x, size=(2, 3, 4)), "size", "2 spatial axes")
    raises_one_line(lambda: dnn.interpolate(x, scale_factor=0.1), "greater than 0", "(0, 0)")
    raises_one_line(lambda: dnn.Upsample(scale_factor=-2), "scale_factor", "positive")


# ---------------------------------------------------------------------------------------------------------------
# Losses: GAN and style transfer

d_loss, g_loss = jax.jit(losses.gan_discriminator_loss), jax.jit(losses.gan_generator_loss)
gram, content, style = jax.jit(losses.gram_matrix), jax.jit(losses.content_loss), jax.jit(losses.style_loss)


def test_gan_losses_golden():
    # logit 0 is D = 1/2: each term is log 2; logit ln 3 is D = 3/4
    _close(g_loss(jnp.zeros((2, 1, 1, 1))), [np.log(2)] * 2)
    _close(d_loss(jnp.asarray([0.0, np.log(3)]), jnp.asarray([0.0, np.log(3)])),
           [2 * np.log(2), -np.log(0.75) - np.log(0.25)])
    _close(g_loss(jnp.asarray([np.log(3)])), [-np.log(0.75)])
    # saturated: finite loss and gradient where log(sigmoid) would give inf
    assert np.isfinite(float(g_loss(jnp.asarray([-200.0]))[0]))
    assert np.isfinite(float(jax.grad(lambda z: g_loss(z).sum())(jnp.asarray([-200.0]))[0]))


def test_gan_losses_match_torch_bce_with_logits():
    torch = pytest.importorskip("torch")
    real, fake = _x((4, 1, 1, 1), 3), _x((4, 1, 1, 1), 4)
    bce = torch.nn.BCEWithLogitsLoss()
    rt, ft = torch.from_numpy(real).requires_grad_(), torch.from_numpy(fake).requires_grad_()
    lt = bce(rt, torch.ones_like(rt)) + bce(ft, torch.zeros_like(ft))
    lt.backward()
    lj, (gr, gf) = jax.value_and_grad(lambda r, f: d_loss(r, f).mean(), (0, 1))(jnp.asarray(real), jnp.asarray(fake))
    _close(lj, lt.item())
    _close(gr, rt.grad.numpy())
    _close(gf, ft.grad.numpy())
    ft.grad = None
    lt = bce(ft, torch.ones_like(ft))                                # the non-saturating generator loss
    lt.backward()
    lj, gj = jax.value_and_grad(lambda f: g_loss(f).mean())(jnp.asarray(fake))
    _close(lj, lt.item())
    _close(gj, ft.grad.numpy())


def test_gram_matrix_golden_and_as_the_book():
    # one example, 2 x 1 positions, channels (1, 2) and (3, 4): F^T F / 2
    f = jnp.asarray([[[[1.0, 2.0]], [[3.0, 4.0]]]])                    # (1, 2, 1, 2)
    _close(gram(f), [[[(1 + 9) / 2, (2 + 12) / 2], [(2 + 12) / 2, (4 + 16) / 2]]])
    torch = pytest.importorskip("torch")
    x = _x((2, 5, 7, 3))
    t = torch.from_numpy(_nchw(x).copy())
    b, c, h, w = t.shape                                             # Subramanian's GramMatrix.forward
    feats = t.view(b, c, h * w)
    _close(gram(jnp.asarray(x)), (torch.bmm(feats, feats.transpose(1, 2)) / (h * w)).numpy())


def test_content_and_style_losses_match_torch_mse():
    torch = pytest.importorskip("torch")
    x, content_target, style_image = _x((1, 5, 7, 3), 5), _x((1, 5, 7, 3), 6), _x((1, 6, 4, 3), 7)
    target_gram = gram(jnp.asarray(style_image))
    xt = torch.from_numpy(_nchw(x).copy()).requires_grad_()
    b, c, h, w = xt.shape
    feats = xt.view(b, c, h * w)
    g_t = torch.bmm(feats, feats.transpose(1, 2)) / (h * w)
    mse = torch.nn.MSELoss()
    gram_t = torch.from_numpy(np.array(target_gram))
    lt = mse(xt, torch.from_numpy(_nchw(content_target).copy())) + 1e3 / 9 * mse(g_t, gram_t)
    lt.backward()

    def total(xj):
        return (content(xj, jnp.asarray(content_target)) + 1e3 / 9 * style(xj, target_gram[0])).mean()

    lj, gj = jax.value_and_grad(total)(jnp.asarray(x))
    _close(lj, lt.item())
    _close(gj, _nhwc(xt.grad.numpy()))
    # per example: a batch of two images against one target is each image's own loss
    two = jnp.concatenate([jnp.asarray(x), jnp.asarray(content_target)])
    _close(style(two, target_gram), [style(jnp.asarray(x), target_gram)[0], style(jnp.asarray(content_target),
                                                                                  target_gram)[0]])


def test_generative_losses_bad_input_is_one_line():
    raises_one_line(lambda: losses.gan_discriminator_loss(jnp.zeros((4, 1)), jnp.zeros((3, 1))), "real_logits",
                    "(4, 1)", "(3, 1)")
    raises_one_line(lambda: losses.gram_matrix(jnp.zeros((4, 3))), "(B, H, W, C)", "(4, 3)")
    raises_one_line(lambda: losses.style_loss(jnp.zeros((2, 4, 4, 3)), jnp.zeros((4, 4))), "target_gram", "(2, 3, 3)")
    raises_one_line(lambda: losses.content_loss(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4, 4, 5))), "target_features")
