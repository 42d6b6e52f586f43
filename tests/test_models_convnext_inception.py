"""ConvNeXt and Inception-v3 against PyTorch reference modules written here with torchvision's architecture and
names (torchvision itself is not needed): a random torch state dict loads strictly into dlcore's model and the
eval-mode outputs agree; the parameter counts are torchvision's published ones; StochasticDepth's row mode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import weights
from dlcore.models import count_params, create
from dlcore.models.inception_v3 import InceptionOutputs, inception_v3_loss
from dlcore.nn import StochasticDepth
from one_line import raises_one_line

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional


@functools.lru_cache(maxsize=None)
def _abstract(name, aux_logits=True):
    """(graphdef, state of shapes) of model `name`, built once per session without weights."""
    kwargs = {} if aux_logits else {"aux_logits": False}
    return nnx.split(nnx.eval_shape(lambda: create(name, **kwargs)))


# ------------------------------------------------------------------------------------------------
# parameter counts: torchvision's published figures (its weights' meta["num_params"])
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, aux_logits, expected", [
    ("convnext_tiny", True, 28_589_128),
    ("convnext_base", True, 88_591_464),
    ("inception_v3", True, 27_161_264),
    ("inception_v3", False, 23_834_568),
])
def test_parameter_counts_are_torchvisions(name, aux_logits, expected):
    assert count_params(nnx.merge(*_abstract(name, aux_logits))) == expected


def test_stochastic_depth_rates_rise_linearly():
    # torchvision: block i of the n = 18 blocks of ConvNeXt-T drops with 0.1 * i / 17
    model = nnx.merge(*_abstract("convnext_tiny"))
    stages = [model.features[i] for i in (1, 3, 5, 7)]
    rates = [b.stochastic_depth.p for s in stages for b in s]
    assert len(rates) == 18
    np.testing.assert_allclose(rates, [0.1 * i / 17 for i in range(18)], rtol=1e-12)
    base = nnx.merge(*_abstract("convnext_base"))
    assert base.features[7][2].stochastic_depth.p == pytest.approx(0.5)   # the last of 36 blocks


# ------------------------------------------------------------------------------------------------
# StochasticDepth ("row" mode)
# ------------------------------------------------------------------------------------------------

def test_stochastic_depth_drops_whole_samples_and_rescales():
    layer = StochasticDepth(0.25, "row", rngs=nnx.Rngs(dropout=1))
    x = jnp.ones((4000, 2, 3, 5))
    y = np.asarray(layer(x))
    per_sample = y.reshape(4000, -1)
    assert np.all(per_sample == per_sample[:, :1])                  # one fate per sample
    assert set(np.unique(per_sample)) <= {0.0, np.float32(1 / 0.75)}            # dropped, or kept and divided by 1 - p
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03        # about p of them dropped (sd 0.007)
    batch = StochasticDepth(0.5, "batch", rngs=nnx.Rngs(dropout=0))(x)
    assert np.unique(np.asarray(batch)).size == 1                   # the whole batch shares one draw
    layer.eval()
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(StochasticDepth(1.0, rngs=nnx.Rngs(0))(x)), 0.0)


def test_stochastic_depth_bad_input():
    raises_one_line(lambda: StochasticDepth(1.5), "p")
    raises_one_line(lambda: StochasticDepth(0.1, "col"), "mode")
    raises_one_line(lambda: StochasticDepth(0.1)(jnp.ones((2, 3))), "rngs")


# ------------------------------------------------------------------------------------------------
# torch references: torchvision's architectures, written out with its attribute names
# ------------------------------------------------------------------------------------------------


class _Permute(tnn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class _LayerNorm2d(tnn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _CNBlock(tnn.Module):
    def __init__(self, dim):
        super().__init__()
        self.block = tnn.Sequential(
            tnn.Conv2d(dim, dim, 7, padding=3, groups=dim), _Permute(0, 2, 3, 1), tnn.LayerNorm(dim, eps=1e-6),
            tnn.Linear(dim, 4 * dim), tnn.GELU(), tnn.Linear(4 * dim, dim), _Permute(0, 3, 1, 2))
        self.layer_scale = tnn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x):
        return x + self.layer_scale * self.block(x)      # stochastic depth is the identity in eval mode


class _ConvNeXt(tnn.Module):
    def __init__(self, setting, num_classes=1000):
        super().__init__()
        layers = [tnn.Sequential(tnn.Conv2d(3, setting[0][0], 4, 4), _LayerNorm2d(setting[0][0], eps=1e-6))]
        for cin, cout, n in setting:
            layers.append(tnn.Sequential(*[_CNBlock(cin) for _ in range(n)]))
            if cout is not None:
                layers.append(tnn.Sequential(_LayerNorm2d(cin, eps=1e-6), tnn.Conv2d(cin, cout, 2, 2)))
        self.features = tnn.Sequential(*layers)
        last = setting[-1][0]
        self.classifier = tnn.Sequential(_LayerNorm2d(last, eps=1e-6), tnn.Flatten(1), tnn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1))


class _Conv(tnn.Module):                                  # torchvision's inception BasicConv2d
    def __init__(self, cin, cout, k, s=1, p=0):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    return F.avg_pool2d(x, 3, 1, 1)


class _A(tnn.Module):
    def __init__(self, cin, pool):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, p=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, p=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class _B(tnn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, 2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, 2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class _C(tnn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = _Conv(cin, c7, 1), _Conv(c7, c7, (1, 7), p=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), p=(3, 0))
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _Conv(cin, c7, 1), _Conv(c7, c7, (7, 1), p=(3, 0))
        self.branch7x7dbl_3, self.branch7x7dbl_4 = _Conv(c7, c7, (1, 7), p=(0, 3)), _Conv(c7, c7, (7, 1), p=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), p=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        d = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                          self.branch_pool(_avg3(x))], 1)


class _D(tnn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, 2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _Conv(cin, 192, 1), _Conv(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _Conv(192, 192, (7, 1), p=(3, 0)), _Conv(192, 192, 3, 2)

    def forward(self, x):
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class _E(tnn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _Conv(384, 384, (1, 3), p=(0, 1)), _Conv(384, 384, (3, 1), p=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 448, 1), _Conv(448, 384, 3, p=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), p=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), p=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b, d = self.branch3x3_1(x), self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b), self.branch3x3_2b(b), self.branch3x3dbl_3a(d),
                          self.branch3x3dbl_3b(d), self.branch_pool(_avg3(x))], 1)


class _Aux(tnn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.conv0, self.conv1 = _Conv(cin, 128, 1), _Conv(128, 768, 5)
        self.fc = tnn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, 3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Inception3(tnn.Module):
    def __init__(self, num_classes=1000, transform_input=False):
        super().__init__()
        self.transform_input = transform_input
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _Conv(3, 32, 3, 2), _Conv(32, 32, 3)
        self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = _Conv(32, 64, 3, p=1), _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        self.Mixed_6a = _B(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = _C(768, 128), _C(768, 160), _C(768, 160), \
            _C(768, 192)
        self.AuxLogits = _Aux(768, num_classes)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = _D(768), _E(1280), _E(2048)
        self.fc = tnn.Linear(2048, num_classes)

    def forward(self, x):                                  # eval mode: no auxiliary output, dropout off
        if self.transform_input:
            x = torch.cat([x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                           x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                           x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], 1)
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, 2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _randomise(model, seed):
    """A state dict whose every tensor is random (layer scales, norms and statistics far from their init)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        elif k.endswith(("running_var", "layer_scale")) or (v.ndim == 1 and k.endswith("weight")):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)                # variances, scales: U(0.5, 1.5)
        elif v.ndim == 1:
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)              # biases, running means
        else:                                                            # He-scaled weights keep O(1) maps
            fan_in = v[0].numel()
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5
    model.load_state_dict(sd)
    return sd


def _blank(name):
    """Model `name` with zeros for weights, built without drawing them (a state dict replaces them all)."""
    graphdef, state = _abstract(name)

    def fill(s):
        if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)                                     # the dropout stream's key
        return jnp.zeros(s.shape, s.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


@nnx.jit
def _forward(model, x):
    return model(x)


def _compare(ours, theirs):
    theirs = theirs.detach().numpy()
    assert np.abs(theirs).max() > 1e-2                                   # not a trivially small output
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_convnext_tiny_matches_torch():
    from dlcore.models.convnext import _TINY

    ref = _ConvNeXt(_TINY).eval()
    sd = _randomise(ref, 0)
    model = _blank("convnext_tiny")
    weights.load_state_dict(model, sd)                                    # strict: every name is torchvision's
    model.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x))
    _compare(_forward(model, jnp.asarray(x.transpose(0, 2, 3, 1))), expected)
    raises_one_line(lambda: model(jnp.zeros((1, 3, 32, 32))), "NCHW")
    raises_one_line(lambda: model(jnp.zeros((1, 31, 31, 3))), "32x32")


@pytest.fixture(scope="module")
def inception_pair():
    ref = _Inception3().eval()
    sd = _randomise(ref, 1)
    model = _blank("inception_v3")
    weights.load_state_dict(model, sd)
    model.eval()
    return ref, model


def test_inception_v3_matches_torch(inception_pair):
    ref, model = inception_pair
    x = np.random.default_rng(1).normal(size=(2, 3, 75, 75)).astype(np.float32)   # torchvision's minimum size
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    with torch.no_grad():
        expected = ref(torch.from_numpy(x))
        ref.transform_input = True
        expected_t = ref(torch.from_numpy(x))
        ref.transform_input = False
    _compare(_forward(model, xj), expected)
    model.transform_input = True
    try:
        _compare(_forward(model, xj), expected_t)
    finally:
        model.transform_input = False
    # the auxiliary head on a 17x17 Mixed_6e map
    h = np.random.default_rng(2).normal(size=(2, 768, 17, 17)).astype(np.float32)
    with torch.no_grad():
        expected_aux = ref.AuxLogits(torch.from_numpy(h))
    _compare(model.AuxLogits(jnp.asarray(h.transpose(0, 2, 3, 1))), expected_aux)


def test_inception_v3_training_outputs_and_errors(inception_pair):
    _, model = inception_pair
    model.train()
    try:
        out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32))
        assert isinstance(out, InceptionOutputs)
        assert out.logits.shape == out.aux_logits.shape == (2, 1000)
        raises_one_line(lambda: model(jnp.zeros((1, 298, 298, 3))), "299x299", "model.eval()")
    finally:
        model.eval()
    raises_one_line(lambda: model(jnp.zeros((1, 74, 74, 3))), "75x75")
    # the loss: main + 0.4 * auxiliary, by hand
    ce = lambda logits, y: -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]  # noqa: E731
    logits, aux = jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 1.0]])
    got = inception_v3_loss(ce)(InceptionOutputs(logits, aux), jnp.array([0]))
    want = np.log1p(np.exp(-2.0)) + 0.4 * np.log1p(np.exp(1.0))
    np.testing.assert_allclose(np.asarray(got), [want], rtol=1e-6)
