"""dlcore.nn.attention against torch: MultiheadAttention, scaled dot-product attention, Luong's and Bahdanau's forms.

Parity: torch's state dict loads through `dlcore.weights`; outputs, attention weights and the gradients of a
scalar loss with respect to the query, key, value and every weight agree to 1e-5 in float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import nn as dnn
from dlcore import weights
from dlcore.nn import attention as A
from one_line import raises_one_line

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-5, 1e-5
B, L, S, E, NH = 2, 3, 4, 8, 2


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b, msg=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL, err_msg=msg)


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


KPM = np.array([[False, False, True, True], [False, False, False, False]])     # padding at the end of row 0
CAUSALISH = np.triu(np.ones((L, S), bool), k=2)                                 # True = not allowed

# batch_first, bias, kdim/vdim, key_padding_mask, attn_mask, average_attn_weights, unbatched
GRID = [
    (True, True, None, None, None, True, False),
    (False, True, None, "bool", "bool", True, False),
    (True, False, (5, 6), "bool", None, False, False),
    (True, True, None, "float", "float3d", True, False),
    (False, True, (5, 6), None, "bool", False, False),
    (True, True, None, "bool", "bool", True, True),
]


@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(str(v) for v in c))
def test_multihead_attention_matches_torch(case):
    batch_first, bias, kv, kpm_kind, am_kind, average, unbatched = case
    kdim, vdim = kv or (E, E)
    ref = torch.nn.MultiheadAttention(E, NH, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first)
    ours = dnn.MultiheadAttention(E, NH, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first,
                                  rngs=nnx.Rngs(0))
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    assert set(weights.torch_keys(ours)) == set(sd)
    weights.load_state_dict(ours, sd)
    q, k, v = _x(B, L, E), _x(B, S, kdim, seed=1), _x(B, S, vdim, seed=2)
    kpm = {None: None, "bool": KPM, "float": np.where(KPM, -1e4, 0.5).astype(np.float32)}[kpm_kind]
    am = {None: None, "bool": CAUSALISH, "float3d": _x(B * NH, L, S, seed=3)}[am_kind]
    if unbatched:
        q, k, v, kpm = q[0], k[0], v[0], None if kpm is None else kpm[0]
    elif not batch_first:
        q, k, v = (np.swapaxes(a, 0, 1) for a in (q, k, v))
    tq, tk, tv = _t(q, True), _t(k, True), _t(v, True)
    t_out, t_w = ref(tq, tk, tv, key_padding_mask=None if kpm is None else _t(kpm), attn_mask=None if am is None
                     else _t(am), average_attn_weights=average)
    (t_out.square().sum() + (t_w * torch.arange(t_w.numel()).reshape(t_w.shape) / t_w.numel()).sum()).backward()

    def loss(model, q, k, v):
        out, w = model(q, k, v, key_padding_mask=kpm, attn_mask=am, average_attn_weights=average)
        return jnp.sum(out ** 2) + jnp.sum(w * jnp.arange(w.size).reshape(w.shape) / w.size), (out, w)

    (_, (out, w)), grads = nnx.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(ours, q, k, v)
    assert out.shape == tuple(t_out.shape) and w.shape == tuple(t_w.shape)
    _close(out, t_out.detach().numpy(), "output")
    _close(w, t_w.detach().numpy(), "weights")
    for g, tt, name in zip(grads[1:], (tq, tk, tv), "qkv"):
        _close(g, tt.grad.numpy(), f"d{name}")
    g_model = grads[0]
    for name, p in ref.named_parameters():
        if name == "in_proj_weight":
            got = g_model["in_proj_weight"][...]
        elif name == "in_proj_bias":
            got = g_model["in_proj_bias"][...]
        elif name.endswith("_proj_weight"):
            got = g_model[name][...]
        elif name == "out_proj.weight":
            got = np.asarray(g_model["out_proj"]["kernel"][...]).T
        else:
            got = g_model["out_proj"]["bias"][...]
        _close(got, p.grad.numpy(), name)
    # without weights
    out2, none = ours(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    assert none is None
    _close(out2, out)


def test_multihead_attention_initialisation_follows_torch():
    m = dnn.MultiheadAttention(64, 4, rngs=nnx.Rngs(0))
    w = np.asarray(m.in_proj_weight[...])
    bound = np.sqrt(6 / (64 + 3 * 64))                       # Xavier-uniform over the (3E, E) matrix
    assert w.shape == (192, 64) and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not np.asarray(m.in_proj_bias[...]).any() and not np.asarray(m.out_proj.bias[...]).any()
    assert np.abs(np.asarray(m.out_proj.kernel[...])).max() <= 1 / 8


def test_multihead_attention_dropout_in_train_mode_only():
    m = dnn.MultiheadAttention(E, NH, dropout=0.5, rngs=nnx.Rngs(0))
    q = _x(B, L, E)
    a, wa = m(q, q, q)
    b, _ = m(q, q, q)
    assert not np.allclose(a, b)
    assert (np.asarray(wa) == 0).any() and not np.allclose(np.asarray(wa).sum(-1), 1.0)   # dropped and rescaled
    m.eval()
    c, wc = m(q, q, q)
    d, _ = m(q, q, q)
    _close(c, d)
    _close(np.asarray(wc).sum(-1), np.ones((B, L)))


@pytest.mark.parametrize("mask", ["bool", "float", "causal", None])
def test_scaled_dot_product_attention_matches_torch(mask):
    q, k, v = _x(B, NH, L, E), _x(B, NH, S, E, seed=1), _x(B, NH, S, 5, seed=2)
    am = {"bool": ~CAUSALISH, "float": _x(L, S, seed=3), "causal": None, None: None}[mask]
    tq, tk, tv = _t(q, True), _t(k, True), _t(v, True)
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=None if am is None else _t(am),
                                                           is_causal=mask == "causal")
    ref.square().sum().backward()
    f = lambda q, k, v: A.scaled_dot_product_attention(q, k, v, am, is_causal=mask == "causal")  # noqa: E731
    out = f(q, k, v)
    _close(out, ref.detach().numpy())
    grads = jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2))(q, k, v)
    for g, tt in zip(grads, (tq, tk, tv)):
        _close(g, tt.grad.numpy())


def _torch_attention(query, key, value, scores):
    """Géron's `attention(query, key, value)` (ch. 14, Luong attention), with a pluggable score and padding."""
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


@pytest.mark.parametrize("form", ["dot", "general", "additive"])
def test_luong_and_bahdanau_attention_match_torch(form):
    dq, dk = (E, E) if form == "dot" else (E, 6)
    q, k = _x(B, L, dq), _x(B, S, dk, seed=1)
    score = {"dot": None, "general": dnn.GeneralScore(dq, dk, rngs=nnx.Rngs(0)),
             "additive": dnn.AdditiveScore(dq, dk, units=7, rngs=nnx.Rngs(0))}[form]
    tq, tk = _t(q, True), _t(k, True)
    if form == "dot":
        scores = tq @ tk.transpose(1, 2)
    elif form == "general":
        scores = tq @ (tk @ _t(score.linear.kernel[...])).transpose(1, 2)
    else:
        wq, wk, v = (_t(getattr(score, n).kernel[...]) for n in ("query_proj", "key_proj", "v"))
        scores = (torch.tanh((tq @ wq)[:, :, None] + (tk @ wk)[:, None]) @ v)[..., 0]
    scores = scores.masked_fill(_t(KPM)[:, None, :], float("-inf"))
    t_out, t_w = _torch_attention(tq, tk, tk, scores)
    t_out.square().sum().backward()
    out, w = A.attention(q, k, k, score=score, key_padding_mask=KPM)
    _close(out, t_out.detach().numpy())
    _close(w, t_w.detach().numpy())
    assert float(np.abs(np.asarray(w)[0, :, 2:]).max()) == 0.0          # padding keys get no weight
    grads = jax.grad(lambda q, k: jnp.sum(A.attention(q, k, k, score=score, key_padding_mask=KPM)[0] ** 2),
                     argnums=(0, 1))(q, k)
    _close(grads[0], tq.grad.numpy())
    _close(grads[1], tk.grad.numpy())


def test_attention_under_jit_and_vmap():
    q, k = _x(B, L, E), _x(B, S, E, seed=1)
    f = jax.jit(lambda q, k, m: A.attention(q, k, k, key_padding_mask=m)[0])
    _close(f(q, k, KPM), A.attention(q, k, k, key_padding_mask=KPM)[0])
    per_row = jax.vmap(lambda q, k, m: A.attention(q, k, k, key_padding_mask=m)[0])(q, k, KPM)
    _close(per_row, f(q, k, KPM))


def test_bad_input_is_one_line():
    m = dnn.MultiheadAttention(E, NH, rngs=nnx.Rngs(0))
    q, k = _x(B, L, E), _x(B, S, E)
    raises_one_line(lambda: m(q, k, k, key_padding_mask=np.zeros((B, S + 1), bool)), "key_padding_mask", "(2, 4)",
              "(2, 5)")
    raises_one_line(lambda: m(q, k, k, attn_mask=np.zeros((S, L), bool)), "attn_mask", "(3, 4)", "(4, 3, 4)",
                    "got (4, 3)")
    raises_one_line(lambda: m(q, k, k, attn_mask=np.zeros((L, S), np.int32)), "boolean or floating")
    raises_one_line(lambda: m(q[..., :5], k, k), "query must have 8 features")
    raises_one_line(lambda: m(q, k[:1], k[:1]), "share the batch")
    raises_one_line(lambda: m(q, k, k[0]), "all be batched")
    raises_one_line(lambda: dnn.MultiheadAttention(10, 3, rngs=nnx.Rngs(0)), "divisible")
    raises_one_line(lambda: dnn.MultiheadAttention(E, NH, add_bias_kv=True, rngs=nnx.Rngs(0)), "not supported")
    raises_one_line(lambda: A.attention(q, k, k, key_padding_mask=np.zeros((B, L), bool)), "key_padding_mask", "(2, 4)")
    raises_one_line(lambda: A.attention(q, k, k[:, :2]), "same batch and length")
    raises_one_line(lambda: A.dot_score(q, _x(B, S, 5)), "same feature size")
    raises_one_line(lambda: A.scaled_dot_product_attention(q, k, k, np.zeros((L, S + 2), bool)), "attn_mask")
    raises_one_line(lambda: A.scaled_dot_product_attention(q, k, k, dropout_p=0.1), "needs rng")
