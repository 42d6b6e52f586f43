"""A word-level LSTM language model on WikiText-2, Subramanian, Deep Learning with PyTorch, ch. 7.

Recipe (ch. 7 "Generative Networks", section "Language modeling", after PyTorch's word_language_model
example): WikiText-2 as one long stream of words, cut into 20 parallel streams ("Generating the batches"),
each read in chunks of 30 words whose targets are the same words shifted by one ("Backpropagation through
time"); the `RNNModel`: embedding 200, 2 LSTM layers of 200, dropout 0.2, the decoder's weights tied to the
embedding's; cross-entropy; the hidden state carried from chunk to chunk with its history cut
(`repackage_hidden`), i.e. truncated BPTT; the gradient norm clipped to 0.25; plain SGD from lr 20, the rate
divided by 4 whenever the validation loss does not improve; 40 epochs; validation perplexity about 108.

In dlcore the carried state is the Trainer's `carry` (`dlcore.models.language.bptt_step`), the chunks are
rows in stream order (no shuffling, batch 20), and the rate drop is `ReduceLROnPlateau("val_loss",
factor=0.25, patience=0, threshold=0)` over an injectable SGD behind `clip_grad_norm(0.25)`. Each epoch
reports the validation and the test perplexity (exp of the mean token cross-entropy over the whole split,
the state carried through it from zeros), then the model writes text from a prompt.

Where dlcore differs: the text is tokenised by whitespace with an end-of-line token `<eos>` (as PyTorch's
example; the book's torchtext also lower-cases WikiText-2); the last, shorter chunk of each split is left
out, so every step has the same shape.

Stand-in: without WikiText-2, the Python documentation shipped with Python (`python_docs`, about 70,000
training words, 8,200 distinct; words of the held-out splits outside that vocabulary become `<unk>`), for
10 epochs by default (134 s wall on 2 shared CPU cores at load average 5); on WikiText-2 the default is the
book's 40 epochs. The perplexities on the stand-in are not comparable to the book's: 70,000 training words
(WikiText-2 has 2 million), 16% of the validation words unknown, and a 2 x 200 LSTM that overfits them
(train perplexity 56, validation 340 at best, test 222 after 10 epochs, the rate divided by 4 from epoch 7).

Run: `dlcore run word_lm` or `python examples/word_lm.py`.
"""

from __future__ import annotations

import collections
import math

import jax
import numpy as np
import optax
from flax import nnx

import dlcore
from dlcore import optim
from dlcore.data.text import Vocab
from dlcore.models.language import WordLM, bptt_eval_step, bptt_step, generate
from dlcore.runner import Context, Example
from dlcore.train import Callback, ReduceLROnPlateau

EXAMPLE = Example(
    name="word_lm",
    title="word-level LSTM language model: tied weights, truncated BPTT, SGD with lr/4 on plateau",
    book="Subramanian, Deep Learning with PyTorch",
    section="ch. 7, Generative Networks, Language modeling",
    source="RNNModel with tie_weights, the train and evaluate functions, the training logs (ppl after 40 epochs)",
    data="wikitext2",
    standin="python_docs",
    book_figures={"valid_perplexity": 108.0},
)

BATCH, BPTT = 20, 30
EOS = "<eos>"
PROMPT = "the"


def words(text: str) -> list[str]:
    """Whitespace tokens, `<eos>` at the end of every line (PyTorch's word_language_model corpus)."""
    return [w for line in text.splitlines() for w in (*line.split(), EOS)]


def build_vocab(tokens: list[str], max_size: int | None = None) -> Vocab:
    kept = [w for w, _ in collections.Counter(tokens).most_common()]
    kept = [w for w in kept if w not in ("<unk>", EOS)]
    if max_size is not None:
        kept = kept[: max_size - 2]
    return Vocab(kept, level="word", specials=("<unk>", EOS), unk="<unk>")


def bptt_rows(ids: np.ndarray) -> dict[str, np.ndarray]:
    """The stream as BATCH parallel streams in chunks of BPTT: (N,) ids -> {"x", "y"} (C * BATCH, BPTT).

    Stream b is `ids[b * L:(b + 1) * L]`, L = N // BATCH ("Generating the batches"); row `c * BATCH + b`
    holds chunk c of stream b, so batches of BATCH rows in order are the chunks in order, and the hidden
    state of row b carries on in row b of the next batch. The targets are the inputs shifted by one word.
    """
    length = len(ids) // BATCH
    streams = ids[: length * BATCH].reshape(BATCH, length)             # (BATCH, L)
    chunks = (length - 1) // BPTT
    if chunks < 1:
        raise ValueError(f"word_lm: a split of {len(ids)} words is too short for {BATCH} streams of "
                         f"{BPTT + 1} words")
    x = streams[:, : chunks * BPTT].reshape(BATCH, chunks, BPTT)       # (BATCH, C, BPTT)
    y = streams[:, 1: chunks * BPTT + 1].reshape(BATCH, chunks, BPTT)
    return {"x": x.transpose(1, 0, 2).reshape(-1, BPTT), "y": y.transpose(1, 0, 2).reshape(-1, BPTT)}


class TestPerplexity(Callback):
    """Evaluates the test split after each epoch, so both perplexities are printed per epoch."""

    def __init__(self, test: dict):
        self.test, self.values = test, []

    def on_epoch_end(self, trainer, epoch, logs):
        self.values.append(math.exp(trainer.evaluate(self.test)["loss"]))


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    tokens = {k: words(str(v["x"][0])) for k, v in splits.items()}
    if ctx.quick:  # seconds: a slice of each split, a small vocabulary and net
        tokens = {"train": tokens["train"][:6_000], "valid": tokens["valid"][:1_000], "test": tokens["test"][:1_000]}
    vocab = build_vocab(tokens["train"], max_size=500 if ctx.quick else None)
    ids = {k: np.asarray([vocab[w] for w in t], np.int32) for k, t in tokens.items()}
    unk = {k: float(np.mean(v == vocab.unk_id)) for k, v in ids.items()}
    ctx.print(f"vocabulary {len(vocab)} words; words: train {len(ids['train'])}, valid {len(ids['valid'])}, "
              f"test {len(ids['test'])}; <unk> rate valid {unk['valid']:.1%}, test {unk['test']:.1%}")
    train, valid, test = (bptt_rows(ids[k]) for k in ("train", "valid", "test"))
    ctx.print(f"{BATCH} streams, chunks of {BPTT}: {len(train['x']) // BATCH} training steps an epoch")

    recipe = 40 if ctx.dataset == EXAMPLE.data else 10
    epochs = ctx.n_epochs(recipe, quick=1)
    size = 16 if ctx.quick else 200
    model = WordLM(len(vocab), size, size, 2, 0.2, True, rngs=nnx.Rngs(ctx.seed))
    tx = optax.chain(optim.clip_grad_norm(0.25), optim.injectable("sgd", lr=20.0))
    test_ppl = TestPerplexity(test)
    plateau = ReduceLROnPlateau("val_loss", mode="min", factor=0.25, patience=0, threshold=0.0)
    kw = ctx.trainer_kwargs({"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "epochs": epochs, "size": size,
                             "bptt": BPTT, "batch_size": BATCH})
    kw["callbacks"] = [plateau, test_ppl, *kw["callbacks"]]
    trainer = dlcore.Trainer(model, tx, step=bptt_step, eval_step=bptt_eval_step, carry=model.initial_state,
                             reset_carry=True, batch_size=BATCH, eval_batch_size=BATCH, shuffle=False,
                             drop_last=True, **kw)
    h = trainer.fit(train, epochs=epochs, validation=valid, resume=ctx.resume)
    done = len(h["loss"])
    lrs = h.get("lr", [20.0] * done)
    first = done - len(test_ppl.values)                               # epochs restored by --resume have none
    for e in range(done):
        line = (f"| end of epoch {e + 1:3d} | lr {lrs[e]:g} | train ppl {math.exp(h['loss'][e]):8.2f} | "
                f"valid ppl {math.exp(h['val_loss'][e]):8.2f}")
        if e >= first:
            line += f" | test ppl {test_ppl.values[e - first]:8.2f}"
        ctx.print(line)
    valid_ppl = math.exp(h["val_loss"][-1])
    tested = math.exp(trainer.evaluate(test)["loss"])
    ctx.print(f"after {done} epochs: valid perplexity {valid_ppl:.2f} (book: about 108 on WikiText-2), "
              f"test perplexity {tested:.2f}")

    prompt = np.asarray([vocab[PROMPT]], np.int32)
    for temperature in (0.7, 1.0):
        out = generate(model, prompt, 40, key=jax.random.key(ctx.seed), temperature=temperature)
        ctx.print(f"--- generated, temperature {temperature}:\n{PROMPT} {vocab.decode(out, skip_special=False)}")
    return {"valid_perplexity": valid_ppl, "best_valid_perplexity": math.exp(min(h["val_loss"])),
            "test_perplexity": tested, "train_perplexity": math.exp(h["loss"][-1]),
            "final_lr": float(lrs[-1] if done == len(lrs) else plateau.plateau.lrs[0])}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
