"""Attention: Luong's and Bahdanau's scores, scaled dot-product attention and torch's MultiheadAttention.

* `attention(query, key, value, score=..., key_padding_mask=...)`: softmax-weighted sums of the values,
  with the scores of Luong et al. (2015): `dot_score` (h_t . y_i), `GeneralScore` (h_t W y_i) and
  `AdditiveScore` (v . tanh(W [h_t, y_i]), Luong's "concat", which is Bahdanau et al.'s (2015)
  additive attention). Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14,
  "Attention Mechanisms", Equation 14-2, writes the dot form by hand; here padding keys can be masked.
* `scaled_dot_product_attention`: `torch.nn.functional.scaled_dot_product_attention`, same arguments and
  mask convention (a boolean `attn_mask` is True where attention is allowed).
* `MultiheadAttention`: `torch.nn.MultiheadAttention`, same arguments, mask conventions (a boolean
  `key_padding_mask` or `attn_mask` is True where attention is NOT allowed), initialisation, return values
  and state-dict names (`in_proj_weight`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`, or
  `q_proj_weight`, `k_proj_weight`, `v_proj_weight` when the key or value size differs), so a torch
  state dict loads unchanged through `dlcore.weights`.

A query whose keys are all masked has no distribution to attend with: its weights and output are NaN, as in
torch, rather than a silent average of padding.

References: Bahdanau, Cho and Bengio, 2015; Luong, Pham and Manning, 2015; Vaswani et al., 2017.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int
from dlcore.nn.init import glorot_uniform
from dlcore.nn.layers import Linear

__all__ = ["AdditiveScore", "GeneralScore", "MultiheadAttention", "attention", "dot_score",
           "scaled_dot_product_attention"]


def _shape(a) -> tuple:
    return tuple(getattr(a, "shape", np.shape(a)))


def _swap(a):
    return jnp.swapaxes(a, -1, -2)


# ------------------------------------------------------------------------------------------------
# Luong and Bahdanau
# ------------------------------------------------------------------------------------------------

def dot_score(query: jax.Array, key: jax.Array) -> jax.Array:
    """Luong's "dot" score e_(t,i) = h_t . y_i: query (..., L, D), key (..., S, D) -> (..., L, S)."""
    query, key = jnp.asarray(query), jnp.asarray(key)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"dot_score: query and key need the same feature size, got query {tuple(query.shape)} "
                         f"and key {tuple(key.shape)}; use GeneralScore or AdditiveScore for different sizes")
    return query @ _swap(key)


class GeneralScore(nnx.Module):
    """Luong's "general" score e_(t,i) = h_t W y_i: the keys go through a Linear without bias first.

    Args:
        query_size: features of the query (the decoder's state).
        key_size: features of the keys (the encoder's outputs).
        rngs: NNX random streams (torch's default Linear initialisation).

    Call: `score(query (..., L, query_size), key (..., S, key_size)) -> (..., L, S)`.
    Parameters: `linear` (key_size -> query_size, no bias).
    """

    def __init__(self, query_size: int, key_size: int, *, rngs: nnx.Rngs):
        self.linear = Linear(check_int(key_size, "key_size", low=1, who="GeneralScore"),
                             check_int(query_size, "query_size", low=1, who="GeneralScore"), bias=False, rngs=rngs)

    def __call__(self, query, key):
        return dot_score(query, self.linear(jnp.asarray(key)))


class AdditiveScore(nnx.Module):
    """Bahdanau's additive score, Luong's "concat": e_(t,i) = v . tanh(W_q h_t + W_k y_i).

    W [h_t, y_i] of Equation 14-2 (Géron, ch. 14) is W_q h_t + W_k y_i with W = [W_q, W_k]; computing the
    two halves apart costs (L + S) projections instead of L * S.

    Args:
        query_size: features of the query.
        key_size: features of the keys.
        units: size of the hidden layer (defaults to query_size).
        rngs: NNX random streams.

    Call: `score(query (..., L, query_size), key (..., S, key_size)) -> (..., L, S)`.
    Parameters: `query_proj` (query_size -> units), `key_proj` (key_size -> units), `v` (units -> 1),
    none with a bias, as in Bahdanau et al. (2015).
    """

    def __init__(self, query_size: int, key_size: int, units: int | None = None, *, rngs: nnx.Rngs):
        who = "AdditiveScore"
        query_size = check_int(query_size, "query_size", low=1, who=who)
        key_size = check_int(key_size, "key_size", low=1, who=who)
        units = query_size if units is None else check_int(units, "units", low=1, who=who)
        self.query_proj = Linear(query_size, units, bias=False, rngs=rngs)
        self.key_proj = Linear(key_size, units, bias=False, rngs=rngs)
        self.v = Linear(units, 1, bias=False, rngs=rngs)

    def __call__(self, query, key):
        q = self.query_proj(jnp.asarray(query))[..., :, None, :]          # (..., L, 1, U)
        k = self.key_proj(jnp.asarray(key))[..., None, :, :]              # (..., 1, S, U)
        return self.v(jnp.tanh(q + k))[..., 0]                           # (..., L, S)


def _padding_mask(mask, batch_shape: tuple, s: int, who: str) -> jax.Array:
    """A key-padding mask (..., S), True (or nonzero) at padding keys -> bool, checked against the keys."""
    mask = jnp.asarray(mask)
    if _shape(mask) != batch_shape + (s,):
        raise ValueError(f"{who}: key_padding_mask must have shape (batch..., S) = {batch_shape + (s,)}, "
                         f"True at padding keys; got {_shape(mask)}")
    return mask.astype(bool)


def attention(query, key, value, *, score: Callable | None = None, key_padding_mask=None):
    """Attention of Equation 14-2 (Géron, ch. 14): softmax over the keys of score(query, key), then a
    weighted sum of the values.

    Args:
        query: (..., L, Dq), e.g. the decoder's outputs.
        key: (..., S, Dk), e.g. the encoder's outputs.
        value: (..., S, Dv), usually the key itself.
        score: `dot_score` (None, the default), a `GeneralScore`, an `AdditiveScore` or any function
            (query, key) -> (..., L, S).
        key_padding_mask: (..., S), True at padding keys, which then get weight 0 (torch's convention).

    Returns:
        `(output (..., L, Dv), weights (..., L, S))`; the weights of each query sum to 1 over its real keys.
    """
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if query.ndim < 2 or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"attention: query, key and value must be (..., L, D), (..., S, D), (..., S, Dv) of one "
                         f"rank >= 2, got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if key.shape[:-1] != value.shape[:-1]:
        raise ValueError(f"attention: key and value must have the same batch and length (..., S), got key "
                         f"{tuple(key.shape)} and value {tuple(value.shape)}")
    scores = (score or dot_score)(query, key)                            # (..., L, S)
    if key_padding_mask is not None:
        pad = _padding_mask(key_padding_mask, key.shape[:-2], key.shape[-2], "attention")
        scores = jnp.where(pad[..., None, :], -jnp.inf, scores)
    weights = jax.nn.softmax(scores, axis=-1)
    return weights @ value, weights


# ------------------------------------------------------------------------------------------------
# scaled dot-product and multi-head attention
# ------------------------------------------------------------------------------------------------

def _additive(mask, allowed_when_true: bool, shape_ok: Callable[[tuple], bool], want: str, who: str, name: str,
              dtype) -> jax.Array:
    """A boolean or float mask -> an additive float mask (0 or -inf for booleans; the floats themselves)."""
    mask = jnp.asarray(mask)
    if not shape_ok(_shape(mask)):
        raise ValueError(f"{who}: {name} must have shape {want}, got {_shape(mask)}")
    if mask.dtype == jnp.bool_:
        blocked = ~mask if allowed_when_true else mask
        return jnp.where(blocked, -jnp.inf, 0.0).astype(dtype)
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise ValueError(f"{who}: {name} must be boolean or floating (added to the scores), got dtype {mask.dtype}")
    return mask.astype(dtype)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None, *,
                                 rng: jax.Array | None = None) -> jax.Array:
    """`torch.nn.functional.scaled_dot_product_attention`: softmax(q k^T * scale + mask) v.

    Args:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev).
        attn_mask: broadcastable to (..., L, S): boolean, True where attention is ALLOWED (torch's convention
            for this function), or floats added to the scores.
        dropout_p: dropout on the attention weights; needs `rng` when > 0.
        is_causal: mask out keys after each query (query i sees keys 0..i, aligned at the start as torch).
        scale: defaults to 1 / sqrt(E).
        rng: a JAX key for the dropout.

    Returns: (..., L, Ev).
    """
    who = "scaled_dot_product_attention"
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if query.ndim < 2 or query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{who}: expects query (..., L, E), key (..., S, E), value (..., S, Ev), got "
                         f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    dropout_p = check_float(dropout_p, "dropout_p", low=0, high=1, high_open=True, who=who)
    if dropout_p and rng is None:
        raise ValueError(f"{who}: dropout_p > 0 needs rng (a jax.random key)")
    l, s = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else check_float(scale, "scale", who=who)
    scores = (query @ _swap(key)) * scale
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{who}: pass attn_mask or is_causal, not both (as torch)")
        scores = jnp.where(jnp.tril(jnp.ones((l, s), bool)), scores, -jnp.inf)
    if attn_mask is not None:
        def fits(shape):
            try:
                return jnp.broadcast_shapes(shape, scores.shape) == scores.shape
            except ValueError:
                return False
        scores = scores + _additive(attn_mask, True, fits, f"broadcastable to {scores.shape}", who, "attn_mask",
                                    scores.dtype)
    weights = jax.nn.softmax(scores, axis=-1)
    if dropout_p:
        keep = jax.random.bernoulli(rng, 1.0 - dropout_p, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_p), 0.0)
    return weights @ value


class MultiheadAttention(nnx.Module):
    """`torch.nn.MultiheadAttention`: h heads of scaled dot-product attention over projected q, k, v.

    Args:
        embed_dim: E, features of the query and of the output.
        num_heads: heads; E must be divisible by it (each head has E / num_heads features).
        dropout: dropout on the attention weights, in train mode (the `dropout` stream, else `default`).
        bias: biases on the input and output projections.
        kdim, vdim: features of the key and value (E when None); when either differs from E the input
            projections are three matrices (`q_proj_weight`, ...), else one `in_proj_weight`, as torch.
        batch_first: (B, L, E) inputs and outputs when True (dlcore's default; torch's is False), else
            (L, B, E). Unbatched (L, E) inputs work either way.
        rngs: NNX random streams; initialisation as torch: input projections Xavier-uniform, their bias
            and the output bias zero, the output weight U(+-1/sqrt(E)).

    Not supported (they raise): torch's `add_bias_kv` and `add_zero_attn`.

    Call: see `__call__`. Parameters (torch's names and layout): `in_proj_weight` (3E, E) and `in_proj_bias`
    (3E,), or `q_proj_weight` (E, E), `k_proj_weight` (E, kdim), `v_proj_weight` (E, vdim); `out_proj`
    a Linear(E, E).
    Reference: Vaswani et al., "Attention Is All You Need" (2017).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = True, *, rngs: nnx.Rngs):
        who = "MultiheadAttention"
        self.embed_dim = e = check_int(embed_dim, "embed_dim", low=1, who=who)
        self.num_heads = check_int(num_heads, "num_heads", low=1, who=who)
        if e % self.num_heads:
            raise ValueError(f"{who}: embed_dim ({e}) must be divisible by num_heads ({self.num_heads})")
        self.dropout = check_float(dropout, "dropout", low=0, high=1, high_open=True, who=who)
        self.bias = check_choice(bias, "bias", (True, False), who=who)
        if add_bias_kv or add_zero_attn:
            raise ValueError(f"{who}: add_bias_kv and add_zero_attn are not supported")
        self.kdim = e if kdim is None else check_int(kdim, "kdim", low=1, who=who)
        self.vdim = e if vdim is None else check_int(vdim, "vdim", low=1, who=who)
        self.batch_first = check_choice(batch_first, "batch_first", (True, False), who=who)
        self.head_dim = e // self.num_heads
        self._same_embed_dim = self.kdim == e and self.vdim == e
        xavier = glorot_uniform()
        if self._same_embed_dim:
            self.in_proj_weight = nnx.Param(xavier(rngs.params(), (3 * e, e)))
        else:
            self.q_proj_weight = nnx.Param(xavier(rngs.params(), (e, e)))
            self.k_proj_weight = nnx.Param(xavier(rngs.params(), (e, self.kdim)))
            self.v_proj_weight = nnx.Param(xavier(rngs.params(), (e, self.vdim)))
        if bias:
            self.in_proj_bias = nnx.Param(jnp.zeros((3 * e,), jnp.float32))
        self.out_proj = Linear(e, e, bias=bias, bias_init=nnx.initializers.zeros, rngs=rngs)
        self.attn_drop = nnx.Dropout(self.dropout, rngs=rngs) if self.dropout else None

    def _projections(self):
        e = self.embed_dim
        if self._same_embed_dim:
            w = self.in_proj_weight[...]
            ws = (w[:e], w[e:2 * e], w[2 * e:])
        else:
            ws = (self.q_proj_weight[...], self.k_proj_weight[...], self.v_proj_weight[...])
        bs = (None,) * 3 if not self.bias else tuple(jnp.split(self.in_proj_bias[...], 3))
        return ws, bs

    def __call__(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                 average_attn_weights: bool = True):
        """Attend from the queries to the keys.

        Args:
            query: (B, L, E) with `batch_first` (else (L, B, E)), or unbatched (L, E).
            key: (B, S, kdim), value: (B, S, vdim) in the same layout.
            key_padding_mask: (B, S) (or (S,) unbatched): boolean, True at keys to ignore (padding), or
                floats added to the scores.
            need_weights: also return the attention weights.
            attn_mask: (L, S) or (B * num_heads, L, S): boolean, True where attention is NOT allowed, or
                floats added to the scores.
            average_attn_weights: average the returned weights over the heads.

        Returns:
            `(output, weights)`: output in the query's layout with E features; weights (B, L, S) averaged
            over heads, or (B, num_heads, L, S), after dropout as torch (None when `need_weights` is False;
            no batch axis for unbatched inputs).
        """
        who = "MultiheadAttention"
        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        if not (query.ndim == key.ndim == value.ndim and query.ndim in (2, 3)):
            raise ValueError(f"{who}: query, key and value must all be batched (rank 3) or all unbatched "
                             f"(L, E), got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query[None], key[None], value[None]
            if key_padding_mask is not None:
                key_padding_mask = jnp.asarray(key_padding_mask)[None]
        elif not self.batch_first:
            query, key, value = (jnp.swapaxes(a, 0, 1) for a in (query, key, value))
        b, l, _ = query.shape
        s = key.shape[1]
        layout = "(B, L, E)" if self.batch_first or unbatched else "(L, B, E)"
        for name, a, d in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if a.shape[-1] != d:
                raise ValueError(f"{who}: {name} must have {d} features ({layout}), got shape {tuple(a.shape)}")
        if key.shape[:2] != (b, s) or value.shape[:2] != (b, s):
            raise ValueError(f"{who}: key and value must share the batch and length of a key sequence, and the "
                             f"query's batch: query {tuple(query.shape)}, key {tuple(key.shape)}, value "
                             f"{tuple(value.shape)} (batch first)")
        dtype = jnp.result_type(query.dtype, self.out_proj.kernel[...].dtype)
        h, d = self.num_heads, self.head_dim
        bias = jnp.zeros((b, h, l, s), dtype)
        if key_padding_mask is not None:
            bias = bias + _additive(key_padding_mask, False, lambda sh: sh == (b, s),
                                    "(S,)" if unbatched else f"(B, S) = {(b, s)}", who, "key_padding_mask",
                                    dtype)[:, None, None, :]
        if attn_mask is not None:
            am = _additive(attn_mask, False, lambda sh: sh in ((l, s), (b * h, l, s)),
                           f"(L, S) = {(l, s)} or (B * num_heads, L, S) = {(b * h, l, s)}", who, "attn_mask", dtype)
            bias = bias + (am if am.ndim == 2 else am.reshape(b, h, l, s))
        (wq, wk, wv), (bq, bk, bv) = self._projections()

        def project(x, w, bb):                                          # (B, T, F) -> (B, h, T, d)
            y = x.astype(dtype) @ w.T
            y = y if bb is None else y + bb
            return jnp.swapaxes(y.reshape(x.shape[0], x.shape[1], h, d), 1, 2)

        q = project(query, wq, bq) * (1.0 / math.sqrt(d))
        k, v = project(key, wk, bk), project(value, wv, bv)
        weights = jax.nn.softmax(q @ _swap(k) + bias, axis=-1)         # (B, h, L, S)
        if self.attn_drop is not None:
            weights = self.attn_drop(weights)
        out = jnp.swapaxes(weights @ v, 1, 2).reshape(b, l, h * d)      # (B, L, E)
        out = self.out_proj(out)
        if unbatched:
            out = out[0]
        elif not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        if not need_weights:
            return out, None
        w = weights.mean(axis=1) if average_attn_weights else weights
        return out, (w[0] if unbatched else w)
