"""dlcore.data's tools: embedded datasets, Loader and grain, transforms, text,
time series, tables, the `dlcore data` command and the loader benchmark."""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import subprocess
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import data
from dlcore.data import tabular, text, timeseries
from dlcore.data import transforms as T

# --- embedded datasets ----------------------------------------------------------------


def test_diabetes_and_breast_cancer_are_sklearns_real_data():
    from sklearn.datasets import load_breast_cancer, load_diabetes

    d = data.load("diabetes")
    assert d["train"]["x"].shape == (354, 10) and d["test"]["y"].shape == (88, 1)
    x = np.concatenate([d["train"]["x"], d["test"]["x"]])
    ref = load_diabetes(scaled=False)
    np.testing.assert_allclose(np.sort(x[:, 2]), np.sort(ref.data[:, 2]).astype(np.float32))
    b = data.load("breast_cancer")
    assert b["train"]["x"].shape == (455, 30) and b["test"]["y"].dtype == np.int32
    y = np.concatenate([b["train"]["y"], b["test"]["y"]])
    assert np.bincount(y).tolist() == np.bincount(load_breast_cancer().target).tolist() == [212, 357]
    np.testing.assert_array_equal(data.load("diabetes", "test")["x"], d["test"]["x"])  # fixed split


def test_moons_mnist1d_and_generated_sets_are_deterministic():
    m = data.load("moons", n_samples=200, noise=0.0)
    x = np.concatenate([m["train"]["x"], m["test"]["x"]])
    y = np.concatenate([m["train"]["y"], m["test"]["y"]])
    np.testing.assert_allclose(np.linalg.norm(x[y == 0], axis=1), 1.0, atol=1e-5)  # the outer half circle
    np.testing.assert_allclose(np.linalg.norm(x[y == 1] - [1.0, 0.5], axis=1), 1.0, atol=1e-5)

    a, b = data.load("mnist1d", n_samples=200), data.load("mnist1d", n_samples=200)
    assert a["train"]["x"].shape == (160, 40) and a["test"]["x"].shape == (40, 40)
    np.testing.assert_array_equal(a["train"]["x"], b["train"]["x"])
    assert not np.array_equal(a["train"]["x"], data.load("mnist1d", n_samples=200, seed=1)["train"]["x"])
    y = np.concatenate([a["train"]["y"], a["test"]["y"]])
    assert np.bincount(y).tolist() == [20] * 10
    # The classes are separable: a nearest-class-mean rule beats chance clearly.
    big = data.load("mnist1d", n_samples=2000)
    means = np.stack([big["train"]["x"][big["train"]["y"] == k].mean(0) for k in range(10)])
    pred = np.argmin(((big["test"]["x"][:, None] - means) ** 2).sum(-1), 1)
    assert (pred == big["test"]["y"]).mean() > 0.2


def test_text_series_and_photo_standins():
    docs = data.load("python_docs")
    total = sum(len(docs[s]["x"][0]) for s in ("train", "valid", "test"))
    assert total > 300_000 and "for" in docs["train"]["x"][0]
    series = data.load("daily_series")
    train = series["train"]
    assert train["x"].shape == (1096, 2) and str(train["date"][0]) == "2016-01-01"
    # Weekly seasonality through day types: weekdays ride far more than Sundays.
    rail = train["x"][:, 0]
    assert rail[train["day_type"] == 0].mean() > 2 * rail[train["day_type"] == 2].mean()
    pairs = data.load("sentence_pairs")
    n = sum(len(p["x"]) for p in pairs.values())
    assert n == 1872 and pairs["train"]["y"].dtype == object
    reviews = data.load("sentiment_sentences", "train")
    assert set(reviews["y"].tolist()) == {0, 1}
    photos = data.load("sample_photos", "train")
    assert photos["x"].shape == (2, 427, 640, 3) and 0 <= photos["x"].min() and photos["x"].max() <= 1
    patches = data.load("photo_patches", image_size=16, n_samples=40)
    assert patches["train"]["x"].shape == (28, 16, 16, 3)


# --- loader ---------------------------------------------------------------------------


def split(n=10):
    return {"x": np.arange(n * 2, dtype=np.float32).reshape(n, 2), "y": np.arange(n, dtype=np.int32)}


@pytest.mark.parametrize("on_device", [True, False])
def test_loader_shuffles_per_epoch_by_key(on_device):
    s = split(23)
    loader = Loader = data.Loader(s, 5, shuffle=True, key=jax.random.key(3), on_device=on_device)
    assert len(Loader) == 5
    e0 = [b for b in loader]
    e1 = [b for b in loader]
    assert all(isinstance(b["x"], jax.Array) for b in e0)
    order0 = np.concatenate([np.asarray(b["y"]) for b in e0])
    order1 = np.concatenate([np.asarray(b["y"]) for b in e1])
    np.testing.assert_array_equal(np.sort(order0), s["y"])
    assert not np.array_equal(order0, order1)  # a new order each epoch
    np.testing.assert_array_equal(order0, np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(3), 0), 23)))
    again = np.concatenate([np.asarray(b["y"]) for b in data.Loader(s, 5, shuffle=True, key=jax.random.key(3),
                                                                      on_device=on_device)])
    np.testing.assert_array_equal(order0, again)  # same key, same batches
    for b in e0:
        np.testing.assert_array_equal(np.asarray(b["x"])[:, 0], 2 * np.asarray(b["y"]))
    dropped = list(data.Loader(s, 5, drop_last=True, on_device=on_device))
    assert [len(b["y"]) for b in dropped] == [5, 5, 5, 5]
    np.testing.assert_array_equal(np.concatenate([np.asarray(b["y"]) for b in dropped]), np.arange(20))


def test_loader_errors():
    with pytest.raises(ValueError, match="needs a key"):
        data.Loader(split(), 2, shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        data.Loader(split(), 0)
    with pytest.raises(ValueError, match="Python objects"):
        data.Loader({"x": np.array(["a", "b"], dtype=object)}, 1)


def test_source_batches_through_grain_over_a_memmap(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(40, dtype=np.float32).reshape(20, 2))
    src = data.ArraySource({"x": np.load(path, mmap_mode="r"), "y": np.arange(20)})
    batches = list(data.source_batches(src, 6, shuffle=True, seed=1, device=False))
    assert [len(b["y"]) for b in batches] == [6, 6, 6, 2]
    ys = np.concatenate([b["y"] for b in batches])
    np.testing.assert_array_equal(np.sort(ys), np.arange(20))
    assert not np.array_equal(ys, np.arange(20))
    again = np.concatenate([b["y"] for b in data.source_batches(src, 6, shuffle=True, seed=1, device=False)])
    np.testing.assert_array_equal(ys, again)
    other = np.concatenate([b["y"] for b in data.source_batches(src, 6, shuffle=True, seed=1, epoch=1, device=False)])
    assert not np.array_equal(ys, other)
    doubled = next(data.source_batches(src, 4, transform=lambda r: {"x": r["x"] * 2, "y": r["y"]}))
    assert isinstance(doubled["x"], jax.Array)
    np.testing.assert_array_equal(np.asarray(doubled["x"]), np.arange(8, dtype=np.float32).reshape(4, 2) * 2)


# --- transforms -------------------------------------------------------------------------

IMAGES = jax.random.uniform(jax.random.key(0), (3, 20, 24, 3))

RANDOM = {
    "flip": T.random_flip,
    "crop": partial(T.random_crop, size=16, padding=2),
    "resized_crop": partial(T.random_resized_crop, size=12),
    "rotation": partial(T.random_rotation, degrees=40),
    "color_jitter": partial(T.color_jitter, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "rand_augment": partial(T.rand_augment, num_ops=2, magnitude=9),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transforms_are_jitted_keyed_and_per_image(name):
    fn = jax.jit(RANDOM[name])
    a, b = fn(jax.random.key(1), IMAGES), fn(jax.random.key(1), IMAGES)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same augmentation
    # Different keys differ (flip: with 3 images, some key must change one).
    assert any(not np.array_equal(np.asarray(a), np.asarray(fn(jax.random.key(k), IMAGES))) for k in range(2, 6))
    # vmapped over images: each image its own draw, same as calling it alone with its key.
    same = jnp.stack([IMAGES[0]] * 3)
    out = np.asarray(fn(jax.random.key(7), same))
    assert any(not np.array_equal(out[0], out[i]) for i in (1, 2)) or name == "flip"
    assert np.isfinite(out).all()


def test_unit_range_transforms_refuse_integer_pixels():
    """color_jitter and rand_augment work in [0, 1] and clip to it: uint8 pixels all became 0 or 1. They are
    refused in one line now, as is normalize with a [0, 1] image's mean and std; pixel-unit statistics pass."""
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    for run in (lambda: T.color_jitter(jax.random.key(0), x, brightness=0.2),
                lambda: T.rand_augment(jax.random.key(0), x),
                lambda: T.normalize(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        with pytest.raises(ValueError, match="convert them first with dlcore.data.transforms.to_float"):
            run()
    np.testing.assert_allclose(T.normalize(x, 127.5, 127.5), (x - 127.5) / 127.5, rtol=1e-6)
    np.testing.assert_allclose(T.color_jitter(jax.random.key(0), T.to_float(x)), x / 255, rtol=1e-6)


def test_deterministic_transforms_match_references():
    x = np.random.default_rng(0).random((2, 6, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(T.normalize(x, [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]),
                               (x - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5], rtol=1e-5, atol=1e-6)
    assert T.center_crop(x, 4).shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(T.center_crop(x, (2, 4)), x[:, 2:4, 2:6])
    assert T.resize(x, 3).shape == (2, 3, 4, 3)  # shorter side 3, aspect kept
    np.testing.assert_array_equal(T.to_float(np.full((1, 2, 2, 1), 255, np.uint8)), np.ones((1, 2, 2, 1)))
    square = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    np.testing.assert_allclose(T.rotate(square, 90)[0, ..., 0], np.rot90(square[0, ..., 0]), atol=1e-5)
    flipped = T.random_flip(jax.random.key(0), x, p=1.0)
    np.testing.assert_array_equal(flipped, x[:, :, ::-1])
    jitter = T.color_jitter(jax.random.key(0), x)  # all zero: identity
    np.testing.assert_allclose(jitter, x, atol=1e-6)
    hue = T.color_jitter(jax.random.key(0), x, hue=0.0001)
    np.testing.assert_allclose(hue, x, atol=1e-3)  # HSV round trip


def test_imagenet_preprocess_against_torchvision_recipe():
    img = (np.random.default_rng(1).random((1, 300, 400, 3)) * 255).astype(np.uint8)
    out = jax.jit(T.imagenet_preprocess)(img)
    assert out.shape == (1, 224, 224, 3) and out.dtype == jnp.float32
    resized = T.resize(img.astype(np.float32) / 255, 256)
    assert resized.shape == (1, 256, 341, 3)
    ref = (np.asarray(resized)[:, 16:240, 58:282] - T.IMAGENET_MEAN) / T.IMAGENET_STD
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_compose_and_bad_input():
    aug = jax.jit(T.compose(partial(T.random_resized_crop, size=8), T.random_flip,
                            partial(T.normalize, mean=0.5, std=0.25)))
    a = aug(jax.random.key(0), IMAGES)
    assert a.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(a, aug(jax.random.key(0), IMAGES))
    with pytest.raises(ValueError, match=r"NHWC.*\(20, 24, 3\)"):
        T.random_flip(jax.random.key(0), IMAGES[0])
    with pytest.raises(ValueError, match="larger than the images"):
        T.center_crop(IMAGES, 30)
    with pytest.raises(ValueError, match="std must be > 0"):
        T.normalize(IMAGES, 0.5, [1.0, 0.0, 1.0])


# --- text ---------------------------------------------------------------------------------


def test_char_vocab_unknowns_are_mapped_counted_and_reported(caplog):
    vocab = text.Vocab.build(["hello world"], level="char")
    assert vocab.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and vocab.itos[4] == "l"  # most frequent first
    enc = vocab.encode_batch(["hello", "hé!", ""], add_bos=True, add_eos=True)
    assert enc.ids.shape == (3, 7) and enc.lengths.tolist() == [7, 5, 2]
    np.testing.assert_array_equal(enc.mask, np.arange(7) < enc.lengths[:, None])
    assert enc.unknown.tolist() == [0, 2, 0]
    assert enc.ids[1].tolist()[:5] == [2, vocab["h"], vocab.unk_id, vocab.unk_id, 3]
    assert vocab.unknown_tokens == {"é": 1, "!": 1}
    assert "2 of 14 tokens" in caplog.text and "'é' x1" in caplog.text
    assert vocab.decode(enc.ids[0]) == "hello"
    assert vocab.decode(enc.ids[1]) == "h<unk><unk>"


def test_word_vocab_limits_padding_and_truncation(tmp_path):
    texts = ["the cat sat", "the cat ran", "the dog sat", "a bird"]
    vocab = text.Vocab.build(texts, level="word", min_freq=2)
    assert vocab.itos[4:] == ["the", "cat", "sat"]
    assert len(text.Vocab.build(texts, max_size=5)) == 5
    enc = vocab.encode_batch(["the cat sat on the mat"], max_length=4)
    assert enc.ids.tolist() == [[vocab["the"], vocab["cat"], vocab["sat"], vocab.unk_id]]
    left = vocab.encode_batch(["the cat sat on the mat", "cat"], max_length=3, truncation="left", padding_side="left")
    assert left.ids.tolist() == [[1, 4, 1], [0, 0, 5]] and left.mask.tolist()[1] == [False, False, True]
    vocab.save(tmp_path / "v.json")
    again = text.Vocab.load(tmp_path / "v.json")
    assert again.itos == vocab.itos and again.level == "word"
    with pytest.raises(ValueError, match="not one str"):
        vocab.encode_batch("the cat")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])


def test_bpe_and_wordpiece_round_trip(tmp_path):
    corpus = [str(s) for s in data.load("sentence_pairs", "train")["x"]]
    bpe = text.train_bpe(corpus, vocab_size=200)
    assert 100 < len(bpe) <= 200 and bpe.token_to_id("<pad>") == 0
    enc = bpe.encode_batch(["She eats the apple today.", "We read."], add_bos=True, add_eos=True)
    assert enc.ids[0, 0] == bpe.token_to_id("<s>") and enc.mask.sum(1).tolist() == enc.lengths.tolist()
    assert bpe.decode(enc.ids[0]) == "She eats the apple today ."
    odd = bpe.encode_batch(["She eats ☃."])
    assert odd.unknown.tolist() == [1] and bpe.unknown_tokens == {"☃": 1}
    bpe.save(tmp_path / "bpe.json")
    assert text.SubwordTokenizer.load(tmp_path / "bpe.json").encode("She eats").tolist() == bpe.encode("She eats").tolist()
    wp = text.train_wordpiece(corpus, vocab_size=150)
    pieces = wp.tokenizer.encode("newspapers").tokens
    assert pieces[0] == "newspaper" and pieces[1].startswith("##")
    assert wp.decode(wp.encode("They buy the newspaper.")) == "they buy the newspaper."


def test_merges_by_hand_ties_to_the_smallest_ids():
    # "ab" x3, "abc" x2, "bc" x1 with the end-of-word suffix: ids <unk> 0, a 1, b 2, c 3, b</w> 4, c</w> 5; pairs
    # (a, b</w>) 3, (b, c</w>) 3, (a, b) 2. The tie at 3 goes to the smaller ids, then abc's (a, bc</w>) at 2.
    vocab, merges = text._learn_merges(collections.Counter({"ab": 3, "abc": 2, "bc": 1}), 9, 2, ["<unk>"],
                                       suffix="</w>")
    assert merges == [("a", "b</w>"), ("b", "c</w>"), ("a", "bc</w>")]
    assert vocab == {"<unk>": 0, "a": 1, "b": 2, "c": 3, "b</w>": 4, "c</w>": 5, "ab</w>": 6, "bc</w>": 7,
                     "abc</w>": 8}
    # min_frequency 3 stops before the pair seen twice; WordPiece's "##" marks the pieces after a word's first
    assert text._learn_merges(collections.Counter({"ab": 3, "abc": 2, "bc": 1}), 99, 3, ["<unk>"],
                              suffix="</w>")[1] == merges[:2]
    assert text._learn_merges(collections.Counter({"ab": 3, "abc": 2}), 99, 2, ["<unk>"], prefix="##")[1] == [
        ("a", "##b"), ("ab", "##c")]


_TRAIN_TWICE = """
import hashlib, sys
from dlcore import data
from dlcore.data import text
corpus = [str(s) for s in data.load("sentence_pairs", "train")["x"]]
doc = [line for line in str(data.load("python_docs", "train")["x"][0]).splitlines() if line.strip()][:2000]
for tok in (text.train_bpe(corpus, vocab_size=200), text.train_wordpiece(corpus, vocab_size=150),
            text.train_unigram(doc, vocab_size=500)):
    print(hashlib.sha256(tok.tokenizer.to_str().encode()).hexdigest())
"""


def test_trained_tokenizers_are_the_same_in_every_process():
    # the `tokenizers` library's own trainers order pieces by randomly seeded hash maps, and a different
    # tokenizer came out of every process (BPE's and WordPiece's merges too); Python's string hashing is seeded
    # per process as well
    runs = [subprocess.run([sys.executable, "-c", _TRAIN_TWICE], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout.split()) == 3


def test_word_vectors_from_glove_and_fasttext_files(tmp_path):
    vocab = text.Vocab.build(["The cat sat", "the dog"], level="word")
    glove = "the 0.1 0.2 0.3\ncat 1 2 3\nmat 4 5 6\n"
    (tmp_path / "g.txt.gz").write_bytes(gzip.compress(glove.encode()))
    table, found = text.load_word_vectors(tmp_path / "g.txt.gz", vocab, missing="zeros")
    assert table.shape == (len(vocab), 3) and table.dtype == np.float32
    np.testing.assert_allclose(table[vocab["cat"]], [1, 2, 3])
    np.testing.assert_allclose(table[vocab["The"]], [0.1, 0.2, 0.3])  # looked up lowercased
    assert found.sum() == 3 and not found[vocab["dog"]] and not table[vocab["dog"]].any()
    (tmp_path / "f.vec").write_text("3 2\nthe 1 1\ncat 2 2\nsat 3 3\n")
    words, vectors = text.load_word_vectors(tmp_path / "f.vec")
    assert words == ["the", "cat", "sat"] and vectors.shape == (3, 2)
    table, _ = text.load_word_vectors(tmp_path / "f.vec", vocab)
    assert not table[vocab.pad_id].any() and table[vocab["dog"]].any()  # missing rows drawn N(0, 0.1^2)
    (tmp_path / "bad.txt").write_text("the 1 2\ncat 1\n")
    with pytest.raises(ValueError, match="line 2 has 1 values, expected 2"):
        text.load_word_vectors(tmp_path / "bad.txt")


# --- time series -----------------------------------------------------------------------------


def test_windows_next_ahead_seq2seq_match_gerons_datasets():
    s = np.arange(30, dtype=np.float32)
    nxt = timeseries.windows(s, 5)
    assert nxt["x"].shape == (25, 5, 1) and nxt["y"].tolist()[:2] == [5, 6]
    ahead = timeseries.windows(s, 5, mode="ahead", horizon=3)
    assert ahead["y"].shape == (23, 3) and ahead["y"][0].tolist() == [5, 6, 7]
    seq = timeseries.windows(s, 5, mode="seq2seq", horizon=3)
    assert seq["y"].shape == (23, 5, 3)
    for i in (0, 7):
        for t in range(5):
            assert seq["y"][i, t].tolist() == s[i + t + 1:i + t + 4].tolist()
    multi = np.stack([s, s * 10], 1)
    cov = timeseries.next_step_covariates(multi, np.arange(30) % 3, 3)
    assert cov.shape == (29, 5) and cov[0].tolist() == [0, 0, 0, 1, 0]
    w = timeseries.windows(cov, 4, target=[0, 1])
    assert w["x"].shape == (25, 4, 5) and w["y"].shape == (25, 2) and w["y"][0].tolist() == [4, 40]
    with pytest.raises(ValueError, match="too short"):
        timeseries.windows(s[:5], 5)


def test_naive_baselines_and_chronological_split():
    days = np.arange(70)
    weekly = 100 + 10 * (days % 7 == 5) - 20 * (days % 7 == 6) + days * 0.5
    y, p = timeseries.naive_forecast(weekly, lag=7)
    errs = timeseries.forecast_errors(y, p)
    assert errs["mae"] == pytest.approx(3.5) and errs["mape"] == pytest.approx(np.mean(3.5 / y))
    y1, p1 = timeseries.naive_forecast(weekly)
    assert timeseries.forecast_errors(y1, p1)["mae"] > errs["mae"]
    parts = timeseries.chronological_split({"x": days}, (0.7, 0.15))
    assert [len(p["x"]) for p in parts.values()] == [49, 11, 10]
    assert parts["valid"]["x"][0] == parts["train"]["x"][-1] + 1
    with pytest.raises(ValueError, match=r"3 time steps split by \[0.1, 0.1\] leave \['train'\] empty"):
        timeseries.chronological_split({"x": days[:3]}, (0.1, 0.1))  # an empty part is refused, not returned


@pytest.mark.parametrize("target", [3, [0, 5], [], "a"])
def test_windows_refuse_a_target_that_is_not_a_column(target):
    with pytest.raises(ValueError, match="target must be a column of the series"):
        timeseries.windows(np.arange(20.0), 4, target=target)


# --- tables -----------------------------------------------------------------------------------


def test_tabular_encoder_fits_on_train_only(tmp_path):
    (tmp_path / "t.csv").write_text("age;job;loan\n20;a;yes\n40;b;no\n60;a;no\n")
    table = tabular.read_csv(tmp_path / "t.csv")
    assert table["age"].dtype == np.float64 and table["job"].tolist() == ["a", "b", "a"]
    enc = tabular.TabularEncoder(numeric=["age"], categorical=["job"], binary={"loan": "yes"}).fit(table)
    assert enc.feature_names == ["age", "loan", "job=a", "job=b"]
    test = {"age": np.array([40.0]), "job": np.array(["c"]), "loan": np.array(["yes"])}
    out = enc.transform(test)
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.0, 0.0]])  # train mean 40; unseen job -> zeros
    assert enc.unknown_counts == {"job": 1}
    with pytest.raises(ValueError, match=r"no column\(s\) \['salary'\]"):
        tabular.read_csv(tmp_path / "t.csv", columns=["age", "salary"])
    with pytest.raises(ValueError, match="not fitted"):
        tabular.TabularEncoder(numeric=["age"]).transform(table)
    with pytest.raises(ValueError, match="holds text"):
        tabular.TabularEncoder(numeric=["job"]).fit(table)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields"):
        tabular.read_csv(tmp_path / "bad.csv")


# --- command line and benchmark ------------------------------------------------------------------


def run_cli(argv):
    from dlcore.data import cli

    parser = argparse.ArgumentParser(prog="dlcore")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    cli.main(parser.parse_args(argv))


def test_data_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    run_cli(["data", "list", "--json"])
    listing = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in listing["datasets"]}
    assert listing["cache"] == str(tmp_path) and rows["digits"]["embedded"] and not rows["mnist"]["present"]
    run_cli(["data", "path", "cifar10"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cifar10")
    run_cli(["data", "prepare", "moons"])
    assert "moons: embedded" in capsys.readouterr().out
    with pytest.raises(data.DatasetNotFoundError, match="DLCORE_OFFLINE"):
        run_cli(["data", "prepare", "mnist"])
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'"):
        run_cli(["data", "prepare", "moons", "mnsit"])


def test_loader_benchmark_smoke():
    from dlcore import bench

    rows = bench.run(["loader"], quick=True, out=open("/dev/null", "w"))
    by_case = {r["case"]: r for r in rows}
    share = by_case["Loader share of ConvNet epoch"]
    assert share["unit"] == "%" and share["dlcore"] > 0
    assert by_case["epoch of 1024 images, on device"]["dlcore"] > 0
