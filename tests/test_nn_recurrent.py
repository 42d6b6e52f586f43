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
from one_line import raises_one_line

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

def test_bad_input_is_one_line():
    lstm = dnn.LSTM(I, H, num_layers=2, rngs=nnx.Rngs(0))
    gru = dnn.GRU(I, H, bidirectional=True, batch_first=False, rngs=nnx.Rngs(0))
    x = _x(B, T, I)
    raises_one_line(lambda: lstm(x[0, 0]), "rank 3", "(B, T, input_size)", "unbatched (T, input_size)", "(4,)")
    raises_one_line(lambda: lstm(x[0], lengths=np.array([3])), "lengths needs a batch")
    raises_one_line(lambda: lstm(x[0], (np.zeros((2, 1, H)), np.zeros((2, 1, H)))), "unbatched", "(2, 6)", "(2, 1, 6)")
    raises_one_line(lambda: lstm(_x(B, T, I + 1)), "4 features", "(3, 5, 5)")
    raises_one_line(lambda: lstm(x, lengths=np.array([3, 6, 1])), "[1, 5]", "6")
    raises_one_line(lambda: lstm(x, lengths=np.array([3, 0, 1])), "[1, 5]", "0")
    raises_one_line(lambda: lstm(x, lengths=np.array([3, 1])), "shape (B,)")
    raises_one_line(lambda: lstm(x, lengths=np.array([3.0, 1.0, 2.0])), "integers")
    raises_one_line(lambda: lstm(x, np.zeros((2, B, H))), "tuple (h_0, c_0)")
    raises_one_line(lambda: lstm(x, (np.zeros((1, B, H)), np.zeros((2, B, H)))), "h_0 has shape (1, 3, 6)", "(2, 3, 6)")
    raises_one_line(lambda: gru(x, np.zeros((1, B, H))), "hx has shape (1, 3, 6)", "(2, 5, 6)")  # (T, B, F): B is 5
    raises_one_line(lambda: gru(x, lengths=np.array([3, 5, 1])), "shape (B,) = (5,)")  # (T, B, F): B is 5
    raises_one_line(lambda: dnn.GRUCell(I, H, rngs=nnx.Rngs(0))(_x(B, I + 1)), "(B, 4)")
    raises_one_line(lambda: dnn.GRUCell(I, H, rngs=nnx.Rngs(0))(_x(B, I), _x(B, H + 1)), "hx has shape (3, 7)")
    raises_one_line(lambda: dnn.RNN(I, H, nonlinearity="sigmoid", rngs=nnx.Rngs(0)), "nonlinearity")
    raises_one_line(lambda: dnn.LSTM(I, H, dropout=1.5, rngs=nnx.Rngs(0)), "dropout")
    emb = dnn.Embedding(10, 4, rngs=nnx.Rngs(0))
    raises_one_line(lambda: emb(np.array([[1, 10]])), "token id 10", "[0, 10)")
    raises_one_line(lambda: emb(jnp.array([-1, 3])), "token id -1")
    raises_one_line(lambda: emb(np.array([1.0])), "integer token ids")
    raises_one_line(lambda: dnn.Embedding(10, 4, padding_idx=10, rngs=nnx.Rngs(0)), "padding_idx")
    raises_one_line(lambda: dnn.Embedding.from_pretrained(np.zeros(3)), "2-D float table")
    # under jit the ids cannot be checked: JAX clamps them, as the docstring says
    clamped = nnx.jit(lambda m, i: m(i))(emb, jnp.array([12]))
    np.testing.assert_array_equal(np.asarray(clamped), np.asarray(emb.weight[...])[[9]])


# ------------------------------------------------------------------------------------------------
# unbatched input, the layer-norm cell, Recurrence (per-step dropout)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_unbatched_sequence_matches_torch(kind):
    ours = getattr(dnn, kind)(I, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    ref = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True)
    weights.load_state_dict(ours, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = _x(T, I)
    h0 = _x(4, H, seed=1)
    hx = (h0, _x(4, H, seed=2)) if kind == "LSTM" else h0
    out, hn = ours(x, hx)
    t_hx = tuple(torch.tensor(a) for a in hx) if kind == "LSTM" else torch.tensor(hx)
    t_out, t_hn = ref(torch.tensor(x), t_hx)
    assert out.shape == (T, 2 * H)
    _close(out, t_out.detach().numpy())
    for a, b in zip(jax.tree.leaves(hn), (t_hn if kind == "LSTM" else (t_hn,))):
        assert a.shape == (4, H)
        _close(a, b.detach().numpy())


def test_unbatched_lstm_names_a_lone_state_array():
    lstm = dnn.LSTM(I, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"hx is a tuple \(h_0, c_0\) of shape .* = \(1, %d\) each, got ndarray "
                                         r"of shape \(1, %d\)" % (H, H)):
        lstm(_x(T, I), np.zeros((1, H), np.float32))


def test_layer_norm_cell_is_the_books_memory_cell():
    # Geron's nn.Sequential(nn.Linear(I + H, H), nn.LayerNorm(H), nn.Tanh()), with the same weights
    cell = dnn.LayerNormRNNCell(I, H, rngs=nnx.Rngs(0))
    cell.norm.scale[...] = jnp.asarray(_x(H, seed=3))
    cell.norm.bias[...] = jnp.asarray(_x(H, seed=4))
    ref = torch.nn.Sequential(torch.nn.Linear(I + H, H), torch.nn.LayerNorm(H), torch.nn.Tanh())
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor(np.asarray(cell.linear.kernel[...]).T))
        ref[0].bias.copy_(torch.tensor(np.asarray(cell.linear.bias[...])))
        ref[1].weight.copy_(torch.tensor(np.asarray(cell.norm.scale[...])))
        ref[1].bias.copy_(torch.tensor(np.asarray(cell.norm.bias[...])))
    x, h = _x(B, I), _x(B, H, seed=1)
    _close(cell(x, h), ref(torch.tensor(np.concatenate([x, h], 1))).detach().numpy())
    _close(cell(x[0], h[0]), cell(x, h)[0])
    # over a sequence, as the book's hand-written loop
    seq = _x(B, T, I, seed=5)
    out, final = dnn.Recurrence(cell)(seq)
    state = torch.zeros(B, H)
    for t in range(T):
        state = ref(torch.cat([torch.tensor(seq[:, t]), state], 1))
        _close(out[:, t], state.detach().numpy())
    _close(final, state.detach().numpy())


def test_recurrence_with_a_torch_cell_is_the_layer():
    layer = dnn.GRU(I, H, rngs=nnx.Rngs(0))
    cell = dnn.GRUCell(I, H, rngs=nnx.Rngs(1))
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name)[...] = getattr(layer, name + "_l0")[...]
    x, h0 = _x(B, T, I), _x(B, H, seed=1)
    out, hn = layer(x, h0[None], lengths=LENGTHS)
    out2, hn2 = dnn.Recurrence(cell)(x, h0, lengths=LENGTHS)
    _close(out2, out)
    _close(hn2, hn[0])
    lstm_out, (h, c) = dnn.Recurrence(dnn.LSTMCell(I, H, rngs=nnx.Rngs(0)))(x)
    assert lstm_out.shape == (B, T, H) and h.shape == c.shape == (B, H)


class _Sum(nnx.Module):
    """h' = h + x: the state shows which dropout masks reached it."""

    hidden_size = H

    def initial_state(self, batch_size, dtype=jnp.float32):
        return jnp.ones((batch_size, H), dtype)

    def __call__(self, x, h):
        return h + x


def test_recurrent_dropout_masks():
    x0 = jnp.zeros((64, T, H))
    rec = dnn.Recurrence(_Sum(), recurrent_dropout=0.5, rngs=nnx.Rngs(0))
    out, _ = rec(x0)
    m = out[:, 0]                                   # the mask on h_0 = 1: 0 or 2 per unit
    assert set(np.unique(np.asarray(m))) == {0.0, 2.0}
    for t in range(T):                              # one mask per sequence, reused at every step
        _close(out[:, t], m ** (t + 1))
    rec = dnn.Recurrence(_Sum(), dropout=0.5, rngs=nnx.Rngs(0))
    out, _ = rec(jnp.ones((64, T, H)), jnp.zeros((64, H)))
    steps = np.diff(np.asarray(out), axis=1, prepend=0)   # the dropped input of each step: 0 or 2
    assert set(np.unique(steps)) == {0.0, 2.0}
    assert not all((steps[:, t] == steps[:, 0]).all() for t in range(1, T))   # a fresh mask at each step
    rec.eval()
    out_eval, _ = rec(jnp.ones((64, T, H)), jnp.zeros((64, H)))
    _close(out_eval[:, -1], np.full((64, H), T, np.float32))


def test_mc_dropout_through_recurrence():
    from dlcore.nn.regularization import mc_predict

    class Model(nnx.Module):
        def __init__(self):
            self.rec = dnn.Recurrence(dnn.LayerNormRNNCell(1, 8, rngs=nnx.Rngs(0)), recurrent_dropout=0.3,
                                      rngs=nnx.Rngs(0))
            self.head = dnn.Linear(8, 1, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.head(self.rec(x)[1])

    model = Model()
    model.eval()
    mean, std = mc_predict(model, _x(4, T, 1), n_samples=20, transform=None)
    assert mean.shape == std.shape == (4, 1) and float(std.min()) > 0


def test_recurrence_bad_input_is_one_line():
    cell = dnn.LayerNormRNNCell(I, H, rngs=nnx.Rngs(0))
    raises_one_line(lambda: dnn.Recurrence(cell)(_x(B, T, I), _x(B + 1, H)), "batch of 3", "(3, 6)", "(4, 6)")
    raises_one_line(lambda: dnn.Recurrence(cell)(_x(T, I)), "rank 3")
    raises_one_line(lambda: dnn.Recurrence(cell)(_x(B, T, I), lengths=np.array([1, 2, 6])), "[1, 5]")
    raises_one_line(lambda: dnn.Recurrence(cell, dropout=0.1), "needs rngs")
    raises_one_line(lambda: dnn.Recurrence(cell, recurrent_dropout=1.0, rngs=nnx.Rngs(0)), "recurrent_dropout")
    raises_one_line(lambda: cell(_x(B, I + 1)), "(B, 4)")
    with pytest.raises(TypeError, match="initial_state"):
        dnn.Recurrence(lambda x, h: h)
