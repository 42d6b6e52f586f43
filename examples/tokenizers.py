"""Subword tokenizers: BPE, WordPiece and Unigram trained on movie reviews, Géron, ch. 14.

Recipe (Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14, "Tokenization Using the Hugging
Face Tokenizers Library"): a BPE model with the unknown token "<unk>", the ``Whitespace`` pre-tokenizer and
a ``BpeTrainer`` of vocabulary 1,000 with the special tokens "<pad>" (id 0) and "<unk>" (id 1), trained on
the lower-cased IMDB training reviews. The book then encodes "what an awesome movie! 😊" into 8 tokens,
['what', 'an', 'aw', 'es', 'ome', 'movie', '!', '<unk>'], ids [303, 139, 373, 149, 240, 211, 4, 1],
offsets [(0, 4), (5, 7), (8, 10), (10, 12), (12, 15), (16, 21), (21, 22), (23, 24)], decodes them to
'what an aw es ome movie !', and pads the first three training reviews (281, 114 and 285 tokens) into one
batch with its attention mask. WordPiece and Unigram LM follow, trained the same way.

This script builds the book's BPE exactly (the ``tokenizers`` library, as the book) and wraps it in
`dlcore.data.text.SubwordTokenizer`, whose ``encode_batch`` pads a batch and returns the attention mask and
lengths in one call; then it trains dlcore's own `train_bpe` (an end-of-word suffix, so that decoding puts
the spaces back: "what an awesome movie !"), `train_wordpiece` and `train_unigram` on the same text. The
book's BPE gives the same ids in every run (checked over separate processes), so on the real IMDB its figures
are compared with the book's; dlcore's three trainers gave the same sizes and token counts in every run, but the
ids of some equally frequent pieces (single characters with the end-of-word suffix, for one) change from one
process to the next (the order in which the tokenizers library walks its hash maps): save a trained
tokenizer (`SubwordTokenizer.save`) to keep its ids.

Stand-in: without IMDB, `sentiment_sentences` (1,600 short generated training reviews); its few distinct
words cannot fill a vocabulary of 1,000, so every tokenizer stops smaller (the sizes are reported), and
its reviews are a few tokens long rather than hundreds.

Run: `dlcore run tokenizers` or `python examples/tokenizers.py`.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as `python examples/tokenizers.py`: this folder must not shadow the tokenizers library
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from dlcore.data import text  # noqa: E402
from dlcore.runner import Context, Example  # noqa: E402

EXAMPLE = Example(
    name="tokenizers",
    title="BPE (vocabulary 1,000), WordPiece and Unigram on movie reviews: tokens, ids, offsets, padded batch",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 14, Tokenization Using the Hugging Face Tokenizers Library",
    source="the BPE trained on IMDB and its encoding of 'what an awesome movie! 😊'; WordPiece; Unigram LM",
    data="imdb",
    standin="sentiment_sentences",
    book_figures={"bpe_vocab_size": 1000, "bpe_tokens": 8, "batch_length_1": 281, "batch_length_2": 114,
                  "batch_length_3": 285, "padded_length": 285},
)

REVIEW = "what an awesome movie! 😊"
BOOK_TOKENS = ['what', 'an', 'aw', 'es', 'ome', 'movie', '!', '<unk>']
BOOK_IDS = [303, 139, 373, 149, 240, 211, 4, 1]
BOOK_OFFSETS = [(0, 4), (5, 7), (8, 10), (10, 12), (12, 15), (16, 21), (21, 22), (23, 24)]
SPECIALS = ("<pad>", "<unk>")


def book_bpe(texts, vocab_size: int = 1000) -> text.SubwordTokenizer:
    """The book's BPE: no normaliser, the Whitespace pre-tokenizer, specials <pad> 0 and <unk> 1."""
    import tokenizers

    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                             show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return text.SubwordTokenizer(tok)


def _show(ctx: Context, name: str, tok: text.SubwordTokenizer) -> int:
    enc = tok.tokenizer.encode(REVIEW)
    ctx.print(f"{name}: vocabulary {len(tok)}; {REVIEW!r} -> {len(enc.ids)} tokens {enc.tokens}")
    ctx.print(f"  ids {enc.ids}, decoded {tok.decode(enc.ids)!r}")
    return len(enc.ids)


def run(ctx: Context) -> dict[str, float]:
    train = ctx.load()["train"]
    reviews = [str(r).lower() for r in train["x"]]
    if ctx.quick:
        reviews = reviews[:2000]
    real = ctx.dataset == EXAMPLE.data
    ctx.print(f"{len(reviews)} lower-cased training reviews")
    out = {}

    bpe = book_bpe(reviews, 1000)
    enc = bpe.tokenizer.encode(REVIEW)
    out["bpe_vocab_size"], out["bpe_tokens"] = len(bpe), len(enc.ids)
    ctx.print(f"BPE, the book's recipe (vocab_size=1000): vocabulary {len(bpe)}"
              + ("" if len(bpe) == 1000 else " (the text has too few distinct words to reach 1,000)"))
    ctx.print(f"  {REVIEW!r} -> {len(enc.ids)} tokens {enc.tokens}\n  ids {enc.ids}\n  offsets {enc.offsets}")
    ctx.print(f"  decoded: {bpe.decode(enc.ids)!r}")
    ctx.print(f"  book: {BOOK_TOKENS}\n  ids {BOOK_IDS}\n  offsets {BOOK_OFFSETS}\n"
              "  decoded: 'what an aw es ome movie !'")
    if real:
        same = enc.tokens == BOOK_TOKENS and enc.ids == BOOK_IDS and [tuple(o) for o in enc.offsets] == BOOK_OFFSETS
        ctx.print(f"  tokens, ids and offsets equal to the book's: {same}")
        out["bpe_equal_to_book"] = float(same)

    # the first three training reviews as one padded batch (dlcore: ids, attention mask and lengths at once)
    batch = bpe.encode_batch(reviews[:3])  # padded to the longest, as the book's enable_padding()
    if batch.ids.shape[1] > 500:  # and cut at 500 tokens, as its enable_truncation(max_length=500)
        batch = bpe.encode_batch(reviews[:3], max_length=500)
    ctx.print(f"first three reviews: lengths {batch.lengths.tolist()} (book [281, 114, 285]), padded to "
              f"{batch.ids.shape[1]} with <pad> id {bpe.pad_id}")
    for row, mask in zip(batch.ids, batch.mask.astype(int)):
        ctx.print(f"  ids {row[:5].tolist()} ... {row[-5:].tolist()} | mask {mask[:5].tolist()} ... "
                  f"{mask[-5:].tolist()}")
    out.update({f"batch_length_{i + 1}": float(n) for i, n in enumerate(batch.lengths)})
    out["padded_length"] = float(batch.ids.shape[1])

    # dlcore's trainers: BPE with an end-of-word suffix, WordPiece (## continuations), Unigram LM
    out["dlcore_bpe_tokens"] = _show(ctx, "dlcore train_bpe", text.train_bpe(reviews, 1000, specials=SPECIALS))
    wp = text.train_wordpiece(reviews, 1000, specials=SPECIALS)
    out["wordpiece_vocab_size"], out["wordpiece_tokens"] = len(wp), _show(ctx, "WordPiece", wp)
    ctx.print("  book: 'what an aw esome movie !'")
    uni = text.train_unigram(reviews, 1000, specials=SPECIALS)
    out["unigram_vocab_size"], out["unigram_tokens"] = len(uni), _show(ctx, "Unigram", uni)
    for name, tok in (("BPE", bpe), ("WordPiece", wp), ("Unigram", uni)):
        out[f"{name.lower()}_tokens_per_review"] = float(tok.encode_batch(reviews).lengths.mean())
    ctx.print("mean tokens per training review: " + ", ".join(
        f"{n} {out[f'{n.lower()}_tokens_per_review']:.2f}" for n in ("BPE", "WordPiece", "Unigram")))
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
