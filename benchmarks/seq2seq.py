"""A training step of Géron's translation model, dlcore vs PyTorch, with and without attention.

The network of Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14, "An Encoder-Decoder
Network for Neural Machine Translation": a shared Embedding(V, 512) with padding, a GRU encoder of 2 x 512 run
on the packed (variable-length) English batch, a GRU decoder of 2 x 512 started from the encoder's final
states and fed the Spanish batch shifted right (teacher forcing), Linear(512, V); cross-entropy ignoring
padding; NAdam lr 1e-3; batch 32. The second case adds the section "Attention Mechanisms"' Luong dot-product
attention over the encoder's outputs, concatenated with the decoder's outputs before Linear(1024, V). The
batch is random token ids with sentence lengths like Tatoeba's (source 4 to 16 tokens, target 5 to 18,
padded to 16 and 18), V = 10,000, the same arrays on both sides.

dlcore's step is the jitted pure step the Trainer runs (`dlcore.train.step.train_step` with
`dlcore.models.seq2seq.token_loss`); PyTorch's is the book's eager loop (zero_grad, forward with
`pack_padded_sequence`, `CrossEntropyLoss(ignore_index=0)`, backward, step). The loss weights differ a little
(dlcore averages each sentence's tokens, then the sentences; torch averages all tokens): the work is the
same. Timing as `dlcore.bench.compare_steps`: warm-up (dlcore's compile reported apart), then alternated
repeats, each side's best median step. Figures are milliseconds per step; ratio = torch / dlcore (above 1:
dlcore is faster; the target is dlcore at 0.8x torch's time or less, a ratio of 1.25 or more).

Run: `dlcore bench seq2seq [--vs torch] [--quick] [--json FILE]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import optim
from dlcore.bench import BenchContext, Benchmark, Result, compare_steps
from dlcore.models.seq2seq import Seq2Seq, token_loss
from dlcore.train import TrainState
from dlcore.train.step import train_step

BENCHMARK = Benchmark(name="seq2seq", title="a training step of Géron's GRU encoder-decoder (NmtModel), plain and "
                                            "with Luong attention", peer="torch")


def _batch(vocab: int, batch: int, src_len: int, tgt_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    src_lengths = rng.integers(max(1, src_len // 4), src_len + 1, batch).astype(np.int32)
    tgt_lengths = rng.integers(max(2, tgt_len // 4), tgt_len + 1, batch).astype(np.int32)
    src = rng.integers(4, vocab, (batch, src_len)).astype(np.int32)
    tgt = rng.integers(4, vocab, (batch, tgt_len)).astype(np.int32)
    src[np.arange(src_len)[None, :] >= src_lengths[:, None]] = 0
    tgt[np.arange(tgt_len)[None, :] >= tgt_lengths[:, None]] = 0
    return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}


def _dlcore(b: dict, vocab: int, size: int, attention: str | None):
    model = Seq2Seq(vocab, size, size, 2, pad_id=0, attention=attention, rngs=nnx.Rngs(0))
    state = TrainState.create(model, optim.nadam(1e-3))
    batch = {"x": (jnp.asarray(b["src"]), jnp.asarray(b["src_lengths"]), jnp.asarray(b["tgt_in"])),
             "y": jnp.asarray(b["tgt_out"]), "w": jnp.ones(b["src"].shape[0], jnp.float32)}
    fn = jax.jit(lambda s, bb: train_step(s, bb, jax.random.fold_in(s.key, s.step), loss_fn=token_loss)[0])
    box = [state]

    def step():
        box[0] = fn(box[0], batch)
        return box[0].params

    return step


def _torch(b: dict, vocab: int, size: int, attention: bool):
    """The book's NmtModel (and its attention variant) and eager training step; None without torch."""
    try:
        import torch
        from torch import nn
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    except ImportError:
        return None

    class NmtModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, size, padding_idx=0)
            self.encoder = nn.GRU(size, size, num_layers=2, batch_first=True)
            self.decoder = nn.GRU(size, size, num_layers=2, batch_first=True)
            self.output = nn.Linear(size * (2 if attention else 1), vocab)

        def forward(self, src, src_lengths, tgt_in):
            packed = pack_padded_sequence(self.embed(src), src_lengths, batch_first=True, enforce_sorted=False)
            enc_packed, hidden = self.encoder(packed)
            out, _ = self.decoder(self.embed(tgt_in), hidden)
            if attention:
                enc, _ = pad_packed_sequence(enc_packed, batch_first=True)
                weights = torch.softmax(out @ enc.transpose(1, 2), dim=-1)
                out = torch.cat((weights @ enc, out), dim=-1)
            return self.output(out).permute(0, 2, 1)

    torch.manual_seed(0)
    model = NmtModel().train()
    opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
    xentropy = nn.CrossEntropyLoss(ignore_index=0)
    src, tgt_in, tgt_out = (torch.from_numpy(b[k]).long() for k in ("src", "tgt_in", "tgt_out"))
    lengths = torch.from_numpy(b["src_lengths"]).long()

    def step():
        opt.zero_grad()
        xentropy(model(src, lengths, tgt_in), tgt_out).backward()
        opt.step()

    return step


def run(ctx: BenchContext) -> list[Result]:
    if ctx.quick:
        vocab, size, batch, src_len, tgt_len = 50, 16, 4, 6, 7
        warmup, repeats, steps = 0, 1, 1
    else:
        vocab, size, batch, src_len, tgt_len = 10_000, 512, 32, 16, 19
        warmup, repeats, steps = 3, 5, 10
    b = _batch(vocab, batch, src_len, tgt_len)
    results = []
    for attention in (None, "dot"):
        best, peer, compile_s = compare_steps(_dlcore(b, vocab, size, attention), _torch(b, vocab, size, bool(attention)),
                                              warmup=warmup, repeats=repeats, steps=steps)
        what = "with Luong attention" if attention else "plain"
        results.append(Result(f"NMT step, {what} (GRU 2x{size}, B {batch}, V {vocab})", "ms", 1e3 * best,
                              None if peer is None else 1e3 * peer,
                              note=f"NAdam; median of {steps} steps, best of {repeats} alternated; dlcore compile "
                                   f"{compile_s:.2f} s"))
    return results
