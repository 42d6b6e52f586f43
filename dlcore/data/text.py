"""Text: vocabularies, subword tokenizers, padded batches, pretrained word vectors.

A `Vocab` maps characters or words to ids, with the special tokens ``<pad>``
(id 0), ``<unk>``, ``<s>`` and ``</s>`` first; tokens outside it become
``<unk>``, and every encode counts them (``Encoding.unknown``, and
`Vocab.unknown_tokens` over the vocabulary's life) and logs the most common.
`train_bpe` and `train_wordpiece` train subword tokenizers with Hugging Face's
``tokenizers`` library (Géron, ch. 14). `pad_batch` turns id sequences into a
padded ``(N, L)`` batch with an attention mask and lengths, which is what
``Encoding`` holds. `load_word_vectors` reads GloVe or fastText text files
into an embedding table for a vocabulary (Subramanian, ch. 6).
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcore.checks import check_choice, check_float, check_int

__all__ = [
    "BOS",
    "EOS",
    "Encoding",
    "PAD",
    "SPECIALS",
    "SubwordTokenizer",
    "UNK",
    "Vocab",
    "load_word_vectors",
    "pad_batch",
    "train_bpe",
    "train_wordpiece",
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
    """

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    unknown: np.ndarray

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
        An `Encoding`.
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
    for i, s in enumerate(seqs):
        s = s[:length] if truncation == "right" else s[max(0, len(s) - length):]
        n = len(s)
        sl = slice(0, n) if padding_side == "right" else slice(length - n, length)
        ids[i, sl], mask[i, sl], lengths[i] = s, True, n
    unk = np.zeros(len(seqs), np.int32) if unknown is None else np.asarray(unknown, np.int32)
    return Encoding(ids, mask, lengths, unk)


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
        return self._encode(text, add_bos, add_eos)[0]

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
    """A trained ``tokenizers.Tokenizer`` (BPE or WordPiece) with dlcore's batch API.

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


def _train(kind: str, texts: Iterable[str], vocab_size: int, min_frequency: int, specials: Sequence[str],
           lowercase: bool) -> SubwordTokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if isinstance(texts, str):
        raise ValueError("texts must be a list (or iterator) of texts, not one str; wrap it: [text]")
    check_int(vocab_size, "vocab_size", low=len(specials) + 1)  # more than the specials
    if UNK not in specials:
        raise ValueError(f"specials must include {UNK!r}, got {list(specials)}")
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    if kind == "bpe":
        # The end-of-word suffix lets decode put the spaces back.
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(specials), end_of_word_suffix="</w>",
                                      show_progress=False)
    else:
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(specials), show_progress=False)
    tok.normalizer = normalizers.Sequence(norm)
    tok.train_from_iterator(texts, trainer)
    return SubwordTokenizer(tok)


def train_bpe(texts: Iterable[str], vocab_size: int = 10_000, *, min_frequency: int = 2,
              specials: Sequence[str] = SPECIALS, lowercase: bool = False) -> SubwordTokenizer:
    """Trains a byte-pair-encoding tokenizer (Sennrich et al., ACL 2016).

    Texts are NFKC-normalised and split on whitespace and punctuation; merges
    are learnt up to ``vocab_size`` pieces. Géron's NMT model shares one BPE
    of 10,000 pieces between English and Spanish (ch. 14).

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


def load_word_vectors(
    path: str | os.PathLike,
    vocab: Vocab | None = None,
    *,
    dim: int | None = None,
    missing: str = "normal",
    scale: float = 0.1,
    seed: int = 0,
    max_words: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[list[str], np.ndarray]:
    """Reads pretrained word vectors (GloVe or fastText ``.vec`` text files).

    Each line is a word and its numbers; a first line ``"<count> <dim>"``
    (fastText) is skipped; ``.gz`` files are read directly.

    Args:
        path: The vectors file.
        vocab: Build an embedding table for this vocabulary; None returns the
            file's words and vectors.
        dim: The vector size, checked against the file (default: from it).
        missing: How to fill rows of words absent from the file:
            ``"normal"`` (N(0, scale^2), seeded) or ``"zeros"``. The pad row is
            always zeros.
        scale: Standard deviation for ``missing="normal"``.
        seed: Seed for the missing rows.
        max_words: Read only the first lines (files are sorted by frequency).

    Returns:
        With ``vocab``: ``(table float32 (len(vocab), dim), found bool
        (len(vocab),))``, found True where the file had the word (looked up
        as is, then lowercased). Without: ``(words, vectors float32 (W, dim))``.

    Raises:
        ValueError: For a line with the wrong number of values, or no vectors.
    """
    check_choice(missing, "missing", ("normal", "zeros"))
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    wanted = None if vocab is None else set(vocab.stoi) | {t.lower() for t in vocab.stoi}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # fastText header
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}: line {n} has {len(parts) - 1} values, expected {dim}; the file is "
                                 "corrupt or not space-separated")
            if max_words is not None and len(words) >= max_words:
                break
            if wanted is not None and parts[0] not in wanted:
                continue
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], np.float32))
    if dim is None:
        raise ValueError(f"{path}: no vectors found; is it a GloVe/fastText text file?")
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    if vocab is None:
        return words, vectors
    index = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    table = (rng.normal(0.0, scale, (len(vocab), dim)) if missing == "normal"
             else np.zeros((len(vocab), dim))).astype(np.float32)
    found = np.zeros(len(vocab), bool)
    for i, token in enumerate(vocab.itos):
        j = index.get(token, index.get(token.lower()))
        if j is not None:
            table[i], found[i] = vectors[j], True
    if PAD in vocab.stoi:
        table[vocab.stoi[PAD]] = 0.0
    _log.info("%s: %d of %d vocabulary tokens have a pretrained vector", path.name, found.sum(), len(vocab))
    return table, found
