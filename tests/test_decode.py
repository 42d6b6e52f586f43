"""dlcore.decode on tiny deterministic models: a transition table (logits = table[token]) and a GRU-like step.

Expected outputs come from hand-computed probabilities or a plain Python loop over the same step.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import decode


def table_step(probs):
    """A step whose next-token distribution depends only on the last token: logits = log(probs[token]).

    The state is a (B,) step counter, so the carried state is exercised too.
    """
    logits_table = jnp.log(jnp.asarray(probs, jnp.float32))

    def step(tokens, state):
        return logits_table[tokens], state + 1

    return step


def gru_step(vocab=5, hidden=8, seed=0):
    """A GRU-like step with a hidden state and an "encoder output" it reads but never changes."""
    k = jax.random.split(jax.random.key(seed), 3)
    emb = jax.random.normal(k[0], (vocab, hidden))
    rec = 0.5 * jax.random.normal(k[1], (hidden, hidden))
    out = 2.0 * jax.random.normal(k[2], (hidden, vocab))

    def step(tokens, state):
        h = jnp.tanh(emb[tokens] + state["h"] @ rec + state["enc"])
        return h @ out, {"h": h, "enc": state["enc"]}

    return step


def gru_state(batch, hidden=8, seed=1):
    enc = jax.random.normal(jax.random.key(seed), (batch, hidden))
    return {"h": jnp.zeros((batch, hidden)), "enc": enc}


def python_greedy(step, state, tokens, max_len):
    """The argmax chain by a plain Python loop; also returns the summed log-probabilities."""
    out, total = [], 0.0
    for _ in range(max_len):
        logits, state = step(tokens, state)
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        total = total + jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, None], axis=-1)[:, 0]
        out.append(tokens)
    return np.stack(out, axis=1), np.asarray(total)


# Greedy takes 1 (p = 0.5) then at best 0.25: 0.125; the best sequence is 2 (0.4) then 3 (0.9): 0.36.
TRAP = [[0.0, 0.5, 0.4, 0.1],
        [0.25, 0.25, 0.25, 0.25],
        [0.1 / 3, 0.1 / 3, 0.1 / 3, 0.9],
        [0.1 / 3, 0.1 / 3, 0.1 / 3, 0.9]]
TRAP = [[max(p, 1e-6) for p in row] for row in TRAP]


# ------------------------------------------------------------------------------------------------ greedy


def test_greedy_is_the_argmax_chain():
    step = gru_step()
    state, start = gru_state(4), jnp.array([0, 1, 2, 3])
    out = decode.greedy(step, state, start, 7)
    want, total = python_greedy(step, state, start, 7)
    np.testing.assert_array_equal(out.tokens, want)
    np.testing.assert_array_equal(out.lengths, [7] * 4)
    np.testing.assert_allclose(out.log_prob, total, rtol=1e-5)
    assert out.tokens.dtype == jnp.int32 and out.tokens.shape == (4, 7)


def test_greedy_on_a_table():
    out = decode.greedy(table_step(TRAP), np.zeros(2), np.array([0, 2]), 3)   # NumPy (float64) in is fine
    np.testing.assert_array_equal(out.tokens, [[1, 0, 1], [3, 3, 3]])
    np.testing.assert_allclose(out.log_prob[1], 3 * math.log(0.9), rtol=1e-5)


def test_greedy_eos_then_pads():
    # 0 -> 2 (0.6) -> 1 = EOS (0.7); after EOS the sequence emits the pad and its length stops.
    probs = [[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]]
    step = table_step(probs)
    out = decode.greedy(step, jnp.zeros(2, jnp.int32), jnp.array([0, 1]), 5, eos_id=1)
    np.testing.assert_array_equal(out.tokens, [[2, 1, 1, 1, 1], [2, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out.lengths, [2, 2])
    np.testing.assert_allclose(out.log_prob, [math.log(0.6 * 0.7)] * 2, rtol=1e-5)
    padded = decode.greedy(step, jnp.zeros(1, jnp.int32), jnp.array([0]), 4, eos_id=1, pad_id=0)
    np.testing.assert_array_equal(padded.tokens, [[2, 1, 0, 0]])


# ----------------------------------------------------------------------------------------------- sampling


def test_sampling_limits_equal_greedy():
    step = gru_step()
    state, start = gru_state(6), jnp.arange(6) % 5
    want = decode.greedy(step, state, start, 8).tokens
    key = jax.random.key(3)
    cold = decode.sample(step, state, start, 8, key, temperature=1e-4)
    top1 = decode.sample(step, state, start, 8, key, top_k=1)
    np.testing.assert_array_equal(cold.tokens, want)
    np.testing.assert_array_equal(top1.tokens, want)


def test_sampling_is_reproducible_by_key():
    step = gru_step()
    state, start = gru_state(8), jnp.zeros(8, jnp.int32)
    a = decode.sample(step, state, start, 10, jax.random.key(0), temperature=2.0)
    b = decode.sample(step, state, start, 10, jax.random.key(0), temperature=2.0)
    c = decode.sample(step, state, start, 10, jax.random.PRNGKey(1), temperature=2.0)   # old-style key too
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


@pytest.mark.parametrize("top_p, kept", [(0.4, [0]), (0.5, [0]), (0.75, [0, 1]), (0.85, [0, 1, 2]),
                                         (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    # Sorted probabilities 0.5, 0.3, 0.15, 0.05 (shuffled in the vocabulary): sums 0.5, 0.8, 0.95, 1.
    order = [2, 0, 3, 1]
    probs = np.zeros(4)
    probs[order] = [0.5, 0.3, 0.15, 0.05]
    out = decode.filter_logits(jnp.log(jnp.asarray(probs)), top_p=top_p)
    assert sorted(np.flatnonzero(np.isfinite(np.asarray(out))).tolist()) == sorted(order[i] for i in kept)


def test_top_k_and_temperature_filter():
    logits = jnp.array([[1.0, 3.0, 2.0, 0.0]])
    np.testing.assert_array_equal(np.isfinite(decode.filter_logits(logits, top_k=2)), [[False, True, True, False]])
    np.testing.assert_allclose(decode.filter_logits(logits, temperature=0.5), logits * 2)
    # top-k first, then top-p over what is left: softmax([3, 2]) = (0.73, 0.27), p = 0.7 keeps only 3.
    both = decode.filter_logits(logits, top_k=2, top_p=0.7)
    np.testing.assert_array_equal(np.isfinite(both), [[False, True, False, False]])


def test_top_p_sampling_draws_only_from_the_nucleus():
    probs = [[0.5, 0.3, 0.15, 0.05]] * 4
    out = decode.sample(table_step(probs), jnp.zeros(2000, jnp.int32), jnp.zeros(2000, jnp.int32), 1,
                        jax.random.key(0), top_p=0.75)
    assert set(np.unique(out.tokens).tolist()) == {0, 1}
    assert abs(float(np.mean(out.tokens == 0)) - 0.5 / 0.8) < 0.05


# -------------------------------------------------------------------------------------------- beam search


def test_beam_width_one_is_greedy():
    step = gru_step()
    state, start = gru_state(5), jnp.arange(5)
    for eos in (None, 2):
        g = decode.greedy(step, state, start, 9, eos_id=eos)
        b = decode.beam_search(step, state, start, 9, beam_width=1, eos_id=eos)
        np.testing.assert_array_equal(b.tokens, g.tokens)
        np.testing.assert_array_equal(b.lengths, g.lengths)
        np.testing.assert_allclose(b.log_prob, g.log_prob, rtol=1e-5)
    assert (g.lengths < 9).any()                                       # the EOS case was exercised


def test_beam_search_beats_greedy_on_a_trap():
    step, state, start = table_step(TRAP), jnp.zeros(1, jnp.int32), jnp.array([0])
    g = decode.greedy(step, state, start, 2)
    b = decode.beam_search(step, state, start, 2, beam_width=3)
    np.testing.assert_array_equal(g.tokens, [[1, 0]])
    np.testing.assert_array_equal(b.tokens, [[2, 3]])
    np.testing.assert_allclose(b.log_prob, [math.log(0.36)], rtol=1e-5)
    assert b.log_prob[0] >= g.log_prob[0]
    np.testing.assert_allclose(b.score, b.log_prob / 2.0, rtol=1e-6)   # length_penalty 1: mean per token


def test_exhaustive_beam_matches_brute_force_with_a_stateful_step():
    # A beam as wide as every prefix is exhaustive, so it must find the best sequence; this needs the state
    # reordered by beam parent (the GRU's hidden state) and the batch rows kept apart.
    vocab, max_len, batch = 3, 3, 2
    step = gru_step(vocab=vocab, seed=4)
    state, start = gru_state(batch, seed=5), jnp.array([0, 1])
    out = decode.beam_search(step, state, start, max_len, beam_width=vocab ** (max_len - 1), length_penalty=0.0)
    seqs = jnp.array(list(itertools.product(range(vocab), repeat=max_len)), jnp.int32)   # (27, 3)
    for b in range(batch):
        s = jax.tree.map(lambda x: jnp.repeat(x[b:b + 1], len(seqs), axis=0), state)
        tokens, total = jnp.full(len(seqs), start[b]), jnp.zeros(len(seqs))
        for t in range(max_len):
            logits, s = step(tokens, s)
            tokens = seqs[:, t]
            total = total + jax.nn.log_softmax(logits)[jnp.arange(len(seqs)), tokens]
        best = int(jnp.argmax(total))
        np.testing.assert_array_equal(out.tokens[b], seqs[best])
        np.testing.assert_allclose(out.log_prob[b], total[best], rtol=1e-5)


def test_beam_keeps_finished_hypotheses_and_normalises_length():
    # 0 -> EOS (0.45) or 2 (0.55); 2 -> EOS (0.7). Short [EOS]: log 0.45 = -0.80; long [2, EOS]: log 0.385
    # = -0.95 in total but -0.48 per token. Without normalisation the finished short one wins.
    probs = [[0.0, 0.45, 0.55], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.7, 0.3]]
    probs = [[max(p, 1e-6) for p in row] for row in probs]
    step, state, start = table_step(probs), jnp.zeros(1, jnp.int32), jnp.array([0])
    raw = decode.beam_search(step, state, start, 4, beam_width=2, eos_id=1, length_penalty=0.0)
    np.testing.assert_array_equal(raw.tokens, [[1, 1, 1, 1]])
    np.testing.assert_array_equal(raw.lengths, [1])
    np.testing.assert_allclose(raw.score, [math.log(0.45)], rtol=1e-4)
    mean = decode.beam_search(step, state, start, 4, beam_width=2, eos_id=1, pad_id=0, length_penalty=1.0)
    np.testing.assert_array_equal(mean.tokens, [[2, 1, 0, 0]])
    np.testing.assert_array_equal(mean.lengths, [2])
    np.testing.assert_allclose(mean.log_prob, [math.log(0.385)], rtol=1e-4)
    np.testing.assert_allclose(mean.score, [math.log(0.385) / 2], rtol=1e-4)


def test_beam_state_with_a_shared_scalar_leaf():
    step = gru_step()

    def with_pos(tokens, state):
        logits, inner = step(tokens, state["inner"])
        return logits, {"inner": inner, "pos": state["pos"] + 1}

    state = {"inner": gru_state(3), "pos": jnp.zeros((), jnp.int32)}
    b = decode.beam_search(with_pos, state, jnp.arange(3), 5, beam_width=1)
    np.testing.assert_array_equal(b.tokens, decode.greedy(step, gru_state(3), jnp.arange(3), 5).tokens)


# ---------------------------------------------------------------------------------- incremental and jit


def counting(step):
    """The step, counting its calls on concrete arrays (not the abstract ones of tracing) and their shapes."""
    calls = []

    def counted(tokens, state):
        if not isinstance(tokens, jax.core.Tracer):
            calls.append(tokens.shape)
        return step(tokens, state)

    return counted, calls


@pytest.mark.parametrize("which", ["greedy", "sample", "beam_search"])
def test_step_is_called_once_per_token(which):
    step, calls = counting(gru_step())
    state, start, max_len = gru_state(2), jnp.array([0, 1]), 4
    extra = {"sample": (jax.random.key(0),)}.get(which, ())
    kw = {"beam_width": 2} if which == "beam_search" else {}
    with jax.disable_jit():
        getattr(decode, which)(step, state, start, max_len, *extra, **kw)
    rows = 2 * kw.get("beam_width", 1)
    assert calls == [(rows,)] * max_len                              # one token per row per call, no prefix


@pytest.mark.parametrize("which", ["greedy", "sample", "beam_search"])
def test_jitted_call_does_not_recompile(which):
    traces = []
    step = gru_step()

    def run(state, start, key):
        traces.append(1)
        if which == "sample":
            return decode.sample(step, state, start, 5, key, top_k=3, top_p=0.9, eos_id=2)
        if which == "beam_search":
            return decode.beam_search(step, state, start, 5, beam_width=2, eos_id=2)
        return decode.greedy(step, state, start, 5, eos_id=2)

    fast = jax.jit(run)
    first = fast(gru_state(3, seed=1), jnp.array([0, 1, 2]), jax.random.key(0))
    second = fast(gru_state(3, seed=2), jnp.array([3, 4, 0]), jax.random.key(1))
    assert len(traces) == 1
    assert first.tokens.shape == second.tokens.shape == (3, 5)
    eager = run(gru_state(3, seed=2), jnp.array([3, 4, 0]), jax.random.key(1))
    np.testing.assert_array_equal(second.tokens, eager.tokens)


# ---------------------------------------------------------------------------------------------- bad input


def _bad_step(tokens, state):
    return jnp.zeros((tokens.shape[0], 2, 3)), state


BAD = [
    ("sample", {"temperature": 0.0}, "temperature"),
    ("sample", {"temperature": -1.0}, "temperature"),
    ("sample", {"top_k": 0}, "top_k"),
    ("sample", {"top_k": 6}, "top_k"),
    ("sample", {"top_p": 0.0}, "top_p"),
    ("sample", {"top_p": 1.5}, "top_p"),
    ("sample", {"key": jnp.zeros(3)}, "key"),
    ("greedy", {"max_len": 0}, "max_len"),
    ("greedy", {"eos_id": 5}, "eos_id"),
    ("greedy", {"start_tokens": jnp.zeros((2, 2), jnp.int32)}, "start_tokens"),
    ("greedy", {"start_tokens": jnp.zeros(2)}, "start_tokens"),
    ("greedy", {"step": _bad_step}, "logits"),
    ("greedy", {"step": lambda tokens, state: (tokens,)}, "pair"),
    ("greedy", {"state": {"h": jnp.zeros((2, 8))}}, "step"),
    ("beam_search", {"beam_width": 0}, "beam_width"),
    ("beam_search", {"length_penalty": -1.0}, "length_penalty"),
    ("beam_search", {"state": {"h": jnp.zeros((2, 8)), "enc": jnp.zeros((1, 8))}}, "leading axis"),
]


@pytest.mark.parametrize("which, bad, words", BAD)
def test_bad_arguments_fail_in_one_line_before_running(which, bad, words):
    step, calls = counting(gru_step())
    args = {"step": step, "state": gru_state(2), "start_tokens": jnp.array([0, 1]), "max_len": 4}
    if which == "sample":
        args["key"] = jax.random.key(0)
    if which == "beam_search":
        args["beam_width"] = 2
    args.update(bad)
    with pytest.raises(ValueError, match=words) as err:
        getattr(decode, which)(**args)
    assert "\n" not in str(err.value) and str(err.value).startswith(which)
    assert calls == []


def test_filter_logits_checks_its_arguments():
    with pytest.raises(ValueError, match="top_k must be an int in"):
        decode.filter_logits(jnp.zeros((2, 4)), top_k=5)
