"""dlcore.nn.recurrent and dlcore.nn.embedding against torch: RNN/LSTM/GRU layers and cells, Embedding.

Parity: torch's state dict loads through `dlcore.weights`; outputs, final states and the gradients of a
scalar loss with respect to the input, the initial state and every weight agree to 1e-5 in float32.
Variable-length batches are compared with torch's pack_padded_sequence(enforce_sorted=False) followed by
pad_packed_sequence(total_length=T).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import nn as dnn
from dlcore import weights

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-5, 1e-5
B, T, I, H = 3, 5, 4, 6
LENGTHS = np.array([3, 5, 1])        # unsorted, one full-length sequence, one of a single step


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b, msg=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL, err_msg=msg)


# kind, num_layers, bidirectional, lengths, initial state, batch_first, extra constructor arguments
GRID = [
    ("RNN", 1, False, False, False, True, {}),
    ("RNN", 2, True, True, True, False, {}),
    ("RNN", 3, False, True, False, True, {"nonlinearity": "relu"}),
    ("RNN", 1, True, False, True, True, {"bias": False}),
    ("LSTM", 1, False, True, True, True, {}),
    ("LSTM", 2, True, False, False, False, {}),
    ("LSTM", 3, True, True, True, True, {}),
    ("LSTM", 2, False, False, True, True, {"bias": False}),
    ("GRU", 1, True, True, False, True, {}),
    ("GRU", 2, False, True, True, False, {}),
    ("GRU", 3, False, False, False, True, {}),
    ("GRU", 2, True, True, True, True, {}),
]


def _grid_id(case):
    kind, layers, bi, lens, hx, bf, kw = case
    return "-".join([kind, f"L{layers}", "bi" if bi else "uni", "lengths" if lens else "full",
                     "hx" if hx else "nohx", "bf" if bf else "tf"] + [f"{k}={v}" for k, v in kw.items()])


@pytest.mark.parametrize("case", GRID, ids=_grid_id)
def test_layer_matches_torch(case):
    kind, layers, bi, use_lengths, use_hx, batch_first, kw = case
    torch.manual_seed(0)
    t = getattr(torch.nn, kind)(I, H, num_layers=layers, bidirectional=bi, batch_first=batch_first, **kw)
    j = getattr(dnn, kind)(I, H, num_layers=layers, bidirectional=bi, batch_first=batch_first,
                           rngs=nnx.Rngs(0), **kw)
    assert weights.torch_keys(j) == {k: tuple(v.shape) for k, v in t.state_dict().items()}
    weights.load_state_dict(j, t.state_dict())
    lstm = kind == "LSTM"
    n = layers * (2 if bi else 1)

    x = _x(B, T, I) if batch_first else _x(T, B, I)
    hx = [_x(n, B, H, seed=1)] + ([_x(n, B, H, seed=2)] if lstm else []) if use_hx else None
    rng = np.random.default_rng(3)
    g_out = rng.standard_normal((B, T, (2 if bi else 1) * H) if batch_first else (T, B, (2 if bi else 1) * H))
    g_out = g_out.astype(np.float32)
    if use_lengths:                                        # torch's padded outputs are zero: so must ours be
        pad = np.arange(T)[None, :] >= LENGTHS[:, None]     # (B, T)
        g_out[pad if batch_first else pad.T] = 0.0
    g_h = [rng.standard_normal((n, B, H)).astype(np.float32) for _ in range(2 if lstm else 1)]

    # torch
    xt = torch.tensor(x, requires_grad=True)
    hxt = [torch.tensor(h, requires_grad=True) for h in hx] if use_hx else None
    inp = xt
    if use_lengths:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(LENGTHS), batch_first=batch_first,
                                                      enforce_sorted=False)
    yt, st = t(inp, (tuple(hxt) if lstm else hxt[0]) if use_hx else None)
    if use_lengths:
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=batch_first, total_length=T)
    st = list(st) if lstm else [st]
    loss = (yt * torch.from_numpy(g_out)).sum() + sum((s * torch.from_numpy(g)).sum() for s, g in zip(st, g_h))
    loss.backward()

    # dlcore
    graphdef, params, rest = nnx.split(j, nnx.Param, ...)
    lengths = LENGTHS if use_lengths else None

    def f(p, x, hx):
        y, s = nnx.merge(graphdef, p, rest)(x, (tuple(hx) if lstm else hx[0]) if hx is not None else None,
                                             lengths=lengths)
        s = list(s) if lstm else [s]
        return jnp.sum(y * g_out) + sum(jnp.sum(a * g) for a, g in zip(s, g_h)), (y, s)

    hxj = [jnp.asarray(h) for h in hx] if use_hx else None
    value_and_grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))   # one compile per case
    (_, (yj, sj)), grads = value_and_grad(params, jnp.asarray(x), hxj)
    _close(yj, yt.detach().numpy(), "output")
    for a, b_ in zip(sj, st):
        _close(a, b_.detach().numpy(), "final state")
    gp, gx, ghx = grads
    _close(gx, xt.grad.numpy(), "input gradient")
    if use_hx:
        for a, b_ in zip(ghx, hxt):
            _close(a, b_.grad.numpy(), "initial-state gradient")
    nnx.update(j, gp)                                      # gradients in the parameters' places, torch names
    exported = weights.state_dict(j)
    for name, p in t.named_parameters():
        _close(exported[name], p.grad.numpy(), name)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_padded_sequence_equals_unpadded(kind):
    """A sequence padded with garbage, given its length, gives what it gives alone (both directions)."""
    j = getattr(dnn, kind)(I, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    x = _x(B, T, I)
    y, s = j(x, lengths=LENGTHS)
    s = s[0] if kind == "LSTM" else s
    for b, n in enumerate(LENGTHS):
        y1, s1 = j(x[b:b + 1, :n])
        s1 = s1[0] if kind == "LSTM" else s1
        _close(y[b, :n], y1[0], f"sequence {b}")
        np.testing.assert_array_equal(np.asarray(y[b, n:]), 0.0)
        _close(s[:, b], s1[:, 0], f"final state {b}")


def test_lengths_work_under_jit():
    j = dnn.GRU(I, H, bidirectional=True, rngs=nnx.Rngs(0))
    x = _x(B, T, I)
    eager = j(x, lengths=LENGTHS)
    jitted = nnx.jit(lambda m, x, n: m(x, lengths=n))(j, jnp.asarray(x), jnp.asarray(LENGTHS))
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        _close(a, b)


def test_init_is_torch_uniform():
    j = dnn.LSTM(I, 16, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    bound = 1 / np.sqrt(16)
    for path, v in jax.tree_util.tree_leaves_with_path(nnx.state(j, nnx.Param)):
        v = np.asarray(v)
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound, path
    cell = dnn.GRUCell(I, 16, rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(cell.weight_ih[...])).max() <= bound


def test_dropout_between_layers_in_train_mode_only():
    torch.manual_seed(0)
    t = torch.nn.LSTM(I, H, num_layers=2, dropout=0.5, batch_first=True).eval()
    j = dnn.LSTM(I, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0))
    weights.load_state_dict(j, t.state_dict())
    x = _x(B, T, I)
    train = np.asarray(j(x)[0])
    j.eval()
    _close(j(x)[0], t(torch.from_numpy(x))[0].detach().numpy())
    assert not np.allclose(train, np.asarray(j(x)[0]))


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch(kind, bias):
    torch.manual_seed(0)
    kw = {"nonlinearity": "relu"} if kind == "RNNCell" and not bias else {}
    t = getattr(torch.nn, kind)(I, H, bias=bias, **kw)
    j = getattr(dnn, kind)(I, H, bias=bias, rngs=nnx.Rngs(0), **kw)
    weights.load_state_dict(j, t.state_dict())
    lstm = kind == "LSTMCell"
    x, h, c = _x(B, I), _x(B, H, seed=1), _x(B, H, seed=2)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    out = t(xt, (ht, ct) if lstm else ht)
    out = list(out) if lstm else [out]
    gs = [_x(B, H, seed=5 + k) for k in range(len(out))]
    sum((o * torch.from_numpy(g)).sum() for o, g in zip(out, gs)).backward()

    graphdef, params, rest = nnx.split(j, nnx.Param, ...)

    def f(p, x, h, c):
        o = nnx.merge(graphdef, p, rest)(x, (h, c) if lstm else h)
        o = list(o) if lstm else [o]
        return sum(jnp.sum(a * g) for a, g in zip(o, gs)), o

    (_, oj), (gp, gx, gh, gc) = jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)(params, x, h, c)
    for a, b in zip(oj, out):
        _close(a, b.detach().numpy())
    _close(gx, xt.grad.numpy())
    _close(gh, ht.grad.numpy())
    if lstm:
        _close(gc, ct.grad.numpy())
    nnx.update(j, gp)
    exported = weights.state_dict(j)
    for name, p in t.named_parameters():
        _close(exported[name], p.grad.numpy(), name)
    # unbatched input, zero state by default
    o1 = j(x[0])
    o1 = o1[0] if lstm else o1
    assert o1.shape == (H,)


def test_embedding_matches_torch_with_padding_idx():
    torch.manual_seed(0)
    t = torch.nn.Embedding(10, 4, padding_idx=2)
    j = dnn.Embedding(10, 4, padding_idx=2, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(j.weight[...])[2], 0.0)            # the padding row starts at zero
    assert weights.torch_keys(j) == {"weight": (10, 4)}
    with torch.no_grad():
        t.weight[2] = 0.5                                                        # a non-zero padding row
    weights.load_state_dict(j, t.state_dict())
    ids = np.array([[1, 2, 3, 2], [9, 0, 2, 5]])
    g = _x(2, 4, 4)
    yt = t(torch.from_numpy(ids))
    (yt * torch.from_numpy(g)).sum().backward()
    graphdef, params, rest = nnx.split(j, nnx.Param, ...)
    yj, vjp = jax.vjp(lambda p: nnx.merge(graphdef, p, rest)(ids), params)
    _close(yj, yt.detach().numpy())
    (gp,) = vjp(jnp.asarray(g))
    gw = np.asarray(gp["weight"][...])
    np.testing.assert_array_equal(gw[2], 0.0)
    _close(gw, t.weight.grad.numpy())
    # a negative padding_idx counts from the end, as in torch
    assert dnn.Embedding(10, 4, padding_idx=-1, rngs=nnx.Rngs(0)).padding_idx == 9


def test_embedding_init_is_standard_normal():
    w = np.asarray(dnn.Embedding(1000, 64, rngs=nnx.Rngs(0)).weight[...])
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


def test_embedding_from_pretrained():
    table = _x(6, 3)
    frozen = dnn.Embedding.from_pretrained(table, padding_idx=1)
    assert not jax.tree.leaves(nnx.state(frozen, nnx.Param))                       # not trainable
    assert isinstance(frozen.weight, dnn.Frozen)
    np.testing.assert_array_equal(np.asarray(frozen(np.array([1, 4]))), table[[1, 4]])   # row kept as given
    sd = weights.state_dict(frozen)
    assert list(sd) == ["weight"]
    np.testing.assert_array_equal(sd["weight"], table)
    other = dnn.Embedding.from_pretrained(np.zeros((6, 3), np.float32))
    weights.load_state_dict(other, sd)
    np.testing.assert_array_equal(np.asarray(other.weight[...]), table)
    t = torch.nn.Embedding.from_pretrained(torch.from_numpy(table))
    t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    trainable = dnn.Embedding.from_pretrained(torch.from_numpy(table), freeze=False)
    assert isinstance(trainable.weight, nnx.Param)
    grads = nnx.grad(lambda m: m(np.array([0, 0, 5])).sum())(trainable)
    np.testing.assert_array_equal(np.asarray(grads["weight"][...])[:, 0], [2, 0, 0, 0, 0, 1])


# ------------------------------------------------------------------------------------------------
# bad input: one line each
# ------------------------------------------------------------------------------------------------

def _one_line(fn, *parts):
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg


def test_bad_input_is_one_line():
    lstm = dnn.LSTM(I, H, num_layers=2, rngs=nnx.Rngs(0))
    gru = dnn.GRU(I, H, bidirectional=True, batch_first=False, rngs=nnx.Rngs(0))
    x = _x(B, T, I)
    _one_line(lambda: lstm(x[0]), "rank 3", "(B, T, input_size)", "(5, 4)")
    _one_line(lambda: lstm(_x(B, T, I + 1)), "4 features", "(3, 5, 5)")
    _one_line(lambda: lstm(x, lengths=np.array([3, 6, 1])), "[1, 5]", "6")
    _one_line(lambda: lstm(x, lengths=np.array([3, 0, 1])), "[1, 5]", "0")
    _one_line(lambda: lstm(x, lengths=np.array([3, 1])), "shape (B,)")
    _one_line(lambda: lstm(x, lengths=np.array([3.0, 1.0, 2.0])), "integers")
    _one_line(lambda: lstm(x, np.zeros((2, B, H))), "tuple (h_0, c_0)")
    _one_line(lambda: lstm(x, (np.zeros((1, B, H)), np.zeros((2, B, H)))), "h_0 has shape (1, 3, 6)", "(2, 3, 6)")
    _one_line(lambda: gru(x, np.zeros((1, B, H))), "hx has shape (1, 3, 6)", "(2, 5, 6)")  # (T, B, F): B is 5
    _one_line(lambda: gru(x, lengths=np.array([3, 5, 1])), "shape (B,) = (5,)")  # (T, B, F): B is 5
    _one_line(lambda: dnn.GRUCell(I, H, rngs=nnx.Rngs(0))(_x(B, I + 1)), "(B, 4)")
    _one_line(lambda: dnn.GRUCell(I, H, rngs=nnx.Rngs(0))(_x(B, I), _x(B, H + 1)), "hx has shape (3, 7)")
    _one_line(lambda: dnn.RNN(I, H, nonlinearity="sigmoid", rngs=nnx.Rngs(0)), "nonlinearity")
    _one_line(lambda: dnn.LSTM(I, H, dropout=1.5, rngs=nnx.Rngs(0)), "dropout")
    emb = dnn.Embedding(10, 4, rngs=nnx.Rngs(0))
    _one_line(lambda: emb(np.array([[1, 10]])), "token id 10", "[0, 10)")
    _one_line(lambda: emb(jnp.array([-1, 3])), "token id -1")
    _one_line(lambda: emb(np.array([1.0])), "integer token ids")
    _one_line(lambda: dnn.Embedding(10, 4, padding_idx=10, rngs=nnx.Rngs(0)), "padding_idx")
    _one_line(lambda: dnn.Embedding.from_pretrained(np.zeros(3)), "2-D float table")
    # under jit the ids cannot be checked: JAX clamps them, as the docstring says
    clamped = nnx.jit(lambda m, i: m(i))(emb, jnp.array([12]))
    np.testing.assert_array_equal(np.asarray(clamped), np.asarray(emb.weight[...])[[9]])
