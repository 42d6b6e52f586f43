"""Recurrent training steps: Géron's char-RNN and Subramanian's word LSTM language model, dlcore vs PyTorch.

Two cases, each the same network with the same optimizer on the same random token batches, on this
machine's CPU, in one run:

* the char-RNN of Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14 ("Building and
  Training the Char-RNN Model"): Embedding(39, 10), GRU 2 x 128 with dropout 0.1, Linear(128, 39),
  cross-entropy over every step; windows of T = 50, batch 64; Adam lr 1e-3.
* the word LSTM language model of Subramanian, Deep Learning with PyTorch, ch. 7 ("Language modeling"):
  embedding 200, LSTM 2 x 200, dropout 0.2, tied weights, vocabulary 10,000; BPTT 30, batch 20, the hidden
  state carried from step to step with its gradient stopped; SGD lr 20 after clipping the gradient norm to 0.25.

dlcore's side is what a user runs: `Trainer.fit`, one more epoch per call, an epoch being one compiled scan
over its batches (the char-RNN with the supervised step and `token_nll`, the LM with
`dlcore.models.language.bptt_step` and the state as the carry). PyTorch's side is the books' eager loop over
the same batches (zero_grad, forward, `F.cross_entropy`, backward, [clip_grad_norm_], step), with torch's
default threads. Each side first runs an untimed epoch (dlcore's compiles; its compile time is reported
apart, in the note); then the two sides alternate, `repeats` epochs each of `steps` steps; a side's figure
is its best epoch divided by `steps`. Figures are milliseconds per step; ratio = torch / dlcore (above 1:
dlcore is faster; the target is dlcore at 0.8x torch's step time or less, a ratio of 1.25 or more). The
note gives the machine's load average: on a shared machine torch's threads suffer more than XLA's from
other processes, so compare ratios measured on a quiet machine.

Run: `dlcore bench sequence [--vs torch] [--quick] [--json FILE]`.
"""

from __future__ import annotations

import os

import numpy as np
import optax
from flax import nnx

from dlcore import optim
from dlcore.bench import BenchContext, Benchmark, Result, compare_steps
from dlcore.models.language import CharRNN, WordLM, bptt_step, token_nll
from dlcore.train import Trainer

BENCHMARK = Benchmark(name="sequence", title="a training step of Géron's char-RNN and Subramanian's LSTM language model",
                      peer="torch")


def _tokens(vocab: int, rows: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (rows, steps + 1)).astype(np.int32)
    return x[:, :-1], x[:, 1:]                                       # inputs, targets shifted by one


def _dlcore_char(x, y, vocab, hidden, embed, batch):
    """One more Trainer epoch over the rows of (x, y) per call (the epoch is one compiled scan)."""
    model = CharRNN(vocab, 2, embed, hidden, 0.1, rngs=nnx.Rngs(0))
    trainer = Trainer(model, optim.adam(1e-3), token_nll, batch_size=batch, shuffle=False, progress=False)
    data = {"x": x, "y": y}

    def epoch():
        trainer.fit(data, epochs=trainer.epoch + 1)

    return epoch


def _dlcore_lm(x, y, vocab, hidden, batch):
    """One more Trainer epoch of truncated BPTT over the rows of (x, y) per call, the state carried."""
    model = WordLM(vocab, hidden, hidden, 2, 0.2, True, rngs=nnx.Rngs(0))
    trainer = Trainer(model, optax.chain(optim.clip_grad_norm(0.25), optim.sgd(20.0)), step=bptt_step,
                      carry=model.initial_state, reset_carry=False, batch_size=batch, shuffle=False,
                      drop_last=True, progress=False)
    data = {"x": x, "y": y}

    def epoch():
        trainer.fit(data, epochs=trainer.epoch + 1)

    return epoch


def _torch_char(x, y, vocab, hidden, embed, batch):
    """The book's eager step; None without torch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class ShakespeareModel(nn.Module):  # Géron's class, logits (B, T, V)
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.gru = nn.GRU(embed, hidden, num_layers=2, batch_first=True, dropout=0.1)
            self.output = nn.Linear(hidden, vocab)

        def forward(self, ids):
            return self.output(self.gru(self.embed(ids))[0])

    torch.manual_seed(0)
    model = ShakespeareModel().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y).long()

    def epoch():
        for i in range(0, len(xt), batch):
            opt.zero_grad()
            logits = model(xt[i:i + batch])
            torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), yt[i:i + batch].reshape(-1)).backward()
            opt.step()

    return epoch


def _torch_lm(x, y, vocab, hidden, batch):
    """Subramanian's RNNModel (tied) and training step, batch-first; None without torch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.2)
            self.encoder = nn.Embedding(vocab, hidden)
            self.rnn = nn.LSTM(hidden, hidden, 2, dropout=0.2, batch_first=True)
            self.decoder = nn.Linear(hidden, vocab)
            self.decoder.weight = self.encoder.weight                  # tied

        def forward(self, ids, h):
            out, h = self.rnn(self.drop(self.encoder(ids)), h)
            return self.decoder(self.drop(out)), h

    torch.manual_seed(0)
    model = RNNModel().train()
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    box = [(torch.zeros(2, batch, hidden), torch.zeros(2, batch, hidden))]

    def epoch():
        for i in range(0, len(xt), batch):
            h = tuple(v.detach() for v in box[0])                      # repackage_hidden
            opt.zero_grad()
            out, box[0] = model(xt[i:i + batch], h)
            torch.nn.functional.cross_entropy(out.reshape(-1, vocab), yt[i:i + batch].reshape(-1)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()

    return epoch


def _compare(ours, theirs, *, steps: int, repeats: int) -> tuple[float, float | None, float]:
    """(dlcore's best step, torch's or None, dlcore's compile time) in seconds: each side's best epoch of
    `steps` steps over `repeats` alternated epochs (`bench.compare_steps`, one call an epoch), divided by
    `steps`."""
    best, peer, compile_s = compare_steps(ours, theirs, warmup=1, repeats=repeats, steps=1)
    return best / steps, None if peer is None else peer / steps, compile_s


def run(ctx: BenchContext) -> list[Result]:
    if ctx.quick:
        char = dict(vocab=39, hidden=16, embed=4, batch=4, t=5)
        lm = dict(vocab=100, hidden=16, batch=4, t=5)
        steps, repeats = 2, 1
    else:
        char = dict(vocab=39, hidden=128, embed=10, batch=64, t=50)
        lm = dict(vocab=10_000, hidden=200, batch=20, t=30)
        steps, repeats = 10, 5
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    results = []
    x, y = _tokens(char["vocab"], char["batch"] * steps, char["t"], 0)
    ours = _dlcore_char(x, y, char["vocab"], char["hidden"], char["embed"], char["batch"])
    theirs = _torch_char(x, y, char["vocab"], char["hidden"], char["embed"], char["batch"])
    best, peer, compile_s = _compare(ours, theirs, steps=steps, repeats=repeats)
    results.append(Result(f"char-RNN step (GRU 2x{char['hidden']}, T {char['t']}, B {char['batch']})", "ms",
                          1e3 * best, None if peer is None else 1e3 * peer,
                          note=f"Adam; best of {repeats} alternated epochs of {steps} steps; dlcore compile "
                               f"{compile_s:.2f} s{load}"))
    x, y = _tokens(lm["vocab"], lm["batch"] * steps, lm["t"], 1)
    ours = _dlcore_lm(x, y, lm["vocab"], lm["hidden"], lm["batch"])
    theirs = _torch_lm(x, y, lm["vocab"], lm["hidden"], lm["batch"])
    best, peer, compile_s = _compare(ours, theirs, steps=steps, repeats=repeats)
    results.append(Result(f"LSTM LM step (2x{lm['hidden']}, BPTT {lm['t']}, B {lm['batch']}, V {lm['vocab']})",
                          "ms", 1e3 * best, None if peer is None else 1e3 * peer,
                          note=f"tied, SGD 20, clip 0.25, state carried; best of {repeats} alternated epochs of "
                               f"{steps} steps; dlcore compile {compile_s:.2f} s{load}"))
    return results
