"""Decoding over a user's step function: greedy, sampling (temperature, top-k, top-p) and beam search.

The model is seen only through one function, the *step*::

    step(tokens, state) -> (logits, new_state)
        tokens:    (B,) int32, the previous token of each sequence
        state:     a pytree carried from step to step (an RNN hidden state, a decoder's key/value cache,
                   the encoder output a decoder attends to, a position counter, ...)
        logits:    (B, V) unnormalised scores of the next token
        new_state: a pytree with the same structure, shapes and dtypes as ``state``

Decoding is *incremental*: each step sees one token per sequence and the carried state, never the prefix, so
``max_len`` tokens cost ``max_len`` calls of the step (not O(max_len ** 2) work), and whatever the caller put in
the state (an encoder output, say) is reused as it is. Every decoder is one ``lax.scan`` of fixed length
``max_len`` (finished sequences are masked, not dropped), so it runs under ``jax.jit`` and a jitted call with
the same shapes compiles once. ``max_len`` and the keyword options are static Python values; the state, the
start tokens and the key may be traced.

After a sequence emits ``eos_id`` it keeps emitting ``pad_id`` (by default ``eos_id`` itself); the step is
still called for it (the batch moves together) but its state no longer affects its output. ``lengths`` counts
the generated tokens up to and including the first EOS (``max_len`` when there is none); the start token is
not part of the output.

Every decoder returns a :class:`Decoded` ``(tokens, lengths, log_prob, score)``. ``log_prob`` is the total
log-probability of the generated tokens under the model (``log_softmax`` of the step's logits, temperature 1,
no filtering), EOS included, pads excluded; ``score`` is what the decoder ranked by (``log_prob`` for greedy
and sampling, the length-normalised score for beam search).

References: Holtzman, Buys, Du, Forbes and Choi (2020), "The curious case of neural text degeneration"
(nucleus / top-p sampling); Fan, Lewis and Dauphin (2018), "Hierarchical neural story generation" (top-k
sampling); Wu et al. (2016), "Google's neural machine translation system" (beam search with length
normalisation); Sutskever, Vinyals and Le (2014), "Sequence to sequence learning with neural networks" (beam
search for sequence-to-sequence decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from dlcore.checks import check_float, check_int

__all__ = ["Decoded", "beam_search", "filter_logits", "greedy", "sample"]

Step = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


class Decoded(NamedTuple):
    """What a decoder returns.

    Attributes:
        tokens: (B, max_len) int32, the generated tokens (pads after EOS).
        lengths: (B,) int32, tokens up to and including the first EOS; ``max_len`` when none was emitted.
        log_prob: (B,) float32, total log-probability of ``tokens[:, :lengths]`` under the model.
        score: (B,) float32, what the decoder ranked by: ``log_prob`` for greedy and sampling,
            ``log_prob / lengths ** length_penalty`` for beam search.
    """

    tokens: jax.Array
    lengths: jax.Array
    log_prob: jax.Array
    score: jax.Array


# ----------------------------------------------------------------------------------------------- checks


def _setup(who: str, step: Step, state: Any, start_tokens: Any, max_len: Any, eos_id: Any,
           pad_id: Any) -> tuple[jax.Array, int, int, int | None, int]:
    """Checks the common arguments and the step's protocol by abstract evaluation (nothing runs).

    Returns (start_tokens as (B,) int32, max_len, V, eos_id, pad_id).
    """
    if not callable(step):
        raise ValueError(f"{who}: step must be a function (tokens, state) -> (logits, new_state), got {step!r}")
    max_len = check_int(max_len, "max_len", low=1, who=who)
    start = jnp.asarray(start_tokens)
    if start.ndim != 1 or not jnp.issubdtype(start.dtype, jnp.integer):
        raise ValueError(f"{who}: start_tokens must be a (B,) integer array, got shape {start.shape} "
                         f"dtype {start.dtype}")
    start = start.astype(jnp.int32)
    batch = start.shape[0]
    try:
        out = jax.eval_shape(step, start, state)
    except Exception as e:  # a step that does not take (tokens, state) or this state: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{who}: step(tokens, state) failed on tokens of shape ({batch},) and the given "
                         f"state: {type(e).__name__}: {first}") from e
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"{who}: step must return a pair (logits, new_state), got {type(out).__name__}"
                         f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}")
    logits, new_state = out
    if not hasattr(logits, "shape") or len(logits.shape) != 2 or logits.shape[0] != batch:
        shape = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(f"{who}: step must return logits of shape (B, V) = ({batch}, V), got {shape}")
    in_struct = jax.tree.map(lambda x: (jnp.shape(x), jax.dtypes.canonicalize_dtype(jnp.result_type(x))), state)
    out_struct = jax.tree.map(lambda x: (x.shape, x.dtype), new_state)
    if jax.tree.structure(state) != jax.tree.structure(new_state) or in_struct != out_struct:
        raise ValueError(f"{who}: step must return a new state with the same structure, shapes and dtypes as "
                         f"the state it was given; got {out_struct} for {in_struct}")
    vocab = int(logits.shape[1])
    if eos_id is not None:
        eos_id = check_int(eos_id, "eos_id", low=0, high=vocab - 1, who=who)
    if pad_id is None:
        pad_id = 0 if eos_id is None else eos_id
    pad_id = check_int(pad_id, "pad_id", low=0, high=vocab - 1, who=who)
    return start, max_len, vocab, eos_id, pad_id


def _check_filters(who: str, vocab: int, temperature: Any, top_k: Any, top_p: Any) -> tuple[float, Any, Any]:
    temperature = check_float(temperature, "temperature", low=0, low_open=True, who=who)
    if top_k is not None:
        top_k = check_int(top_k, "top_k", low=1, high=vocab, who=who)
    if top_p is not None:
        top_p = check_float(top_p, "top_p", low=0, high=1, low_open=True, who=who)
    return temperature, top_k, top_p


def _is_eos(tokens: jax.Array, eos_id: int | None) -> jax.Array:
    return jnp.zeros(tokens.shape, bool) if eos_id is None else tokens == eos_id


# ------------------------------------------------------------------------------------ greedy, sampling


def filter_logits(logits: jax.Array, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> jax.Array:
    """Temperature-scaled logits with the tokens outside the top-k and the nucleus set to ``-inf``.

    In this order, as most libraries do: divide by ``temperature``; keep the ``top_k`` largest logits (ties
    with the k-th are kept too; Fan et al., 2018); then keep the nucleus of what is left, the smallest set of
    most probable tokens whose probabilities sum to at least ``top_p`` (Holtzman et al., 2020): a token is
    kept when the probability of the tokens ranked above it sums to less than ``top_p``, so the most probable
    token is always kept. ``top_p=1`` keeps everything.

    Args:
        logits: (..., V) unnormalised scores.
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: None, or an int in [1, V].
        top_p: None, or a float in (0, 1].

    Returns:
        (..., V) float32 logits, ``-inf`` where filtered out; ``jax.random.categorical`` samples from them.
    """
    logits = jnp.asarray(logits)
    temperature, top_k, top_p = _check_filters("filter_logits", logits.shape[-1], temperature, top_k, top_p)
    return _filter(logits, temperature, top_k, top_p)


def _filter(logits: jax.Array, temperature: float, top_k: int | None, top_p: float | None) -> jax.Array:
    logits = logits.astype(jnp.float32)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = lax.top_k(logits, top_k)[0][..., -1:]                     # (..., 1)
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None and top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)                            # (..., V), most probable first
        probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), order, axis=-1)
        above = jnp.cumsum(probs, axis=-1) - probs                      # mass ranked strictly above each
        keep_sorted = above < top_p
        keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


def _decode(step: Step, state: Any, start: jax.Array, max_len: int, eos_id: int | None, pad_id: int,
            choose: Callable[[jax.Array, jax.Array], jax.Array], keys: jax.Array | None) -> Decoded:
    """One scan for greedy and sampling: ``choose(logits (B, V), key) -> tokens (B,)``."""
    batch = start.shape[0]

    def body(carry, key):
        tokens, state, done, length, total = carry
        logits, state = step(tokens, state)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # (B, V)
        nxt = jnp.where(done, pad_id, choose(logits, key).astype(jnp.int32))
        total = total + jnp.where(done, 0.0, jnp.take_along_axis(logp, nxt[:, None], axis=-1)[:, 0])
        length = length + (~done).astype(jnp.int32)
        done = done | _is_eos(nxt, eos_id)
        return (nxt, state, done, length, total), nxt

    init = (start, state, jnp.zeros(batch, bool), jnp.zeros(batch, jnp.int32), jnp.zeros(batch, jnp.float32))
    (_, _, _, lengths, total), tokens = lax.scan(body, init, keys, length=max_len)
    return Decoded(tokens.T, lengths, total, total)                      # tokens: (max_len, B) -> (B, max_len)


def greedy(step: Step, state: Any, start_tokens: Any, max_len: int, *, eos_id: int | None = None,
           pad_id: int | None = None) -> Decoded:
    """Greedy decoding: at each step the most probable next token (the first one on ties).

    Args:
        step: ``(tokens (B,) int32, state) -> (logits (B, V), new_state)``, see the module docstring.
        state: the initial state pytree (hidden state, cache, encoder output, ...).
        start_tokens: (B,) int, the first input token of each sequence (e.g. BOS); not part of the output.
        max_len: the number of tokens to generate (a static int >= 1); the step is called this many times.
        eos_id: the end token, or None to always generate ``max_len`` tokens.
        pad_id: emitted after EOS; defaults to ``eos_id``.

    Returns:
        :class:`Decoded` with tokens (B, max_len), lengths (B,), log_prob (B,) and score (B,) = log_prob.
    """
    start, max_len, _, eos_id, pad_id = _setup("greedy", step, state, start_tokens, max_len, eos_id, pad_id)
    return _decode(step, state, start, max_len, eos_id, pad_id,
                   lambda logits, _: jnp.argmax(logits, axis=-1), None)


def sample(step: Step, state: Any, start_tokens: Any, max_len: int, key: jax.Array, *,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           eos_id: int | None = None, pad_id: int | None = None) -> Decoded:
    """Ancestral sampling with temperature, top-k (Fan et al., 2018) and nucleus (Holtzman et al., 2020).

    Each step samples from ``filter_logits(logits, temperature=..., top_k=..., top_p=...)``; see
    :func:`filter_logits` for the order and the exact rules. Step ``t`` uses ``jax.random.split(key,
    max_len)[t]``, so the same key gives the same samples. A tiny temperature (or ``top_k=1``) gives greedy
    decoding.

    Args:
        step, state, start_tokens, max_len, eos_id, pad_id: as in :func:`greedy`.
        key: a ``jax.random`` key.
        temperature: > 0.
        top_k: None, or an int in [1, V].
        top_p: None, or a float in (0, 1].

    Returns:
        :class:`Decoded`; ``log_prob`` is under the model itself (temperature 1, no filtering), not under the
        filtered distribution that was sampled from.
    """
    start, max_len, vocab, eos_id, pad_id = _setup("sample", step, state, start_tokens, max_len, eos_id, pad_id)
    temperature, top_k, top_p = _check_filters("sample", vocab, temperature, top_k, top_p)
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (is_typed and key.shape == ()) and not (key.dtype == jnp.uint32 and key.shape == (2,)):
        raise ValueError(f"sample: key must be one jax.random key (jax.random.key(0) or PRNGKey(0)), got shape "
                         f"{key.shape} dtype {key.dtype}")

    def choose(logits, k):
        return jax.random.categorical(k, _filter(logits, temperature, top_k, top_p), axis=-1)

    return _decode(step, state, start, max_len, eos_id, pad_id, choose, jax.random.split(key, max_len))


# ------------------------------------------------------------------------------------------ beam search


def beam_search(step: Step, state: Any, start_tokens: Any, max_len: int, *, beam_width: int,
                eos_id: int | None = None, pad_id: int | None = None, length_penalty: float = 1.0) -> Decoded:
    """Beam search with length normalisation; finished hypotheses stay in the beam.

    The batch is widened to ``B * beam_width`` rows (row ``b * beam_width + j`` is beam ``j`` of sequence
    ``b``), so the step sees tokens of shape ``(B * beam_width,)`` and a state whose leaves are repeated along
    their leading (batch) axis. Every state leaf must have the batch as its leading axis, except rank-0 leaves
    (a shared position counter, say), which are passed through as they are. After each step the state is
    reordered by beam parent: every leaf is gathered along its leading axis.

    Ranking: a hypothesis of total log-probability ``log P(Y)`` and length ``|Y|`` (generated tokens, EOS
    included) scores ``log P(Y) / |Y| ** length_penalty``. This is Wu et al. (2016)'s length normalisation
    without their ``(5 + |Y|) / 6`` smoothing (the form fairseq and Hugging Face use); ``length_penalty=0``
    ranks by ``log P(Y)`` alone, 1 by the mean log-probability per token. At each step the candidates are
    every extension of every live hypothesis plus every finished hypothesis (carried unchanged, emitting
    ``pad_id``), and the ``beam_width`` best scores survive; so a finished hypothesis is dropped only when
    ``beam_width`` better ones exist. Live hypotheses of one step all have the same length, so among them the
    ranking is by ``log P`` whatever the penalty, and ``beam_width=1`` is exactly greedy decoding. The result
    is the best-scoring hypothesis after ``max_len`` steps (no early stop: the scan has a fixed length).

    Args:
        step, state, start_tokens, max_len, eos_id, pad_id: as in :func:`greedy`.
        beam_width: an int >= 1, the hypotheses kept per sequence.
        length_penalty: the exponent ``alpha`` >= 0 above.

    Returns:
        :class:`Decoded` with the best hypothesis per sequence: tokens (B, max_len), lengths (B,),
        log_prob (B,) and score (B,) = log_prob / lengths ** length_penalty.
    """
    who = "beam_search"
    start, max_len, vocab, eos_id, pad_id = _setup(who, step, state, start_tokens, max_len, eos_id, pad_id)
    width = check_int(beam_width, "beam_width", low=1, who=who)
    alpha = check_float(length_penalty, "length_penalty", low=0, who=who)
    batch = start.shape[0]
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        shape = jnp.shape(leaf)
        if len(shape) and shape[0] != batch:
            raise ValueError(f"{who}: every state leaf must have the batch ({batch}) as its leading axis (or be "
                             f"a scalar), got shape {shape} at {jax.tree_util.keystr(path)}")

    def widen(x):                                                       # (B, ...) -> (B * width, ...)
        return jnp.repeat(x, width, axis=0) if jnp.ndim(x) else x

    rows = jnp.arange(batch)[:, None] * width                            # (B, 1)
    neg_inf = jnp.float32(-jnp.inf)

    def body(carry, t):
        tokens, state, total, done, length, seqs = carry               # (B,W) (B*W,...) (B,W) (B,W) (B,W) (B,W,T)
        logits, state = step(tokens.reshape(-1), state)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, width, vocab)
        grown = total[..., None] + logp                                 # (B, W, V)
        carried = jnp.where(jnp.arange(vocab) == pad_id, total[..., None], neg_inf)
        cand = jnp.where(done[..., None], carried, grown)               # (B, W, V)
        cand_len = jnp.where(done, length, t + 1)                       # (B, W), >= 1
        rank = cand / (cand_len.astype(jnp.float32) ** alpha)[..., None]
        best, flat = lax.top_k(rank.reshape(batch, width * vocab), width)  # (B, W), best first
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        total = jnp.take_along_axis(cand.reshape(batch, -1), flat, axis=-1)
        was_done = jnp.take_along_axis(done, parent, axis=-1)
        length = jnp.take_along_axis(cand_len, parent, axis=-1)
        done = was_done | _is_eos(token, eos_id)
        seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1).at[:, :, t].set(token)
        index = (rows + parent).reshape(-1)                             # (B * W,) rows of the parents
        state = jax.tree.map(lambda x: x[index] if jnp.ndim(x) else x, state)
        return (token, state, total, done, length, seqs), best

    init_total = jnp.where(jnp.arange(width) == 0, 0.0, neg_inf)       # one live beam, not W copies of it
    init = (jnp.repeat(start[:, None], width, axis=1), jax.tree.map(widen, state),
            jnp.broadcast_to(init_total, (batch, width)).astype(jnp.float32), jnp.zeros((batch, width), bool),
            jnp.zeros((batch, width), jnp.int32), jnp.full((batch, width, max_len), pad_id, jnp.int32))
    (_, _, total, _, length, seqs), best = lax.scan(body, init, jnp.arange(max_len))
    return Decoded(seqs[:, 0], length[:, 0], total[:, 0], best[-1][:, 0])
