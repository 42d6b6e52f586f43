"""Recurrent training steps: Géron's char-RNN and Subramanian's word LSTM language model, dlcore vs PyTorch.

Two cases, each the same network with the same optimizer on the same random token batch, on this machine's
CPU, in one run:

* the char-RNN of Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14 ("Building and
  Training the Char-RNN Model"): Embedding(39, 10), GRU 2 x 128 with dropout 0.1, Linear(128, 39),
  cross-entropy over every step; windows of T = 50, batch 64; Adam lr 1e-3.
* the word LSTM language model of Subramanian, Deep Learning with PyTorch, ch. 7 ("Language modeling"):
  embedding 200, LSTM 2 x 200, dropout 0.2, tied weights, vocabulary 10,000; BPTT 30, batch 20, the hidden
  state carried from step to step with its gradient stopped; SGD lr 20 after clipping the gradient norm to 0.25.

dlcore's step is the jitted pure step the Trainer runs (`dlcore.train.step.train_step` for the char-RNN,
`dlcore.models.language.bptt_step` for the LM); PyTorch's is the books' eager loop (zero_grad, forward,
`F.cross_entropy`, backward, [clip_grad_norm_], step). Each side first takes warm-up steps (dlcore's first
compiles; its compile time is reported apart, in the note); then the two sides alternate, `repeats` times,
each taking `steps` timed steps; a repeat's figure is the median step, and each side's figure its best
repeat. Figures are milliseconds per step; ratio = torch / dlcore (above 1: dlcore is faster; the target
is dlcore at 0.8x torch's step time or less, a ratio of 1.25 or more).

Run: `dlcore bench sequence [--vs torch] [--quick] [--json FILE]`.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dlcore import optim
from dlcore.bench import BenchContext, Benchmark, Result
from dlcore.models.language import CharRNN, WordLM, bptt_step, token_nll
from dlcore.train import TrainState
from dlcore.train.step import train_step

BENCHMARK = Benchmark(name="sequence", title="a training step of Géron's char-RNN and Subramanian's LSTM language model",
                      peer="torch")


def _tokens(vocab: int, batch: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (batch, steps + 1)).astype(np.int32)
    return x[:, :-1], x[:, 1:]                                       # inputs, targets shifted by one


def _dlcore_char(x, y, vocab, hidden, embed):
    model = CharRNN(vocab, 2, embed, hidden, 0.1, rngs=nnx.Rngs(0))
    state = TrainState.create(model, optim.adam(1e-3))
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "w": jnp.ones(x.shape[0], jnp.float32)}
    fn = jax.jit(lambda s, b: train_step(s, b, jax.random.fold_in(s.key, s.step), loss_fn=token_nll)[0])
    box = [state]

    def step():
        box[0] = fn(box[0], batch)
        return box[0].params

    return step


def _dlcore_lm(x, y, vocab, hidden):
    model = WordLM(vocab, hidden, hidden, 2, 0.2, True, rngs=nnx.Rngs(0))
    state = TrainState.create(model, optax.chain(optim.clip_grad_norm(0.25), optim.sgd(20.0)))
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "w": jnp.ones(x.shape[0], jnp.float32)}
    fn = jax.jit(lambda s, b, c: bptt_step(s, b, jax.random.fold_in(s.key, s.step), c))
    box = [state, model.initial_state(x.shape[0])]

    def step():
        box[0], _, box[1] = fn(box[0], batch, box[1])
        return box[0].params

    return step


def _torch_char(x, y, vocab, hidden, embed):
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

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt).reshape(-1, vocab), yt.reshape(-1)).backward()
        opt.step()

    return step


def _torch_lm(x, y, vocab, hidden):
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
    zeros = torch.zeros(2, x.shape[0], hidden)
    box = [(zeros, zeros)]

    def step():
        h = tuple(v.detach() for v in box[0])                          # repackage_hidden
        opt.zero_grad()
        out, box[0] = model(xt, h)
        torch.nn.functional.cross_entropy(out.reshape(-1, vocab), yt.reshape(-1)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    return step


def _repeat(step, n: int) -> float:
    """Median seconds of `n` steps, each blocked on."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _compare(ours, theirs, *, warmup: int, repeats: int, steps: int) -> tuple[float, float | None, float]:
    """(dlcore's best median step, torch's or None, dlcore's first call less its steady step) in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(ours())                                      # compiles
    first = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(ours())
        if theirs is not None:
            theirs()
    best = peer = None
    for _ in range(repeats):                                            # alternated, best of each
        t = _repeat(ours, steps)
        best = t if best is None else min(best, t)
        if theirs is not None:
            p = _repeat(theirs, steps)
            peer = p if peer is None else min(peer, p)
    return best, peer, max(first - best, 0.0)


def run(ctx: BenchContext) -> list[Result]:
    if ctx.quick:
        char = dict(vocab=39, hidden=16, embed=4, batch=4, t=5)
        lm = dict(vocab=100, hidden=16, batch=4, t=5)
        warmup, repeats, steps = 0, 1, 1
    else:
        char = dict(vocab=39, hidden=128, embed=10, batch=64, t=50)
        lm = dict(vocab=10_000, hidden=200, batch=20, t=30)
        warmup, repeats, steps = 3, 5, 10
    results = []
    x, y = _tokens(char["vocab"], char["batch"], char["t"], 0)
    ours = _dlcore_char(x, y, char["vocab"], char["hidden"], char["embed"])
    theirs = _torch_char(x, y, char["vocab"], char["hidden"], char["embed"])
    best, peer, compile_s = _compare(ours, theirs, warmup=warmup, repeats=repeats, steps=steps)
    results.append(Result(f"char-RNN step (GRU 2x{char['hidden']}, T {char['t']}, B {char['batch']})", "ms",
                          1e3 * best, None if peer is None else 1e3 * peer,
                          note=f"Adam; median of {steps} steps, best of {repeats} alternated; "
                               f"dlcore compile {compile_s:.2f} s"))
    x, y = _tokens(lm["vocab"], lm["batch"], lm["t"], 1)
    ours = _dlcore_lm(x, y, lm["vocab"], lm["hidden"])
    theirs = _torch_lm(x, y, lm["vocab"], lm["hidden"])
    best, peer, compile_s = _compare(ours, theirs, warmup=warmup, repeats=repeats, steps=steps)
    results.append(Result(f"LSTM LM step (2x{lm['hidden']}, BPTT {lm['t']}, B {lm['batch']}, V {lm['vocab']})",
                          "ms", 1e3 * best, None if peer is None else 1e3 * peer,
                          note=f"tied, SGD 20, clip 0.25, state carried; median of {steps} steps, best of "
                               f"{repeats} alternated; dlcore compile {compile_s:.2f} s"))
    return results
