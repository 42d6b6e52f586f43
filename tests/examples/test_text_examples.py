"""The text examples' exact figures (Subramanian ch. 6, Stevens et al. ch. 4, Géron ch. 14) and their models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flax import nnx

from dlcore import models, runner
from dlcore.data import text
from dlcore.models.text_classifiers import EmbNet, IMDBCnn, IMDBRnn


def test_text_representation_reproduces_the_books_figures():
    report = runner.run("text_representation", out=io.StringIO(), progress=False)
    m = report["metrics"]
    for k, v in report["book"].items():
        if k != "word_cols":  # the novel's vocabulary; the stand-in's differs
            assert m[k] == v, k
    # the lists the book prints: the review's characters, words, bigrams and trigrams
    assert (m["thor_chars"], m["thor_words"], m["thor_bigrams"], m["thor_trigrams"]) == (221, 42, 41, 40)
    assert m["word_cols"] > 1000 and m["line_words_unknown"] == 5


def test_stevens_clean_words_and_letter_t():
    mod = runner.get("text_representation")
    assert mod.clean_words(mod.LINE) == ["impossible", "mr", "bennet", "impossible", "when", "i", "am", "not",
                                         "acquainted", "with", "him"]
    letter_t = mod.ascii_one_hot(mod.LINE)
    assert letter_t.shape == (70, 128) and (letter_t.sum(1) == 1).all()
    assert letter_t[0, ord('"')] == 1 and letter_t[1, ord("i")] == 1       # lower-cased
    assert mod.ascii_one_hot("é")[0, 0] == 1                               # outside ASCII: column 0


def test_ngrams_of_the_thor_review():
    words = runner.get("text_representation").THOR_REVIEW.split()
    assert text.ngrams(words, 2)[:2] == [("the", "action"), ("action", "scenes")]
    assert text.ngrams(words, 3)[-1] == ("I", "love", "that.")


def test_book_bpe_ids_offsets_and_padded_batch():
    mod = runner.get("tokenizers")
    reviews = ["what a movie!", "an awful movie.", "what a great cast and a great plot!"] * 20
    bpe = mod.book_bpe(reviews, 1000)
    assert bpe.token_to_id("<pad>") == 0 and bpe.token_to_id("<unk>") == 1 and len(bpe) < 1000
    enc = bpe.tokenizer.encode(mod.REVIEW)
    assert enc.tokens[-1] == "<unk>" and enc.ids[-1] == 1                   # the emoji was never seen
    for token, (a, b) in zip(enc.tokens[:-1], enc.offsets):
        assert mod.REVIEW[a:b] == token                                      # offsets point at each token
    assert bpe.decode(bpe.encode("what a movie!")) == "what a movie !"       # spaces lost, as the book says
    batch = bpe.encode_batch(reviews[:3])
    assert batch.ids.shape == (3, batch.lengths.max())
    assert (batch.mask.sum(1) == batch.lengths).all() and (batch.ids[~batch.mask] == 0).all()


def test_whitespace_vocab_is_torchtexts():
    mod = runner.get("imdb_001")
    vocab = mod.whitespace_vocab(["A good film.", "a good plot", "a bad film."], max_size=3, min_freq=2)
    assert vocab.itos == ["<unk>", "<pad>", "a", "good", "film."]
    ids, lengths = mod.encode(vocab, ["a good cast", "A"], fix_length=4)
    assert ids.tolist() == [[2, 3, 0, 1], [2, 1, 1, 1]] and lengths.tolist() == [3, 1]


def test_models_shapes_frozen_embedding_and_bad_length():
    ids = np.ones((3, 20), np.int32)
    assert EmbNet(50, 10, 20, rngs=nnx.Rngs(0))(ids).shape == (3, 2)
    frozen = text.pretrained_embedding(np.ones((7, 300), np.float32), text.Vocab(["a", "b", "c"]), freeze=True)
    model = EmbNet(embedding=frozen, seq_len=20, rngs=nnx.Rngs(0))
    assert models.count_params(model) == 20 * 300 * 2 + 2                 # the linear layer alone trains
    with pytest.raises(ValueError, match="padded to length 12"):
        IMDBCnn(50, 8, max_len=12, rngs=nnx.Rngs(0))(ids)
    assert {"embnet", "imdb_rnn_001", "imdb_cnn_001"} <= set(models.names())


def test_lstm_with_lengths_ignores_the_padding():
    model = IMDBRnn(30, 16, rngs=nnx.Rngs(0))
    model.eval()
    rng = np.random.default_rng(0)
    short = rng.integers(2, 30, (2, 5)).astype(np.int32)
    padded = np.concatenate([short, np.ones((2, 7), np.int32)], 1)
    np.testing.assert_allclose(model(padded, np.array([5, 5])), model(short), rtol=1e-5, atol=1e-6)


def test_models_match_torch_forwards():
    torch = pytest.importorskip("torch")
    from dlcore import weights

    class Cnn(torch.nn.Module):  # Subramanian's IMDBCnn forward, batch-first, without dropout
        def __init__(self):
            super().__init__()
            self.e, self.cnn = torch.nn.Embedding(40, 8), torch.nn.Conv1d(12, 8, 3)
            self.avg, self.fc = torch.nn.AdaptiveAvgPool1d(10), torch.nn.Linear(80, 2)

        def forward(self, x):
            return torch.log_softmax(self.fc(self.avg(self.cnn(self.e(x))).flatten(1)), -1)

    class Rnn(torch.nn.Module):  # IMDBRnn: the LSTM's output at the last position
        def __init__(self):
            super().__init__()
            self.e, self.rnn = torch.nn.Embedding(40, 8), torch.nn.LSTM(8, 8, 2, batch_first=True)
            self.fc2 = torch.nn.Linear(8, 2)

        def forward(self, x):
            return torch.log_softmax(self.fc2(self.rnn(self.e(x))[0][:, -1]), -1)

    ids = np.random.default_rng(1).integers(0, 40, (4, 12)).astype(np.int64)
    for ours, theirs in ((IMDBCnn(40, 8, max_len=12, rngs=nnx.Rngs(0)), Cnn()),
                         (IMDBRnn(40, 8, rngs=nnx.Rngs(0)), Rnn())):
        ours.eval()
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in weights.state_dict(ours).items()})
        with torch.no_grad():
            want = theirs(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(np.asarray(ours(ids.astype(np.int32))), want, rtol=1e-5, atol=1e-5)
