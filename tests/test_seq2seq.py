"""dlcore.models.seq2seq: teacher forcing, incremental decoding equal to re-running the model, beam search, translate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import decode
from dlcore.data import text
from dlcore.models.seq2seq import Seq2Seq, shift_targets, token_loss, translate

V, BOS, EOS, PAD = 13, 2, 3, 0


@pytest.fixture(scope="module", params=[None, "dot"])   # the other scores: tests/test_nn_attention.py
def model(request):
    m = Seq2Seq(V, 8, 12, 2, pad_id=PAD, attention=request.param, rngs=nnx.Rngs(0))
    m.eval()
    return m


def _src():
    src = np.array([[5, 6, 7, 8], [9, 4, 0, 0]], np.int32)
    return src, np.array([4, 2], np.int32)


def test_shift_targets_by_hand():
    tgt_in, tgt_out = shift_targets(np.array([[5, 6, 7], [8, 0, 0]]), np.array([3, 1]), BOS, EOS, PAD)
    np.testing.assert_array_equal(tgt_in, [[2, 5, 6, 7], [2, 8, 0, 0]])
    np.testing.assert_array_equal(tgt_out, [[5, 6, 7, 3], [8, 3, 0, 0]])
    with pytest.raises(ValueError, match=r"tgt_lengths must lie in \[1, 3\]"):
        shift_targets(np.zeros((1, 3), int), np.array([0]), BOS, EOS)


def test_token_loss_ignores_padding():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, V)), jnp.float32)
    targets = jnp.array([[5, 6, 0, 0], [7, 8, 9, 3]])
    per = token_loss(logits, targets)
    nll = dlcore.losses.cross_entropy(logits, jnp.maximum(targets, 0))
    np.testing.assert_allclose(per, [nll[0, :2].mean(), nll[1].mean()], rtol=1e-6)


def test_padded_source_gives_the_same_state_and_logits(model):
    src, lengths = _src()
    state = model.encode(src, lengths)
    assert state["h"].shape == (2, 2, 12) and state["memory"].shape == (2, 4, 12)
    alone = model.encode(src[1:, :2], lengths[1:])
    np.testing.assert_allclose(state["h"][1], alone["h"][0], rtol=1e-5, atol=1e-6)
    tgt = np.array([[BOS, 5, 6]], np.int32)
    np.testing.assert_allclose(model(src[1:], lengths[1:], tgt), model(src[1:, :2], lengths[1:], tgt),
                               rtol=1e-5, atol=1e-6)


def test_incremental_decoding_equals_rerunning_the_model_on_the_prefix(model):
    src, lengths = _src()
    out = decode.greedy(model.decode_step(), model.encode(src, lengths), jnp.full((2,), BOS), 4)
    prefix = np.full((2, 1), BOS, np.int32)
    for _ in range(4):                       # the book's translate(): the whole model on the growing prefix
        nxt = np.asarray(model(src, lengths, prefix))[:, -1].argmax(-1)
        prefix = np.concatenate([prefix, nxt[:, None].astype(np.int32)], axis=1)
    np.testing.assert_array_equal(np.asarray(out.tokens), prefix[:, 1:])
    # and the step's logits are the teacher-forced logits, position by position
    full = np.asarray(model(src, lengths, prefix[:, :-1]))
    state, step = model.encode(src, lengths), model.decode_step()
    for t in range(4):
        logits, state = step(jnp.asarray(prefix[:, t]), state)
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-5, atol=1e-5)


def test_beam_of_width_one_is_greedy(model):
    src, lengths = _src()
    init = model.encode(src, lengths)
    g = decode.greedy(model.decode_step(), init, jnp.full((2,), BOS), 5, eos_id=EOS)
    b = decode.beam_search(model.decode_step(), init, jnp.full((2,), BOS), 5, beam_width=1, eos_id=EOS)
    np.testing.assert_array_equal(g.tokens, b.tokens)


@pytest.fixture(scope="module")
def pairs():
    d = dlcore.data.load("sentence_pairs")["train"]
    x, y = [str(s) for s in d["x"][:160]], [str(s) for s in d["y"][:160]]
    return x, y, text.train_bpe(x + y, 200)


def test_a_small_model_learns_to_translate_and_translate_checks_its_input(pairs):
    x, y, tok = pairs
    bos, eos = tok.token_to_id(text.BOS), tok.token_to_id(text.EOS)
    src, tgt = tok.encode_batch(x), tok.encode_batch(y)
    tgt_in, tgt_out = shift_targets(tgt.ids, tgt.lengths, bos, eos, tok.pad_id)
    model = Seq2Seq(len(tok), 32, 48, 1, pad_id=tok.pad_id, attention="dot", rngs=nnx.Rngs(0))
    t = dlcore.Trainer(model, dlcore.optim.nadam(3e-3), token_loss, batch_size=32, progress=False)
    hist = t.fit({"x": (src.ids, src.lengths, tgt_in), "y": tgt_out}, epochs=25)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    out = translate(model, tok, x[:16], max_len=16)
    score = dlcore.metrics.bleu(out, y[:16]).score
    assert score > 30, score                                   # an untrained model scores about 0
    assert translate(model, tok, x[0], max_len=16) == out[0]   # one str in, one str out
    assert translate(model, tok, x[:16], max_len=16, beam_width=3)  # beams run through the same step
    for bad, needle in [([], "no texts"), (["  "], "text 0 is empty"), ([x[0], ""], "text 1 is empty"),
                        ([None], "not a string")]:
        with pytest.raises(ValueError, match=needle):
            translate(model, tok, bad)
    with pytest.raises(ValueError, match="src must be integer ids of shape"):
        model(np.zeros((2, 3)), np.array([1, 2]), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\]"):
        model(np.zeros((2, 3), int), np.array([1, 4]), np.zeros((2, 2), int))


def test_translate_takes_a_word_vocab():
    """`translate` with a `Vocab` (its docstring's other tokenizer): the ids of `<s>` and `</s>` come from the
    vocabulary, and the output is text of its words."""
    vocab = text.Vocab.build(["the cat sat", "el gato"])
    model = dlcore.models.create("nmt", vocab_size=len(vocab), embed_dim=8, hidden_dim=8, num_layers=1)
    out = translate(model, vocab, ["the cat", "el gato"], max_len=3)
    assert len(out) == 2 and all(isinstance(s, str) and len(s.split()) <= 3 for s in out)
    words = set(vocab.itos) - set(text.SPECIALS)
    assert all(w in words for s in out for w in s.split())
