"""dlcore.weights with files and layers.

* A bad weights file (garbage, truncated, empty, missing, a directory, a non-dict, pickled objects) is one
  `WeightsError` line naming the file, with no advice to unpickle untrusted data and no chained traceback.
* Every `nnx.Module` in `dlcore.nn` with parameters round-trips through a PyTorch state dict: exported,
  loaded strictly into the matching `torch.nn` layer (same outputs), and imported back into a fresh dlcore
  layer (identical arrays). A new layer with parameters fails `test_every_layer_with_parameters_is_covered`
  until it is added to CASES below.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore.nn as dnn
from dlcore import weights
from dlcore.weights import WeightsError

RTOL, ATOL = 1e-5, 1e-6


# ------------------------------------------------------------------------------------------------
# bad files: one line naming the file
# ------------------------------------------------------------------------------------------------

def _model():
    return dnn.Linear(3, 2, rngs=nnx.Rngs(0))


def _one_line_error(path, *expected):
    m = _model()
    before = np.asarray(m.kernel[...]).copy()
    with pytest.raises(WeightsError) as info:
        weights.load(m, path)
    err = info.value
    msg = str(err)
    assert isinstance(err, ValueError)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for part in expected:
        assert part in msg, msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg, msg
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), "chained traceback"
    np.testing.assert_array_equal(np.asarray(m.kernel[...]), before)   # nothing changed
    return msg


def _real_file(tmp_path, suffix):
    path = tmp_path / f"real{suffix}"
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    else:
        pytest.importorskip("torch")
    return weights.save(dnn.Linear(40, 30, rngs=nnx.Rngs(0)), path)


SUFFIXES = [".pth", ".safetensors"]
WHAT = {".pth": "not a PyTorch checkpoint: truncated or not a zip/pickle file",
        ".safetensors": "not a safetensors file: header"}


def _needs(suffix):
    pytest.importorskip("safetensors" if suffix == ".safetensors" else "torch")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_garbage_file_is_one_line(tmp_path, suffix):
    _needs(suffix)
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    _one_line_error(path, WHAT[suffix])
    text = tmp_path / f"text{suffix}"
    text.write_text("this is not a checkpoint\n")
    _one_line_error(text, WHAT[suffix])


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_file_is_one_line(tmp_path, suffix, keep):
    real = _real_file(tmp_path, suffix)
    data = real.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    _one_line_error(path, WHAT[suffix])


def test_truncated_legacy_pth_is_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "legacy.pth"
    with open(path, "wb") as f:
        torch.save({"weight": torch.zeros(30, 40)}, f, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:300])
    _one_line_error(path, WHAT[".pth"])


@pytest.mark.parametrize("suffix", SUFFIXES + [".pt"])
def test_empty_file_is_one_line(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    _one_line_error(path, "is empty (0 bytes)")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_missing_file_is_one_line(tmp_path, suffix):
    _one_line_error(tmp_path / f"nope{suffix}", "does not exist")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_directory_is_one_line(tmp_path, suffix):
    path = tmp_path / f"dir{suffix}"
    path.mkdir()
    _one_line_error(path, "is a directory")


def test_pth_holding_no_state_dict_is_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    for name, obj, found in [("tensor.pth", torch.zeros(3), "found Tensor"),
                             ("list.pth", [torch.zeros(3)], "found list"),
                             ("number.pth", 3, "found int"),
                             ("config.pth", {"epoch": 3, "lr": 0.1}, "a dict with no tensors (first entry 'epoch': int)")]:
        torch.save(obj, tmp_path / name)
        _one_line_error(tmp_path / name, "does not hold a state dict", found)


class _Custom:                                 # pickled by reference: weights_only refuses it
    pass


def test_pth_holding_pickled_objects_is_refused_safely(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(3, 2), tmp_path / "module.pth")           # a whole model, not a state dict
    msg = _one_line_error(tmp_path / "module.pth", "holds pickled Python objects",
                          "torch.nn.modules.linear.Linear", "weights_only=True", "state_dict()")
    assert "trust" not in msg
    torch.save({"weight": torch.zeros(2, 3), "extra": _Custom()}, tmp_path / "custom.pth")
    _one_line_error(tmp_path / "custom.pth", "holds pickled Python objects", "_Custom")


def test_load_uses_weights_only(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    weights.load(_model(), weights.save(_model(), tmp_path / "w.pth"))
    assert seen.get("weights_only") is True


def test_state_dict_entry_that_is_not_a_tensor():
    sd = weights.state_dict(_model())
    sd["weight"] = "zeros"
    with pytest.raises(WeightsError, match="entry 'weight' is a str, not a tensor"):
        weights.load_state_dict(_model(), sd)
    with pytest.raises(WeightsError, match="mapping of names to tensors"):
        weights.load_state_dict(_model(), [1, 2])
    sd = weights.state_dict(_model())
    sd["weight"] = sd["weight"] * (1 + 1j)  # a complex tensor: its imaginary part was dropped with a warning
    with pytest.raises(WeightsError, match="tensor 'weight' is complex .* imaginary part would be dropped"):
        weights.load_state_dict(_model(), sd)
    with pytest.raises(ValueError, match="strict must be one of"):
        weights.load_state_dict(_model(), weights.state_dict(_model()), strict="yes")


def test_good_files_still_load(tmp_path):
    a, b = _model(), dnn.Linear(3, 2, rngs=nnx.Rngs(1))
    for suffix in SUFFIXES:
        _needs(suffix)
        weights.load(b, weights.save(a, tmp_path / f"w{suffix}"))
        np.testing.assert_array_equal(np.asarray(a.kernel[...]), np.asarray(b.kernel[...]))


# ------------------------------------------------------------------------------------------------
# LayerNorm's names: weight/bias <-> scale/bias
# ------------------------------------------------------------------------------------------------

def test_torch_linear_layernorm_sequential_loads_and_exports(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5))
    with torch.no_grad():
        t[1].weight.uniform_(0.5, 1.5)
        t[1].bias.uniform_(-1, 1)
    j = dnn.Sequential(dnn.Linear(6, 5, rngs=nnx.Rngs(0)), dnn.LayerNorm(5))
    assert weights.torch_keys(j) == {"0.weight": (5, 6), "0.bias": (5,), "1.weight": (5,), "1.bias": (5,)}
    weights.load_state_dict(j, t.state_dict())
    np.testing.assert_array_equal(np.asarray(j[1].scale[...]), t[1].weight.detach().numpy())
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(j(jnp.asarray(x))), t(torch.from_numpy(x)).detach().numpy(),
                               rtol=RTOL, atol=ATOL)
    t2 = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5))
    t2.load_state_dict({k: torch.from_numpy(v) for k, v in weights.state_dict(j).items()})  # strict
    path = weights.save(j, tmp_path / "seq.pth")
    t2.load_state_dict(torch.load(path, weights_only=True))
    j2 = dnn.Sequential(dnn.Linear(6, 5, rngs=nnx.Rngs(1)), dnn.LayerNorm(5))
    weights.load(j2, path)
    _assert_same_state(j, j2)


# ------------------------------------------------------------------------------------------------
# every dlcore.nn layer with parameters round-trips through a torch state dict
# ------------------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    cls: type | None                 # the dlcore.nn class it covers (None: an extra Flax layer)
    make: Callable                   # rngs -> dlcore layer
    torch: Callable | None = None    # torch module -> torch layer with the same state-dict keys, or None
    shape: tuple | None = None       # torch-layout input shape
    channels_first: bool = True      # move torch's axis 1 to the end for dlcore
    ints: int | None = None          # integer inputs in [0, ints) (embeddings)


def _t(name, *args, **kwargs):
    return lambda tnn: getattr(tnn, name)(*args, **kwargs)


def _torch_causal(tnn):
    class CausalConv1d(tnn.Conv1d):
        def forward(self, x):
            pad = self.dilation[0] * (self.kernel_size[0] - 1)
            return super().forward(tnn.functional.pad(x, (pad, 0)))

    return CausalConv1d(3, 4, 3, dilation=2)


def _torch_ln_cell(tnn):
    import torch

    class LayerNormRNNCell(tnn.Module):          # Geron's memory cell, from a zero state
        def __init__(self):
            super().__init__()
            self.linear, self.norm = tnn.Linear(4 + 5, 5), tnn.LayerNorm(5)

        def forward(self, x):
            return torch.tanh(self.norm(self.linear(torch.cat([x, x.new_zeros(x.shape[0], 5)], 1))))

    return LayerNormRNNCell()


def _torch_recurrence(tnn):
    import torch

    class Recurrence(tnn.Module):               # a GRUCell run over (B, T, F) by hand
        def __init__(self):
            super().__init__()
            self.cell = tnn.GRUCell(4, 5)

        def forward(self, x):
            h, out = x.new_zeros(x.shape[0], 5), []
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
                out.append(h)
            return torch.stack(out, 1)

    return Recurrence()


class _SelfAttention(nnx.Module):
    """A layer called on one input x as (x, x): attention and scores in the round-trip table."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, x):
        return self.inner(x, x, x) if isinstance(self.inner, dnn.MultiheadAttention) else self.inner(x, x)


def _torch_self_attention(kind):
    def make(tnn):
        class SelfAttention(tnn.Module):
            def __init__(self):
                super().__init__()
                if kind == "mha":
                    self.inner = tnn.MultiheadAttention(6, 2, batch_first=True)
                elif kind == "general":
                    self.inner = tnn.Module()
                    self.inner.linear = tnn.Linear(6, 6, bias=False)
                else:
                    self.inner = tnn.Module()
                    self.inner.query_proj = tnn.Linear(6, 4, bias=False)
                    self.inner.key_proj = tnn.Linear(6, 4, bias=False)
                    self.inner.v = tnn.Linear(4, 1, bias=False)

            def forward(self, x):
                if kind == "mha":
                    return self.inner(x, x, x)
                if kind == "general":
                    return x @ self.inner.linear(x).transpose(1, 2)
                q, k = self.inner.query_proj(x), self.inner.key_proj(x)
                return self.inner.v((q[:, :, None] + k[:, None]).tanh())[..., 0]

        return SelfAttention()
    return make


def _torch_mlp(tnn):
    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tnn.ModuleList([tnn.Linear(6, 5), tnn.Linear(5, 3)])

        def forward(self, x):
            return self.layers[1](tnn.functional.relu(self.layers[0](x.flatten(1))))

    return MLP()


def _torch_separable(tnn):
    class SeparableConv2d(tnn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = tnn.Conv2d(3, 6, 3, padding=1, groups=3)
            self.pointwise = tnn.Conv2d(6, 5, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    return SeparableConv2d()


def _torch_basic_conv(tnn):
    class BasicConv2d(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn = tnn.BatchNorm2d(4, eps=1e-3)

        def forward(self, x):
            return tnn.functional.relu(self.bn(self.conv(x)))

    return BasicConv2d()


def _torch_se(tnn):
    class SqueezeExcitation(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = tnn.Linear(8, 2), tnn.Linear(2, 8)

        def forward(self, x):
            s = x.mean(dim=(2, 3))
            s = self.fc2(tnn.functional.relu(self.fc1(s))).sigmoid()
            return x * s[:, :, None, None]

    return SqueezeExcitation()


def _torch_transition(tnn):
    return tnn.Sequential(OrderedDict(norm=tnn.BatchNorm2d(4), relu=tnn.ReLU(), conv=tnn.Conv2d(4, 2, 1, bias=False),
                                      pool=tnn.AvgPool2d(2, 2)))


CASES = [
    Case("Linear", dnn.Linear, lambda r: dnn.Linear(5, 4, rngs=r), _t("Linear", 5, 4), (3, 5), False),
    Case("Linear-nobias", dnn.Linear, lambda r: dnn.Linear(5, 4, bias=False, rngs=r),
         _t("Linear", 5, 4, bias=False), (3, 5), False),
    Case("Conv1d", dnn.Conv1d, lambda r: dnn.Conv1d(3, 4, 3, stride=2, padding=1, rngs=r),
         _t("Conv1d", 3, 4, 3, stride=2, padding=1), (2, 3, 9)),
    Case("Conv2d-groups", dnn.Conv2d, lambda r: dnn.Conv2d(4, 6, 3, padding=1, groups=2, rngs=r),
         _t("Conv2d", 4, 6, 3, padding=1, groups=2), (2, 4, 7, 7)),
    Case("Conv3d-nobias", dnn.Conv3d, lambda r: dnn.Conv3d(2, 3, (2, 3, 3), bias=False, rngs=r),
         _t("Conv3d", 2, 3, (2, 3, 3), bias=False), (1, 2, 4, 5, 5)),
    Case("CausalConv1d", dnn.CausalConv1d, lambda r: dnn.CausalConv1d(3, 4, 3, dilation=2, rngs=r),
         _torch_causal, (2, 3, 10)),
    Case("DepthwiseConv2d", dnn.DepthwiseConv2d, lambda r: dnn.DepthwiseConv2d(3, 3, padding=1, depth_multiplier=2,
                                                                                rngs=r),
         _t("Conv2d", 3, 6, 3, padding=1, groups=3), (2, 3, 6, 6)),
    Case("ConvTranspose1d", dnn.ConvTranspose1d, lambda r: dnn.ConvTranspose1d(3, 4, 3, stride=2, rngs=r),
         _t("ConvTranspose1d", 3, 4, 3, stride=2), (2, 3, 5)),
    Case("ConvTranspose2d-groups", dnn.ConvTranspose2d,
         lambda r: dnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rngs=r),
         _t("ConvTranspose2d", 4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 4, 4)),
    Case("ConvTranspose3d", dnn.ConvTranspose3d, lambda r: dnn.ConvTranspose3d(2, 3, 2, stride=2, rngs=r),
         _t("ConvTranspose3d", 2, 3, 2, stride=2), (1, 2, 3, 3, 3)),
    Case("BatchNorm1d", dnn.BatchNorm1d, lambda r: dnn.BatchNorm1d(4), _t("BatchNorm1d", 4), (3, 4)),
    Case("BatchNorm1d-seq", dnn.BatchNorm1d, lambda r: dnn.BatchNorm1d(4), _t("BatchNorm1d", 4), (3, 4, 5)),
    Case("BatchNorm2d", dnn.BatchNorm2d, lambda r: dnn.BatchNorm2d(3), _t("BatchNorm2d", 3), (2, 3, 4, 4)),
    Case("BatchNorm3d", dnn.BatchNorm3d, lambda r: dnn.BatchNorm3d(2), _t("BatchNorm3d", 2), (2, 2, 3, 3, 3)),
    Case("LayerNorm", dnn.LayerNorm, lambda r: dnn.LayerNorm(6), _t("LayerNorm", 6), (3, 6), False),
    Case("InstanceNorm1d-affine", dnn.InstanceNorm1d, lambda r: dnn.InstanceNorm1d(4, affine=True),
         _t("InstanceNorm1d", 4, affine=True), (2, 4, 5)),
    Case("InstanceNorm2d-affine", dnn.InstanceNorm2d, lambda r: dnn.InstanceNorm2d(3, affine=True),
         _t("InstanceNorm2d", 3, affine=True), (2, 3, 4, 4)),
    Case("LayerNorm-2d-nobias", dnn.LayerNorm, lambda r: dnn.LayerNorm((4, 5), bias=False),
         _t("LayerNorm", (4, 5), bias=False), (2, 3, 4, 5), False),
    Case("PReLU-channels", dnn.PReLU, lambda r: dnn.PReLU(4), _t("PReLU", 4), (2, 4, 5)),
    Case("PReLU-shared", dnn.PReLU, lambda r: dnn.PReLU(), _t("PReLU"), (2, 4, 5)),
    Case("MLP", dnn.MLP, lambda r: dnn.MLP((6, 5, 3), rngs=r), _torch_mlp, (2, 6), False),
    Case("Sequential-Linear-LayerNorm", dnn.Sequential,
         lambda r: dnn.Sequential(dnn.Linear(6, 5, rngs=r), dnn.Activation("relu"), dnn.LayerNorm(5)),
         lambda tnn: tnn.Sequential(tnn.Linear(6, 5), tnn.ReLU(), tnn.LayerNorm(5)), (3, 6), False),
    Case("SeparableConv2d", dnn.SeparableConv2d,
         lambda r: dnn.SeparableConv2d(3, 5, 3, padding=1, depth_multiplier=2, rngs=r), _torch_separable,
         (2, 3, 6, 6)),
    Case("ConvBNAct", dnn.ConvBNAct, lambda r: dnn.ConvBNAct(3, 4, 3, rngs=r),
         lambda tnn: tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU()),
         (2, 3, 6, 6)),
    Case("BasicConv2d", dnn.BasicConv2d, lambda r: dnn.BasicConv2d(3, 4, 3, padding=1, rngs=r), _torch_basic_conv,
         (2, 3, 6, 6)),
    Case("SqueezeExcitation", dnn.SqueezeExcitation, lambda r: dnn.SqueezeExcitation(8, reduction=4, rngs=r),
         _torch_se, (2, 8, 3, 3)),
    Case("Transition", dnn.Transition, lambda r: dnn.Transition(4, 2, rngs=r), _torch_transition, (2, 4, 6, 6)),
    # composite blocks: their torch parity (forward and gradients) is test_models_parity.py's
    # test_block_gradients_match_torch; here the state dict round-trips dlcore -> torch layout -> dlcore
    Case("BasicBlock", dnn.BasicBlock, lambda r: dnn.BasicBlock(4, 8, 2, rngs=r), shape=(2, 4, 6, 6)),
    Case("Bottleneck", dnn.Bottleneck, lambda r: dnn.Bottleneck(8, 2, se_reduction=4, rngs=r), shape=(2, 8, 4, 4)),
    Case("InceptionModule", dnn.InceptionModule, lambda r: dnn.InceptionModule(4, 2, 2, 3, 2, 3, 2, rngs=r),
         shape=(2, 4, 5, 5)),
    Case("DenseLayer", dnn.DenseLayer, lambda r: dnn.DenseLayer(4, 2, bn_size=2, rngs=r), shape=(2, 4, 5, 5)),
    Case("DenseBlock", dnn.DenseBlock, lambda r: dnn.DenseBlock(2, 4, bn_size=2, growth_rate=2, rngs=r),
         shape=(2, 4, 5, 5)),
    Case("InvertedResidual", dnn.InvertedResidual, lambda r: dnn.InvertedResidual(4, 4, 1, 2, rngs=r),
         shape=(2, 4, 5, 5)),
    # learnable activations with no torch.nn counterpart
    Case("Swish", dnn.Swish, lambda r: dnn.Swish(1.5), shape=(2, 5), channels_first=False),
    Case("SwiGLU", dnn.SwiGLU, lambda r: dnn.SwiGLU(1.5, learnable=True), shape=(2, 6), channels_first=False),
    # Flax layers the weights module also maps
    Case("Embedding", dnn.Embedding, lambda r: dnn.Embedding(10, 4, padding_idx=0, rngs=r),
         _t("Embedding", 10, 4, padding_idx=0), (3, 5), False, ints=10),
    # recurrent layers and cells: parameters in torch's names and layout; outputs compared are (output, ...)[0]
    Case("RNN-bi-relu", dnn.RNN, lambda r: dnn.RNN(4, 5, 2, "relu", bidirectional=True, rngs=r),
         _t("RNN", 4, 5, 2, "relu", batch_first=True, bidirectional=True), (2, 3, 4), False),
    Case("LSTM-2layers", dnn.LSTM, lambda r: dnn.LSTM(4, 5, 2, rngs=r), _t("LSTM", 4, 5, 2, batch_first=True),
         (2, 3, 4), False),
    Case("GRU-bi-nobias", dnn.GRU, lambda r: dnn.GRU(4, 5, bias=False, bidirectional=True, rngs=r),
         _t("GRU", 4, 5, bias=False, batch_first=True, bidirectional=True), (2, 3, 4), False),
    Case("RNNCell", dnn.RNNCell, lambda r: dnn.RNNCell(4, 5, rngs=r), _t("RNNCell", 4, 5), (2, 4), False),
    Case("LSTMCell", dnn.LSTMCell, lambda r: dnn.LSTMCell(4, 5, rngs=r), _t("LSTMCell", 4, 5), (2, 4), False),
    Case("GRUCell-nobias", dnn.GRUCell, lambda r: dnn.GRUCell(4, 5, bias=False, rngs=r),
         _t("GRUCell", 4, 5, bias=False), (2, 4), False),
    Case("LayerNormRNNCell", dnn.LayerNormRNNCell, lambda r: dnn.LayerNormRNNCell(4, 5, rngs=r), _torch_ln_cell,
         (2, 4), False),
    Case("Recurrence", dnn.Recurrence, lambda r: dnn.Recurrence(dnn.GRUCell(4, 5, rngs=r)), _torch_recurrence,
         (2, 3, 4), False),
    Case("MultiheadAttention", dnn.MultiheadAttention,
         lambda r: _SelfAttention(dnn.MultiheadAttention(6, 2, rngs=r)), _torch_self_attention("mha"), (2, 3, 6), False),
    Case("GeneralScore", dnn.GeneralScore, lambda r: _SelfAttention(dnn.GeneralScore(6, 6, rngs=r)),
         _torch_self_attention("general"), (2, 3, 6), False),
    Case("AdditiveScore", dnn.AdditiveScore, lambda r: _SelfAttention(dnn.AdditiveScore(6, 6, 4, rngs=r)),
         _torch_self_attention("additive"), (2, 3, 6), False),
    Case("nnx.Embed", None, lambda r: nnx.Embed(10, 4, rngs=r), _t("Embedding", 10, 4), (3, 5), False, ints=10),
    Case("nnx.LayerNorm", None, lambda r: nnx.LayerNorm(6, epsilon=1e-5, rngs=r), _t("LayerNorm", 6), (3, 6),
         False),
]

# dlcore.nn modules without parameters, each built to check that it has none
PARAMETER_FREE = {
    "AdaptiveAvgPool2d": lambda: dnn.AdaptiveAvgPool2d(2), "AdaptiveMaxPool2d": lambda: dnn.AdaptiveMaxPool2d(2),
    "AvgPool1d": lambda: dnn.AvgPool1d(2), "AvgPool2d": lambda: dnn.AvgPool2d(2), "AvgPool3d": lambda: dnn.AvgPool3d(2),
    "MaxPool1d": lambda: dnn.MaxPool1d(2), "MaxPool2d": lambda: dnn.MaxPool2d(2), "MaxPool3d": lambda: dnn.MaxPool3d(2),
    "DepthMaxPool": lambda: dnn.DepthMaxPool(2), "GlobalAvgPool2d": lambda: dnn.GlobalAvgPool2d(),
    "GlobalMaxPool2d": lambda: dnn.GlobalMaxPool2d(), "LocalResponseNorm": lambda: dnn.LocalResponseNorm(3),
    "Activation": lambda: dnn.Activation("relu"), "Dropout2d": lambda: dnn.Dropout2d(0.5),
    "Flatten": lambda: dnn.Flatten(), "Identity": lambda: dnn.Identity(),
    "GLU": lambda: dnn.GLU(), "RReLU": lambda: dnn.RReLU(), "AlphaDropout": lambda: dnn.AlphaDropout(0.5),
    "MCDropout": lambda: dnn.MCDropout(0.5), "StochasticDepth": lambda: dnn.StochasticDepth(0.5),
    **{name: (lambda name=name: getattr(dnn, name)(1)) for name in [
        "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d", "ReplicationPad2d", "ZeroPad1d", "ZeroPad2d"]},
    "ConstantPad1d": lambda: dnn.ConstantPad1d(1, 0.5), "ConstantPad2d": lambda: dnn.ConstantPad2d(1, 0.5),
    "Upsample": lambda: dnn.Upsample(scale_factor=2), "UpsamplingNearest2d": lambda: dnn.UpsamplingNearest2d(size=4),
    "UpsamplingBilinear2d": lambda: dnn.UpsamplingBilinear2d(scale_factor=2),
    **{name: getattr(dnn.activations, name) for name in [
        "Sigmoid", "Tanh", "ReLU", "ReLU6", "ReLUSquared", "SELU", "SiLU", "Mish", "Softsign", "LogSigmoid",
        "Hardsigmoid", "Hardswish", "LeakyReLU", "ELU", "CELU", "GELU", "Softplus", "Hardtanh", "Hardshrink",
        "Softmax", "LogSoftmax"]},
}


def _dlcore_nn_modules() -> dict[str, type]:
    """Every public `nnx.Module` subclass defined in a module of the `dlcore.nn` package."""
    found: dict[str, type] = {}
    mods = [dnn] + [importlib.import_module(i.name) for i in pkgutil.walk_packages(dnn.__path__, "dlcore.nn.")]
    for mod in mods:
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, nnx.Module) and obj.__module__.startswith("dlcore.nn")
                    and not name.startswith("_")):
                assert found.get(obj.__name__, obj) is obj, f"two dlcore.nn classes named {obj.__name__}"
                found[obj.__name__] = obj
    return found


def _variables(m):
    """(path, value) of every parameter and batch statistic, sorted by path."""
    state = nnx.state(m, nnx.Param, nnx.BatchStat)
    return sorted(((jax.tree_util.keystr(p), np.asarray(v)) for p, v in jax.tree_util.tree_leaves_with_path(state)),
                  key=lambda kv: kv[0])


def _assert_same_state(a, b):
    va, vb = _variables(a), _variables(b)
    assert [p for p, _ in va] == [p for p, _ in vb]
    for (p, x), (_, y) in zip(va, vb):
        assert x.dtype == y.dtype, p
        np.testing.assert_array_equal(x, y, err_msg=p)


def _randomize(m, seed=0):
    """Random values in every float parameter and statistic (variances positive), so nothing is trivial."""
    rng = np.random.default_rng(seed)
    for _, mod in nnx.iter_modules(m):
        for attr, var in vars(mod).items():
            if isinstance(var, (nnx.Param, nnx.BatchStat)) and jnp.issubdtype(var[...].dtype, jnp.floating):
                v = rng.standard_normal(var[...].shape).astype(np.float32)
                if attr in ("var", "scale", "weight") and not isinstance(mod, (nnx.Linear, nnx.Conv, nnx.Embed)):
                    v = np.abs(v) + 0.5
                var[...] = jnp.asarray(v, var[...].dtype)


def test_every_layer_with_parameters_is_covered():
    covered = {c.cls.__name__ for c in CASES if c.cls is not None}
    problems = []
    for name, cls in sorted(_dlcore_nn_modules().items()):
        if name in covered:
            continue
        if name in PARAMETER_FREE:
            if _variables(PARAMETER_FREE[name]()):
                problems.append(f"{name} has parameters: move it from PARAMETER_FREE to CASES")
            continue
        problems.append(f"dlcore.nn.{name} is not covered: add it to CASES (with its torch counterpart) or, "
                        f"if it has no parameters, to PARAMETER_FREE")
    assert not problems, "; ".join(problems)
    for c in CASES:
        assert _variables(c.make(nnx.Rngs(0))), f"{c.id} has no parameters"


def _input(case, seed=0):
    rng = np.random.default_rng(seed)
    if case.ints:
        return rng.integers(0, case.ints, case.shape)
    return rng.standard_normal(case.shape).astype(np.float32)


def _first(y):
    """The output of a layer that returns (output, state), as the recurrent layers and LSTMCell do."""
    return y[0] if isinstance(y, tuple) else y


def _to_dlcore(case, x):
    return np.moveaxis(x, 1, -1) if case.channels_first and x.ndim > 2 else x


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_round_trips_through_torch_state_dict(case):
    j = case.make(nnx.Rngs(0))
    _randomize(j)
    sd = weights.state_dict(j)
    assert set(weights.torch_keys(j)) <= set(sd)
    assert all(isinstance(v, np.ndarray) for v in sd.values())

    # dlcore -> state dict -> a fresh dlcore layer: identical arrays
    back = case.make(nnx.Rngs(1))
    weights.load_state_dict(back, sd)
    _assert_same_state(j, back)
    j.eval()
    back.eval()
    x = _input(case)
    xj = jnp.asarray(_to_dlcore(case, x))
    np.testing.assert_array_equal(np.asarray(_first(back(xj))), np.asarray(_first(j(xj))))
    if case.torch is None:
        return

    # state dict -> torch (strict): same outputs
    torch = pytest.importorskip("torch")
    t = case.torch(torch.nn)
    missing, unexpected = t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    assert not missing and not unexpected
    t.eval()
    with torch.no_grad():
        yt = _first(t(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(np.asarray(_first(j(xj))), _to_dlcore(case, yt), rtol=RTOL, atol=ATOL)

    # torch's own state dict (its dtypes, num_batches_tracked int64) -> a fresh dlcore layer: identical arrays
    fresh = case.make(nnx.Rngs(2))
    weights.load_state_dict(fresh, t.state_dict())
    _assert_same_state(j, fresh)
    assert set(t.state_dict()) == set(sd)
