"""dlcore.nn.conv against torch: convolutions, transposed convolutions, pooling, LRN (forward and gradients)."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import nn as dnn
from dlcore import weights

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-5, 1e-5


def _nhwc(x):  # channels-first numpy -> channels-last
    return np.moveaxis(x, 1, -1)


def _nchw(x):
    return np.moveaxis(x, -1, 1)


def _check_layer(jlayer, tlayer, x_cf, rtol=RTOL, atol=ATOL):
    """Copy torch's weights in, then compare outputs, input gradients and weight gradients."""
    if any(True for _ in tlayer.parameters()):
        weights.load_state_dict(jlayer, tlayer.state_dict())
    rng = np.random.default_rng(0)
    xt = torch.tensor(x_cf, requires_grad=True)
    yt = tlayer(xt)
    g = rng.standard_normal(yt.shape).astype(np.float32)
    (yt * torch.from_numpy(g)).sum().backward()

    graphdef, params, rest = nnx.split(jlayer, nnx.Param, ...)

    def f(p, x):
        return nnx.merge(graphdef, p, rest)(x)

    yj, vjp = jax.vjp(f, params, jnp.asarray(_nhwc(x_cf)))
    np.testing.assert_allclose(np.asarray(yj), _nhwc(yt.detach().numpy()), rtol=rtol, atol=atol)
    gp, gx = vjp(jnp.asarray(_nhwc(g)))
    np.testing.assert_allclose(np.asarray(gx), _nhwc(xt.grad.numpy()), rtol=rtol, atol=atol)
    if any(True for _ in tlayer.parameters()):
        nnx.update(jlayer, gp)  # gradients in the parameters' places, to export in torch layout
        exported = weights.state_dict(jlayer)
        for name, p in tlayer.named_parameters():
            np.testing.assert_allclose(exported[name], p.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3),
    dict(kernel_size=3, padding=1, stride=2),
    dict(kernel_size=(3, 5), padding=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=4, padding="same"),        # even kernel: torch pads 1 before, 2 after
    dict(kernel_size=3, padding="valid", stride=(2, 1)),
    dict(kernel_size=3, groups=2, padding=1),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, padding_mode="replicate", bias=False),
    dict(kernel_size=3, padding=1, padding_mode="circular"),
])
def test_conv2d_matches_torch(kw):
    torch.manual_seed(0)
    _check_layer(dnn.Conv2d(4, 6, rngs=nnx.Rngs(0), **kw), torch.nn.Conv2d(4, 6, **kw), _x(2, 4, 9, 10))


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding=2, dilation=2, stride=2),
                                dict(kernel_size=5, padding="same", groups=3)])
def test_conv1d_matches_torch(kw):
    torch.manual_seed(0)
    _check_layer(dnn.Conv1d(3, 6, rngs=nnx.Rngs(0), **kw), torch.nn.Conv1d(3, 6, **kw), _x(2, 3, 17))


def test_conv3d_matches_torch():
    torch.manual_seed(0)
    _check_layer(dnn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1, rngs=nnx.Rngs(0)),
                 torch.nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1), _x(2, 2, 5, 6, 7))


def test_causal_conv1d_is_left_padded_conv():
    torch.manual_seed(0)
    tconv = torch.nn.Conv1d(3, 4, 2, dilation=4)

    class Causal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.bias = tconv.weight, tconv.bias

        def forward(self, x):
            return tconv(F.pad(x, (4, 0)))

    layer = dnn.CausalConv1d(3, 4, 2, dilation=4, rngs=nnx.Rngs(0))
    _check_layer(layer, Causal(), _x(2, 3, 12))
    # output t must not depend on inputs after t
    x = jnp.asarray(_x(1, 12, 3))
    y0 = layer(x)
    y1 = layer(x.at[:, 7:].set(100.0))
    np.testing.assert_allclose(np.asarray(y0[:, :7]), np.asarray(y1[:, :7]), rtol=1e-6)


def test_depthwise_and_separable_match_torch():
    torch.manual_seed(0)
    _check_layer(dnn.DepthwiseConv2d(4, 3, padding=1, depth_multiplier=2, rngs=nnx.Rngs(0)),
                 torch.nn.Conv2d(4, 8, 3, padding=1, groups=4), _x(2, 4, 8, 8))

    class TorchSeparable(torch.nn.Module):  # Géron's module (ch. 12, Xception), with dlcore's child names
        def __init__(self):
            super().__init__()
            self.depthwise = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
            self.pointwise = torch.nn.Conv2d(4, 7, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    sep = dnn.SeparableConv2d(4, 7, 3, 2, 1, rngs=nnx.Rngs(0))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(sep, nnx.Param))) == 4 * 9 + 4 + 4 * 7 + 7
    _check_layer(sep, TorchSeparable(), _x(2, 4, 9, 9))


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3),
    dict(kernel_size=4, stride=2, padding=1),                    # DCGAN's upsampling
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=3, stride=3, padding=2, dilation=2, groups=2),
    dict(kernel_size=2, stride=2, padding=2, bias=False),  # padding beyond d*(k-1): output cropped
])
def test_conv_transpose2d_matches_torch(kw):
    torch.manual_seed(0)
    _check_layer(dnn.ConvTranspose2d(4, 6, rngs=nnx.Rngs(0), **kw), torch.nn.ConvTranspose2d(4, 6, **kw),
                 _x(2, 4, 5, 6))


def test_conv_transpose1d_matches_torch():
    torch.manual_seed(0)
    _check_layer(dnn.ConvTranspose1d(3, 2, 5, stride=2, padding=3, rngs=nnx.Rngs(0)),
                 torch.nn.ConvTranspose1d(3, 2, 5, stride=2, padding=3), _x(2, 3, 7))


def test_conv_default_init_is_torch_uniform():
    conv = dnn.Conv2d(8, 16, 3, groups=2, rngs=nnx.Rngs(0))
    bound = 1 / np.sqrt(4 * 9)
    k = np.asarray(conv.kernel[...])
    assert k.shape == (3, 3, 4, 16)
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.9 * bound
    tconv = dnn.ConvTranspose2d(8, 6, 4, rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(tconv.kernel[...])).max() <= 1 / np.sqrt(6 * 16)


@pytest.mark.parametrize("cls,kw", [
    ("MaxPool2d", dict(kernel_size=2)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("MaxPool2d", dict(kernel_size=(2, 3), stride=1, dilation=2)),
    ("AvgPool2d", dict(kernel_size=2)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("AvgPool2d", dict(kernel_size=2, divisor_override=3)),
])
def test_pool2d_matches_torch(cls, kw):
    _check_layer(getattr(dnn, cls)(**kw), getattr(torch.nn, cls)(**kw), _x(2, 3, 9, 8))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=1, dilation=2)])
def test_max_pool_gradient_of_tied_windows_goes_to_the_first_maximum_as_torch(kw):
    # Whole windows of equal values (ReLU's zeros, small integers): torch sends each window's gradient to
    # its first maximum; splitting it, or sending it to another, would differ here.
    x = np.maximum(np.random.default_rng(1).integers(-2, 3, (2, 3, 9, 8)), 0).astype(np.float32)
    _check_layer(dnn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw), x)


def test_pool1d_and_3d_match_torch():
    _check_layer(dnn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1), _x(2, 3, 10))
    _check_layer(dnn.AvgPool1d(3, 2, 1, ceil_mode=True), torch.nn.AvgPool1d(3, 2, 1, ceil_mode=True), _x(2, 3, 10))
    _check_layer(dnn.MaxPool3d(2), torch.nn.MaxPool3d(2), _x(1, 2, 4, 5, 6))
    _check_layer(dnn.AvgPool3d(2, 1), torch.nn.AvgPool3d(2, 1), _x(1, 2, 4, 5, 6))


@pytest.mark.parametrize("out", [1, 3, (5, 2), 7, (None, 4)])
def test_adaptive_pools_match_torch(out):
    x = _x(2, 3, 10, 8)
    _check_layer(dnn.AdaptiveAvgPool2d(out), torch.nn.AdaptiveAvgPool2d(out), x)
    _check_layer(dnn.AdaptiveMaxPool2d(out), torch.nn.AdaptiveMaxPool2d(out), x)


def test_global_pools_and_same_pooling():
    x = _x(2, 7, 6, 3)
    np.testing.assert_allclose(np.asarray(dnn.GlobalAvgPool2d()(jnp.asarray(x))), x.mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dnn.global_max_pool2d(jnp.asarray(x), keepdims=True)),
                               x.max((1, 2), keepdims=True))
    # Keras 'same' pooling: output ceil(H/s); padded cells never win a max nor count in a mean
    y = dnn.max_pool2d(jnp.asarray(x), 3, 2, padding="same")
    assert y.shape == (2, 4, 3, 3)
    ones = jnp.ones((1, 5, 5, 1))
    np.testing.assert_allclose(np.asarray(dnn.avg_pool2d(ones, 2, 2, padding="same")), 1.0)


def test_depth_max_pool_matches_003():
    x = _x(2, 6, 5, 4)

    class DepthPool(torch.nn.Module):  # Géron, ch. 12, Implementing Pooling Layers with PyTorch
        def forward(self, inputs):
            batch, channels, height, width = inputs.shape
            z = inputs.view(batch, channels, height * width).permute(0, 2, 1)
            z = F.max_pool1d(z, kernel_size=3, stride=3)
            return z.permute(0, 2, 1).view(batch, -1, height, width)

    _check_layer(dnn.DepthMaxPool(3), DepthPool(), x)


@pytest.mark.parametrize("size", [5, 4, 1])
def test_local_response_norm_matches_torch(size):
    _check_layer(dnn.LocalResponseNorm(size, 1e-2, 0.75, 2.0), torch.nn.LocalResponseNorm(size, 1e-2, 0.75, 2.0),
                 _x(2, 7, 4, 3))


def test_dropout2d_drops_whole_channels():
    layer = dnn.Dropout2d(0.5, rngs=nnx.Rngs(0))
    y = np.asarray(layer(jnp.ones((8, 5, 5, 16))))
    per_channel = y.reshape(8, 25, 16)
    assert np.all(per_channel.min(1) == per_channel.max(1))   # each (example, channel) all 0 or all 2
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    layer.eval()
    np.testing.assert_array_equal(np.asarray(layer(jnp.ones((2, 3, 3, 4)))), 1.0)


def test_bad_inputs_name_the_layer():
    conv = dnn.Conv2d(3, 8, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*expects 3 input channels"):
        conv(jnp.ones((1, 8, 8, 4)))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*too small"):
        conv(jnp.ones((1, 2, 8, 3)))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*too small"):
        dnn.MaxPool2d(2)(jnp.ones((1, 1, 1, 3)))
    with pytest.raises(ValueError, match="channels-last"):
        conv(jnp.ones((8, 3)))
    with pytest.raises(ValueError, match="divisible by groups"):
        dnn.Conv2d(3, 8, 3, groups=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        dnn.Conv2d(3, 8, 3, padding="full", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ConvTranspose2d.*expects 4 input channels"):
        dnn.ConvTranspose2d(4, 2, 3, rngs=nnx.Rngs(0))(jnp.ones((1, 3, 3, 2)))
    with pytest.raises(ValueError, match="Linear\\(5, 2\\)"):
        dnn.Linear(5, 2, rngs=nnx.Rngs(0))(jnp.ones((3, 4)))


def test_unbatched_input_and_jit():
    conv = dnn.Conv2d(3, 4, 3, padding="same", rngs=nnx.Rngs(0))
    x = jnp.asarray(_x(5, 6, 3))
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(conv(x[None])[0]), rtol=1e-6)
    y = nnx.jit(lambda m, x: m(x))(conv, x[None])
    assert y.shape == (1, 5, 6, 4)


def test_pooling_gradients_under_jit():
    """reduce_window is differentiable only with a recognised (constant) init value: check under jit."""
    x = jnp.asarray(_x(2, 8, 8, 4))
    layers = [dnn.MaxPool2d(3, 2, 1), dnn.MaxPool2d(2, dilation=2), dnn.AvgPool2d(3, 2, 1, ceil_mode=True),
              dnn.AdaptiveMaxPool2d(3), dnn.DepthMaxPool(2), dnn.LocalResponseNorm(3)]
    for layer in layers:
        g = jax.jit(jax.grad(lambda x: jnp.sum(layer(x) ** 2)))(x)
        g_eager = jax.grad(lambda x: jnp.sum(layer(x) ** 2))(x)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_eager), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,kernel,stride,pads,kept", [
    ((1, 1), (3, 3), (1, 1), [(1, 1), (1, 1)], 1),  # a 1 x 1 map: the centre tap alone
    ((2, 2), (3, 3), (2, 2), [(1, 1), (1, 1)], 4),  # one output, its window half in the padding
    ((2, 2), (3, 3), (1, 1), [(1, 1), (1, 1)], 9),  # every tap meets data at some output
    ((3, 1), (5, 3), (1, 1), [(4, 0), (1, 1)], 3),  # rows 0-1 of the kernel never reach the 3 real rows
])
def test_im2col_leaves_out_taps_that_meet_only_padding(size, kernel, stride, pads, kept):
    # A tap whose slice lies in the padding at every output position adds zeros: im2col leaves its patch and
    # kernel rows out (ResNet-18's 1 x 1 maps: a ninth of the product), with XLA's results and gradients.
    from dlcore.nn import conv_tuning as ct

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((5, *size, 6)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((*kernel, 6, 7)), jnp.float32)

    def im2col(x, k):
        return ct.im2col_conv(x, k, stride, pads, (1, 1))

    def xla(x, k):
        return jax.lax.conv_general_dilated(x, k, stride, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    dots = [e for e in jax.make_jaxpr(im2col)(x, k).jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1 and dots[0].invars[0].aval.shape[-1] == kept * 6
    for a, b in zip(jax.tree.leaves(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(xla(x, k))), (0, 1))(x, k)),
                    jax.tree.leaves(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(im2col(x, k))), (0, 1))(x, k))):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_im2col_gathers_its_patches_one_axis_at_a_time():
    # A 5 x 5 kernel's patches are 5 slices along the width and 5 along the height of those, not 25: in a
    # network XLA recomputes the input's producers (bias, pooling, ReLU) in every slice.
    from dlcore.nn import conv_tuning as ct

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 12, 12, 10)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((5, 5, 10, 20)), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda x, k: ct.im2col_conv(x, k, (1, 1), [(0, 0), (0, 0)], (1, 1)))(x, k).jaxpr
    assert sum(e.primitive.name == "slice" for e in jaxpr.eqns) == 10
    plain = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(np.asarray(ct.im2col_conv(x, k, (1, 1), [(0, 0), (0, 0)], (1, 1))),
                               np.asarray(plain), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("nd,kw", [
    (2, dict(stride=(2, 1), pads=[(1, 2), (0, 1)], dilation=(1, 2))),
    (1, dict(stride=(1,), pads=[(2, 0)], dilation=(2,))),
])
def test_every_cpu_lowering_of_a_convolution_gives_the_plain_results(nd, kw):
    # Whichever lowering the CPU tuner picks (XLA in calls of fewer rows, im2col whole or in calls, oneDNN
    # where it is installed), the forward pass and both gradients are the plain whole-batch convolution's,
    # here on 19 rows.
    from dlcore.nn import conv_tuning as ct
    from dlcore.nn import onednn

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((19, *(9,) * nd, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((*(3,) * nd, 4, 6)), jnp.float32)
    specs = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[nd]
    xla = functools.partial(jax.lax.conv_general_dilated, window_strides=kw["stride"], padding=kw["pads"],
                            rhs_dilation=kw["dilation"], dimension_numbers=specs)

    def lowered(opt):
        f = lambda x, k: ct._run(opt, x, lambda p: xla(p, k),  # noqa: E731
                                 lambda p: ct.im2col_conv(p, k, kw["stride"], kw["pads"], kw["dilation"]),
                                 lambda p: onednn.conv(p, k, kw["stride"], kw["pads"], kw["dilation"]))
        return jax.jit(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), (0, 1)))(x, k)

    options = ct.candidates(19, 1, with_onednn=onednn.available())
    assert options[0] == ("xla", 19) and ("im2col", 19) in options and ("xla", 4) in options
    assert (("onednn", 19) in options) == onednn.available()
    plain = lowered(options[0])
    for opt in options[1:]:
        for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(lowered(opt))):
            a, b = np.asarray(a), np.asarray(b)  # float32 sums in another order: to 1e-5 of the largest value
            assert a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a)), opt


@pytest.fixture
def tuner(monkeypatch, tmp_path):
    """conv_tuning with an empty memory, its cache file under tmp_path, and measuring on."""
    from dlcore.nn import conv_tuning as ct

    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    monkeypatch.setattr(ct, "MODE", "auto")
    monkeypatch.setattr(ct, "_CHOICES", {})
    monkeypatch.setattr(ct, "_LOADED", False)
    return ct


def test_the_tuner_measures_a_large_convolution_once_and_keeps_its_choice(tuner, monkeypatch, capsys):
    ct = tuner
    asked = []

    def fake_measure(options, x_shape, k_shape, dtype, lower):
        asked.append((x_shape, options))
        return (("im2col", 16),) * 3  # every pass

    monkeypatch.setattr(ct, "_measure", fake_measure)
    from dlcore.nn import onednn
    onednn.available()  # in a fresh cache folder oneDNN's kernels compile first, with a line of their own
    capsys.readouterr()
    layer = dnn.Conv2d(16, 32, 3, rngs=nnx.Rngs(0))
    big = jnp.ones((64, 26, 26, 16))  # 2 x 64*24*24*32 outputs x 3*3*16 products = 340 MFLOP: over MIN_FLOPS
    hlo = jax.jit(lambda x: layer(x)).lower(big).as_text()
    assert "stablehlo.convolution" not in hlo and hlo.count("stablehlo.dot_general") == 4  # im2col, 4 calls
    jax.jit(lambda x: layer(x) * 2).lower(big)  # the same signature: not measured again
    assert len(asked) == 1 and asked[0][0] == (64, 26, 26, 16)
    assert (("onednn", 64) in asked[0][1]) == onednn.available()  # a candidate where it is installed
    said = capsys.readouterr().err.splitlines()  # one line on stderr for the seconds of measuring
    assert said == [f"dlcore: timing the CPU lowerings of a (64, 26, 26, 16) x (3, 3, 16, 32) convolution "
                    f"(once; kept in {ct.choices_path()}; DLCORE_CONV_TUNING=off skips)"]
    small = jnp.ones((2, 12, 12, 16))  # 1.9 MFLOP, under MIN_FLOPS: one XLA call, nothing measured
    assert "stablehlo.convolution" in jax.jit(lambda x: layer(x)).lower(small).as_text() and len(asked) == 1
    saved = json.loads(ct.choices_path().read_text())
    assert list(saved[ct._machine()].values()) == [{p: ["im2col", 16] for p in ct.PASSES}]
    monkeypatch.setattr(ct, "_CHOICES", {})  # a later process: reads the file, measures nothing
    monkeypatch.setattr(ct, "_LOADED", False)
    assert "stablehlo.convolution" not in jax.jit(lambda x: layer(x) + 1).lower(big).as_text() and len(asked) == 1
    monkeypatch.setattr(ct, "MODE", "off")
    assert "stablehlo.convolution" in jax.jit(lambda x: layer(x) - 1).lower(big).as_text()
    monkeypatch.setattr(ct, "MODE", "fast")
    with pytest.raises(ValueError, match="DLCORE_CONV_TUNING .* must be 'auto' or 'off', got 'fast'"):
        layer(big)


def test_the_tuner_picks_a_measured_candidate_and_survives_a_corrupt_cache_file(tuner, monkeypatch):
    ct = tuner
    ct.choices_path().parent.mkdir(parents=True, exist_ok=True)
    ct.choices_path().write_text("{not json")
    monkeypatch.setattr(ct, "MIN_FLOPS", 0)
    layer = dnn.Conv2d(4, 8, 3, rngs=nnx.Rngs(0))
    x = jnp.asarray(_x(8, 10, 10, 4))
    y = jax.jit(lambda x: layer(x))(x)
    (plan,) = ct._CHOICES.values()
    from dlcore.nn import onednn
    assert len(plan) == 3 and all(c in ct.candidates(8, 1, with_onednn=onednn.available()) for c in plan)
    monkeypatch.setattr(ct, "MODE", "off")
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.jit(lambda x: layer(x) + 0)(x)), rtol=1e-5, atol=1e-5)
    assert json.loads(ct.choices_path().read_text())[ct._machine()]  # rewritten whole


def _conv_with_plan(ct, monkeypatch, plan, stride=(1, 1), pads=((1, 1), (0, 2))):
    """A tuned convolution of 19 rows whose passes get `plan` (as if measured so), and the plain one."""
    monkeypatch.setattr(ct, "MIN_FLOPS", 0)
    monkeypatch.setattr(ct, "_measure", lambda *a: plan)
    specs = ("NHWC", "HWIO", "NHWC")
    tuned = lambda x, k: ct.conv(x, k, stride, pads, (1, 1), 1, specs)  # noqa: E731
    plain = lambda x, k: jax.lax.conv_general_dilated(x, k, stride, pads, dimension_numbers=specs)  # noqa: E731
    return tuned, plain


@pytest.mark.parametrize("plan", [
    (("xla", 4), ("im2col", 19), ("xla", 19)),
    (("im2col", 19), ("xla", 8), ("im2col", 16)),
    (("xla", 19), ("xla", 19), ("im2col", 19)),
])
def test_a_plan_with_a_lowering_per_pass_gives_the_plain_gradients_of_every_order(tuner, monkeypatch, plan):
    ct = tuner
    tuned, plain = _conv_with_plan(ct, monkeypatch, plan)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((19, 9, 8, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 4, 6)), jnp.float32)

    def results(conv):
        loss = lambda x, k: jnp.sum(jnp.sin(conv(x, k)))  # noqa: E731
        value, grads = jax.value_and_grad(loss, (0, 1))(x, k)
        # a gradient penalty: the gradient of a gradient's norm, through both gradient passes
        penalty = jax.grad(lambda x, k: jnp.sum(jax.grad(loss, 1)(x, k) ** 2) + jnp.sum(jax.grad(loss)(x, k) ** 2),
                           (0, 1))(x, k)
        return value, grads, penalty

    want = results(plain)
    got = jax.jit(lambda x, k: results(tuned))(x, k)
    assert list(ct._CHOICES.values()) == [plan]
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    with pytest.raises(TypeError, match="forward-mode"):  # reverse mode only where the passes differ
        jax.jvp(tuned, (x, k), (x, k))


def test_a_pass_nobody_uses_is_not_computed(tuner, monkeypatch):
    # A network's first convolution: its input needs no gradient, so XLA drops that pass from the step
    # (the reason the passes are chosen apart: the lowering best for it does not slow the step).
    ct = tuner
    tuned, _ = _conv_with_plan(ct, monkeypatch, (("xla", 19), ("xla", 4), ("xla", 19)))
    x, k = jnp.ones((19, 9, 8, 4)), jnp.ones((3, 3, 4, 6))
    loss = lambda x, k: jnp.sum(tuned(x, k) ** 2)  # noqa: E731

    def convolutions(fn):
        return jax.jit(fn).lower(x, k).compile().as_text().count(" convolution(")

    assert convolutions(jax.grad(loss, 1)) == 2      # forward and kernel gradient: whole-batch calls
    assert convolutions(jax.grad(loss, (0, 1))) == 7  # and the input's gradient, in 5 calls of 4 rows


def test_choices_of_an_older_format_are_measured_again(tuner, monkeypatch):
    ct = tuner
    tuned, _ = _conv_with_plan(ct, monkeypatch, (("xla", 19), ("im2col", 19), ("xla", 19)))
    key = "(19, 9, 8, 4)|(3, 3, 4, 6)|float32|(1, 1)|((1, 1), (0, 2))|(1, 1)|1"
    ct.choices_path().parent.mkdir(parents=True, exist_ok=True)
    good = {p: ["xla", 4] for p in ct.PASSES}
    bad = {p: ["xla", "4"] for p in ct.PASSES}  # rows not an int
    ct.choices_path().write_text(json.dumps({ct._machine(): {"other|bad": bad, key: ["im2col", 16],  # old format
                                                               "other|good": good}}))
    jax.eval_shape(tuned, jnp.ones((19, 9, 8, 4)), jnp.ones((3, 3, 4, 6)))
    # the old entry and the damaged one are measured again when traced; the good one is read as it was
    assert ct._CHOICES == {key: (("xla", 19), ("im2col", 19), ("xla", 19)), "other|good": (("xla", 4),) * 3}
    saved = json.loads(ct.choices_path().read_text())[ct._machine()]
    assert saved[key] == {"forward": ["xla", 19], "input_grad": ["im2col", 19], "kernel_grad": ["xla", 19]}
    assert saved["other|good"] == good


def test_choices_measured_with_other_lowering_code_are_measured_again(tuner, monkeypatch):
    # The file's key names the lowerings' code: a choice measured with an older im2col (say) is not reused.
    ct = tuner
    tuned, _ = _conv_with_plan(ct, monkeypatch, (("xla", 19), ("im2col", 19), ("xla", 19)))
    key = "(19, 9, 8, 4)|(3, 3, 4, 6)|float32|(1, 1)|((1, 1), (0, 2))|(1, 1)|1"
    mine = ct._machine()
    assert mine.endswith(f"|lowerings {ct._lowerings()}") and len(ct._lowerings()) == 12
    older = mine.replace(ct._lowerings(), "0" * 12)
    ct.choices_path().parent.mkdir(parents=True, exist_ok=True)
    ct.choices_path().write_text(json.dumps({older: {key: {p: ["xla", 4] for p in ct.PASSES}}}))
    jax.eval_shape(tuned, jnp.ones((19, 9, 8, 4)), jnp.ones((3, 3, 4, 6)))
    assert ct._CHOICES == {key: (("xla", 19), ("im2col", 19), ("xla", 19))}  # measured, not read
    whole = json.loads(ct.choices_path().read_text())
    assert set(whole) == {older, mine}  # the older entry stays for the code that measured it
    # an installation without readable source still has a key (its choices are not told apart by code)
    monkeypatch.setattr(ct.inspect, "getsource", lambda f: (_ for _ in ()).throw(OSError("no source")))
    ct._lowerings.cache_clear()
    try:
        assert ct._machine().endswith("|lowerings unread")
    finally:
        ct._lowerings.cache_clear()


def test_the_plan_keeps_one_lowering_unless_a_pass_has_a_far_faster_one():
    from dlcore.nn import conv_tuning as ct

    xla, im2col, dnnl = ("xla", 256), ("im2col", 256), ("onednn", 256)
    options = [xla, im2col, dnnl]

    def plan(f, dx, dk):  # ms per option, in the order of `options`
        return ct._plan({"forward": dict(zip(options, f)), "input_grad": dict(zip(options, dx)),
                         "kernel_grad": dict(zip(options, dk))}, options)

    # a first layer (1 -> 10 channels, 5 x 5, 28 x 28, batch 256, as measured here): oneDNN is fastest in
    # all (7.0 ms against im2col's 8.0 x 1.15 and XLA's 18.1); its input gradient is far slower than im2col's
    assert plan((2.48, 2.90, 0.54), (8.63, 1.59, 5.50), (6.99, 3.48, 0.95)) == (dnnl, im2col, dnnl)
    # near-equal lowerings: the default, oneDNN, for all three, although XLA's plain call is a little faster
    # in all three (7% in all), or im2col in one pass
    assert plan((0.20, 0.30, 0.22), (0.30, 0.40, 0.33), (0.30, 0.40, 0.31)) == (dnnl, dnnl, dnnl)
    assert plan((0.30, 0.25, 0.34), (0.36, 0.36, 0.38), (0.39, 0.40, 0.37)) == (dnnl, dnnl, dnnl)
    # a pass far faster in XLA's own convolution (at most SPLIT of oneDNN's time) takes it only where that
    # saves XLA_MARGIN of the whole: a step holding one of XLA's convolutions cannot scan its epoch
    assert plan((0.25, 0.20, 0.18), (0.46, 0.33, 0.32), (0.17, 0.27, 0.45)) == (dnnl, dnnl, dnnl)
    assert plan((1.0, 9.0, 0.2), (1.0, 9.0, 0.2), (0.1, 9.0, 1.0)) == (dnnl, dnnl, xla)
    # another lowering replaces the default when it is at least MARGIN faster in all, XLA's own convolution
    # (which keeps a step from scanning its epoch) at least XLA_MARGIN
    assert plan((9.0, 0.7, 1.0), (9.0, 0.7, 1.0), (9.0, 0.7, 1.0)) == (im2col, im2col, im2col)
    assert plan((0.85, 9.0, 1.0), (0.85, 9.0, 1.0), (0.85, 9.0, 1.0)) == (dnnl, dnnl, dnnl)
    assert plan((0.55, 9.0, 1.0), (0.55, 9.0, 1.0), (0.55, 9.0, 1.0)) == (xla, xla, xla)
    # im2col's penalty: 10% faster alone is not faster once its in-network cost is counted
    assert plan((9.0, 0.85, 1.0), (9.0, 0.85, 1.0), (9.0, 0.85, 1.0)) == (dnnl, dnnl, dnnl)
    # without oneDNN (not installed, or not a convolution it takes) the default is XLA's plain call
    no_dnnl = [xla, im2col]
    times = {w: dict(zip(no_dnnl, (1.0, 0.95))) for w in ct.PASSES}
    assert ct._plan(times, no_dnnl) == (xla, xla, xla)
    times = {w: dict(zip(no_dnnl, (1.0, 0.7))) for w in ct.PASSES}
    assert ct._plan(times, no_dnnl) == (im2col, im2col, im2col)


def test_integer_images_into_a_convolution_are_one_line():
    """uint8 pixels into a convolution failed inside lax ("requires arguments to have the same dtypes"): one
    line now, naming the conversion, for plain and transposed convolutions."""
    for layer in (dnn.Conv2d(1, 4, 3, rngs=nnx.Rngs(0)), dnn.ConvTranspose2d(1, 4, 3, rngs=nnx.Rngs(0))):
        with pytest.raises(ValueError, match=r"expects float input, got uint8; convert images first, e\.g\. "
                                             r"dlcore\.data\.transforms\.to_float"):
            layer(np.zeros((2, 8, 8, 1), np.uint8))
