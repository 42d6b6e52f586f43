"""Subramanian's IMDB sentiment classifiers (Deep Learning with PyTorch, ch. 6), batch-first.

Three models over padded token ids of a fixed length (torchtext's ``fix_length``), each ending in
``log_softmax`` as the book's do (train them with `dlcore.losses.nll`):

- `EmbNet` ("Training word embedding by building a sentiment classifier"): an embedding, flattened,
  and one linear layer; with a frozen pretrained `Embedding` it is the book's "Using pretrained word
  embeddings" model.
- `IMDBRnn` ("LSTM"): an embedding, a 2-layer LSTM, the last step's output, a linear layer and dropout
  0.8 on its outputs.
- `IMDBCnn` ("Convolutional network on sequence data"): an embedding, a Conv1d whose input channels
  are the ``max_len`` token positions (so it slides over the embedding's features, as the book's
  ``nn.Conv1d(max_len, hidden_size, kernel_size)`` on a batch-first ``(B, T, E)`` tensor does), an
  adaptive average pool to 10, a linear layer and dropout 0.5 on its outputs.

The book applies its final dropout with ``F.dropout``, whose ``training`` flag defaults to True, so its
dropout stays on when it evaluates; here the dropout is an `nnx.Dropout`, off in eval mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.models.registry import register
from dlcore.nn.conv import Conv1d, adaptive_avg_pool1d
from dlcore.nn.embedding import Embedding
from dlcore.nn.layers import Linear
from dlcore.nn.recurrent import LSTM


def _check_ids(ids, seq_len: int | None, model: str):
    ids = jnp.asarray(ids)
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{model}: expected integer token ids (B, T), got {ids.dtype} of shape {ids.shape}")
    if seq_len is not None and ids.shape[1] != seq_len:
        raise ValueError(f"{model}: expected ids padded to length {seq_len} (the model's fixed length), got "
                         f"{ids.shape[1]}; pad or cut them to {seq_len} (e.g. encode_batch(max_length={seq_len}))")
    return ids


@register("embnet")
class EmbNet(nnx.Module):
    """Embedding -> flatten -> Linear -> log_softmax (Subramanian, ch. 6, ``EmbNet``).

    The book's text: an embedding of 10 on reviews cut or padded to 20 words gives 20 x 10 = 200
    features per review, mapped by one linear layer to the classes (about 70% on IMDB after ~10
    epochs). With a frozen pretrained table of 300 numbers per word the same model is the book's
    GloVe classifier.

    Args:
        vocab_size: rows of the embedding (10,000 words + <unk> + <pad> in the book).
        embedding_dim: features per word (10; 300 for GloVe 6B 300d).
        seq_len: the fixed length T of every input (torchtext's fix_length, 20).
        num_classes: outputs (2 here; the book's 3 counts torchtext's <unk> label, which never occurs).
        embedding: a ready `Embedding` (e.g. `dlcore.data.text.pretrained_embedding(..., freeze=True)`)
            used instead of a new one; its size sets vocab_size and embedding_dim.
        rngs: NNX random streams.

    Shapes: ids (B, seq_len) -> (B, num_classes) log-probabilities.
    """

    def __init__(self, vocab_size: int = 10_002, embedding_dim: int = 10, seq_len: int = 20,
                 num_classes: int = 2, *, embedding: Embedding | None = None, rngs: nnx.Rngs):
        if embedding is not None:
            vocab_size, embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.seq_len = seq_len
        self.embedding = embedding if embedding is not None else Embedding(vocab_size, embedding_dim, rngs=rngs)
        self.fc = Linear(seq_len * embedding_dim, num_classes, rngs=rngs)

    def __call__(self, ids, lengths=None):
        ids = _check_ids(ids, self.seq_len, "EmbNet")
        e = self.embedding(ids)                                  # (B, T, E)
        return jax.nn.log_softmax(self.fc(e.reshape(e.shape[0], -1)))   # (B, T*E) -> (B, C)


@register("imdb_rnn_001")
class IMDBRnn(nnx.Module):
    """Embedding -> LSTM -> last step -> Linear -> dropout -> log_softmax (Subramanian, ch. 6, ``IMDBRnn``).

    The book's sizes: embedding and hidden size 100, ``nl=2`` LSTM layers, reviews of 200 tokens,
    dropout 0.8 on the linear layer's outputs; 84% on IMDB after 4 epochs of Adam 1e-3, batch 32.
    The book reads the output at the last position, padding included; given ``lengths``, this model
    reads each review's last real token instead (the LSTM skips the padding).

    Args:
        vocab_size: rows of the embedding.
        hidden_size: embedding size and LSTM hidden size (100).
        num_classes: outputs (2).
        num_layers: LSTM layers (2).
        dropout: on the linear layer's outputs, train mode only (0.8).
        rngs: NNX random streams.

    Shapes: ids (B, T), lengths (B,) or None -> (B, num_classes) log-probabilities.
    """

    def __init__(self, vocab_size: int = 10_002, hidden_size: int = 100, num_classes: int = 2,
                 num_layers: int = 2, dropout: float = 0.8, *, rngs: nnx.Rngs):
        self.e = Embedding(vocab_size, hidden_size, rngs=rngs)
        self.rnn = LSTM(hidden_size, hidden_size, num_layers, rngs=rngs)
        self.fc2 = Linear(hidden_size, num_classes, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, ids, lengths=None):
        ids = _check_ids(ids, None, "IMDBRnn")
        out, (h, _) = self.rnn(self.e(ids), lengths=lengths)    # out (B, T, H); h (layers, B, H)
        last = out[:, -1] if lengths is None else h[-1]          # (B, H): the last layer after the last step
        return jax.nn.log_softmax(self.drop(self.fc2(last)))


@register("imdb_cnn_001")
class IMDBCnn(nnx.Module):
    """Embedding -> Conv1d -> adaptive average pool -> Linear -> dropout -> log_softmax (``IMDBCnn``).

    Subramanian, ch. 6: ``nn.Conv1d(max_len, hidden_size, kernel_size)`` on the batch-first embedding
    output ``(B, max_len, hidden_size)``, which torch reads as (N, C, L): the 200 positions are the input
    channels and the kernel of 3 slides over the 100 embedding features. This model does the same (the
    features become dlcore's length axis), then pools to 10, flattens in torch's order (channel-major,
    1,000 features) and applies dropout 0.5 to the linear layer's outputs; about 83% on IMDB after
    4 epochs.

    Args:
        vocab_size: rows of the embedding.
        hidden_size: embedding size and output channels (100).
        num_classes: outputs (2).
        kernel_size: 3.
        max_len: the fixed length T of every input (200).
        pool: the pooled length (10).
        dropout: 0.5.
        rngs: NNX random streams.

    Shapes: ids (B, max_len) -> (B, num_classes) log-probabilities.
    """

    def __init__(self, vocab_size: int = 10_002, hidden_size: int = 100, num_classes: int = 2,
                 kernel_size: int = 3, max_len: int = 200, pool: int = 10, dropout: float = 0.5, *,
                 rngs: nnx.Rngs):
        self.max_len, self.pool = max_len, pool
        self.e = Embedding(vocab_size, hidden_size, rngs=rngs)
        self.cnn = Conv1d(max_len, hidden_size, kernel_size, rngs=rngs)
        self.fc = Linear(hidden_size * pool, num_classes, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, ids, lengths=None):
        ids = _check_ids(ids, self.max_len, "IMDBCnn")
        e = self.e(ids)                                          # (B, T, E): torch's (N, C=T, L=E)
        c = self.cnn(e.transpose(0, 2, 1))                       # (B, E - k + 1, hidden): NLC
        p = adaptive_avg_pool1d(c, self.pool)                    # (B, pool, hidden)
        flat = p.transpose(0, 2, 1).reshape(p.shape[0], -1)      # (B, hidden * pool), torch's order
        return jax.nn.log_softmax(self.drop(self.fc(flat)))
