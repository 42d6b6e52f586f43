"""Text as numbers: characters and words, n-grams, one-hot vectors and an embedding lookup.

Two books, one topic:

- Subramanian, Deep Learning with PyTorch, ch. 6, "Working with text data": the short review of *Thor:
  Ragnarok* split into characters (``list``) and words (``split``), its bigrams and trigrams
  (``nltk.ngrams``: `dlcore.data.text.ngrams`), a ``Dictionary`` of its unique words with one-hot vectors
  (33 words; "were" is index 3), the nine-word one-hot table of "An apple a day keeps doctor away said the
  doctor.", and the shapes of an embedding lookup: a batch of 32 reviews of 20 words becomes 32 x 20 x 10
  with an embedding of 10, flattened to 32 x 200 ("Training word embedding by building a sentiment
  classifier"). dlcore adds `bag_of_ngrams`, the counts a shallow model would use.
- Stevens, Antiga and Viehmann, Deep Learning with PyTorch, ch. 4, "Representing text" (4.5.1-4.5.3):
  line 200 of Jane Austen's *Pride and Prejudice* one-hot encoded by character (ASCII, 128 columns:
  ``letter_t`` [70, 128]) and by word, over the sorted vocabulary of the whole novel after ``clean_words``
  (7,261 words, "impossible" at index 3394: ``word_t`` [11, 7261]).

Every figure of the first book and the character shapes of the second are exact here (their texts are
printed in the books and quoted below). The novel is not part of dlcore: its word vocabulary is built from
an embedded English text instead (`python_docs`, the Python documentation's help topics), with ``<unk>``
for the line's words it lacks, so ``word_t`` has that vocabulary's width; the book's is printed beside it.

Run: `dlcore run text_representation` or `python examples/text_representation.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import nn
from dlcore.data import text
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="text_representation",
    title="Characters and words, n-grams, one-hot vectors and an embedding lookup",
    book="Subramanian, Deep Learning with PyTorch; Stevens, Antiga and Viehmann, Deep Learning with PyTorch",
    section="Subramanian ch. 6, Working with text data; Stevens et al. ch. 4, 4.5 Representing text",
    source="Subramanian: thor_review, ngrams, Dictionary.onehot_encoded, EmbNet's shapes; Stevens et al.: "
           "Listing 4.5 and In[3]-In[8] (letter_t, word2index_dict, word_t)",
    data="",
    standin="python_docs",
    book_figures={"thor_vocab": 33, "were_index": 3, "apple_vocab": 9, "embedded_features": 200,
                  "letter_rows": 70, "letter_cols": 128, "word_rows": 11, "word_cols": 7261},
)

# Subramanian, ch. 6 (the review as its code holds it: lower-case "the" first)
THOR_REVIEW = ("the action scenes were top notch in this movie. Thor has never been this epic in the MCU. He does "
               "some pretty epic sh*t in this movie and he is definitely not under-powered anymore. Thor in "
               "unleashed in this, I love that.")
APPLE = "An apple a day keeps doctor away said the doctor."
# Stevens et al., ch. 4, In[3]: line 200 of Pride and Prejudice
LINE = '"Impossible, Mr. Bennet, impossible, when I am not acquainted with him'
PUNCTUATION = ".,;:!?\"'_-"


def clean_words(s: str) -> list[str]:
    """Stevens et al.'s ``clean_words``: lower-case, split on whitespace, strip punctuation at both ends."""
    return [w.strip(PUNCTUATION) for w in s.lower().replace("\n", " ").split()]


def ascii_one_hot(line: str) -> np.ndarray:
    """``letter_t``: one row per character of ``line``, a 1 at its ASCII code (0 for any other character)."""
    codes = [ord(c) if ord(c) < 128 else 0 for c in line.lower().strip()]
    out = np.zeros((len(line), 128), np.float32)
    out[np.arange(len(codes)), codes] = 1
    return out


def run(ctx: Context) -> dict[str, float]:
    corpus = str(ctx.load()["train"]["x"][0])  # for Stevens et al.'s word vocabulary, below
    out: dict[str, float] = {}
    # --- Subramanian: characters, words, n-grams
    chars, words = list(THOR_REVIEW), THOR_REVIEW.split()
    bigrams, trigrams = text.ngrams(words, 2), text.ngrams(words, 3)
    ctx.print(f"thor_review: {len(chars)} characters {chars[:8]} ..., {len(words)} words {words[:6]} ...")
    ctx.print(f"  bigrams ({len(bigrams)}): {bigrams[:3]} ...\n  trigrams ({len(trigrams)}): {trigrams[:2]} ...")
    out.update(thor_chars=len(chars), thor_words=len(words), thor_bigrams=len(bigrams), thor_trigrams=len(trigrams))

    # the book's Dictionary: unique words in first-seen order, one-hot vectors of that length
    vocab = text.Vocab(words, specials=(text.UNK,))
    word2idx = {w: i - 1 for i, w in enumerate(vocab.itos) if w != text.UNK}  # the book has no <unk>
    were = np.asarray(jax.nn.one_hot(word2idx["were"], len(word2idx)))
    ctx.print(f"  Dictionary: {len(word2idx)} words (book 33); one-hot of 'were' (index {word2idx['were']}): "
              f"{were.astype(int).tolist()}")
    out.update(thor_vocab=len(word2idx), were_index=word2idx["were"])

    apple = list(dict.fromkeys(w.strip(".") for w in APPLE.split()))
    table = np.asarray(jax.nn.one_hot(jnp.arange(len(apple)), len(apple))).astype(int)
    ctx.print(f"{APPLE!r}: {len(apple)} unique words (book 9), one-hot table:")
    for w, row in zip(apple, table):
        ctx.print(f"  {w:<7} {''.join(map(str, row))}")
    out["apple_vocab"] = len(apple)

    sentences = [s.split() for s in THOR_REVIEW.split(". ")]
    counts, grams = text.bag_of_ngrams(sentences, (1, 2))
    ctx.print(f"bag of unigrams and bigrams of its {len(sentences)} sentences: counts {counts.shape}; the most "
              f"frequent n-grams {grams[:3]}, {grams[0]} per sentence {counts[:, 0].astype(int).tolist()}")
    out["bag_of_ngrams_columns"] = counts.shape[1]

    # an embedding lookup, EmbNet's shapes: (32, 20) ids -> (32, 20, 10) -> (32, 200)
    emb = nn.Embedding(len(vocab), 10, rngs=nnx.Rngs(ctx.seed))
    review_ids = vocab.encode(THOR_REVIEW.replace(".", " ").replace(",", " "))
    batch = jnp.tile(jnp.asarray(review_ids[:20])[None], (32, 1))
    vectors = emb(batch)
    flat = vectors.reshape(vectors.shape[0], -1)
    ctx.print(f"Embedding({len(vocab)}, 10): ids {tuple(batch.shape)} -> {tuple(vectors.shape)} -> flattened "
              f"{tuple(flat.shape)} (book 32 x 20 x 10 -> 32 x 200); 'were' -> {np.round(vectors[0, 3, :4], 3)} ...")
    out["embedded_features"] = flat.shape[1]

    # --- Stevens et al.: one-hot characters and words of a line of Pride and Prejudice
    letter_t = ascii_one_hot(LINE)
    ctx.print(f"line 200 of Pride and Prejudice: {LINE!r}\n  letter_t {list(letter_t.shape)} (book [70, 128]), "
              f"one 1 per row: {bool((letter_t.sum(1) == 1).all())}")
    out.update(letter_rows=letter_t.shape[0], letter_cols=letter_t.shape[1])

    ctx.print(f"  the novel is not embedded: the word vocabulary comes from {ctx.dataset} "
              f"({len(corpus):,} characters of English)")
    words_in_line = clean_words(LINE)
    word_list = sorted(set(clean_words(corpus)))
    vocab2 = text.Vocab(word_list, specials=(text.UNK,))    # <unk> 0, then the sorted words from 1
    ids = np.asarray([vocab2[w] for w in words_in_line])
    word_t = np.asarray(jax.nn.one_hot(ids, len(vocab2)))
    ctx.print(f"  clean_words: {words_in_line}\n  vocabulary {len(word_list):,} words + <unk> (book 7,261 from the "
              f"novel); word_t {list(word_t.shape)} (book [11, 7261])")
    for i, (w, j) in enumerate(zip(words_in_line, ids)):
        ctx.print(f"  {i:2} {int(j):5} {w}" + ("  (not in the vocabulary: <unk>)" if j == vocab2.unk_id else ""))
    out.update(word_rows=word_t.shape[0], word_cols=word_t.shape[1],
               line_words_unknown=int((ids == vocab2.unk_id).sum()))
    return {k: float(v) for k, v in out.items()}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
