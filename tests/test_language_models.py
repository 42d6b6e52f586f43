"""dlcore.models.language: the char-RNN and the tied word LSTM LM, incremental decoding, BPTT through the Trainer,
and the `sequence` benchmark in quick mode."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import dlcore
from dlcore import cli, optim
from dlcore.models import count_params, create
from dlcore.models.language import CharRNN, WordLM, bptt_eval_step, bptt_step, generate, token_nll


def _ids(vocab, shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, shape), jnp.int32)


def _shapes(fn):
    """Output shapes by abstract evaluation: nothing is compiled (the tests stay fast on 2 cores)."""
    return jax.tree.map(lambda a: a.shape, jax.eval_shape(fn))


def test_shapes_states_and_the_books_sizes():
    m = create("char_rnn")
    assert count_params(m) == 158_253           # Embedding 390 + GRU 53,760 + 99,072 + Linear 5,031
    m.eval()                                    # dropout draws would mutate the module under eval_shape
    x = _ids(39, (2, 7))
    assert _shapes(lambda: m.forward(x)) == ((2, 7, 39), (2, 2, 128))
    assert _shapes(lambda: m(x)) == (2, 7, 39)
    lm = WordLM(50, 8, 8, 2, rngs=nnx.Rngs(0))
    lm.eval()
    x = _ids(50, (3, 4))
    assert _shapes(lambda: lm.forward(x, lm.initial_state(3))) == ((3, 4, 50), ((2, 3, 8), (2, 3, 8)))
    with pytest.raises(ValueError, match=r"char_rnn expects integer token ids of shape \(B, T\)"):
        m(jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        m(_ids(39, (7,)))
    with pytest.raises(ValueError, match="token id 39 is outside the vocabulary"):
        m(np.full((1, 3), 39))
    with pytest.raises(ValueError, match="tie_weights needs hidden_dim == embed_dim"):
        WordLM(50, 8, 16, rngs=nnx.Rngs(0))


def test_tied_weights_are_one_parameter_that_both_uses_train():
    tied, untied = (WordLM(50, 8, 8, 2, tie_weights=t, rngs=nnx.Rngs(0)) for t in (True, False))
    lstm = 2 * (4 * 8 * 8 * 2 + 2 * 4 * 8)
    assert count_params(tied) == 50 * 8 + lstm + 50           # one table and the output bias
    assert count_params(untied) == 50 * 8 + lstm + 8 * 50 + 50
    assert not hasattr(tied, "decoder")
    tied.eval()
    x, y = _ids(50, (2, 5)), _ids(50, (2, 5), 1)
    graph, params, rest = nnx.split(tied, nnx.Param, ...)

    @jax.jit
    def check(params):
        m = nnx.merge(graph, params, rest)
        out, _ = m.rnn(m.embed(x))
        grads = jax.grad(lambda p: token_nll(nnx.merge(graph, p, rest)(x), y).mean())(params)
        return m(x), out @ m.embed.weight[...].T, grads["embed"]["weight"][...]

    logits, by_hand, g = (np.asarray(a) for a in check(params))
    np.testing.assert_allclose(logits, by_hand, rtol=1e-5, atol=1e-6)
    # the table's gradient is the sum of the lookup's and the output layer's: the output part alone
    # reaches rows never looked up
    unused = np.setdiff1d(np.arange(50), np.asarray(x))
    assert np.abs(g[unused]).sum() > 0


@pytest.mark.parametrize("name", ["char_rnn", "word_lm"])
def test_the_decode_step_gives_the_logits_of_the_whole_prefix(name):
    model = create(name, vocab_size=30, **({"hidden_dim": 16} if name == "char_rnn" else
                                           {"embed_dim": 8, "hidden_dim": 8}))
    with pytest.raises(ValueError, match="training mode"):
        model.decode_step()
    model.eval()
    ids = _ids(30, (3, 6))
    whole = jax.jit(lambda x: model(x))                          # the module's arrays are constants here
    full = np.asarray(whole(ids))                                # (3, 6, 30), from the zero state
    step, state = jax.jit(model.decode_step()), model.initial_state(3)
    for t in range(6):                                           # one token at a time, the state carried
        logits, state = step(ids[:, t], state)
        np.testing.assert_allclose(np.asarray(logits), full[:, t], rtol=1e-5, atol=1e-5)
    # greedy generation from a prompt: each generated token is the argmax of the whole text's logits at
    # the step before it, what the book's extend_text gets by re-running the growing text
    prompt = np.asarray(ids[0])
    got = generate(model, prompt, 4)
    text = np.concatenate([prompt, got])[None]                   # (1, 10)
    rerun = np.asarray(jax.jit(lambda x: model(x))(jnp.asarray(text[:, :9])))[0]
    assert list(rerun[5:].argmax(-1)) == list(got)
    sampled = generate(model, prompt, 4, key=jax.random.key(3), temperature=0.5)
    assert sampled.shape == (4,) and sampled.dtype == np.int32


def test_a_tiny_char_rnn_learns_a_tiny_text():
    text = "hello world. " * 40
    chars = sorted(set(text))
    ids = np.asarray([chars.index(c) for c in text], np.int32)
    starts = np.arange(0, len(ids) - 9)
    data = {"x": ids[starts[:, None] + np.arange(8)], "y": ids[starts[:, None] + np.arange(1, 9)]}
    model = CharRNN(len(chars), 1, 4, 24, 0.0, rngs=nnx.Rngs(0))
    t = dlcore.Trainer(model, optim.adam(2e-2), token_nll, metrics=["accuracy"], batch_size=64, progress=False)
    h = t.fit(data, epochs=12)
    assert h["accuracy"][-1] > 0.95
    out = generate(model, np.asarray([chars.index(c) for c in "hello w"]), 12)
    assert "".join(chars[i] for i in out) == "orld. hello "


def test_truncated_bptt_through_the_trainer_carries_the_state():
    # a stream whose next token depends on the token 3 steps back: learnable only through the carried state
    # at chunk starts; the loss must fall and the carry keep its shape
    rng = np.random.default_rng(0)
    stream = np.tile(np.asarray([1, 2, 3, 4, 5, 6], np.int32), 100)
    rows = stream[: 4 * 150].reshape(4, 150)                        # 4 streams
    x = rows[:, :144].reshape(4, 24, 6).transpose(1, 0, 2).reshape(-1, 6)
    y = rows[:, 1:145].reshape(4, 24, 6).transpose(1, 0, 2).reshape(-1, 6)
    model = WordLM(8, 12, 12, 1, 0.0, rngs=nnx.Rngs(0))
    t = dlcore.Trainer(model, optax.chain(optim.clip_grad_norm(0.25), optim.sgd(5.0)), step=bptt_step,
                       eval_step=bptt_eval_step, carry=model.initial_state, batch_size=4, eval_batch_size=4,
                       shuffle=False, drop_last=True, progress=False, seed=rng.integers(9))
    h = t.fit({"x": x, "y": y}, epochs=6, validation={"x": x[:8], "y": y[:8]})
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert jax.tree.map(jnp.shape, t.carry) == ((1, 4, 12), (1, 4, 12))


def test_sequence_benchmark_runs_quick(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "sequence", "--quick", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["results"]
    assert [r["case"].split(" step")[0] for r in rows] == ["char-RNN", "LSTM LM"]
    for r in rows:
        assert r["dlcore"] > 0 and r["unit"] == "ms" and r["peer_name"] == "torch"
        if r["peer"] is not None:
            assert r["ratio"] == pytest.approx(r["peer"] / r["dlcore"])
    assert "char-RNN step" in capsys.readouterr().out
