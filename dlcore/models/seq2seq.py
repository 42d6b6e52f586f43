"""Encoder-decoder translation, Géron's `NmtModel`, with and without Luong attention; registered as "nmt".

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14 "Natural Language Processing with RNNs and
Attention", sections "An Encoder-Decoder Network for Neural Machine Translation", "Beam Search" and "Attention
Mechanisms": one `Embedding` shared by the English encoder and the Spanish decoder, a GRU encoder whose final
hidden states (every layer's) start a GRU decoder, and a Linear over the vocabulary. Training is teacher
forcing: the decoder reads the target shifted right, starting with `<s>` (`shift_targets`), and the loss
ignores padding (`token_loss`). With `attention=` the decoder's outputs attend over the encoder's outputs
(Luong et al., 2015) and the Linear reads [context, decoder output].

Differences from the book, each a fix: padding keys are masked in the attention (the book lets the model
learn to ignore them); inference (`translate`) runs the encoder once and the decoder one token per step
with its state carried (the book re-runs the whole model on the growing prefix for every token), and
beam search is `dlcore.decode.beam_search` over that same step.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import decode, losses
from dlcore.checks import check_choice, check_int
from dlcore.models.registry import register
from dlcore.nn.attention import AdditiveScore, GeneralScore, attention, dot_score
from dlcore.nn.embedding import Embedding
from dlcore.nn.layers import Linear
from dlcore.nn.recurrent import GRU

__all__ = ["Seq2Seq", "shift_targets", "token_loss", "translate"]

ATTENTIONS = (None, "dot", "general", "additive")


@register("nmt")
class Seq2Seq(nnx.Module):
    """Géron's `NmtModel`: shared embedding, GRU encoder and decoder, optional Luong attention.

    Args:
        vocab_size: V, the shared (source and target) vocabulary (the book's BPE: 10,000).
        embed_dim: embedding size (the book: 512).
        hidden_dim: GRU size H (the book: 512).
        num_layers: GRU layers of the encoder and of the decoder (the book: 2).
        pad_id: the padding token: a zero embedding row without gradient, masked in attention.
        attention: None (the book's first model), "dot" (the book's `attention()`), "general" or
            "additive" (Bahdanau's); see `dlcore.nn.attention`.
        rngs: NNX random streams.

    Call: `model(src, src_lengths, tgt_in) -> logits (B, T, V)`: src (B, S) ids padded with `pad_id`,
    src_lengths (B,) in [1, S], tgt_in (B, T) the decoder's input (`<s>` then the target but its last token).
    """

    def __init__(self, vocab_size: int = 10_000, embed_dim: int = 512, hidden_dim: int = 512, num_layers: int = 2,
                 pad_id: int = 0, attention: str | None = None, *, rngs: nnx.Rngs):
        who = "nmt"
        self.vocab_size = check_int(vocab_size, "vocab_size", low=2, who=who)
        self.embed_dim = check_int(embed_dim, "embed_dim", low=1, who=who)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", low=1, who=who)
        self.num_layers = check_int(num_layers, "num_layers", low=1, who=who)
        self.pad_id = check_int(pad_id, "pad_id", low=0, high=self.vocab_size - 1, who=who)
        self.attention = check_choice(attention, "attention", ATTENTIONS, who=who)
        self.embed = Embedding(self.vocab_size, self.embed_dim, padding_idx=self.pad_id, rngs=rngs)
        self.encoder = GRU(self.embed_dim, self.hidden_dim, self.num_layers, rngs=rngs)
        self.decoder = GRU(self.embed_dim, self.hidden_dim, self.num_layers, rngs=rngs)
        if self.attention == "general":
            self.score = GeneralScore(self.hidden_dim, self.hidden_dim, rngs=rngs)
        elif self.attention == "additive":
            self.score = AdditiveScore(self.hidden_dim, self.hidden_dim, rngs=rngs)
        width = self.hidden_dim * (2 if self.attention else 1)
        self.output = Linear(width, self.vocab_size, rngs=rngs)

    def _ids(self, ids, name: str, rank: int) -> jax.Array:
        shape = tuple(np.shape(ids))
        dtype = getattr(ids, "dtype", None) or np.asarray(ids).dtype
        if len(shape) != rank or not jnp.issubdtype(dtype, jnp.integer):
            want = "(B, S)" if rank == 2 else "(B,)"
            raise ValueError(f"nmt: {name} must be integer ids of shape {want}, got shape {shape} dtype {dtype}")
        return jnp.asarray(ids)

    def encode(self, src, src_lengths) -> dict[str, jax.Array]:
        """Run the encoder once: src (B, S), src_lengths (B,) -> the decoder's starting state.

        Returns a dict whose leaves all lead with the batch (as `dlcore.decode.beam_search` needs):
        `h` (B, num_layers, H), the encoder's final states (each sequence's last real step); `memory`
        (B, S, H), its outputs, and `pad` (B, S), True at padding, for the attention.
        """
        src = self._ids(src, "src", 2)
        src_lengths = self._ids(src_lengths, "src_lengths", 1)
        memory, h = self.encoder(self.embed(src), lengths=src_lengths)     # (B, S, H), (L, B, H)
        pad = jnp.arange(src.shape[1])[None, :] >= src_lengths[:, None]
        return {"h": jnp.swapaxes(h, 0, 1), "memory": memory, "pad": pad}

    def _head(self, out, memory, pad):
        """Decoder outputs (B, T, H) -> logits (B, T, V), through the attention when there is one."""
        if self.attention:
            score = dot_score if self.attention == "dot" else self.score
            context, _ = attention(out, memory, memory, score=score, key_padding_mask=pad)
            out = jnp.concatenate([context, out], axis=-1)                  # the book's (attention, decoder)
        return self.output(out)

    def decode(self, tgt_in, state: dict[str, jax.Array]) -> jax.Array:
        """Teacher forcing: the decoder over the whole shifted target, tgt_in (B, T) -> logits (B, T, V)."""
        tgt_in = self._ids(tgt_in, "tgt_in", 2)
        out, _ = self.decoder(self.embed(tgt_in), jnp.swapaxes(state["h"], 0, 1))
        return self._head(out, state["memory"], state["pad"])

    def __call__(self, src, src_lengths, tgt_in) -> jax.Array:
        return self.decode(tgt_in, self.encode(src, src_lengths))

    def decode_step(self):
        """The step `(tokens (B,), state) -> (logits (B, V), state)` of `dlcore.decode` over `encode`'s state:
        one token through the decoder, the encoder's outputs reused as they are."""
        def step(tokens, state):
            out, h = self.decoder(self.embed(tokens[:, None]), jnp.swapaxes(state["h"], 0, 1))
            logits = self._head(out, state["memory"], state["pad"])[:, 0]
            return logits, {**state, "h": jnp.swapaxes(h, 0, 1)}
        return step


def shift_targets(tgt_ids, tgt_lengths, bos_id: int, eos_id: int, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Teacher forcing's decoder input and target from target ids without specials (Géron's `nmt_collate_fn`).

    tgt_ids (B, T) padded with `pad_id`, tgt_lengths (B,) -> `(tgt_in, tgt_out)`, each (B, T + 1):
    tgt_in = `<s>` y_1 .. y_n then padding, tgt_out = y_1 .. y_n `</s>` then padding.
    """
    ids, lengths = np.asarray(tgt_ids), np.asarray(tgt_lengths)
    if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
        raise ValueError(f"shift_targets: tgt_ids (B, T) and tgt_lengths (B,), got {ids.shape} and {lengths.shape}")
    b, t = ids.shape
    if lengths.min(initial=1) < 1 or lengths.max(initial=0) > t:
        raise ValueError(f"shift_targets: tgt_lengths must lie in [1, {t}], got {lengths.min()}..{lengths.max()}")
    tgt_in = np.concatenate([np.full((b, 1), bos_id), ids], axis=1)
    tgt_out = np.concatenate([ids, np.full((b, 1), pad_id)], axis=1)
    tgt_out[np.arange(b), lengths] = eos_id
    real = np.arange(t + 1)[None, :] <= lengths[:, None]                # <s> + n tokens, or n tokens + </s>
    return np.where(real, tgt_in, pad_id).astype(np.int32), np.where(real, tgt_out, pad_id).astype(np.int32)


def token_loss(logits, targets, pad_id: int = 0) -> jax.Array:
    """Each sentence's mean cross-entropy over its real tokens: logits (B, T, V), targets (B, T) -> (B,).

    Padding targets (`pad_id`) count nowhere. The Trainer then averages sentences (each weighs the same;
    torch's `CrossEntropyLoss(ignore_index=0)` averages tokens, so long sentences weigh more there).
    """
    real = (targets != pad_id).astype(jnp.float32)
    nll = losses.cross_entropy(logits, jnp.where(targets == pad_id, 0, targets))
    return jnp.sum(nll * real, axis=-1) / jnp.maximum(jnp.sum(real, axis=-1), 1.0)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "beam_width", "bos_id", "eos_id",
                                             "length_penalty"))
def _translate(graphdef, state, src, src_lengths, *, max_len, beam_width, bos_id, eos_id, length_penalty):
    model = nnx.merge(graphdef, state)
    start = jnp.full((src.shape[0],), bos_id, jnp.int32)
    init = model.encode(src, src_lengths)
    if beam_width == 1:
        return decode.greedy(model.decode_step(), init, start, max_len, eos_id=eos_id, pad_id=model.pad_id)
    return decode.beam_search(model.decode_step(), init, start, max_len, beam_width=beam_width, eos_id=eos_id,
                              pad_id=model.pad_id, length_penalty=length_penalty)


def translate(model: Seq2Seq, tokenizer: Any, texts, *, max_len: int = 50, beam_width: int = 1,
              length_penalty: float = 1.0, max_source_length: int | None = None) -> list[str]:
    """Translate texts: the encoder once, then greedy (`beam_width=1`) or beam search, one token per step.

    Args:
        model: a trained `Seq2Seq` (put in eval mode here if it is not).
        tokenizer: the shared tokenizer (`dlcore.data.text.SubwordTokenizer` or `Vocab`) with `<s>` and `</s>`.
        texts: source sentences (a list of str, or one str).
        max_len: the most tokens to generate per sentence (a static int: one compilation per value).
        beam_width: 1 for greedy decoding, else the beams of `dlcore.decode.beam_search`.
        length_penalty: beam search's length normalisation exponent.
        max_source_length: truncate longer sources to this many tokens (None: no limit).

    Returns:
        The translations, decoded without special tokens, one per text.

    Raises:
        ValueError: an empty list, an empty or blank source sentence, a tokenizer without `<s>`/`</s>`.
    """
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts:
        raise ValueError("translate: no texts")
    blank = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if blank:
        raise ValueError(f"translate: text {blank[0]} is empty or not a string: {texts[blank[0]]!r}")
    from dlcore.data.text import BOS, EOS

    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    if bos is None or eos is None:
        raise ValueError(f"translate: the tokenizer has no {BOS!r}/{EOS!r} tokens")
    enc = tokenizer.encode_batch(texts, max_length=max_source_length)
    if (enc.lengths == 0).any():
        raise ValueError(f"translate: text {int(np.argmin(enc.lengths))} has no tokens")
    model.eval()
    graphdef, state = nnx.split(model)
    out = _translate(graphdef, state, jnp.asarray(enc.ids), jnp.asarray(enc.lengths),
                     max_len=check_int(max_len, "max_len", low=1, who="translate"),
                     beam_width=check_int(beam_width, "beam_width", low=1, who="translate"),
                     bos_id=int(bos), eos_id=int(eos), length_penalty=float(length_penalty))
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    result = [tokenizer.decode(tokens[i, :lengths[i]]) for i in range(len(texts))]
    return result[0] if single else result
