"""imdb_rnn's figures: its validation lines carry the validation accuracy, consistent with the count it prints and
the metric it reports (Ketkar & Moolayil print the training accuracy there, ch. 7, Listings 7-7 and 7-11)."""

from __future__ import annotations

import io
import re

import pytest

from dlcore import runner


def test_imdb_rnn_validation_lines_carry_the_validation_accuracy(quick_run):
    report, text = quick_run("imdb_rnn")
    lines = [ln for ln in text.splitlines() if ln.startswith("  epoch ")]
    assert len(lines) == 2                                   # one epoch of each model under --quick
    for line, key in zip(lines, ("rnn_val_accuracy", "improved_val_accuracy")):
        train, valid = line.split("|")
        n, m, acc = re.search(r"correct (\d+)/(\d+) \(([\d.]+)\)", valid).groups()
        assert int(m) == 128                                 # the validation reviews, not the training ones
        assert float(acc) == pytest.approx(int(n) / int(m), abs=1e-4)
        assert float(acc) == pytest.approx(report["metrics"][key], abs=1e-4)
        assert re.search(r"correct \d+/256 ", train)
    assert report["book"]["improved_val_accuracy"] == pytest.approx(4564 / 5000)
    assert "which is its training accuracy" in text
    assert "not the book's fasttext.simple.300d" in text or "fasttext.simple.300d, " in text


def test_imdb_rnn_copies_cached_fasttext_vectors_and_zeroes_unk_and_pad(tmp_path, monkeypatch):
    import numpy as np

    from dlcore.data import text

    imdb_rnn = runner.get("imdb_rnn")

    folder = tmp_path / "fasttext_simple"
    folder.mkdir()
    rows = {"the": 0.5, "movie": -1.0, "<unk>": 2.0}                  # a file's own <unk> row is zeroed too
    (folder / "wiki.simple.vec").write_text(
        f"{len(rows)} 300\n" + "".join(f"{w} {' '.join([str(v)] * 300)}\n" for w, v in rows.items()))
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    vocab = text.Vocab(["the", "movie", "plot"], specials=(text.UNK, text.PAD))
    out = io.StringIO()
    ctx = runner.Context(imdb_rnn.EXAMPLE, out=out)
    table = imdb_rnn._embedding_table(ctx, vocab)
    assert table.shape == (5, 300)
    np.testing.assert_array_equal(table[vocab["the"]], 0.5)
    np.testing.assert_array_equal(table[vocab["movie"]], -1.0)
    assert not table[vocab.unk_id].any() and not table[vocab.pad_id].any()
    assert "fasttext.simple.300d, 3 of 5 tokens found" in out.getvalue()   # the, movie, <unk>
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path / "empty"))
    assert imdb_rnn._embedding_table(ctx, vocab) is None
    assert "embedding: random" in out.getvalue()
