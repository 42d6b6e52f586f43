"""Recurrent sentiment classifiers of the books, registered by name: token ids in, one logit per text out.

* `imdb_rnn` (`RNNModel`): Ketkar and Moolayil, Deep Learning with Python, ch. 7, Listing 7-4: Embedding ->
  vanilla RNN -> Linear on the last hidden state.
* `imdb_improved_rnn` (`ImprovedRNN`): the same chapter, Listing 7-9: Embedding with padding, dropout,
  a 2-layer bidirectional LSTM over packed (variable-length) sequences, the top layer's forward and
  backward final states concatenated, dropout, Linear.
* `sentiment_gru` (`SentimentAnalysisModel`): Géron, Hands-On Machine Learning with Scikit-Learn and
  PyTorch, ch. 14, "Building and Training a Sentiment Analysis Model" and "Bidirectional RNNs":
  Embedding(V, 128, padding_idx) -> GRU 2 x 64 with dropout 0.2 -> Linear(64, 1); optionally packed
  (`lengths`) and bidirectional (Linear(128, 1) on the top layer's two final states).

All read token ids (B, T), batch first (the books' torchtext code is time first, (T, B)), and return
logits (B, 1) for `dlcore.losses.binary_cross_entropy_with_logits` (`nn.BCEWithLogitsLoss`). Where the
book packs the sequences (`pack_padded_sequence`), dlcore's recurrent layers take `lengths` (B,) instead:
padded steps leave the state alone, each sequence's final state is the one after its last real token,
and the backward direction starts at each sequence's own end. With a batch source that yields
``{"x": (ids, lengths)}`` (`dlcore.data.text.BucketIterator`), the Trainer calls ``model(ids, lengths)``.
Submodule names are the books', so their state dicts load with `dlcore.weights`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int
from dlcore.models.registry import register
from dlcore.nn.embedding import Embedding
from dlcore.nn.layers import Linear
from dlcore.nn.recurrent import GRU, LSTM, RNN

__all__ = ["ImprovedRNN", "RNNModel", "SentimentAnalysisModel", "top_states"]


def _check_ids(ids, model: str) -> jax.Array:
    shape = tuple(np.shape(ids))
    dtype = getattr(ids, "dtype", None)
    if dtype is None:
        dtype = np.asarray(ids).dtype
    if len(shape) != 2 or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{model} expects integer token ids of shape (B, T) (batch first), got shape {shape} "
                         f"dtype {dtype}")
    return jnp.asarray(ids)


def top_states(h_n: jax.Array, bidirectional: bool) -> jax.Array:
    """The top layer's final hidden state(s) from h_n (num_layers * D, B, H): (B, H), or (B, 2H) forward first.

    Ketkar and Moolayil's ``torch.cat((hidden[-2], hidden[-1]), dim=1)`` and Géron's
    ``hidden_states[-2:].permute(1, 0, 2).reshape(-1, 2 * H)`` are the same array.
    """
    if not bidirectional:
        return h_n[-1]
    return jnp.concatenate([h_n[-2], h_n[-1]], axis=-1)          # (B, 2H): forward, backward


@register("imdb_rnn")
class RNNModel(nnx.Module):
    """Ketkar and Moolayil's `RNNModel` (Deep Learning with Python, ch. 7, Listing 7-4): Embedding, RNN, Linear.

    ``nn.Embedding(input_dim, embedding_dim)`` -> ``nn.RNN(embedding_dim, hidden_dim)`` (tanh, one layer)
    -> ``nn.Linear(hidden_dim, output_dim)`` on the final hidden state. The RNN reads every step, padding
    included, as the book's does (it passes no lengths), and the embedding has no padding row. The
    book's sizes: vocabulary 25,002, embedding 100, hidden 256, one output: 2,592,105 parameters.

    Args:
        input_dim: vocabulary size (25,000 words + <unk> + <pad>).
        embedding_dim: embedding size (100).
        hidden_dim: RNN units (256).
        output_dim: logits per text (1).
        rngs: NNX random streams.

    Shapes: ids (B, T) -> logits (B, output_dim). Submodules: Embedding, rnn, fc (the book's names).
    """

    def __init__(self, input_dim: int = 25_002, embedding_dim: int = 100, hidden_dim: int = 256,
                 output_dim: int = 1, *, rngs: nnx.Rngs):
        who = "imdb_rnn"
        self.Embedding = Embedding(check_int(input_dim, "input_dim", low=1, who=who),
                                   check_int(embedding_dim, "embedding_dim", low=1, who=who), rngs=rngs)
        self.rnn = RNN(embedding_dim, check_int(hidden_dim, "hidden_dim", low=1, who=who), rngs=rngs)
        self.fc = Linear(hidden_dim, check_int(output_dim, "output_dim", low=1, who=who), rngs=rngs)

    def __call__(self, text):
        """Logits (B, output_dim) of token ids (B, T)."""
        text = _check_ids(text, "imdb_rnn")
        _, hidden = self.rnn(self.Embedding(text))                  # hidden (1, B, H)
        return self.fc(hidden[0])


@register("imdb_improved_rnn")
class ImprovedRNN(nnx.Module):
    """Ketkar and Moolayil's `ImprovedRNN` (Deep Learning with Python, ch. 7, Listing 7-9): packed bi-LSTM.

    ``nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)`` -> dropout -> ``nn.LSTM(embedding_dim,
    hidden_dim, num_layers=n_layers, bidirectional=bidirectional, dropout=dropout)`` over the packed
    sequences -> the top layer's forward and backward final states concatenated (``hidden[-2]``,
    ``hidden[-1]``) -> dropout -> ``nn.Linear(2 * hidden_dim, output_dim)``. The book copies
    fastText ``simple`` 300-d vectors into the embedding and zeroes its <unk> and <pad> rows (Listing 7-10;
    `dlcore.data.text.pretrained_vectors` builds that table, assign it to ``model.embedding.weight``).
    The book's sizes (vocabulary 25,002): 10,220,857 parameters, 7,500,600 of them the embedding.

    Unidirectional (``bidirectional=False``), the Linear reads ``hidden[-1]`` alone (hidden_dim features);
    the book's class always sizes it for two directions.

    Args:
        vocab_size: vocabulary size (25,002).
        embedding_dim: embedding size (300, the fastText vectors').
        hidden_dim: LSTM units per direction (256).
        output_dim: logits per text (1).
        n_layers: stacked LSTM layers (2).
        bidirectional: read both ways (True).
        dropout: on the embeddings, between the LSTM layers and on the concatenated states (0.5).
        pad_idx: the padding id, whose embedding row is zero and untrained (dlcore's `Vocab` puts <pad> at 0;
            torchtext puts it at 1).
        rngs: NNX random streams.

    Shapes: ids (B, T), lengths (B,) in [1, T] (None: every step is read) -> logits (B, output_dim).
    Submodules: embedding, lstm, fc, dropout.
    """

    def __init__(self, vocab_size: int = 25_002, embedding_dim: int = 300, hidden_dim: int = 256,
                 output_dim: int = 1, n_layers: int = 2, bidirectional: bool = True, dropout: float = 0.5,
                 pad_idx: int = 0, *, rngs: nnx.Rngs):
        who = "imdb_improved_rnn"
        vocab_size = check_int(vocab_size, "vocab_size", low=1, who=who)
        self.bidirectional = check_choice(bidirectional, "bidirectional", (True, False), who=who)
        dropout = check_float(dropout, "dropout", low=0, high=1, who=who)
        self.embedding = Embedding(vocab_size, check_int(embedding_dim, "embedding_dim", low=1, who=who),
                                   padding_idx=check_int(pad_idx, "pad_idx", low=0, high=vocab_size - 1, who=who),
                                   rngs=rngs)
        hidden_dim = check_int(hidden_dim, "hidden_dim", low=1, who=who)
        self.lstm = LSTM(embedding_dim, hidden_dim, num_layers=check_int(n_layers, "n_layers", low=1, who=who),
                         bidirectional=bidirectional, dropout=dropout, rngs=rngs)
        d = 2 if bidirectional else 1
        self.fc = Linear(hidden_dim * d, check_int(output_dim, "output_dim", low=1, who=who), rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, text, text_lengths=None):
        """Logits (B, output_dim) of token ids (B, T) whose real lengths are `text_lengths` (B,)."""
        text = _check_ids(text, "imdb_improved_rnn")
        embedded = self.dropout(self.embedding(text))                # (B, T, E)
        _, (hidden, _cell) = self.lstm(embedded, lengths=text_lengths)   # hidden (n_layers * D, B, H)
        hidden = self.dropout(top_states(hidden, self.bidirectional))   # (B, D * H)
        return self.fc(hidden)


@register("sentiment_gru")
class SentimentAnalysisModel(nnx.Module):
    """Géron's `SentimentAnalysisModel` (Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14).

    ``nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)`` -> ``nn.GRU(embed_dim, hidden_dim,
    num_layers=n_layers, batch_first=True, dropout=dropout)`` -> ``nn.Linear(hidden_dim, 1)`` on the top
    layer's final state (``hidden_states[-1]``). Called with ``lengths``, the GRU skips the padding, the
    book's packed-sequence version; ``bidirectional=True`` is its section "Bidirectional RNNs": the top
    layer's forward and backward final states concatenated into ``nn.Linear(2 * hidden_dim, 1)``. With
    BERT's vocabulary of 30,522 (the book's tokenizer) the model has 3,969,089 parameters (bidirectional
    4,055,937).

    Args:
        vocab_size: tokenizer vocabulary size (30,522 for ``bert-base-uncased``).
        n_layers: stacked GRU layers (2).
        embed_dim: embedding size (128).
        hidden_dim: GRU units per direction (64).
        pad_id: the padding id, a zero, untrained embedding row (0).
        dropout: between the GRU layers, in training mode (0.2).
        bidirectional: read both ways (False).
        rngs: NNX random streams.

    Shapes: ids (B, T), lengths (B,) in [1, T] or None -> logits (B, 1). Submodules: embed, gru, output.
    """

    def __init__(self, vocab_size: int = 30_522, n_layers: int = 2, embed_dim: int = 128, hidden_dim: int = 64,
                 pad_id: int = 0, dropout: float = 0.2, bidirectional: bool = False, *, rngs: nnx.Rngs):
        who = "sentiment_gru"
        vocab_size = check_int(vocab_size, "vocab_size", low=1, who=who)
        self.bidirectional = check_choice(bidirectional, "bidirectional", (True, False), who=who)
        self.embed = Embedding(vocab_size, check_int(embed_dim, "embed_dim", low=1, who=who),
                               padding_idx=check_int(pad_id, "pad_id", low=0, high=vocab_size - 1, who=who),
                               rngs=rngs)
        hidden_dim = check_int(hidden_dim, "hidden_dim", low=1, who=who)
        self.gru = GRU(embed_dim, hidden_dim, num_layers=check_int(n_layers, "n_layers", low=1, who=who),
                       dropout=check_float(dropout, "dropout", low=0, high=1, who=who),
                       bidirectional=bidirectional, rngs=rngs)
        self.output = Linear(hidden_dim * (2 if bidirectional else 1), 1, rngs=rngs)

    def __call__(self, input_ids, lengths=None):
        """Logits (B, 1) of token ids (B, T); with `lengths` (B,) the padding after each text is skipped."""
        input_ids = _check_ids(input_ids, "sentiment_gru")
        _, hidden_states = self.gru(self.embed(input_ids), lengths=lengths)   # (n_layers * D, B, H)
        return self.output(top_states(hidden_states, self.bidirectional))
