"""The text pipeline of dlcore.data.text: length-bucketed batches, n-grams, the Unigram tokenizer, and
pretrained vectors (registered names, download against a local HTTP server, the table in an Embedding)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.data import real, text
from dlcore.data.download import ChecksumError
from dlcore.data.sources import DatasetNotFoundError


def _sequences(n=203, seed=0, low=1, high=60):
    """Sequences whose first token is their index + 1 (so a batch row says which example it is)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high, n)
    return [np.concatenate([[i + 1], rng.integers(1, 50, k - 1)]).astype(np.int32) for i, k in enumerate(lengths)]


# --- BucketIterator -----------------------------------------------------------------------------


def test_every_example_exactly_once_per_epoch_with_its_target_and_length():
    seqs = _sequences()
    y = np.arange(len(seqs), dtype=np.int32) * 10
    it = text.BucketIterator(seqs, y, batch_size=16, pool=4, seed=3)
    assert len(it) == 13 and it.examples_per_epoch == 203
    for epoch in (1, 2):
        seen = []
        for batch in it.epoch(epoch):
            ids, lengths = batch["x"]
            assert ids.shape[0] == 16 and ids.dtype == np.int32 and ids.shape[1] % 16 == 0
            real_rows = batch["w"] > 0
            for row, n, target in zip(ids[real_rows], lengths[real_rows], batch["y"][real_rows]):
                i = int(row[0]) - 1
                np.testing.assert_array_equal(row[:n], seqs[i])  # the right tokens, then padding
                assert not row[n:].any() and target == 10 * i and n == len(seqs[i])
                seen.append(i)
        assert sorted(seen) == list(range(203))  # each once: no loss, no repeat
    assert sum(b["w"].sum() for b in it.epoch(1)) == 203  # filler rows carry weight 0


def test_batches_are_length_sorted_shuffled_and_deterministic():
    seqs = _sequences(n=640, seed=1, high=200)
    it = text.BucketIterator(seqs, batch_size=32, pool=100, pad_multiple=1)
    plan1 = it.plan(1)
    # one pool (640 < 32 * 100): lengths sorted across the epoch, batches in a shuffled order
    spans = [(it._lengths[r].min(), it._lengths[r].max()) for r in plan1]
    assert sorted(spans) != spans
    assert all(a[1] <= b[0] for a, b in zip(sorted(spans), sorted(spans)[1:]))
    assert [r.tolist() for r in plan1] == [r.tolist() for r in text.BucketIterator(seqs, batch_size=32).plan(1)]
    assert [r.tolist() for r in plan1] != [r.tolist() for r in it.plan(2)]
    assert [r.tolist() for r in plan1] != [r.tolist() for r in text.BucketIterator(seqs, batch_size=32, seed=1).plan(1)]
    stats = it.stats(1)
    # bucketed: about a third of the slots of plain shuffled batches padded to their longest
    assert stats["slots"] < 0.6 * stats["unbucketed_slots"] and stats["padding"] < 0.1
    x, _ = next(iter(it.epoch(1)))["x"]
    assert x.shape[1] == max(len(seqs[i]) for i in plan1[0])  # pad_multiple=1: to its own longest
    evaluation = text.BucketIterator(seqs, batch_size=32, shuffle=False)
    assert [r.tolist() for r in evaluation.plan(1)] == [r.tolist() for r in evaluation.plan(7)]


def test_pad_multiple_bounds_the_shapes_and_sort_within_batch():
    seqs = _sequences(n=500, seed=2, high=250)
    it = text.BucketIterator(seqs, batch_size=20, max_length=128, pad_multiple=32, sort_within_batch=True,
                             lengths=True)
    widths = {b["x"][0].shape[1] for e in (1, 2, 3) for b in it.epoch(e)}
    assert widths <= {32, 64, 96, 128} and len(widths) == 4 and it.stats()["shapes"] == 4
    batch = next(iter(it.epoch(1)))
    assert list(batch["x"][1]) == sorted(batch["x"][1], reverse=True)
    fixed = text.BucketIterator(seqs, batch_size=20, widths=(64, 16, 128), pad_multiple=100)
    got = {b["x"][0].shape[1] for e in (1, 2) for b in fixed.epoch(e)}
    assert got == {16, 64, 128, 200, 300}  # rows over 128 (up to 249) fall back on pad_multiple
    with pytest.raises(ValueError, match="at least one width"):
        text.BucketIterator(seqs, widths=())
    ids_only = text.BucketIterator(seqs, batch_size=20, lengths=False, drop_last=True)
    assert isinstance(next(iter(ids_only.epoch(1)))["x"], np.ndarray) and len(ids_only) == 25


def test_bad_input_is_one_line(caplog):
    with pytest.raises(ValueError, match="sequence 1 is empty .*empty='drop'"):
        text.BucketIterator([[1, 2], [], [3]])
    it = text.BucketIterator([[1, 2], [], [3]], [0, 1, 2], empty="drop", batch_size=4)
    assert it.dropped_empty == 1 and it.index.tolist() == [0, 2]
    assert sorted(next(iter(it.epoch(1)))["y"][:2].tolist()) == [0, 2]
    with pytest.raises(ValueError, match="sequence 0 has 5 tokens, more than max_length=3"):
        text.BucketIterator([[1, 2, 3, 4, 5]], max_length=3, truncation="error")
    with caplog.at_level(logging.WARNING, logger="dlcore.data.text"):
        cut = text.BucketIterator([[1, 2, 3, 4, 5], [6]], max_length=3, truncation="left", pad_multiple=8)
    assert cut.truncated == 1 and "1 of 2 sequences were longer than max_length=3" in caplog.text
    ids, lengths = next(iter(cut.epoch(1)))["x"]
    assert cut.batch_size == 2 and ids.shape[1] == 3
    assert sorted(r[:n].tolist() for r, n in zip(ids, lengths)) == [[3, 4, 5], [6]]
    vocab = text.Vocab.build(["a b c d e"])
    enc = vocab.encode_batch(["a b c d e", "", "a"], max_length=3)
    assert enc.lengths.tolist() == [3, 0, 1] and enc.truncated.tolist() == [2, 0, 0] and not enc.mask[1].any()
    with pytest.raises(ValueError, match="y has 1 rows for 2 sequences"):
        text.BucketIterator([[1], [2]], [0])
    with pytest.raises(ValueError, match="token ids, not texts"):
        text.BucketIterator(["a b", "c"])
    with pytest.raises(ValueError, match="sequence 0 is empty") as err:
        text.BucketIterator([[]])
    assert "\n" not in str(err.value)


class _MeanPool(nnx.Module):
    def __init__(self, emb):
        self.emb = emb
        self.out = nnx.Linear(emb.embedding_dim, 2, rngs=nnx.Rngs(0))

    def __call__(self, ids, lengths):
        mask = (jnp.arange(ids.shape[1])[None] < lengths[:, None])[..., None]
        h = (self.emb(ids) * mask).sum(1) / lengths[:, None]
        return self.out(h)


def test_trainer_fits_on_bucketed_batches_of_several_widths():
    rng = np.random.default_rng(0)
    n = 128
    y = rng.integers(0, 2, n).astype(np.int32)
    # class 1 sentences use tokens 2..5, class 0 tokens 6..9; lengths 1..30
    seqs = [rng.integers(2, 6, k) if c else rng.integers(6, 10, k) for c, k in zip(y, rng.integers(1, 31, n))]
    it = text.BucketIterator(seqs, y, batch_size=32, pad_multiple=16, seed=0)
    assert it.stats()["shapes"] == 2  # widths 16 and 32: two compilations of the step
    emb = dlcore.nn.Embedding(10, 8, padding_idx=0, rngs=nnx.Rngs(1))
    trainer = dlcore.Trainer(_MeanPool(emb), optim.adam(5e-2), losses.cross_entropy, metrics=["accuracy"],
                             progress=False)
    history = trainer.fit(it, epochs=3, validation=it)
    assert history["val_accuracy"][-1] == 1.0 and history["loss"][-1] < history["loss"][0]


# --- n-grams ------------------------------------------------------------------------------------


def test_ngrams_as_the_book_and_bag_of_ngrams():
    words = "the action scenes were top notch in this movie".split()
    assert text.ngrams(words, 2)[:3] == [("the", "action"), ("action", "scenes"), ("scenes", "were")]
    assert text.ngrams(words, 3)[0] == ("the", "action", "scenes") and len(text.ngrams(words, 3)) == 7
    assert text.ngrams(words, 1)[-1] == ("movie",) and text.ngrams(["a"], 2) == []
    with pytest.raises(ValueError, match="not a str"):
        text.ngrams("the movie", 2)
    with pytest.raises(ValueError, match="n must be an int"):
        text.ngrams(words, 0)
    docs = [["good", "movie"], ["not", "good", "movie"], ["not", "good"]]
    counts, vocab = text.bag_of_ngrams(docs, (1, 2))
    # by decreasing frequency, ties in first-seen order
    assert vocab == [("good",), ("movie",), ("good", "movie"), ("not",), ("not", "good")]
    col = {g: j for j, g in enumerate(vocab)}
    assert counts.shape == (3, 5) and counts[:, col[("good",)]].tolist() == [1, 1, 1]
    assert counts[:, col[("not", "good")]].tolist() == [0, 1, 1]
    test_counts, _ = text.bag_of_ngrams([["good", "good", "film"]], (1, 2), vocabulary=vocab)
    assert test_counts.sum() == 2 and test_counts[0, col[("good",)]] == 2  # "film" is not counted


# --- Unigram ------------------------------------------------------------------------------------


def test_unigram_encodes_and_decodes_back():
    doc = str(dlcore.data.load("python_docs", "train")["x"][0])
    corpus = [line for line in doc.splitlines() if line.strip()][:2000]
    uni = text.train_unigram(corpus, vocab_size=500)
    assert len(uni) == 500 and [uni.tokenizer.id_to_token(i) for i in range(4)] == list(text.SPECIALS)
    sentence = "The default arguments of a function are evaluated once."
    enc = uni.encode_batch([sentence, "Unseen wordsmithing!"], add_bos=True, add_eos=True)
    assert enc.ids[0, 0] == uni.token_to_id("<s>") and enc.lengths.tolist() == enc.mask.sum(1).tolist()
    assert uni.decode(enc.ids[0]) == sentence and uni.decode(enc.ids[1]) == "Unseen wordsmithing!"
    pieces = uni.tokenizer.encode(sentence).tokens
    assert pieces[:3] == ["▁The", "▁default", "▁arguments"] and len(pieces) < 15  # words and pieces
    assert enc.unknown.tolist() == [0, 0]


# --- pretrained vectors ---------------------------------------------------------------------------


def test_vectors_table_zeroes_unk_and_pad_and_goes_into_an_embedding(tmp_path):
    vocab = text.Vocab.build(["the cat sat", "the dog"], level="word")
    (tmp_path / "v.txt").write_text("the 1 1 1\ncat 2 2 2\n<unk> 9 9 9\n")
    table, found = text.pretrained_vectors(tmp_path / "v.txt", vocab, missing="normal")
    assert not table[vocab.unk_id].any() and not table[vocab.pad_id].any() and table[vocab["dog"]].any()
    assert found.tolist()[vocab["cat"]] and not found[vocab["dog"]]
    kept, _ = text.pretrained_vectors(tmp_path / "v.txt", vocab, zero_tokens=())
    assert kept[vocab.unk_id].tolist() == [9, 9, 9]  # the option: keep what the file (or missing) gave
    frozen = text.pretrained_embedding(tmp_path / "v.txt", vocab, freeze=True)
    assert frozen.freeze and frozen.padding_idx == vocab.pad_id
    np.testing.assert_array_equal(frozen(np.array([vocab["cat"]])), [[2, 2, 2]])
    assert not nnx.state(frozen, nnx.Param)  # frozen: nothing to train
    trainable = text.pretrained_embedding(table, vocab, freeze=False)
    assert len(jnp.ravel(nnx.state(trainable, nnx.Param)["weight"][...])) == table.size
    with pytest.raises(ValueError, match="holds vectors of 3 values, but the embedding has dim 4"):
        text.pretrained_embedding(tmp_path / "v.txt", vocab, embedding_dim=4)
    with pytest.raises(ValueError, match="have dim 3, but the embedding has dim 4"):
        text.pretrained_embedding(table, vocab, embedding_dim=4)
    with pytest.raises(ValueError, match="'glove.6B.100d' have dim 100, but the embedding has dim 300"):
        text.pretrained_vectors("glove.6B.100d", vocab, dim=300)
    with pytest.raises(ValueError, match="neither registered word vectors"):
        text.pretrained_vectors("glove.6B.42d", vocab)


def test_registered_names_and_dataset_entries():
    assert {"fasttext.simple.300d", "glove.6b.50d", "glove.6b.300d"} <= set(text.VECTORS.names())
    info = dlcore.data.info("glove6b")
    assert info.files[0][0] == "glove.6B.zip" and info.options == ("dim",) and not info.embedded
    assert dlcore.data.info("fasttext_simple").files[0][0] == "wiki.simple.vec"
    assert real.GLOVE_6B.files[0].size == 862182613
    assert all(len(h) == 40 for h in real.VECTOR_SHA1.values())


def _glove_zip(words):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for d in real.GLOVE_6B_DIMS:
            z.writestr(f"glove.6B.{d}d.txt", "".join(f"{w} " + " ".join([str(i + 1)] * d) + "\n"
                                                       for i, w in enumerate(words)))
    return out.getvalue()


def test_glove_download_checks_sha1_and_builds_the_table(server, cache, monkeypatch):
    body = _glove_zip(["the", "cat", "sat"])
    server.files["/glove.6B.zip"] = body
    files = (dataclasses.replace(real.GLOVE_6B.files[0], urls=(server.url + "/glove.6B.zip",), size=len(body)),)
    monkeypatch.setitem(real.DATASETS, "glove6b", dataclasses.replace(real.GLOVE_6B, files=files))
    monkeypatch.setitem(real.VECTOR_SHA1, "glove.6B.zip", hashlib.sha1(body).hexdigest())
    vocab = text.Vocab.build(["The cat sat on the mat"], level="word")

    with pytest.raises(DatasetNotFoundError, match=r"need glove.6B.zip .* downloading is off \(download=False\)"
                                                   r".*put it there") as err:
        text.pretrained_vectors("glove.6B.50d", vocab, download=False)
    assert "\n" not in str(err.value) and str(cache / "glove6b") in str(err.value)

    table, found = text.pretrained_vectors("glove.6B.50d", vocab, progress=False)
    assert table.shape == (len(vocab), 50) and table[vocab["cat"]].tolist() == [2.0] * 50
    assert table[vocab["The"]].tolist() == [1.0] * 50 and not table[vocab.unk_id].any()
    assert found.sum() == 4 and (cache / "glove6b" / "glove.6B.zip.sha256").is_file()  # recorded on first use
    emb = text.pretrained_embedding("glove.6B.300d", vocab, freeze=True, embedding_dim=300)
    assert emb.embedding_dim == 300 and [p for p, _ in server.requests] == ["/glove.6B.zip"]  # one download for every dim
    splits = dlcore.data.load("glove6b", dim=200, progress=False)
    assert splits["train"]["vectors"].shape == (3, 200) and list(splits["train"]["x"]) == ["the", "cat", "sat"]

    # A file that is not the published one: deleted, one line.
    (cache / "glove6b" / "glove.6B.zip").unlink()
    (cache / "glove6b" / "glove.6B.zip.sha256").unlink()
    server.files["/glove.6B.zip"] = _glove_zip(["tampered"])
    monkeypatch.setitem(real.DATASETS, "glove6b", dataclasses.replace(
        real.GLOVE_6B, files=(dataclasses.replace(files[0], size=None),)))
    with pytest.raises(ChecksumError, match="published SHA-1 is"):
        text.pretrained_vectors("glove.6B.50d", vocab, progress=False)
    assert not (cache / "glove6b" / "glove.6B.zip").exists()


def test_fasttext_download_and_the_offline_line(server, cache, monkeypatch):
    body = ("3 4\n" + "".join(f"{w} 0.5 0.5 0.5 0.5 \n" for w in ("the", "cat", "</s>"))).encode()
    server.files["/wiki.simple.vec"] = body
    files = (dataclasses.replace(real.FASTTEXT_SIMPLE.files[0], urls=(server.url + "/wiki.simple.vec",)),)
    monkeypatch.setitem(real.DATASETS, "fasttext_simple", dataclasses.replace(real.FASTTEXT_SIMPLE, files=files))
    monkeypatch.setitem(real.VECTOR_SHA1, "wiki.simple.vec", hashlib.sha1(body).hexdigest())
    vocab = text.Vocab.build(["the cat"], level="word")
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="need wiki.simple.vec .*DLCORE_OFFLINE"):
        text.pretrained_vectors("fasttext.simple.300d", vocab)
    monkeypatch.delenv("DLCORE_OFFLINE")
    # the registered dim is 300: a 4-d file under its name is refused in one line
    with pytest.raises(ValueError, match="holds vectors of 4 values, but the embedding has dim 300"):
        text.pretrained_vectors("fasttext.simple.300d", vocab, progress=False)
    words, vectors = text.read_vectors(cache / "fasttext_simple" / "wiki.simple.vec")
    assert words == ["the", "cat", "</s>"] and vectors.shape == (3, 4)
    monkeypatch.setitem(real.DATASETS, "fasttext_simple", dataclasses.replace(
        real.FASTTEXT_SIMPLE, files=(dataclasses.replace(files[0], urls=("http://127.0.0.1:1/x",)),)))
    (cache / "fasttext_simple" / "wiki.simple.vec").unlink()
    with pytest.raises(DatasetNotFoundError, match="the download failed .*refused"):
        text.pretrained_vectors("fasttext.simple.300d", vocab)


def test_a_left_padded_encoding_buckets_its_real_tokens():
    """An `Encoding` padded on the left (`pad_batch(..., padding_side="left")`) holds its tokens at the end of
    each row: the iterator takes the tokens where the mask is True, not the row's first `length` ids."""
    left = text.pad_batch([[5, 6, 7], [8], [9, 4]], padding_side="left")
    right = text.pad_batch([[5, 6, 7], [8], [9, 4]])
    batches = [next(iter(text.BucketIterator(e, batch_size=3, shuffle=False, pad_multiple=1).epoch(1)))
               for e in (left, right)]
    for b in batches:
        ids, lengths = b["x"]
        rows = sorted(ids[i, :n].tolist() for i, n in enumerate(lengths))
        assert rows == [[5, 6, 7], [8], [9, 4]]


def test_vocab_encode_counts_and_logs_unknown_tokens(caplog):
    """One text through `Vocab.encode` counts its unknown tokens as `encode_batch` does, and logs them."""
    vocab = text.Vocab.build(["the cat sat"], level="word")
    with caplog.at_level(logging.WARNING):
        ids = vocab.encode("the zebra sat")
    assert ids.tolist() == [vocab.stoi["the"], vocab.stoi[text.UNK], vocab.stoi["sat"]]
    assert vocab.unknown_tokens == {"zebra": 1} and "zebra" in caplog.text
    assert vocab.token_to_id("cat") == vocab.stoi["cat"] and vocab.token_to_id("zebra") is None
