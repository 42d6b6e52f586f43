"""The data pieces of the char_rnn and word_lm examples (no training: the examples' quick runs are in
test_examples.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dlcore import runner


def test_char_windows_are_the_books_char_dataset():
    ex = runner.get("char_rnn")
    codec = ex.CharCodec("To be, or not to be\n")
    assert codec.chars == sorted(set("to be, or not to be\n"))          # lower-cased
    ids = codec.encode("to be or not to be")
    assert codec.decode(ids) == "to be or not to be"
    with pytest.raises(ValueError, match=r"characters \['z'\] are not in the vocabulary"):
        codec.encode("zoo")
    stream = np.arange(200, dtype=np.int32)
    w = ex.windows(stream, 10)
    assert w["x"].shape == (15, ex.WINDOW)                             # starts 0, 10, ..., 140 (< 150)
    np.testing.assert_array_equal(w["x"][1], np.arange(10, 60))
    np.testing.assert_array_equal(w["y"], w["x"] + 1)                  # targets shifted by one character


def test_word_lm_rows_are_the_streams_in_chunks_in_order():
    ex = runner.get("word_lm")
    assert ex.words("a b\nc\n") == ["a", "b", "<eos>", "c", "<eos>"]
    vocab = ex.build_vocab(["b", "a", "b", "<eos>"])
    assert vocab.itos[:2] == ["<unk>", "<eos>"] and vocab["b"] == 2 and vocab["zzz"] == vocab.unk_id
    n = ex.BATCH * (3 * ex.BPTT + 1) + 7                               # 3 chunks per stream, 7 words cut
    rows = ex.bptt_rows(np.arange(n, dtype=np.int32))
    length = n // ex.BATCH
    assert rows["x"].shape == (3 * ex.BATCH, ex.BPTT)
    for c in range(3):                                                 # batch c holds chunk c of every stream
        for b in (0, ex.BATCH - 1):
            start = b * length + c * ex.BPTT
            np.testing.assert_array_equal(rows["x"][c * ex.BATCH + b], np.arange(start, start + ex.BPTT))
    np.testing.assert_array_equal(rows["y"], rows["x"] + 1)
    with pytest.raises(ValueError, match="too short"):
        ex.bptt_rows(np.arange(ex.BATCH * ex.BPTT, dtype=np.int32))
