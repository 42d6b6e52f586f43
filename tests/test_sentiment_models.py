"""dlcore.models.sentiment: the books' sizes, lengths equal to running each text alone, the top states as the
books take them, PyTorch parity on the books' forward passes (packed sequences included), one-line bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import weights
from dlcore.models import count_params, create
from dlcore.models.sentiment import ImprovedRNN, RNNModel, SentimentAnalysisModel, top_states


def _batch(vocab, lengths, pad, seed=0):
    """Right-padded ids (B, max(lengths)) with `pad` after each row's length."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(2, vocab, n)
    return ids, np.asarray(lengths, np.int32)


def _jitted(m):
    """`m`'s forward pass as one jitted function of arrays (a compilation per shape beats eager op dispatch)."""
    graph, state = nnx.split(m)
    fn = jax.jit(lambda state, *args: nnx.merge(graph, state)(*args))
    return lambda *args: np.asarray(fn(state, *args))


def test_the_books_sizes_and_shapes():
    # the counts by hand: Embedding 25,002 x 100, RNN 100 -> 256 (91,648), Linear 257
    assert count_params(nnx.eval_shape(lambda: create("imdb_rnn"))) == 2_500_200 + 91_648 + 257
    # Embedding 25,002 x 300, bi-LSTM 2 x 256 (1,142,784 + 1,576,960), Linear 513
    assert count_params(nnx.eval_shape(lambda: create("imdb_improved_rnn"))) == 7_500_600 + 2_719_744 + 513
    # Embedding 30,522 x 128, GRU 2 x 64 (37,248 + 24,960), Linear 65; bidirectional 148,992 and 129
    assert count_params(nnx.eval_shape(lambda: create("sentiment_gru"))) == 3_906_816 + 62_208 + 65
    assert count_params(nnx.eval_shape(lambda: create("sentiment_gru", bidirectional=True))) == \
        3_906_816 + 148_992 + 129
    ids, lengths = _batch(30, (5, 3), 0)
    for m in (RNNModel(30, 8, 6, rngs=nnx.Rngs(0)), ImprovedRNN(30, 8, 6, rngs=nnx.Rngs(0)),
              SentimentAnalysisModel(30, 2, 8, 6, bidirectional=True, rngs=nnx.Rngs(0))):
        m.eval()
        args = (ids,) if isinstance(m, RNNModel) else (ids, lengths)
        assert jax.eval_shape(lambda m=m, args=args: m(*args)).shape == (2, 1)


def test_top_states_are_the_books_concatenation():
    h = jnp.arange(4 * 3 * 2, dtype=jnp.float32).reshape(4, 3, 2)      # (layers * D, B, H)
    # Géron: hidden_states[-2:].permute(1, 0, 2).reshape(-1, 2 * H)
    geron = jnp.transpose(h[-2:], (1, 0, 2)).reshape(-1, 4)
    np.testing.assert_array_equal(top_states(h, True), geron)
    # Ketkar & Moolayil: torch.cat((hidden[-2], hidden[-1]), dim=1)
    np.testing.assert_array_equal(top_states(h, True), jnp.concatenate([h[-2], h[-1]], 1))
    np.testing.assert_array_equal(top_states(h, False), h[-1])


@pytest.mark.parametrize("make", [
    lambda: ImprovedRNN(40, 8, 6, 1, 2, True, 0.5, 1, rngs=nnx.Rngs(1)),
    lambda: SentimentAnalysisModel(40, 2, 8, 6, 0, 0.2, True, rngs=nnx.Rngs(1)),
])
def test_lengths_give_each_text_its_own_logit_whatever_the_padding(make):
    m = make()
    m.eval()
    pad = 1 if isinstance(m, ImprovedRNN) else 0
    ids, lengths = _batch(40, (5, 2), pad)
    f = _jitted(m)
    together = f(ids, lengths)
    alone = np.concatenate([f(ids[i:i + 1, :n], np.asarray([n])) for i, n in enumerate(lengths)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    # more padding changes nothing either
    wide = np.pad(ids, ((0, 0), (0, 5)), constant_values=pad)
    np.testing.assert_allclose(f(wide, lengths), together, rtol=1e-5, atol=1e-6)


def test_the_plain_models_read_the_padding():
    # the book's RNNModel and Géron's first SentimentAnalysisModel take no lengths: padding moves their logits
    for m, pad in ((RNNModel(30, 8, 6, rngs=nnx.Rngs(0)), 1),
                   (SentimentAnalysisModel(30, 2, 8, 6, rngs=nnx.Rngs(0)), 0)):
        m.eval()
        ids, _ = _batch(30, (4,), pad)
        wide = np.pad(ids, ((0, 0), (0, 3)), constant_values=pad)
        f = _jitted(m)
        assert not np.allclose(f(ids), f(wide))


def test_bad_input_is_one_line():
    m = SentimentAnalysisModel(30, 2, 8, 6, rngs=nnx.Rngs(0))
    for bad, match in ((np.zeros((2, 3), np.float32), "integer token ids of shape"),
                       (np.zeros(3, np.int32), "integer token ids of shape")):
        with pytest.raises(ValueError, match=match) as err:
            m(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError) as err:
        m(np.ones((2, 3), np.int32), np.asarray([4, 1]))                   # a length beyond T
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="pad_id"):
        SentimentAnalysisModel(30, pad_id=30, rngs=nnx.Rngs(0))


def test_pytorch_parity_packed_bidirectional():
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)

    class TorchGeron(nn.Module):   # Géron's model, packed and bidirectional, as the chapter writes it
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(40, 8, padding_idx=0)
            self.gru = nn.GRU(8, 6, num_layers=2, batch_first=True, dropout=0.2, bidirectional=True)
            self.output = nn.Linear(12, 1)

        def forward(self, ids, lengths):
            packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
            _, hidden = self.gru(packed)
            return self.output(hidden[-2:].permute(1, 0, 2).reshape(-1, 12))

    class TorchKetkar(nn.Module):  # Listing 7-9, time first as torchtext gives it
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(40, 10, padding_idx=1)
            self.lstm = nn.LSTM(10, 6, num_layers=2, bidirectional=True, dropout=0.5)
            self.fc = nn.Linear(12, 1)
            self.dropout = nn.Dropout(0.5)

        def forward(self, text, lengths):
            packed = pack_padded_sequence(self.dropout(self.embedding(text)), lengths, enforce_sorted=False)
            _, (hidden, _) = self.lstm(packed)
            return self.fc(self.dropout(torch.cat((hidden[-2], hidden[-1]), dim=1)))

    for torch_model, ours, pad in ((TorchGeron(), SentimentAnalysisModel(40, 2, 8, 6, 0, 0.2, True, rngs=nnx.Rngs(0)),
                                    0),
                                   (TorchKetkar(), ImprovedRNN(40, 10, 6, 1, 2, True, 0.5, 1, rngs=nnx.Rngs(0)), 1)):
        torch_model.eval()
        ours.eval()
        weights.load_state_dict(ours, torch_model.state_dict())
        ids, lengths = _batch(40, (7, 3, 5), pad, seed=2)
        t_ids = torch.as_tensor(ids, dtype=torch.long)
        t_len = torch.as_tensor(lengths, dtype=torch.long)
        with torch.no_grad():
            want = torch_model(t_ids if pad == 0 else t_ids.T, t_len).numpy()
        np.testing.assert_allclose(_jitted(ours)(ids, lengths), want, rtol=1e-5, atol=1e-6)
