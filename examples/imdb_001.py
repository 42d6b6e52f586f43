"""IMDB sentiment with an embedding, frozen GloVe vectors, an LSTM and a Conv1d, Subramanian, ch. 6.

Recipe (Deep Learning with PyTorch, ch. 6, "Training word embedding by building a sentiment classifier",
"Using pretrained word embeddings", "LSTM", "Convolutional network on sequence data"): the IMDB reviews
(25,000 train, 25,000 test) lower-cased and split on whitespace (torchtext's default tokenizer); a
vocabulary of the 10,000 most frequent training words seen at least 10 times, plus <unk> and <pad>; every
review cut or padded to a fixed length (torchtext's ``fix_length``); models ending in log_softmax, trained
with the negative log-likelihood:

- `EmbNet`: Embedding(V, 10) on 20 tokens, flattened to 200 features, one Linear; batch 128, 9 epochs
  (``range(1, 10)``), "approximately 70%". The optimizer is not printed for it; dlcore uses Adam 1e-3, the
  optimizer of the chapter's other models.
- the same model on GloVe 6B 300d vectors, frozen (``requires_grad = False``), SGD lr 1e-3 on the linear
  layer alone; the book says it "should achieve similar accuracy" and prints no figure.
- `IMDBRnn`: Embedding(V, 100), a 2-layer LSTM of 100, the last step, Linear, dropout 0.8; 200 tokens,
  batch 32, Adam 1e-3, 4 epochs: validation 21009/25000 = 84.04%.
- `IMDBCnn`: Embedding(V, 100), Conv1d(200, 100, 3) (the 200 positions as channels), adaptive average
  pool to 10, Linear(1000), dropout 0.5; the same training: 20641/25000 = 82.56% after 4 epochs.

dlcore's changes, each said where it happens: two classes, not three (the book's third is torchtext's
<unk> label, which no review has); the LSTM reads each review's last real token (``lengths``) where the
book reads position 200, padding included; dropout is off when dlcore evaluates (the book's ``F.dropout``
defaults to ``training=True`` and so stays on at validation: the accuracy with it left on is printed too).

GloVe: ``glove.6B.300d`` is read from dlcore's cache (downloaded there only when the real IMDB is used);
when absent, that row trains the same model on frozen random vectors and says so.

Stand-in: without IMDB, `sentiment_sentences` (2,000 short generated reviews from a 48-word vocabulary,
a quarter with negations, 80/20); it is far easier than IMDB, so its accuracies are not comparable.

Run: `dlcore run imdb_001` or `python examples/imdb_001.py`.
"""

from __future__ import annotations

import collections

import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.data import text
from dlcore.models.text_classifiers import EmbNet, IMDBCnn, IMDBRnn
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="imdb_001",
    title="IMDB sentiment: EmbNet, frozen GloVe, LSTM and Conv1d",
    book="Subramanian, Deep Learning with PyTorch",
    section="ch. 6, Deep Learning with Sequence Data and Text",
    source="EmbNet, pretrained GloVe embeddings, IMDBRnn (LSTM) and IMDBCnn (Conv1d), and their printed results",
    data="imdb",
    standin="sentiment_sentences",
    book_figures={"embnet_accuracy": 0.70, "lstm_accuracy": 0.8404, "conv1d_accuracy": 0.8256},
)

MAX_SIZE, MIN_FREQ = 10_000, 10
GLOVE = "glove.6B.300d"


def whitespace_vocab(texts, max_size: int = MAX_SIZE, min_freq: int = MIN_FREQ) -> text.Vocab:
    """torchtext's vocabulary: lower-cased whitespace words, the most frequent `max_size` seen `min_freq`
    times or more, after <unk> (0) and <pad> (1)."""
    counts = collections.Counter(w for t in texts for w in t.lower().split())
    words = [w for w, c in counts.most_common() if c >= min_freq][:max_size]
    return text.Vocab(words, specials=(text.UNK, text.PAD))


def encode(vocab: text.Vocab, texts, fix_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, fix_length) padded with <pad>, lengths (N,)): torchtext's ``fix_length`` cut and padding."""
    seqs = [[vocab[w] for w in t.lower().split()] or [vocab.unk_id] for t in texts]
    enc = text.pad_batch(seqs, max_length=fix_length, pad_id=vocab.pad_id)
    return enc.ids, enc.lengths


def _fit(ctx: Context, tag: str, model, optimizer, train: dict, test: dict, *, epochs: int,
         batch_size: int, hyper: dict) -> dict[str, float]:
    trainer = dlcore.Trainer(model, optimizer, losses.nll, metrics=["accuracy"], batch_size=batch_size,
                             **ctx.trainer_kwargs({**hyper, "batch_size": batch_size, "epochs": epochs}, tag=tag))
    h = trainer.fit(train, epochs=epochs, validation=test, resume=ctx.resume)
    n_test = len(test["y"])
    for e in range(len(h["loss"])):
        ctx.print(f"  epoch {e + 1}: train loss {h['loss'][e]:.3f} accuracy {h['accuracy'][e]:.4f} | "
                  f"validation loss {h['val_loss'][e]:.3f} accuracy {round(h['val_accuracy'][e] * n_test)}/"
                  f"{n_test} {h['val_accuracy'][e]:.4f}")
    if ctx.quick or not hasattr(model, "drop"):  # seconds under --quick; EmbNet has no dropout
        return {"accuracy": h["val_accuracy"][-1]}
    # The book's F.dropout stays on at validation: the same test set through the model in train mode.
    model.train()
    ids, lengths = test["x"]
    pred = np.concatenate([np.asarray(model(ids[i:i + 1000], lengths[i:i + 1000])).argmax(-1)
                           for i in range(0, len(ids), 1000)])
    model.eval()
    on = float((pred == test["y"]).mean())
    return {"accuracy": h["val_accuracy"][-1], "dropout_on_accuracy": on}


def _glove(ctx: Context, vocab: text.Vocab, real: bool):
    try:
        emb = text.pretrained_embedding(GLOVE, vocab, freeze=True, embedding_dim=300,
                                        download=real and not ctx.quick)
        return emb, "glove"
    except ValueError as err:  # DatasetNotFoundError: the file is not in the cache
        reason = str(err).split(";")[0]
        ctx.print(f"  {GLOVE} is not available ({reason}); this row uses frozen random N(0, 1) vectors "
                  "instead, so its figure is not the book's GloVe model")
        table = np.random.default_rng(ctx.seed).normal(size=(len(vocab), 300)).astype(np.float32)
        return text.pretrained_embedding(table, vocab, freeze=True, embedding_dim=300), "frozen_random"


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    train, test = splits["train"], splits["test"]
    if ctx.quick:
        train = {k: v[:256] for k, v in train.items()}
        test = {k: v[:128] for k, v in test.items()}
    real = ctx.dataset == EXAMPLE.data
    vocab = whitespace_vocab(train["x"])
    y_train, y_test = np.asarray(train["y"], np.int32), np.asarray(test["y"], np.int32)
    lengths = [len(t.split()) for t in train["x"]]
    ctx.print(f"vocabulary: {len(vocab)} (at most {MAX_SIZE} words seen {MIN_FREQ}+ times, plus <unk> <pad>; "
              f"the book's 10,002 on IMDB); training reviews: {len(lengths)}, median {int(np.median(lengths))} "
              f"and at most {max(lengths)} words")
    out = {}

    def data(fix_length: int):
        xs = [encode(vocab, s["x"], fix_length) for s in (train, test)]
        return {"x": xs[0], "y": y_train}, {"x": xs[1], "y": y_test}

    # EmbNet: 20 tokens x 10 features -> Linear -> 2 classes
    tr, te = data(20)
    ctx.print("EmbNet: Embedding(V, 10), 20 tokens flattened to 200, Linear(200, 2); Adam 1e-3, batch 128")
    model = EmbNet(len(vocab), 10, 20, rngs=nnx.Rngs(ctx.seed))
    r = _fit(ctx, "embnet", model, optim.adam(lr=1e-3), tr, te, epochs=ctx.n_epochs(9, quick=1), batch_size=128,
             hyper={"model": "embnet", "optimizer": "adam", "lr": 1e-3})
    out["embnet_accuracy"] = r["accuracy"]

    # the same model on frozen 300-d vectors; only the linear layer trains (SGD 1e-3, as the book)
    emb, kind = _glove(ctx, vocab, real)
    ctx.print(f"EmbNet on frozen {'GloVe 6B 300d' if kind == 'glove' else 'random 300-d'} vectors: "
              "Linear(20 x 300 = 6000, 2), SGD lr 1e-3 on the linear layer alone, batch 128")
    model = EmbNet(embedding=emb, seq_len=20, rngs=nnx.Rngs(ctx.seed))
    r = _fit(ctx, kind, model, optim.sgd(lr=1e-3), tr, te, epochs=ctx.n_epochs(9, quick=1), batch_size=128,
             hyper={"model": f"embnet_{kind}", "optimizer": "sgd", "lr": 1e-3})
    out["glove_frozen_accuracy" if kind == "glove" else "frozen_random_accuracy"] = r["accuracy"]

    # LSTM and Conv1d on 200 tokens (fewer under --quick, to finish in seconds)
    fix = 32 if ctx.quick else 200
    tr, te = data(fix)
    epochs = ctx.n_epochs(4, quick=1)
    ctx.print(f"IMDBRnn: Embedding(V, 100), LSTM 2 x 100 read at each review's last real token, Linear(100, 2), "
              f"dropout 0.8; {fix} tokens, Adam 1e-3, batch 32")
    model = IMDBRnn(len(vocab), 100, rngs=nnx.Rngs(ctx.seed))
    r = _fit(ctx, "lstm", model, optim.adam(lr=1e-3), tr, te, epochs=epochs, batch_size=32,
             hyper={"model": "imdb_rnn_001", "optimizer": "adam", "lr": 1e-3, "fix_length": fix})
    out.update({f"lstm_{k}": v for k, v in r.items()})

    ctx.print(f"IMDBCnn: Embedding(V, 100), Conv1d({fix}, 100, 3) over the embedding features, adaptive average "
              "pool 10, Linear(1000, 2), dropout 0.5; Adam 1e-3, batch 32")
    model = IMDBCnn(len(vocab), 100, max_len=fix, rngs=nnx.Rngs(ctx.seed))
    r = _fit(ctx, "conv1d", model, optim.adam(lr=1e-3), tr, te, epochs=epochs, batch_size=32,
             hyper={"model": "imdb_cnn_001", "optimizer": "adam", "lr": 1e-3, "fix_length": fix})
    out.update({f"conv1d_{k}": v for k, v in r.items()})

    if "lstm_dropout_on_accuracy" in out:
        ctx.print(f"validation accuracy, dropout off (dlcore) | left on (the book's evaluation): "
                  f"LSTM {out['lstm_accuracy']:.4f} | {out['lstm_dropout_on_accuracy']:.4f} (book 0.8404), "
                  f"Conv1d {out['conv1d_accuracy']:.4f} | {out['conv1d_dropout_on_accuracy']:.4f} (book 0.8256)")
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
