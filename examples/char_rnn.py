"""Generating Shakespearean text with a character RNN, Géron, Hands-On Machine Learning with Scikit-Learn and
PyTorch, ch. 14.

Recipe (sections "Creating the Training Dataset", "Building and Training the Char-RNN Model", "Generating
Fake Shakespearean Text"): tiny Shakespeare lower-cased, its vocabulary the characters of the text (39),
the first 1,000,000 characters for training, the next 60,000 for validation, the rest for testing; windows
of 50 characters whose targets are the same window shifted by one; `Embedding(39, 10)`, a 2-layer GRU of
128 units with dropout 0.1, `Linear(128, 39)`, cross-entropy over every step, batch 512. The trained model
predicts the next character of "To be or not to b" ("e" in the book), and `extend_text` writes 80
characters at temperatures 0.01, 0.4 and 100 (the book's samples are printed beside dlcore's; its
`torch.multinomial` draws cannot be matched).

Where dlcore differs, and why: the book takes every window (stride 1, a million windows an epoch, hours on
a GPU); dlcore takes a window every 10 characters, reshuffled each epoch, so a full run takes minutes on a
CPU. The book does not print its optimizer or epochs here; dlcore uses Adam lr 3e-3 for 10 epochs.
Generation is incremental (`dlcore.models.language.generate`): the prompt primes the GRU state once and each
new character costs one GRU step, where the book re-runs the whole growing text for every character; the
distribution sampled from is the same.

Stand-in: without tiny Shakespeare, the Python documentation shipped with Python (`python_docs`, about 418,000
training characters, a larger character set); the figures are then not the book's.

On the stand-in, 10 epochs reach a validation accuracy of 0.64 (test 0.68) and the greedy next character of
"To be or not to b" is "e", as in the book; at temperature 0.01 the model repeats itself ("a string of the
same as a string of the same as ..."), as the book's does.

Run: `dlcore run char_rnn` (7 minutes wall, 230 s of CPU, on 2 shared CPU cores at load average 6, with
the stand-in) or `python examples/char_rnn.py`.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

import dlcore
from dlcore import optim
from dlcore.models.language import CharRNN, generate, token_nll
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="char_rnn",
    title="char-RNN: a 2-layer GRU predicts the next character; greedy and temperature sampling",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 14, Generating Shakespearean Text Using a Character RNN",
    source="ShakespeareModel, the next character of 'To be or not to b', extend_text at temperatures 0.01, 0.4, 100",
    data="shakespeare",
    standin="python_docs",
    book_figures={"next_char_is_e": 1.0},
)

WINDOW = 50
STRIDE = 10           # the book: 1 (every window)
BATCH = 512
PROMPT = "To be or not to b"
BOOK_SAMPLES = {
    0.01: "To be or not to be the state\nand the contrary of the state and the sea,\nthe common people of the",
    0.4: "To be or not to be the better from the cause\nthat thou think you may be so be gone.\n\nromeo:\nthat",
    100: "To be or not to b-c3;m-rkn&:x:uyve:b&hi n;n-h;wt3k\n&cixxh:a!kq$c$ 3 ncq$ ;;wq cp:!xq;yh\n!3\nd!nhi.",
}


class CharCodec:
    """The book's `char_to_id` / `id_to_char`: the sorted characters of the lower-cased text."""

    def __init__(self, text: str):
        self.chars = sorted(set(text.lower()))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        missing = sorted(set(text.lower()) - self.index.keys())
        if missing:
            raise ValueError(f"char_rnn: characters {missing[:5]} are not in the vocabulary of the training text")
        return np.fromiter((self.index[c] for c in text.lower()), np.int32, len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def windows(ids: np.ndarray, stride: int) -> dict[str, np.ndarray]:
    """`CharDataset`: windows of WINDOW ids every `stride` characters and their targets shifted by one.

    (N,) ids -> {"x": (W, WINDOW), "y": (W, WINDOW)} int32.
    """
    starts = np.arange(0, len(ids) - WINDOW, stride)
    cols = starts[:, None] + np.arange(WINDOW)[None]                  # (W, WINDOW) positions
    return {"x": ids[cols], "y": ids[cols + 1]}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    texts = {k: str(v["x"][0]) for k, v in splits.items()}
    codec = CharCodec("".join(texts.values()))
    ctx.print(f"vocabulary: {len(codec.chars)} characters {''.join(codec.chars)!r}"[:160])
    if ctx.quick:  # seconds: a slice of the text, a small net
        texts = {"train": texts["train"][:20_000], "valid": texts["valid"][:3_000], "test": texts["test"][:3_000]}
    ids = {k: codec.encode(t) for k, t in texts.items()}
    train = windows(ids["train"], STRIDE)
    valid, test = windows(ids["valid"], WINDOW), windows(ids["test"], WINDOW)
    ctx.print(f"windows of {WINDOW}: train {len(train['x'])} (every {STRIDE} characters), valid {len(valid['x'])}, "
              f"test {len(test['x'])} (non-overlapping)")

    epochs = ctx.n_epochs(10, quick=1)
    hidden = 16 if ctx.quick else 128
    model = CharRNN(len(codec.chars), 2, 10, hidden, 0.1, rngs=nnx.Rngs(ctx.seed))
    trainer = dlcore.Trainer(model, optim.adam(3e-3), token_nll, metrics=["accuracy"], batch_size=BATCH,
                             eval_batch_size=BATCH,
                             **ctx.trainer_kwargs({"optimizer": "adam", "lr": 3e-3, "epochs": epochs,
                                                   "stride": STRIDE, "hidden": hidden}))
    h = trainer.fit(train, epochs=epochs, validation=valid, resume=ctx.resume)
    n = len(h["loss"])
    for e in sorted({*range(0, n, max(1, n // 5)), n - 1}):
        ctx.print(f"epoch {e + 1}/{n}: train loss {h['loss'][e]:.4f} accuracy {h['accuracy'][e]:.4f} | "
                  f"valid loss {h['val_loss'][e]:.4f} accuracy {h['val_accuracy'][e]:.4f}")
    tested = trainer.evaluate(test)
    ctx.print(f"test: loss {tested['loss']:.4f} accuracy {tested['accuracy']:.4f}")

    # the model is in eval mode after fit (dropout off), as the book's model.eval()
    prompt = codec.encode(PROMPT)
    logits = np.asarray(model(prompt[None]))                           # (1, T, V)
    nxt = codec.decode([logits[0, -1].argmax()])
    ctx.print(f"next character of {PROMPT!r}: {nxt!r} (book: 'e')")
    for i, temperature in enumerate((0.01, 0.4, 100)):
        out = generate(model, prompt, 80, key=jax.random.key(ctx.seed * 100 + i), temperature=temperature)
        ctx.print(f"--- temperature {temperature}: dlcore\n{PROMPT}{codec.decode(out)}\n"
                  f"--- temperature {temperature}: the book\n{BOOK_SAMPLES[temperature]}")
    return {"next_char_is_e": float(nxt == "e"), "valid_accuracy": h["val_accuracy"][-1],
            "valid_loss": h["val_loss"][-1], "test_accuracy": tested["accuracy"], "test_loss": tested["loss"],
            "train_loss": h["loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
