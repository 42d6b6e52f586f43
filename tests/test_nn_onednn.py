"""oneDNN's convolutions through XLA's FFI (dlcore/nn/onednn.py): equal to XLA's, in every pass and order."""

import functools
import importlib.metadata
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, nn as dnn, optim
from dlcore.bench import step_flops
from dlcore.nn import conv_tuning as ct
from dlcore.nn import onednn


def _installed() -> bool:
    try:
        importlib.metadata.distribution("onednn-cpu-gomp")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_onednn = pytest.mark.skipif(not onednn.available(), reason=f"oneDNN: {onednn.why_unavailable()}")


def test_installed_means_available():
    # With the [cpu] extra installed (the test extra installs it), the kernels must build and load here: a
    # silently missing speed-up would otherwise only show in the benchmarks.
    if _installed():
        assert onednn.available(), onednn.why_unavailable()
        assert onednn.version().startswith("3.") and onednn.why_unavailable() == ""
    else:
        assert not onednn.available() and onednn.why_unavailable()


GEOMETRIES = [  # x shape, kernel shape, stride, padding, dilation
    ((6, 10, 11, 3), (3, 3, 3, 5), (1, 1), [(0, 0), (0, 0)], (1, 1)),
    ((6, 10, 11, 3), (3, 2, 3, 5), (2, 1), [(1, 2), (0, 1)], (1, 2)),
    ((6, 9, 9, 4), (3, 3, 4, 6), (2, 2), [(1, 1), (1, 1)], (1, 1)),
    ((6, 20, 4), (3, 4, 6), (1,), [(4, 0)], (2,)),  # 1-D causal, dilated
    ((6, 20, 4), (5, 4, 6), (2,), [(2, 2)], (1,)),
    # 16 channels: a kernel in oneDNN's 16-channel blocks can be XLA's own layout, read and written in place
    ((4, 9, 9, 16), (3, 3, 16, 32), (1, 1), [(0, 0), (0, 0)], (1, 1)),
    ((4, 10, 10, 1), (3, 3, 1, 16), (1, 1), [(1, 1), (1, 1)], (1, 1)),
    # a kernel over 256 KiB: reordered by oneDNN's threads (smaller ones on the calling thread alone)
    ((2, 6, 6, 128), (3, 3, 128, 72), (1, 1), [(1, 1), (1, 1)], (1, 1)),
]


def _xla(x, k, stride, padding, dilation):
    specs = {3: ("NWC", "WIO", "NWC"), 4: ("NHWC", "HWIO", "NHWC")}[x.ndim]
    return jax.lax.conv_general_dilated(x, k, stride, padding, rhs_dilation=dilation, dimension_numbers=specs)


def _close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape and np.max(np.abs(a - b)) <= tol * np.max(np.abs(a))


@needs_onednn
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{len(g[0]) - 2}d-s{g[2]}-p{g[3]}-d{g[4]}")
def test_every_pass_and_second_order_gradients_equal_xla(geometry):
    xs, ks, stride, padding, dilation = geometry
    rng = np.random.default_rng(0)
    # the kernel scaled by its fan-in, as initialised: outputs of order 1, where sin's gradient does not
    # magnify float32 rounding (outputs of order 30 with 128 channels at unit scale)
    x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
    k = jnp.asarray(rng.standard_normal(ks) / np.sqrt(np.prod(ks[:-1])), jnp.float32)

    def outputs(conv):
        f = functools.partial(conv, stride=stride, padding=padding, dilation=dilation)
        y = f(x, k)
        grads = jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), (0, 1))(x, k)
        # a gradient penalty's shape: the gradient of a function of a gradient (each pass's own vjp)
        second = jax.grad(lambda x, k: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, k) ** 2))(x) ** 2), (0, 1))(x, k)
        return y, *grads, *second

    mine = jax.jit(lambda: outputs(onednn.conv))()
    for a, b in zip(outputs(_xla), mine):
        _close(a, b, 1e-5)  # float32 sums in another order


@needs_onednn
def test_vmap_and_a_second_call_with_other_sizes():
    rng = np.random.default_rng(1)
    k = jnp.asarray(rng.standard_normal((3, 3, 2, 5)), jnp.float32)
    args = dict(stride=(1, 1), padding=[(1, 1), (1, 1)], dilation=(1, 1))
    for n, size in ((4, 8), (3, 13)):  # a second signature builds its own primitive
        x = jnp.asarray(rng.standard_normal((n, size, size, 2)), jnp.float32)
        _close(_xla(x, k, **args), onednn.conv(x, k, **args), 1e-6)
    xs = jnp.asarray(rng.standard_normal((3, 4, 6, 6, 2)), jnp.float32)  # vmapped over a leading axis
    _close(jax.vmap(lambda x: _xla(x, k, **args))(xs), jax.vmap(lambda x: onednn.conv(x, k, **args))(xs), 1e-6)


@needs_onednn
def test_passes_run_from_several_threads_at_once():
    # XLA calls the handlers from any thread of its pool, and from several at once: a primitive built on one
    # thread runs on another beside other primitives (each with its own scratchpad; with oneDNN's shared
    # per-thread scratchpad this crashed on AVX2, whose im2col kernels use one).
    rng = np.random.default_rng(2)
    args = dict(stride=(1, 1), padding=[(1, 1), (1, 1)], dilation=(1, 1))
    xs = [jnp.asarray(rng.standard_normal((8, 14, 14, c)), jnp.float32) for c, _ in ((1, 4), (3, 6), (6, 10))]
    ks = [jnp.asarray(rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c), jnp.float32)
          for c, o in ((1, 4), (3, 6), (6, 10))]

    def loss(conv):
        return lambda xs, ks: sum(jnp.sum(jnp.sin(conv(x, k, **args))) for x, k in zip(xs, ks))

    want = jax.grad(loss(_xla), argnums=(0, 1))(xs, ks)
    grad = jax.jit(jax.grad(loss(onednn.conv), argnums=(0, 1)))
    results = [None] * 3

    def work(i):
        results[i] = [grad(xs, ks) for _ in range(10)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in (g for r in results for g in r):
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            _close(a, b, 1e-5)


@needs_onednn
def test_bad_input_is_one_line():
    x, k = jnp.ones((2, 5, 5, 3)), jnp.ones((3, 3, 3, 4))
    args = dict(stride=(1, 1), padding=[(0, 0), (0, 0)], dilation=(1, 1))
    with pytest.raises(ValueError, match="1-D or 2-D channels-last float32 input"):
        onednn.conv(jnp.ones((2, 5, 5, 5, 3)), jnp.ones((3, 3, 3, 3, 4)), (1,) * 3, [(0, 0)] * 3, (1,) * 3)
    with pytest.raises(ValueError, match="kernel of its dtype and channels"):
        onednn.conv(x, k.astype(jnp.bfloat16), **args)
    with pytest.raises(ValueError, match="channels"):
        onednn.conv(x, jnp.ones((3, 3, 2, 4)), **args)
    with pytest.raises(ValueError, match="float32"):
        onednn.conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), **args)
    assert not onednn.supports(x.shape, k.shape, jnp.bfloat16, 1, [(0, 0), (0, 0)])  # measured no faster
    assert not onednn.supports(x.shape, k.shape, jnp.float32, 1, [(-1, 0), (0, 0)])  # a crop: XLA's
    assert not onednn.supports(x.shape, (3, 3, 1, 4), jnp.float32, 3, [(0, 0), (0, 0)])  # groups: XLA's


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """onednn with nothing prepared yet in this process, and dlcore's cache under tmp_path."""
    monkeypatch.setattr(onednn, "_STATE", {})
    monkeypatch.setattr(onednn, "MODE", "auto")
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    return tmp_path


def test_without_onednn_or_a_compiler_it_says_why(fresh, monkeypatch, capsys):
    monkeypatch.setenv("DLCORE_ONEDNN_ROOT", str(fresh / "nowhere"))
    assert not onednn.available() and onednn.why_unavailable() == 'oneDNN is not installed (pip install "dlcore[cpu]")'
    with pytest.raises(RuntimeError, match="not installed"):
        onednn.conv(jnp.ones((1, 3, 3, 1)), jnp.ones((1, 1, 1, 1)), (1, 1), [(0, 0)] * 2, (1, 1))
    monkeypatch.setattr(onednn, "_STATE", {})
    monkeypatch.setattr(onednn, "MODE", "off")
    assert not onednn.available() and "DLCORE_ONEDNN=off" in onednn.why_unavailable()
    monkeypatch.setattr(onednn, "_STATE", {})
    monkeypatch.setattr(onednn, "MODE", "fast")
    for _ in range(2):  # and again: nothing remembered from the first
        with pytest.raises(ValueError, match="DLCORE_ONEDNN .* must be 'auto' or 'off', got 'fast'"):
            onednn.available()
    if not _installed():
        return
    monkeypatch.delenv("DLCORE_ONEDNN_ROOT")
    monkeypatch.setattr(onednn, "_STATE", {})
    monkeypatch.setattr(onednn, "MODE", "auto")
    monkeypatch.setenv("CXX", "false")  # a compiler that fails: unavailable, with one line on stderr
    capsys.readouterr()
    assert not onednn.available() and "compiling onednn_conv.cc failed" in onednn.why_unavailable()
    assert capsys.readouterr().err.splitlines()[-1].endswith("convolutions run as XLA's")


@needs_onednn
def test_a_damaged_compiled_library_is_compiled_again(fresh, monkeypatch):
    root = onednn._root()
    _, path = onednn._library_path(root, onednn._version(root))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF truncated")
    assert onednn.available(), onednn.why_unavailable()
    assert path.stat().st_size > 10_000  # rebuilt in place


@needs_onednn
def test_a_cnn_trains_the_same_with_onednn_chosen(monkeypatch, tmp_path):
    # The tuner's path in a real training step: every large convolution of a small CNN lowered to oneDNN
    # (as if measured fastest) gives XLA's loss curve and weights.
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    monkeypatch.setattr(ct, "_CHOICES", {})
    monkeypatch.setattr(ct, "_LOADED", False)
    monkeypatch.setattr(ct, "MIN_FLOPS", 0)
    monkeypatch.setattr(ct, "_measure", lambda options, *a: (options[-1],) * 3)  # the last candidate: oneDNN's
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((64, 12, 12, 1)).astype(np.float32), "y": rng.integers(0, 3, 64)}

    def run(mode):
        monkeypatch.setattr(ct, "MODE", mode)
        model = dnn.Sequential(dnn.Conv2d(1, 4, 3, padding=1, rngs=nnx.Rngs(0)), dnn.Activation("relu"),
                               dnn.Conv2d(4, 6, 3, stride=2, rngs=nnx.Rngs(1)), dnn.Activation("relu"), dnn.Flatten(),
                               dnn.Linear(6 * 5 * 5, 3, rngs=nnx.Rngs(2)))
        trainer = dlcore.Trainer(model, optim.sgd(lr=0.1, momentum=0.9), losses.cross_entropy, batch_size=16,
                                 progress=False)
        history = trainer.fit(data, epochs=3)
        return history, nnx.state(model, nnx.Param), trainer

    (h0, w0, t0), (h1, w1, t1) = run("off"), run("auto")
    assert {c[0] for plan in ct._CHOICES.values() for c in plan} == {"onednn"} and len(ct._CHOICES) == 2
    # on a CPU the oneDNN run's epochs are one lax.scan (no XLA convolution left), XLA's run steps batch by batch
    assert "train_epoch" in t1.trace_counts and "train_epoch" not in t0.trace_counts, (t0.trace_counts, t1.trace_counts)
    # XLA counts nothing inside an FFI call: the benchmarks' FLOP count is the plain lowering's either way
    assert step_flops(t1, data) == step_flops(t0, data) > 2 * 16 * 12 * 12 * 4 * 9  # > conv1 forward
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(w0), jax.tree.leaves(w1)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
