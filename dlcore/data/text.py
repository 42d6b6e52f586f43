"""Text: vocabularies, subword tokenizers, n-grams, padded and length-bucketed batches, word vectors.

A `Vocab` maps characters or words to ids, with the special tokens ``<pad>``
(id 0), ``<unk>``, ``<s>`` and ``</s>`` first; tokens outside it become
``<unk>``, and every encode counts them (``Encoding.unknown``, and
`Vocab.unknown_tokens` over the vocabulary's life) and logs the most common.
`train_bpe`, `train_wordpiece` and `train_unigram` train subword tokenizers
that encode with Hugging Face's ``tokenizers`` library (Géron, ch. 14); the
same texts give the same tokenizer in every process (dlcore learns the BPE and
WordPiece merges itself: the library's trainers are not deterministic). `ngrams` and
`bag_of_ngrams` give n-gram features (Subramanian, ch. 6). `pad_batch` turns
id sequences into a padded ``(N, L)`` batch with an attention mask and
lengths, which is what ``Encoding`` holds; `BucketIterator` makes batches of
similar length, each padded only to its own longest row (torchtext's
``BucketIterator``, Subramanian, ch. 7), as a batch source for the Trainer.
`load_word_vectors` reads GloVe or fastText text files into an embedding table
for a vocabulary; `pretrained_vectors` and `pretrained_embedding` do it from a
registered name (``VECTORS``: ``"fasttext.simple.300d"``, ``"glove.6B.100d"``,
...), downloading the file into dlcore's cache when it is missing.

Bad input: an empty text encodes to a row of length 0 (all padding) in
`pad_batch` and ``encode_batch``, and is refused by `BucketIterator` (or
dropped and counted, ``empty="drop"``); a text longer than ``max_length`` is
truncated and counted (``Encoding.truncated``, `BucketIterator.truncated`), or
refused (``BucketIterator(truncation="error")``); vectors whose size differs
from the embedding's are refused in one line.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcore.checks import check_choice, check_float, check_int
from dlcore.data import protocol as _protocol
from dlcore.data.wordvec import read_vectors  # noqa: F401  (public here too)
from dlcore.registry import Registry

__all__ = [
    "BOS",
    "BucketIterator",
    "EOS",
    "Encoding",
    "PAD",
    "SPECIALS",
    "SubwordTokenizer",
    "UNK",
    "VECTORS",
    "Vocab",
    "WordVectors",
    "bag_of_ngrams",
    "load_word_vectors",
    "ngrams",
    "pad_batch",
    "pretrained_embedding",
    "pretrained_vectors",
    "read_vectors",
    "train_bpe",
    "train_unigram",
    "train_wordpiece",
    "vectors_path",
]

_log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclasses.dataclass
class Encoding:
    """A padded batch of token ids.

    Attributes:
        ids: int32 ``(N, L)``, padded with the pad id.
        mask: bool ``(N, L)``, True on real tokens (the attention mask).
        lengths: int32 ``(N,)``, real tokens per row (after truncation).
        unknown: int32 ``(N,)``, tokens per row that were mapped to ``<unk>``.
        truncated: int32 ``(N,)``, tokens per row cut by ``max_length`` (0 for
            a row that fitted); ``(truncated > 0).sum()`` rows were cut.
    """

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    unknown: np.ndarray
    truncated: np.ndarray | None = None

    def as_split(self) -> dict[str, np.ndarray]:
        """``{"x": ids, "mask": mask, "lengths": lengths}`` for a split dict."""
        return {"x": self.ids, "mask": self.mask, "lengths": self.lengths}


def pad_batch(
    sequences: Sequence[Sequence[int]],
    *,
    max_length: int | None = None,
    pad_id: int = 0,
    truncation: str = "right",
    padding_side: str = "right",
    unknown: Sequence[int] | None = None,
) -> Encoding:
    """Pads (and truncates) id sequences into one ``(N, L)`` batch.

    Args:
        sequences: N sequences of token ids.
        max_length: ``L``; sequences longer are truncated. None: the longest.
        pad_id: The id that fills the padding.
        truncation: ``"right"`` keeps the start, ``"left"`` keeps the end.
        padding_side: ``"right"`` (the usual) or ``"left"`` (e.g. for a
            decoder that continues the text).
        unknown: Per-row unknown counts to carry into the `Encoding`.

    Returns:
        An `Encoding`; ``truncated`` counts the tokens cut from each row. An
        empty sequence gives a row of length 0 (all padding, mask all False);
        `BucketIterator` refuses such rows instead (or drops them, counted).
    """
    check_choice(truncation, "truncation", ("right", "left"))
    check_choice(padding_side, "padding_side", ("right", "left"))
    seqs = [np.asarray(s, np.int64).ravel() for s in sequences]
    longest = max((len(s) for s in seqs), default=0)
    # a float max_length is cut to an int, as it always was
    length = longest if max_length is None else int(check_float(max_length, "max_length", low=1))
    ids = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), bool)
    lengths = np.zeros(len(seqs), np.int32)
    cut = np.asarray([max(0, len(s) - length) for s in seqs], np.int32)
    if cut.any():
        _log.info("%d of %d sequences were longer than max_length=%d and were truncated (%s kept)",
                  int((cut > 0).sum()), len(seqs), length, "start" if truncation == "right" else "end")
    for i, s in enumerate(seqs):
        s = s[:length] if truncation == "right" else s[max(0, len(s) - length):]
        n = len(s)
        sl = slice(0, n) if padding_side == "right" else slice(length - n, length)
        ids[i, sl], mask[i, sl], lengths[i] = s, True, n
    unk = np.zeros(len(seqs), np.int32) if unknown is None else np.asarray(unknown, np.int32)
    return Encoding(ids, mask, lengths, unk, cut)


class Vocab:
    """A character or word vocabulary with special tokens.

    Build one with `Vocab.build`; ids 0..3 are ``<pad> <unk> <s> </s>`` (or
    the ``specials`` given), then tokens by decreasing frequency (ties in
    first-seen order).

    Args:
        tokens: The ordinary tokens, in id order (after the specials).
        level: ``"char"`` (a text is its characters) or ``"word"`` (words and
            punctuation marks, split by a regular expression).
        specials: Special tokens, first in the vocabulary; must include
            ``<unk>`` (or ``unk``) for unknown tokens.
        lower: Lowercase texts before tokenising.
        unk: The unknown token.
    """

    def __init__(self, tokens: Iterable[str], *, level: str = "word", specials: Sequence[str] = SPECIALS,
                 lower: bool = False, unk: str = UNK):
        check_choice(level, "level", ("char", "word"))
        if unk not in specials:
            raise ValueError(f"specials {list(specials)} must include the unknown token {unk!r}")
        self.level, self.lower, self.specials, self.unk = level, lower, tuple(specials), unk
        self.itos: list[str] = list(dict.fromkeys([*specials, *tokens]))
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unknown_tokens: collections.Counter[str] = collections.Counter()

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        level: str = "word",
        max_size: int | None = None,
        min_freq: int = 1,
        specials: Sequence[str] = SPECIALS,
        lower: bool = False,
    ) -> Vocab:
        """Counts the tokens of ``texts`` and keeps the most frequent.

        Args:
            texts: Training texts (build from the training split only).
            level: ``"char"`` or ``"word"``.
            max_size: Most tokens kept, specials included; None: no limit.
            min_freq: Tokens seen fewer times are left out (they become ``<unk>``).
            specials: Special tokens, given the first ids.
            lower: Lowercase before counting (and before every encode).

        Returns:
            The vocabulary.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a list of texts, not one str; wrap it: [text]")
        check_int(min_freq, "min_freq", low=1)
        if max_size is not None:  # at least room for the specials
            check_int(max_size, "max_size", low=len(specials))
        probe = cls((), level=level, specials=specials, lower=lower)
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(probe.tokenize(text))
        for s in specials:
            counts.pop(s, None)
        kept = [t for t, c in counts.most_common() if c >= min_freq]  # stable: ties keep first-seen order
        if max_size is not None:
            kept = kept[: max_size - len(specials)]
        return cls(kept, level=level, specials=specials, lower=lower)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.stoi[self.unk])

    @property
    def pad_id(self) -> int:
        return self.stoi.get(PAD, 0)

    @property
    def unk_id(self) -> int:
        return self.stoi[self.unk]

    @property
    def bos_id(self) -> int | None:
        return self.stoi.get(BOS)

    @property
    def eos_id(self) -> int | None:
        return self.stoi.get(EOS)

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or None where the vocabulary lacks it (as `SubwordTokenizer.token_to_id`)."""
        return self.stoi.get(token)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``: its characters, or its words and punctuation."""
        if not isinstance(text, str):
            raise ValueError(f"expected a str, got {type(text).__name__}")
        if self.lower:
            text = text.lower()
        return list(text) if self.level == "char" else _WORD.findall(text)

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
        """Token ids of one text; unknown tokens become ``<unk>`` and are counted.

        Returns:
            int32 ``(T,)``.
        """
        ids, missing = self._encode(text, add_bos, add_eos)
        self._report(collections.Counter(missing), len(ids))
        return ids

    def _encode(self, text: str, add_bos: bool, add_eos: bool) -> tuple[np.ndarray, list[str]]:
        tokens = self.tokenize(text)
        unk = self.stoi[self.unk]
        ids = [self.stoi.get(t, unk) for t in tokens]
        missing = [t for t, i in zip(tokens, ids) if i == unk and t != self.unk]
        if add_bos:
            ids.insert(0, self._special(BOS))
        if add_eos:
            ids.append(self._special(EOS))
        return np.asarray(ids, np.int32), missing

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        truncation: str = "right",
        padding_side: str = "right",
    ) -> Encoding:
        """Encodes and pads texts into one batch (see `pad_batch`).

        Tokens outside the vocabulary become ``<unk>``: their number per text
        is in ``Encoding.unknown``, the tokens are added to `unknown_tokens`,
        and the most common are logged (a warning) so that a vocabulary built
        on the wrong data does not go unnoticed.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a list of texts, not one str; wrap it: [text]")
        seqs, counts, missing = [], [], collections.Counter()
        for text in texts:
            ids, miss = self._encode(text, add_bos, add_eos)
            seqs.append(ids)
            counts.append(len(miss))
            missing.update(miss)
        self._report(missing, sum(len(s) for s in seqs))
        return pad_batch(seqs, max_length=max_length, pad_id=self.pad_id, truncation=truncation,
                         padding_side=padding_side, unknown=counts)

    def _report(self, missing: collections.Counter[str], total: int) -> None:
        if missing:
            self.unknown_tokens.update(missing)
            n = sum(missing.values())
            top = ", ".join(f"{t!r} x{c}" for t, c in missing.most_common(5))
            _log.warning("%d of %d tokens (%.1f%%) are not in the vocabulary and became %s: %s",
                         n, total, 100 * n / max(total, 1), self.unk, top)

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """The text of ``ids``: characters joined, or words joined by spaces.

        Args:
            ids: Token ids (padding included is fine).
            skip_special: Leave out special tokens (``<pad>``, ``<s>``, ...);
                ``<unk>`` is kept so that losses stay visible.
        """
        skip = set(self.specials) - {self.unk} if skip_special else set()
        tokens = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).ravel():
            if not 0 <= int(i) < len(self.itos):
                raise ValueError(f"id {int(i)} is outside the vocabulary (size {len(self.itos)})")
            token = self.itos[int(i)]
            if token not in skip:
                tokens.append(token)
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def _special(self, token: str) -> int:
        if token not in self.stoi:
            raise ValueError(f"the vocabulary has no {token!r} special token; build it with specials "
                             f"including {token!r}")
        return self.stoi[token]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as JSON."""
        Path(path).write_text(json.dumps({"level": self.level, "lower": self.lower, "unk": self.unk,
                                          "specials": list(self.specials), "itos": self.itos}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a vocabulary written by `save`."""
        meta = json.loads(Path(path).read_text())
        specials = meta["specials"]
        return cls(meta["itos"][len(specials):], level=meta["level"], specials=specials, lower=meta["lower"],
                   unk=meta["unk"])


class SubwordTokenizer:
    """A trained ``tokenizers.Tokenizer`` (BPE, WordPiece or Unigram) with dlcore's batch API.

    Attributes:
        tokenizer: The underlying ``tokenizers.Tokenizer``.
    """

    def __init__(self, tokenizer: Any, *, unk: str = UNK):
        self.tokenizer = tokenizer
        self.unk = unk
        self.unknown_tokens: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.token_to_id(PAD)
        return 0 if pad is None else pad

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
        """Subword ids of one text (int32 ``(T,)``)."""
        return self.encode_batch([text], add_bos=add_bos, add_eos=add_eos).ids[0]

    def encode_batch(self, texts: Sequence[str], *, max_length: int | None = None, add_bos: bool = False,
                     add_eos: bool = False, truncation: str = "right", padding_side: str = "right") -> Encoding:
        """Encodes and pads texts (see `pad_batch`); unknown pieces are counted as in `Vocab`."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of texts, not one str; wrap it: [text]")
        unk_id = self.tokenizer.token_to_id(self.unk)
        bos, eos = self.tokenizer.token_to_id(BOS), self.tokenizer.token_to_id(EOS)
        if (add_bos and bos is None) or (add_eos and eos is None):
            raise ValueError(f"the tokenizer has no {BOS!r}/{EOS!r} tokens; train it with them in specials")
        seqs, counts, missing = [], [], collections.Counter()
        for text, enc in zip(texts, self.tokenizer.encode_batch(list(texts))):
            ids = list(enc.ids)
            # The offsets say which characters of the text became <unk>.
            miss = [text[slice(*enc.offsets[j])] for j, i in enumerate(ids) if i == unk_id and unk_id is not None]
            seqs.append(([bos] if add_bos else []) + ids + ([eos] if add_eos else []))
            counts.append(len(miss))
            missing.update(miss)
        if missing:
            self.unknown_tokens.update(missing)
            n = sum(missing.values())
            top = ", ".join(f"{t!r} x{c}" for t, c in missing.most_common(5))
            _log.warning("%d piece(s) are not in the tokenizer's vocabulary and became %s: %s", n, self.unk, top)
        return pad_batch(seqs, max_length=max_length, pad_id=self.pad_id, truncation=truncation,
                         padding_side=padding_side, unknown=counts)

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """The text of ``ids`` (special tokens and padding dropped)."""
        return self.tokenizer.decode([int(i) for i in np.asarray(list(ids)).ravel()],
                                     skip_special_tokens=skip_special)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer as ``tokenizers`` JSON."""
        self.tokenizer.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubwordTokenizer:
        """Reads a tokenizer written by `save` (or any ``tokenizers`` JSON)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(os.fspath(path)))


def _word_counts(normalizer: Any, pre_tokenizer: Any, texts: Iterable[str]) -> collections.Counter[str]:
    """How often each word occurs in ``texts`` after the normaliser and pre-tokeniser (the words a tokenizer's
    trainer counts); texts are read in chunks joined by newlines, which every pre-tokeniser here splits on."""
    counts: collections.Counter[str] = collections.Counter()
    chunk: list[str] = []

    def flush():
        joined = normalizer.normalize_str("\n".join(chunk))
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(joined))
        chunk.clear()

    for t in texts:
        if not isinstance(t, str):
            raise ValueError(f"texts must be str, got {type(t).__name__}")
        chunk.append(t)
        if len(chunk) == 1000:
            flush()
    if chunk:
        flush()
    return counts


def _learn_merges(counts: collections.Counter[str], vocab_size: int, min_frequency: int, specials: Sequence[str], *,
                  prefix: str = "", suffix: str = "") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-pair-encoding merges learnt from word counts, deterministically.

    The ``tokenizers`` library's trainers number a word's marked pieces (``suffix`` on its last character,
    ``prefix`` on the others) in the order of a randomly seeded hash map, and break ties between equally frequent
    pairs by those numbers: the same texts gave a different vocabulary in every process (huggingface/tokenizers
    #1794). Here the ids are specials (in order), the characters in code-point order, then the marked characters
    in string order, then each merge's new piece; the most frequent pair is merged first, ties to the smallest
    pair of ids, as the library does. Merging stops at ``vocab_size`` pieces or when the best pair occurs fewer
    than ``min_frequency`` times.

    Returns:
        (vocabulary piece -> id, merges in order as (left piece, right piece)).
    """
    import heapq

    pieces: list[str] = list(dict.fromkeys(specials))
    ids = {p: i for i, p in enumerate(pieces)}

    def add(piece: str) -> int:
        if piece not in ids:
            ids[piece] = len(pieces)
            pieces.append(piece)
        return ids[piece]

    words = sorted(counts)
    for c in sorted({c for w in words for c in w}):
        add(c)
    marked = lambda w: [(prefix if j else "") + c + (suffix if j == len(w) - 1 else "") for j, c in enumerate(w)]  # noqa: E731
    for piece in sorted({p for w in words for p in marked(w)} - ids.keys()):
        add(piece)
    seqs = [[ids[p] for p in marked(w)] for w in words]
    freq = [counts[w] for w in words]

    pair_count: collections.Counter[tuple[int, int]] = collections.Counter()
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(pieces) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_count[pair]:  # counted again since it was queued
            if pair_count[pair] > 0:
                heapq.heappush(heap, (-pair_count[pair], pair))
            continue
        if -neg < max(min_frequency, 1):
            break
        a, b = pair
        right = pieces[b][len(prefix):] if prefix and pieces[b].startswith(prefix) else pieces[b]
        new = add(pieces[a] + right)
        merges.append((pieces[a], pieces[b]))
        changed: set[tuple[int, int]] = set()
        for i in sorted(where.pop(pair)):
            seq = seqs[i]
            out, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            if len(out) == len(seq):
                continue
            for old in zip(seq, seq[1:]):
                pair_count[old] -= freq[i]
            for now in zip(out, out[1:]):
                pair_count[now] += freq[i]
                where[now].add(i)
                changed.add(now)
            seqs[i] = out
        for now in sorted(changed):
            if now != pair and pair_count[now] > 0:
                heapq.heappush(heap, (-pair_count[now], now))
    return ids, merges


def _canonical_unigram(pieces: list) -> list[tuple[str, float]]:
    """A trained Unigram vocabulary (pieces after the specials, as ``[piece, score]``) the same in every process.

    The library's trainer gives the same pieces every time, but: their scores differ in the last bits (sums in
    another order); pieces of equal score come out in a hash map's order; and the characters it adds for
    coverage get the scores min, min + 1e-4, min + 2e-4, ... in a hash map's order. Here scores are rounded to 9
    decimals, the single characters on that grid (with those the model itself scored at its minimum) get its
    scores again in code-point order, and the pieces are sorted by score, then by string.
    """
    rounded = [(piece, round(score, 9)) for piece, score in pieces]
    low = min((score for _, score in rounded), default=0.0)
    singles = sorted((score, piece) for piece, score in rounded if len(piece) == 1)
    added, top = [], 0
    for score, piece in singles:  # the run min, min + 1e-4, ... of single characters (pieces at min may tie)
        k = round((score - low) / 1e-4)
        if abs(score - (low + k * 1e-4)) > 1e-7 or k > top + 1:
            break
        top = k
        added.append(piece)
    rescored = {piece: round(low + k * 1e-4, 9) for k, piece in enumerate(sorted(added))}
    rounded = [(piece, rescored.get(piece, score)) for piece, score in rounded]
    return sorted(rounded, key=lambda ps: (-ps[1], ps[0]))


def _train(kind: str, texts: Iterable[str], vocab_size: int, min_frequency: int, specials: Sequence[str],
           lowercase: bool, max_piece_length: int = 16) -> SubwordTokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if isinstance(texts, str):
        raise ValueError("texts must be a list (or iterator) of texts, not one str; wrap it: [text]")
    check_int(vocab_size, "vocab_size", low=len(specials) + 1)  # more than the specials
    if UNK not in specials:
        raise ValueError(f"specials must include {UNK!r}, got {list(specials)}")
    norm = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    if kind == "unigram":
        # SentencePiece's convention: a space becomes the piece prefix "▁", which decode turns back.
        tok = Tokenizer(models.Unigram())
        tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre_tokenizers.Metaspace(), decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(specials), unk_token=UNK,
                                          max_piece_length=max_piece_length, show_progress=False)
        tok.train_from_iterator(texts, trainer)
        spec = json.loads(tok.to_str())
        head, rest = spec["model"]["vocab"][:len(specials)], spec["model"]["vocab"][len(specials):]
        spec["model"]["vocab"] = head + _canonical_unigram(rest)
        return SubwordTokenizer(Tokenizer.from_str(json.dumps(spec)))
    # BPE and WordPiece: merges learnt here (`_learn_merges`: the library's trainers are not deterministic),
    # encoding by the library's models
    if kind == "bpe":
        pre = pre_tokenizers.Whitespace()
        # The end-of-word suffix lets decode put the spaces back.
        vocab, merges = _learn_merges(_word_counts(norm, pre, texts), vocab_size, min_frequency, specials,
                                      suffix="</w>")
        tok = Tokenizer(models.BPE(vocab, merges, unk_token=UNK, end_of_word_suffix="</w>"))
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    else:
        pre = pre_tokenizers.BertPreTokenizer()
        vocab, _ = _learn_merges(_word_counts(norm, pre, texts), vocab_size, min_frequency, specials, prefix="##")
        tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
        tok.decoder = decoders.WordPiece()
    tok.normalizer, tok.pre_tokenizer = norm, pre
    tok.add_special_tokens(list(specials))
    return SubwordTokenizer(tok)


def train_bpe(texts: Iterable[str], vocab_size: int = 10_000, *, min_frequency: int = 2,
              specials: Sequence[str] = SPECIALS, lowercase: bool = False) -> SubwordTokenizer:
    """Trains a byte-pair-encoding tokenizer (Sennrich et al., ACL 2016).

    Texts are NFKC-normalised and split on whitespace and punctuation; merges
    are learnt up to ``vocab_size`` pieces. Géron's NMT model shares one BPE
    of 10,000 pieces between English and Spanish (ch. 14). The same texts give
    the same tokenizer in every process: dlcore learns the merges (the
    ``tokenizers`` library's trainer numbers pieces in a random order) and the
    library's ``BPE`` model encodes with them.

    Args:
        texts: Training texts (list or iterator).
        vocab_size: Pieces in the vocabulary, specials included.
        min_frequency: Pairs seen fewer times are not merged.
        specials: Special tokens, ids 0.. in order.
        lowercase: Lowercase before everything.
    """
    return _train("bpe", texts, vocab_size, min_frequency, specials, lowercase)


def train_wordpiece(texts: Iterable[str], vocab_size: int = 10_000, *, min_frequency: int = 2,
                    specials: Sequence[str] = SPECIALS, lowercase: bool = True) -> SubwordTokenizer:
    """Trains a WordPiece tokenizer, BERT's (Wu et al., 2016; Devlin et al., 2019).

    Continuation pieces start with ``##``; texts are lowercased by default, as
    BERT's uncased models.
    """
    return _train("wordpiece", texts, vocab_size, min_frequency, specials, lowercase)


def train_unigram(texts: Iterable[str], vocab_size: int = 8_000, *, specials: Sequence[str] = SPECIALS,
                  lowercase: bool = False, max_piece_length: int = 16) -> SubwordTokenizer:
    """Trains a Unigram language-model tokenizer (Kudo, 2018), as T5's and ALBERT's.

    Training starts from a large vocabulary of frequent substrings and prunes the
    pieces whose removal lowers the corpus likelihood least, until ``vocab_size``
    pieces remain (Géron, ch. 14, "Unigram LM"). Spaces become the prefix ``▁`` of
    the next piece (SentencePiece's convention), so `SubwordTokenizer.decode` gives
    the text back. Subword regularisation (sampling segmentations) is not part of
    the ``tokenizers`` library, nor of this function.

    Args:
        texts: Training texts (list or iterator).
        vocab_size: Pieces in the vocabulary, specials included (a small corpus
            may give fewer).
        specials: Special tokens, ids 0.. in order; must include ``<unk>``.
        lowercase: Lowercase before everything.
        max_piece_length: The longest piece, in characters.
    """
    check_int(max_piece_length, "max_piece_length", low=1)
    return _train("unigram", texts, vocab_size, 1, specials, lowercase, max_piece_length)


# --- n-grams ---------------------------------------------------------------------------------------


def ngrams(tokens: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    """The runs of ``n`` consecutive tokens, in order: ``nltk.ngrams`` as a list.

    Subramanian, ch. 6 ("N-gram representation") prints
    ``list(ngrams(text.split(), 2))``: ``ngrams(["the", "action", "scenes"], 2)``
    is ``[("the", "action"), ("action", "scenes")]``. A sequence shorter than
    ``n`` has none.

    Args:
        tokens: Words (or characters, or ids); a str is refused (split it first).
        n: 1 for unigrams, 2 for bigrams, ...

    Returns:
        ``len(tokens) - n + 1`` tuples (none when that is below 1).
    """
    if isinstance(tokens, (str, bytes)):
        raise ValueError("ngrams takes a sequence of tokens, not a str: split it first, e.g. ngrams(text.split(), 2)")
    check_int(n, "n", low=1)
    tokens = list(tokens)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def bag_of_ngrams(
    documents: Sequence[Sequence[str]],
    n: int | Sequence[int] = (1, 2),
    *,
    vocabulary: Sequence[tuple[str, ...]] | None = None,
    max_size: int | None = None,
    min_freq: int = 1,
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Counts of each n-gram in each document: the features of a bag-of-n-grams classifier.

    Args:
        documents: N token lists (e.g. ``[vocab.tokenize(t) for t in texts]``).
        n: One n or several (default unigrams and bigrams).
        vocabulary: The n-grams to count, in column order (e.g. those of the
            training split, for the test split); None: built from ``documents``
            by decreasing frequency (ties in first-seen order).
        max_size: Keep at most this many n-grams (the most frequent).
        min_freq: Leave out n-grams seen fewer times.

    Returns:
        ``(counts float32 (N, V), vocabulary)``; n-grams outside the vocabulary
        are not counted.
    """
    if isinstance(documents, str) or (documents and isinstance(documents[0], str)):
        raise ValueError("documents must be a list of token lists, e.g. [text.split() for text in texts]")
    sizes = [n] if isinstance(n, int) else list(n)
    if not sizes:
        raise ValueError("n must be an int or a non-empty list of ints")
    for k in sizes:
        check_int(k, "n", low=1)
    check_int(min_freq, "min_freq", low=1)
    grams = [[g for k in sizes for g in ngrams(doc, k)] for doc in documents]
    if vocabulary is None:
        counts: collections.Counter[tuple[str, ...]] = collections.Counter(g for doc in grams for g in doc)
        vocabulary = [g for g, c in counts.most_common() if c >= min_freq]
        if max_size is not None:
            vocabulary = vocabulary[:check_int(max_size, "max_size", low=1)]
    vocabulary = [tuple(g) for g in vocabulary]
    column = {g: j for j, g in enumerate(vocabulary)}
    out = np.zeros((len(documents), len(vocabulary)), np.float32)
    for i, doc in enumerate(grams):
        for g in doc:
            j = column.get(g)
            if j is not None:
                out[i, j] += 1
    return out, vocabulary


# --- length-bucketed batches ------------------------------------------------------------------------


class BucketIterator(_protocol.BatchSource):
    """Batches of similar length, each padded only as far as its own longest row (torchtext's BucketIterator).

    Each epoch shuffles the examples (seeded by ``seed`` and the epoch), cuts
    them into pools of ``pool`` batches, sorts each pool by length, cuts it
    into batches and shuffles the order of the batches (Subramanian, ch. 7,
    ``data.BucketIterator(..., sort_key=lambda x: len(x.text))``). Every example
    is in exactly one batch per epoch. A batch is ``{"x": (ids, lengths), "y",
    "w"}`` (``x = ids`` with ``lengths=False``): ids int32 ``(B, L)`` padded with
    ``pad_id`` on the right, lengths int32 ``(B,)``. It is a
    `dlcore.data.protocol.BatchSource`: pass it to ``Trainer.fit`` as ``train``
    or ``validation``.

    Shapes and compilation: every new ``L`` is a new XLA compilation of the
    training step, so ``L`` is the batch's longest length rounded up to a
    multiple of ``pad_multiple`` (default 16: at most 15 padding tokens more
    per row than padding to the longest, and at most ``max_length / 16``
    shapes, e.g. 16 compilations for ``max_length=256``, each done once per
    fit). ``pad_multiple=1`` pads exactly to the longest (the book's behaviour,
    fine for eager PyTorch, costly under ``jit``). For long texts without a
    ``max_length`` give ``widths`` instead (IMDB-like lengths, median 175 and
    up to 2,500 tokens: 63 shapes with ``pad_multiple=16``). A short last batch is
    filled up to ``batch_size`` rows with weight-0 copies (``w``), so the batch
    axis never changes.

    Bad input, one line each, before any batch is made:

    - an empty sequence (0 tokens) is refused by default (``empty="error"``):
      a recurrent model has no last state to read for it and PyTorch's
      ``pack_padded_sequence`` refuses it too. ``empty="drop"`` leaves such
      examples out, counted in ``dropped_empty``.
    - a sequence longer than ``max_length`` is truncated (``truncation="right"``
      keeps its start, ``"left"`` its end) and counted in ``truncated`` (with a
      warning); ``truncation="error"`` refuses it instead.

    Args:
        sequences: N token-id sequences (lists or arrays of ints), or an
            `Encoding` (each row its real tokens, where ``mask`` is True: right- or left-padded).
        y: Targets, N rows (optional).
        batch_size: Rows per batch.
        shuffle: Shuffle every epoch (False: the data's order, pools still sorted
            by length: for evaluation).
        seed: Shuffle seed; epoch ``e`` of seed ``s`` is always the same.
        pool: Batches per sorted pool (torchtext's 100); larger pools pad less
            and shuffle less.
        pad_multiple: Round ``L`` up to a multiple of this.
        widths: Fixed widths instead (e.g. ``(32, 64, 128, 256, 512)``): ``L`` is
            the smallest that holds the batch's longest row (rows longer than
            the largest fall back on ``pad_multiple``). Geometric widths bound the
            compilations to a handful for any length distribution, at the price
            of more padding per batch.
        max_length: Longest sequence kept (None: no limit).
        truncation: ``"right"``, ``"left"`` or ``"error"``, for sequences over
            ``max_length``.
        empty: ``"error"`` or ``"drop"``, for sequences of 0 tokens.
        pad_id: The padding id (``vocab.pad_id``).
        lengths: Put ``(ids, lengths)`` under ``"x"`` (True) or ids alone.
        sort_within_batch: Order each batch longest first, as
            ``pack_padded_sequence`` needs (not needed by dlcore's masks).
        drop_last: Drop the short last batch instead of filling it.

    Attributes:
        truncated: Sequences cut to ``max_length``.
        dropped_empty: Empty sequences left out (``empty="drop"``).
        index: int (N',) the row of ``sequences`` each kept example came from.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]] | Encoding,
        y: Any = None,
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        pool: int = 100,
        pad_multiple: int = 16,
        widths: Sequence[int] | None = None,
        max_length: int | None = None,
        truncation: str = "right",
        empty: str = "error",
        pad_id: int = 0,
        lengths: bool = True,
        sort_within_batch: bool = False,
        drop_last: bool = False,
    ):
        self.batch_size = check_int(batch_size, "batch_size", low=1)
        self.pool = check_int(pool, "pool", low=1)
        self.pad_multiple = check_int(pad_multiple, "pad_multiple", low=1)
        self.max_length = None if max_length is None else check_int(max_length, "max_length", low=1)
        self.widths = None if widths is None else np.unique([check_int(w, "widths[i]", low=1) for w in widths])
        if self.widths is not None and not len(self.widths):
            raise ValueError("widths must list at least one width, e.g. (32, 64, 128, 256, 512)")
        check_choice(truncation, "truncation", ("right", "left", "error"))
        check_choice(empty, "empty", ("error", "drop"))
        self.shuffle, self.seed, self.pad_id = bool(shuffle), int(seed), int(pad_id)
        self.lengths_in_x, self.sort_within_batch = bool(lengths), bool(sort_within_batch)
        self.drop_last = bool(drop_last)
        seqs = _as_sequences(sequences)
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(seqs):
                raise ValueError(f"BucketIterator: y has {np.shape(y)[0] if np.ndim(y) else 'no'} rows for "
                                 f"{len(seqs)} sequences; give one target per sequence")
            _protocol.check_numeric(y, "BucketIterator: y")
        keep = []
        self.truncated = self.dropped_empty = 0
        for i, s in enumerate(seqs):
            if len(s) == 0:
                if empty == "error":
                    raise ValueError(f"BucketIterator: sequence {i} is empty (0 tokens); a model has no last state "
                                     f"to read for it: drop it, or pass empty='drop' to leave such rows out (counted)")
                self.dropped_empty += 1
                continue
            if self.max_length is not None and len(s) > self.max_length:
                if truncation == "error":
                    raise ValueError(f"BucketIterator: sequence {i} has {len(s)} tokens, more than max_length="
                                     f"{self.max_length}; raise max_length, or pass truncation='right' or 'left' "
                                     f"to cut such rows (counted)")
                seqs[i] = s[:self.max_length] if truncation == "right" else s[len(s) - self.max_length:]
                self.truncated += 1
            keep.append(i)
        if self.truncated:
            _log.warning("BucketIterator: %d of %d sequences were longer than max_length=%d and were truncated "
                         "(%s kept)", self.truncated, len(seqs), self.max_length,
                         "start" if truncation == "right" else "end")
        if self.dropped_empty:
            _log.warning("BucketIterator: %d empty sequence(s) left out", self.dropped_empty)
        if not keep:
            raise ValueError("BucketIterator: no sequence left (all empty, or none given)")
        self.index = np.asarray(keep, np.int64)
        self._seqs = [seqs[i] for i in keep]
        self._lengths = np.asarray([len(s) for s in self._seqs], np.int32)
        self._y = None if y is None else y[self.index]
        n = len(self._seqs)
        if not drop_last:
            self.batch_size = min(self.batch_size, n)  # as an in-memory split: no batch of mostly filler
        self.batches_per_epoch = n // self.batch_size if drop_last else -(-n // self.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"BucketIterator: {n} examples make no full batch of {self.batch_size} with "
                             f"drop_last=True; lower batch_size")
        self.examples_per_epoch = self.batches_per_epoch * self.batch_size if drop_last else n

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def num_examples(self) -> int:
        return len(self._seqs)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The rows (indices into the kept examples) of each batch of ``epoch``, in order."""
        n, size = len(self._seqs), self.batch_size
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches = []
        chunk = size * self.pool
        for start in range(0, n, chunk):
            part = order[start:start + chunk]
            part = part[np.argsort(self._lengths[part], kind="stable")]
            batches += [part[i:i + size] for i in range(0, len(part), size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def width(self, rows: np.ndarray) -> int:
        """``L`` of the batch of ``rows``: the first of ``widths`` that holds its longest row, else that length
        rounded up to ``pad_multiple`` (capped at ``max_length``)."""
        longest = int(self._lengths[rows].max())
        if self.widths is not None:
            i = int(np.searchsorted(self.widths, longest))
            if i < len(self.widths):
                return int(self.widths[i])
        width = -(-longest // self.pad_multiple) * self.pad_multiple
        return width if self.max_length is None else max(longest, min(width, self.max_length))

    def batch(self, rows: np.ndarray) -> dict:
        """The batch of ``rows``, before the batch axis is filled up to ``batch_size``."""
        rows = np.asarray(rows)
        if self.sort_within_batch:
            rows = rows[np.argsort(-self._lengths[rows], kind="stable")]
        ids = np.full((len(rows), self.width(rows)), self.pad_id, np.int32)
        for r, i in enumerate(rows):
            ids[r, :self._lengths[i]] = self._seqs[i]
        lengths = self._lengths[rows].copy()
        out = {"x": (ids, lengths) if self.lengths_in_x else ids}
        if self._y is not None:
            out["y"] = self._y[rows]
        out["w"] = np.ones(len(rows), np.float32)
        return out

    def epoch(self, epoch: int) -> Iterator[dict]:
        """The batches of ``epoch`` (1-based, as the Trainer counts), each with ``batch_size`` rows."""
        for rows in self.plan(epoch):
            yield _protocol.pad_batch(self.batch(rows), self.batch_size)

    def __call__(self, epoch: int) -> Iterator[dict]:
        """The same as `epoch`: the iterator is also a function ``epoch -> batches``."""
        return self.epoch(epoch)

    def example(self, first_epoch: int = 1) -> dict:
        return next(iter(self.epoch(first_epoch)))

    def stats(self, epoch: int = 1) -> dict[str, float]:
        """What bucketing saves in ``epoch``: token slots computed, against one padded ``(N, longest)`` block.

        Returns:
            ``tokens`` (real tokens), ``slots`` (B x L summed over the batches,
            filler rows included), ``unbucketed_slots`` (the same batches of a
            plain shuffle, each padded to its own longest, rounded the same way),
            ``padding`` (fraction of ``slots`` that is padding) and ``shapes``
            (distinct ``L``: compilations).
        """
        plan = self.plan(epoch)
        widths = [self.width(rows) for rows in plan]
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        plain = rng.permutation(len(self._seqs))
        plain_rows = [plain[i:i + self.batch_size] for i in range(0, len(plain), self.batch_size)]
        slots = sum(w * self.batch_size for w in widths)
        tokens = int(sum(self._lengths[rows].sum() for rows in plan))
        return {"tokens": tokens, "slots": slots,
                "unbucketed_slots": sum(self.width(r) * self.batch_size for r in plain_rows),
                "padding": 1 - tokens / slots, "shapes": len(set(widths))}


def _as_sequences(sequences: Any) -> list[np.ndarray]:
    if isinstance(sequences, Encoding):  # the real tokens are where the mask is True: right- or left-padded alike
        return [np.asarray(row)[np.asarray(m, bool)].astype(np.int32) for row, m in zip(sequences.ids, sequences.mask)]
    if isinstance(sequences, (str, bytes)) or (len(sequences) and isinstance(sequences[0], str)):
        raise ValueError("BucketIterator takes token ids, not texts: encode them first, e.g. "
                         "[vocab.encode(t) for t in texts]")
    out = []
    for i, s in enumerate(sequences):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"BucketIterator: sequence {i} must be a 1-D sequence of int token ids, got "
                             f"{a.dtype} of shape {a.shape}")
        out.append(a.astype(np.int32))
    return out


# --- pretrained word vectors ----------------------------------------------------------------------


def load_word_vectors(
    path: str | os.PathLike,
    vocab: Vocab | None = None,
    *,
    dim: int | None = None,
    missing: str = "normal",
    scale: float = 0.1,
    seed: int = 0,
    max_words: int | None = None,
    member: str | None = None,
    zero_tokens: Sequence[str] = (PAD,),
) -> tuple[np.ndarray, np.ndarray] | tuple[list[str], np.ndarray]:
    """Reads pretrained word vectors (GloVe or fastText ``.vec`` text files).

    Each line is a word and its numbers; a first line ``"<count> <dim>"``
    (fastText) is skipped; ``.gz`` files and ``.zip`` members are read directly.

    Args:
        path: The vectors file.
        vocab: Build an embedding table for this vocabulary; None returns the
            file's words and vectors.
        dim: The vector size, checked against the file (default: from it).
        missing: How to fill rows of words absent from the file:
            ``"normal"`` (N(0, scale^2), seeded) or ``"zeros"``.
        scale: Standard deviation for ``missing="normal"``.
        seed: Seed for the missing rows.
        max_words: Read only the first lines (files are sorted by frequency).
        member: The file to read inside a zip archive.
        zero_tokens: Tokens whose rows are set to zeros (default the pad row;
            Subramanian, ch. 7 zeroes ``<unk>`` and ``<pad>``).

    Returns:
        With ``vocab``: ``(table float32 (len(vocab), dim), found bool
        (len(vocab),))``, found True where the file had the word (looked up
        as is, then lowercased). Without: ``(words, vectors float32 (W, dim))``.

    Raises:
        ValueError: For vectors of another size than ``dim``, a line with the
            wrong number of values, or no vectors.
    """
    check_choice(missing, "missing", ("normal", "zeros"))
    wanted = None if vocab is None else set(vocab.stoi) | {t.lower() for t in vocab.stoi}
    words, vectors = read_vectors(path, member=member, dim=dim, wanted=wanted, max_words=max_words)
    if vocab is None:
        return words, vectors
    dim = vectors.shape[1]
    index = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    table = (rng.normal(0.0, scale, (len(vocab), dim)) if missing == "normal"
             else np.zeros((len(vocab), dim))).astype(np.float32)
    found = np.zeros(len(vocab), bool)
    for i, token in enumerate(vocab.itos):
        j = index.get(token, index.get(token.lower()))
        if j is not None:
            table[i], found[i] = vectors[j], True
    for token in zero_tokens:
        if token in vocab.stoi:
            table[vocab.stoi[token]] = 0.0
    _log.info("%s: %d of %d vocabulary tokens have a pretrained vector", Path(path).name, found.sum(), len(vocab))
    return table, found


@dataclasses.dataclass(frozen=True)
class WordVectors:
    """A registered set of pretrained word vectors.

    Attributes:
        name: The name `pretrained_vectors` takes (torchtext's spelling).
        dataset: The `dlcore.data` dataset whose file holds them (its cache folder).
        file: The file in that folder.
        member: The file inside it, for an archive.
        dim: The vector size.
    """

    name: str
    dataset: str
    file: str
    member: str | None
    dim: int


# torchtext's names; the files are the download entries of dlcore.data.real (glove6b, fasttext_simple)
VECTORS: Registry[WordVectors] = Registry("word vectors", normalize=str.lower,
                                          listing="dlcore.data.text.VECTORS.names()")
for _v in (WordVectors("fasttext.simple.300d", "fasttext_simple", "wiki.simple.vec", None, 300),
           *(WordVectors(f"glove.6B.{d}d", "glove6b", "glove.6B.zip", f"glove.6B.{d}d.txt", d)
             for d in (50, 100, 200, 300))):
    VECTORS.register(_v.name, _v)
del _v


def vectors_path(name: str, *, download: bool = True, progress: bool | None = None) -> Path:
    """The local file of the registered vectors ``name``, downloaded into the cache when missing.

    The file lives in ``dlcore.data.cache_dir() / <dataset> / <file>``. A
    download is checked against the file's published SHA-1 (the only digest
    published for these files); its SHA-256 is recorded beside it on first use.

    Raises:
        DatasetNotFoundError: The file is absent and downloading is off or
            failed: one line naming the file, its URL and where to put it.
        ChecksumError: A download whose SHA-1 differs (nothing is kept).
    """
    import hashlib

    from dlcore.data import real
    from dlcore.data.download import ChecksumError, DownloadError
    from dlcore.data.sources import DatasetNotFoundError, cache_dir, offline

    info = VECTORS.get(name)
    dataset = real.DATASETS[info.dataset]
    folder = cache_dir() / dataset.name
    path = folder / info.file
    if path.is_file():
        return path
    remote = next(f for f in dataset.files if f.name == info.file)
    failure = ("downloading is off (download=False)" if not download
               else "downloading is off (DLCORE_OFFLINE is set)" if offline() else "")
    if not failure:
        try:
            dataset.fetch([remote], progress=progress)
        except DownloadError as err:
            failure = f"the download failed ({err})"
    if failure:
        size = f", {remote.size / 2**20:.0f} MiB" if remote.size else ""
        raise DatasetNotFoundError(
            f"word vectors {info.name!r} need {info.file} ({remote.urls[0]}{size}) in {folder}; {failure}. Fetch it "
            f"on a machine with a network and put it there (or run `dlcore data prepare {dataset.name}` there and "
            f"copy the folder; DLCORE_DATA moves the cache)", name=dataset.name, searched=(str(folder),))
    expected = getattr(real, "VECTOR_SHA1", {}).get(info.file)
    if expected is not None:
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            path.unlink(missing_ok=True)
            Path(os.fspath(path) + ".sha256").unlink(missing_ok=True)
            raise ChecksumError(f"{info.file} has SHA-1 {digest.hexdigest()}, but the published SHA-1 is {expected}; "
                                "the download was deleted. The file may have changed upstream or been tampered with")
    return path


def pretrained_vectors(
    vectors: str | os.PathLike,
    vocab: Vocab,
    *,
    dim: int | None = None,
    zero_tokens: Sequence[str] = (UNK, PAD),
    missing: str = "normal",
    scale: float = 0.1,
    seed: int = 0,
    max_words: int | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An embedding table for ``vocab`` from registered vectors (``"glove.6B.100d"``, ...) or a file.

    As torchtext's ``TEXT.build_vocab(train, vectors="fasttext.simple.300d")``
    followed by Subramanian's zeroing of the ``<unk>`` and ``<pad>`` rows (ch. 7).
    Registered names are in ``VECTORS.names()``; a missing file is downloaded
    into the cache (`vectors_path`).

    Args:
        vectors: A registered name, or the path of a vectors file.
        vocab: The vocabulary whose rows to fill.
        dim: The embedding's size, checked against the vectors (one line when
            they differ).
        zero_tokens: Tokens whose rows are zeros (default ``<unk>`` and ``<pad>``;
            ``()`` keeps what ``missing`` drew for ``<unk>``).
        missing: ``"normal"`` or ``"zeros"`` for words without a vector.
        scale, seed, max_words: As in `load_word_vectors`.
        download, progress: For a registered file not yet in the cache.

    Returns:
        ``(table float32 (len(vocab), dim), found bool (len(vocab),))``.
    """
    member = None
    if isinstance(vectors, str) and vectors in VECTORS:
        info = VECTORS.get(vectors)
        if dim is not None and dim != info.dim:
            raise ValueError(f"word vectors {info.name!r} have dim {info.dim}, but the embedding has dim {dim}: "
                             f"use vectors of dim {dim} or an embedding of dim {info.dim}")
        path, member, dim = vectors_path(vectors, download=download, progress=progress), info.member, info.dim
    else:
        path = Path(vectors)
        if not path.is_file():
            raise ValueError(f"{vectors!r} is neither registered word vectors ({', '.join(VECTORS.names())}) nor "
                             "a file")
    return load_word_vectors(path, vocab, dim=dim, missing=missing, scale=scale, seed=seed, max_words=max_words,
                             member=member, zero_tokens=zero_tokens)


def pretrained_embedding(
    vectors: Any,
    vocab: Vocab,
    *,
    freeze: bool = True,
    embedding_dim: int | None = None,
    zero_tokens: Sequence[str] = (UNK, PAD),
    **options: Any,
):
    """A `dlcore.nn.Embedding` holding pretrained vectors for ``vocab``, frozen or not.

    ``Embedding.from_pretrained(table, freeze=freeze, padding_idx=vocab.pad_id)``
    on the table of `pretrained_vectors` (or on a table you give), with the
    ``<unk>`` and ``<pad>`` rows zeroed as Subramanian does (ch. 7,
    ``model.embedding.weight.data[UNK_IDX] = torch.zeros(EMBEDDING_DIM)``).

    Args:
        vectors: A registered name, a vectors file, or a float table
            ``(len(vocab), dim)``.
        vocab: The vocabulary.
        freeze: Keep the table fixed (Subramanian's frozen GloVe, ch. 6) or
            train it (ch. 7).
        embedding_dim: The size the model expects; vectors of another size are
            refused in one line.
        zero_tokens: Tokens whose rows are zeroed.
        **options: For `pretrained_vectors` (``missing``, ``download``, ...).

    Returns:
        The `dlcore.nn.Embedding`.
    """
    from dlcore.nn.embedding import Embedding

    if isinstance(vectors, (str, os.PathLike)):
        table, _ = pretrained_vectors(vectors, vocab, dim=embedding_dim, zero_tokens=zero_tokens, **options)
    else:
        if options:
            raise ValueError(f"options {sorted(options)} apply to a vectors name or file, not to a table")
        table = np.array(vectors, np.float32)
        if table.ndim != 2 or table.shape[0] != len(vocab):
            raise ValueError(f"the table must have one row per vocabulary token, shape ({len(vocab)}, dim); got "
                             f"{table.shape}")
        if embedding_dim is not None and table.shape[1] != embedding_dim:
            raise ValueError(f"the vectors have dim {table.shape[1]}, but the embedding has dim {embedding_dim}")
        for token in zero_tokens:
            if token in vocab.stoi:
                table[vocab.stoi[token]] = 0.0
    return Embedding.from_pretrained(table, freeze=freeze, padding_idx=vocab.stoi.get(PAD))
