"""dlcore.export (serialised predict functions), dlcore.quantize (int8 kernels) and `dlcore export`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from one_line import raises_one_line

import dlcore
from dlcore import checkpoint, cli, export, nn, quantize

EXPORT_PY = Path(export.__file__)


class TinyMLP(nnx.Module):
    """6 -> 8 -> 3 with dropout (off in eval mode). Shapes: (N, 6) -> (N, 3)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.l1 = nn.Linear(6, 8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.l2 = nn.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


class TinyCNN(nnx.Module):
    """conv 2->4 k3 -> batch norm -> ReLU -> flatten -> Linear 3. Shapes: (N, 5, 5, 2) -> (N, 3)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nn.Conv2d(2, 4, 3, rngs=rngs)
        self.bn = nn.BatchNorm2d(4, rngs=rngs)
        self.fc = nn.Linear(3 * 3 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.bn(self.conv(x)))      # (N, 3, 3, 4)
        return self.fc(x.reshape(x.shape[0], -1))    # (N, 36)


def _models():
    mlp = TinyMLP(rngs=nnx.Rngs(0))
    cnn = TinyCNN(rngs=nnx.Rngs(1))
    rng = np.random.default_rng(0)
    for _ in range(3):                               # running statistics away from (0, 1)
        cnn(jnp.asarray(rng.normal(2.0, 3.0, (16, 5, 5, 2)), jnp.float32))
    return {"mlp": (mlp, (6,)), "cnn": (cnn, (5, 5, 2))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each model exported with its weights inside and as an argument, and its eval-mode outputs."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    out = {"folder": folder, "models": {}}
    for name, (model, shape) in _models().items():
        x = rng.normal(size=(7, *shape)).astype(np.float32)
        export.export(model, folder / f"{name}.dlx", input_shape=shape)
        export.export(model, folder / f"{name}_arg.dlx", input_shape=shape, weights="argument")
        export.save_weights(model, folder / f"{name}.npz")
        train_out = np.asarray(nnx.clone(model)(x))  # training mode (dropout, batch statistics), on a copy
        model.eval()
        ref = np.asarray(model(x))
        model.train()
        assert not np.allclose(train_out, ref)       # so equal outputs below mean eval mode was exported
        np.savez(folder / f"{name}_io.npz", x=x, ref=ref)
        out["models"][name] = (model, shape, x, ref)
    return out


CHILD = r"""
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("standalone_export", sys.argv[1])
export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export)
folder, result = sys.argv[2], {}
for name in ("mlp", "cnn"):
    io = np.load(f"{folder}/{name}_io.npz")
    for kind, fn in (("inside", export.load(f"{folder}/{name}.dlx")),
                     ("argument", export.load(f"{folder}/{name}_arg.dlx", weights=f"{folder}/{name}.npz"))):
        for n in (1, 7):
            got = np.asarray(fn(io["x"][:n]))
            result[f"{name}/{kind}/{n}"] = float(np.abs(got - io["ref"][:n]).max()) if got.shape == io["ref"][:n].shape \
                else f"shape {got.shape}"
result["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("dlcore", "flax", "test_export"))
print(json.dumps(result))
"""


def test_exported_functions_match_the_models_in_a_fresh_process_without_their_code(files):
    # the child loads export.py as a lone file: no dlcore package, no Flax, not this module (the models' code)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(EXPORT_PY), str(files["folder"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop("modules") == []
    assert sorted(result) == sorted(f"{m}/{k}/{n}" for m in ("mlp", "cnn") for k in ("inside", "argument")
                                    for n in (1, 7))
    for key, diff in result.items():
        assert isinstance(diff, float) and diff <= 1e-5, (key, diff)


def test_loaded_in_process_and_model_left_as_it_was(files):
    model, shape, x, ref = files["models"]["cnn"]
    fn = export.load(files["folder"] / "cnn.dlx")
    assert fn.input_shape == (5, 5, 2) and fn.dtype == np.float32 and fn.weights_inside
    np.testing.assert_allclose(np.asarray(fn(x[:3])), ref[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fn(x.astype(np.float64))), ref, rtol=1e-5, atol=1e-6)  # cast
    assert model.bn.use_running_average is False       # exporting did not switch the model to eval mode
    arg = export.load(files["folder"] / "cnn_arg.dlx")
    np.testing.assert_allclose(np.asarray(arg(x, export.weights_of(model))), ref, rtol=1e-5, atol=1e-6)
    header = export.read_header(files["folder"] / "cnn_arg.dlx")
    assert header["format_version"] == export.FORMAT_VERSION and header["jax"] == jax.__version__
    assert header["input"] == {"shape": [None, 5, 5, 2], "dtype": "float32"}
    assert header["outputs"] == [{"shape": [None, 3], "dtype": "float32"}]
    assert header["weights"]["conv/kernel"] == {"shape": [3, 3, 2, 4], "dtype": "float32"}
    assert header["weights"]["bn/mean"] == {"shape": [4], "dtype": "float32"}


def _rewrite(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(edit(bytearray(src.read_bytes())))
    return dst


def test_bad_files_are_one_line(files, tmp_path):
    good = files["folder"] / "mlp.dlx"
    data = good.read_bytes()
    raises_one_line(lambda: export.load(_rewrite(good, tmp_path / "cut.dlx", lambda b: b[:-100])),
                    "cut.dlx", "truncated")
    raises_one_line(lambda: export.load(_rewrite(good, tmp_path / "head.dlx", lambda b: b[:40])), "truncated")
    raises_one_line(lambda: export.load(_rewrite(good, tmp_path / "prefix.dlx", lambda b: b[:5])), "truncated")

    def version_2(b):
        b[8:12] = (2).to_bytes(4, "little")
        return b
    raises_one_line(lambda: export.load(_rewrite(good, tmp_path / "v2.dlx", version_2)),
                    "format version 2", f"reads version {export.FORMAT_VERSION}")

    def flip(b):
        b[len(b) - 1000] ^= 0x10
        return b
    raises_one_line(lambda: export.load(_rewrite(good, tmp_path / "flip.dlx", flip)), "corrupt", "SHA-256")
    raises_one_line(lambda: export.load(files["folder"] / "mlp.npz"), "not a dlcore export file")
    (tmp_path / "empty.dlx").write_bytes(b"")
    raises_one_line(lambda: export.load(tmp_path / "empty.dlx"), "empty")
    raises_one_line(lambda: export.load(tmp_path / "missing.dlx"), "does not exist")
    raises_one_line(lambda: export.load(tmp_path), "is a directory")
    assert len(data) == good.stat().st_size              # the good file was not touched


def test_bad_calls_are_one_line(files):
    model, shape, x, _ = files["models"]["cnn"]
    fn = export.load(files["folder"] / "cnn.dlx")
    raises_one_line(lambda: fn(x[..., 0]), "takes inputs of shape (B, 5, 5, 2) float32", "(7, 5, 5)")
    raises_one_line(lambda: fn(x.reshape(7, 25, 2)), "(B, 5, 5, 2)")
    raises_one_line(lambda: fn(x[:0]), "batch is empty")
    raises_one_line(lambda: fn(np.array([["a"]])), "got an array of")
    raises_one_line(lambda: fn(x, export.weights_of(model)), "holds its weights")
    arg = export.load(files["folder"] / "cnn_arg.dlx")
    raises_one_line(lambda: arg(x), "takes its weights as an argument")
    w = export.weights_of(model)
    raises_one_line(lambda: arg(x, {k: v for k, v in w.items() if k != "bn/var"}), "'bn/var'")
    raises_one_line(lambda: arg(x, {**w, "conv/kernel": w["conv/kernel"][..., :2]}), "'conv/kernel'",
                    "(3, 3, 2, 2) float32", "(3, 3, 2, 4) float32")
    raises_one_line(lambda: arg(x, {**w, "extra": w["bn/var"]}), "'extra'")
    raises_one_line(lambda: export.load(files["folder"] / "cnn_arg.dlx", weights=files["folder"] / "mlp.npz"),
                    "lack")


def test_bad_export_arguments_are_one_line(files, tmp_path):
    model, _, _, _ = files["models"]["mlp"]
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=(5,)), "does not take inputs",
                    "(B, 5)")
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=6), "input_shape")
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=(0,)), "input_shape")
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=(6,), weights="outside"),
                    "weights")
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=(6,), dtype="floaty"), "floaty")
    raises_one_line(lambda: export.export(model, tmp_path / "no" / "a.dlx", input_shape=(6,)), "does not exist")
    raises_one_line(lambda: export.export(model, tmp_path / "a.dlx", input_shape=(6,), platforms="cpu"),
                    "platforms")
    raises_one_line(lambda: export.export(lambda x: x, tmp_path / "a.dlx", input_shape=(6,)), "Flax NNX module")
    assert not (tmp_path / "a.dlx").exists()


_Pair = namedtuple("_Pair", "logits inputs")


class TwoOutputs(nnx.Module):
    """A named tuple of outputs (as GoogLeNet's), or, with `fixed_batch`, Python code that needs B as a number."""

    def __init__(self, fixed_batch: bool = False):
        self.l = nn.Linear(3, 2, rngs=nnx.Rngs(0))
        self.fixed_batch = fixed_batch

    def __call__(self, x):
        if self.fixed_batch:
            return self.l(x) * int(x.shape[0])
        return _Pair(self.l(x), x)


def test_named_tuple_outputs_come_back_as_dicts_and_a_fixed_batch_is_one_line(tmp_path):
    model = TwoOutputs()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    fn = export.load(export.export(model, tmp_path / "t.dlx", input_shape=(3,)))
    out = fn(x)
    assert sorted(out) == ["inputs", "logits"]
    np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(model(x).logits), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["inputs"]), x)
    raises_one_line(lambda: export.export(TwoOutputs(fixed_batch=True), tmp_path / "b.dlx", input_shape=(3,)),
                    "free batch size")


# -- int8 ------------------------------------------------------------------------------------------

def test_quantize_kernel_by_hand():
    w = np.array([[1.0, -0.5, 0.0],
                  [0.25, 2.0, 0.0],
                  [-1.27, 0.0, 0.0]], np.float32)    # (in 3, out 3); the last channel is all zeros
    q, scale = quantize.quantize_kernel(w)
    # channel 0: max 1.27 -> scale 0.01, q = 100, 25, -127; channel 1: max 2 -> scale 2/127,
    # q = round(-31.75) = -32, 127, 0; channel 2: zeros -> scale 1, q 0
    np.testing.assert_allclose(scale, [0.01, 2 / 127, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(q, [[100, -32, 0], [25, 127, 0], [-127, 0, 0]])
    assert q.dtype == np.int8 and scale.dtype == np.float32
    raises_one_line(lambda: quantize.quantize_kernel(np.ones(3, np.float32)), "rank >= 2")
    raises_one_line(lambda: quantize.quantize_kernel(np.array([[np.nan, 1.0]], np.float32)), "NaN")


def test_quantize_kernel_matches_torch_per_channel_quantization():
    torch = pytest.importorskip("torch")
    w = np.random.default_rng(2).normal(size=(3, 3, 4, 6)).astype(np.float32)   # (*k, in, out)
    q, scale = quantize.quantize_kernel(w)
    tw = torch.from_numpy(w)
    ref_scale = tw.abs().amax(dim=(0, 1, 2)) / 127
    # torch's per-channel fake quantization: round(w / scale) clamped to [-127, 127], times scale
    ref = torch.fake_quantize_per_channel_affine(tw, ref_scale, torch.zeros(6, dtype=torch.int32), 3, -127, 127)
    np.testing.assert_allclose(scale, ref_scale.numpy(), rtol=1e-6)
    deq = np.asarray(quantize.dequantize(q, scale))
    np.testing.assert_allclose(deq, ref.numpy(), rtol=1e-6, atol=1e-7)
    err = np.abs(deq - w)
    assert (err <= scale / 2 + 1e-7).all()


def test_int8_model_is_close_and_4x_smaller_for_the_kernels(tmp_path):
    model = dlcore.models.create("mnist_convnet", seed=0)
    x = np.random.default_rng(3).normal(size=(16, 28, 28, 1)).astype(np.float32)
    float32 = export.Predictor.from_model(model)
    int8 = quantize.quantize_int8(model)
    assert set(int8.int8) == {"cn1/kernel", "cn2/kernel", "fc1/kernel", "fc2/kernel"}
    assert int8.weights["fc1/kernel.int8"].dtype == jnp.int8 and int8.weights["fc1/bias"].dtype == jnp.float32
    # kernels 3*3*1*16 + 3*3*16*32 + 4608*64 + 64*10 = 300,304 floats: 1,201,216 bytes; int8: 300,304 bytes
    # plus (16 + 32 + 64 + 10) float32 scales = 488 bytes
    assert float32.kernel_nbytes == 1_201_216 and int8.kernel_nbytes == 300_304 + 488
    ref, got = np.asarray(float32(x)), np.asarray(int8(x))
    np.testing.assert_allclose(got, ref, atol=0.02)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    a = export.export(float32, tmp_path / "f.dlx", input_shape=(28, 28, 1))
    b = export.export(int8, tmp_path / "q.dlx", input_shape=(28, 28, 1))
    assert 3.5 < a.stat().st_size / b.stat().st_size < 4.0
    loaded = export.load(b)
    assert loaded.int8_kernels == ("cn1/kernel", "cn2/kernel", "fc1/kernel", "fc2/kernel")
    np.testing.assert_allclose(np.asarray(loaded(x[:5])), got[:5], rtol=1e-5, atol=1e-5)
    raises_one_line(lambda: quantize.quantize_int8(int8), "int8 already")
    raises_one_line(lambda: quantize.quantize_int8(nn.BatchNorm1d(3, rngs=nnx.Rngs(0))), "no Linear or Conv")


# -- the command -----------------------------------------------------------------------------------

def test_cli_export_mnist_convnet_end_to_end(tmp_path, capsys):
    out = tmp_path / "f.dlx"
    assert cli.main(["export", "mnist_convnet", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "exported mnist_convnet" in line and "(B, 28, 28, 1) float32" in line and str(out) in line
    x = np.random.default_rng(4).normal(size=(9, 28, 28, 1)).astype(np.float32)
    model = dlcore.models.create("mnist_convnet", seed=0)
    model.eval()
    fn = export.load(out)
    for n in (2, 9):
        np.testing.assert_allclose(np.asarray(fn(x[:n])), np.asarray(model(x[:n])), rtol=1e-5, atol=1e-5)
    # trained weights from a checkpoint (here a model saved with seed 3), as int8 with the weights in a file
    trained = dlcore.models.create("mnist_convnet", seed=3)
    checkpoint.save(tmp_path / "ckpt", 1, trained)
    assert cli.main(["export", "mnist_convnet", "--checkpoint", str(tmp_path / "ckpt"), "--int8",
                     "--out", str(tmp_path / "q.dlx"), "--weights-file", str(tmp_path / "q.npz")]) == 0
    assert "int8 kernels" in capsys.readouterr().out
    trained.eval()
    q = export.load(tmp_path / "q.dlx", weights=tmp_path / "q.npz")
    np.testing.assert_allclose(np.asarray(q(x)), np.asarray(trained(x)), atol=0.02)


@pytest.mark.parametrize("argv, message", [
    (["export", "nosuch_model", "--out", "{tmp}/a.dlx"], "unknown model"),
    (["export", "resnet18", "--out", "{tmp}/a.dlx"], "--input-shape"),
    (["export", "mnist_convnet", "--out", "{tmp}/no/a.dlx"], "does not exist"),
    (["export", "mnist_convnet", "--out", "{tmp}/a.dlx", "--input-shape", "28,x"], "--input-shape"),
    (["export", "mnist_convnet", "--out", "{tmp}/a.dlx", "--checkpoint", "{tmp}/none"], "not a directory"),
    (["export", "{tmp}", "--out", "{tmp}/a.dlx"], "no checkpoint"),
])
def test_cli_export_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlcore: error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "a.dlx").exists()
