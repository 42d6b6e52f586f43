"""Language models, registered by name: the char-RNN of Géron's ch. 14 and the word-level LSTM language model
of Subramanian's ch. 7.

Both read token ids (B, T) and give logits over the vocabulary at every step (B, T, V), class axis last
(dlcore's layout; PyTorch's `CrossEntropyLoss` wants (B, V, T), which is why Géron permutes). Besides
`model(ids)` each has:

* `forward(ids, state)` -> `(logits, new_state)`: the recurrent state in and out, for truncated
  backpropagation through time (the state is the Trainer's `carry`) and for priming a generation;
* `initial_state(batch_size)`: zeros of the state's shape (GRU: h (L, B, H); LSTM: (h, c), each (L, B, H));
* `decode_step()`: a step function `(tokens (B,), state) -> (logits (B, V), state)` for `dlcore.decode`,
  which feeds one token at a time and carries the state (incremental decoding: the prefix is never re-run).

`generate(model, prompt, max_len, ...)` primes the state on a prompt and decodes greedily or by sampling.

References: Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14 "Natural Language
Processing with RNNs and Attention", sections "Generating Shakespearean Text Using a Character RNN",
"Building and Training the Char-RNN Model" and "Generating Fake Shakespearean Text"; Subramanian, Deep
Learning with PyTorch, ch. 7 "Generative Networks", section "Language modeling" (after PyTorch's
word_language_model example); Press and Wolf (2017) and Inan et al. (2017) for weight tying.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import decode, losses
from dlcore.checks import check_choice, check_float, check_int
from dlcore.models.registry import register
from dlcore.nn.embedding import Embedding
from dlcore.nn.init import uniform
from dlcore.nn.layers import Linear
from dlcore.nn.recurrent import GRU, LSTM

__all__ = ["CharRNN", "WordLM", "bptt_eval_step", "bptt_step", "generate", "token_nll"]


class _RecurrentLM(nnx.Module):
    """What the two models share: ids -> embedding -> stacked RNN -> logits, with the state exposed."""

    _name = "language model"

    def _check_ids(self, ids) -> jax.Array:
        shape = tuple(np.shape(ids))
        dtype = getattr(ids, "dtype", np.asarray(ids).dtype if not hasattr(ids, "shape") else None)
        if len(shape) != 2 or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"{self._name} expects integer token ids of shape (B, T), got shape {shape}"
                             f"{'' if dtype is None else f' dtype {dtype}'}")
        return ids if isinstance(ids, jax.Array) else jnp.asarray(ids)

    def initial_state(self, batch_size: int) -> Any:
        """Zeros of the recurrent state for `batch_size` sequences: h (L, B, H), or (h, c) for an LSTM."""
        batch_size = check_int(batch_size, "batch_size", low=1, who=f"{self._name}.initial_state")
        shape = (self.rnn.num_layers, batch_size, self.rnn.hidden_size)
        # two buffers for (h, c), not one twice: a jitted step may donate its carry
        return (jnp.zeros(shape), jnp.zeros(shape)) if isinstance(self.rnn, LSTM) else jnp.zeros(shape)

    def _logits(self, out):
        raise NotImplementedError

    def _embed(self, ids):
        return self.embed(ids)

    def forward(self, ids, state=None):
        """Logits at every step and the state after the last one.

        Args:
            ids: (B, T) integer token ids in [0, vocab_size).
            state: the state to start from (see `initial_state`); zeros when None.

        Returns:
            `(logits (B, T, vocab_size), new_state)`, the state of the shape it was given.
        """
        ids = self._check_ids(ids)
        out, state = self.rnn(self._embed(ids), state)           # out (B, T, H)
        return self._logits(out), state

    def __call__(self, ids):
        """Logits at every step: (B, T) ids -> (B, T, vocab_size), from the zero state."""
        return self.forward(ids)[0]

    def _check_eval(self, who: str) -> None:
        if any(isinstance(m, nnx.Dropout) and not m.deterministic for _, m in nnx.iter_modules(self)):
            raise ValueError(f"{self._name}.{who}: the model is in training mode (dropout on); call model.eval() "
                             f"first, as the book does before generating")

    def decode_step(self):
        """A step function for `dlcore.decode`: `(tokens (B,) int, state) -> (logits (B, V), new_state)`.

        Each call runs the recurrent layers over one step from the carried state, so decoding `n` tokens
        costs `n` steps whatever the prefix (prime the state on a prompt with `forward`, or use `generate`).
        The model must be in eval mode (dropout off).

        Raises:
            ValueError: the model is in training mode.
        """
        self._check_eval("decode_step")

        def step(tokens, state):
            logits, state = self.forward(tokens[:, None], state)   # (B, 1, V)
            return logits[:, 0], state

        return step


@register("char_rnn")
class CharRNN(_RecurrentLM):
    """Géron's char-RNN (`ShakespeareModel`): Embedding -> 2-layer GRU -> Linear, logits at every step.

    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14, "Building and Training the
    Char-RNN Model": `nn.Embedding(39, 10)`, `nn.GRU(10, 128, num_layers=2, batch_first=True,
    dropout=0.1)`, `nn.Linear(128, 39)`, trained with cross-entropy over every step. 158,253 parameters
    with the book's sizes (vocabulary 39).

    Args:
        vocab_size: characters in the vocabulary (39 for lower-cased tiny Shakespeare).
        n_layers: stacked GRU layers (2).
        embed_dim: embedding size (10).
        hidden_dim: GRU units per layer (128).
        dropout: dropout between the GRU layers, in training mode (0.1).
        rngs: NNX random streams.

    Shapes: ids (B, T) -> logits (B, T, vocab_size) (class axis last; the book permutes to (B, V, T) for
    PyTorch's loss). State: h (n_layers, B, hidden_dim). Submodules: embed, rnn, output.
    """

    _name = "char_rnn"

    def __init__(self, vocab_size: int = 39, n_layers: int = 2, embed_dim: int = 10, hidden_dim: int = 128,
                 dropout: float = 0.1, *, rngs: nnx.Rngs):
        who = "char_rnn"
        self.vocab_size = check_int(vocab_size, "vocab_size", low=1, who=who)
        self.embed = Embedding(self.vocab_size, check_int(embed_dim, "embed_dim", low=1, who=who), rngs=rngs)
        self.rnn = GRU(embed_dim, check_int(hidden_dim, "hidden_dim", low=1, who=who),
                       num_layers=check_int(n_layers, "n_layers", low=1, who=who),
                       dropout=check_float(dropout, "dropout", low=0, high=1, who=who), rngs=rngs)
        self.output = Linear(hidden_dim, self.vocab_size, rngs=rngs)

    def _logits(self, out):
        b, t, h = out.shape
        # (B*T, H) @ (H, V): one 2-D matmul; XLA's CPU dot with two free batch axes is about 2x slower
        return self.output(out.reshape(b * t, h)).reshape(b, t, self.vocab_size)


@register("word_lm")
class WordLM(_RecurrentLM):
    """The word-level LSTM language model of Subramanian's ch. 7 (`RNNModel`, after PyTorch's example).

    Subramanian, Deep Learning with PyTorch, ch. 7 "Generative Networks", "Language modeling", "Defining
    a model based on LSTM": dropout -> `nn.Embedding(ntoken, ninp)` -> `nn.LSTM(ninp, nhid, nlayers,
    dropout=dropout)` -> dropout -> `nn.Linear(nhid, ntoken)`, the decoder's weight tied to the encoder's
    (`decoder.weight = encoder.weight`, Press and Wolf, 2017; Inan et al., 2017); `init_weights` draws
    both from U(-0.1, 0.1) and zeroes the decoder's bias. The recipe: embedding 200, hidden 200, 2
    layers, dropout 0.2, tied. Tied, the output layer is `embed.attend(h, bias)`: one table, one
    parameter, whose gradient sums both uses; there is no separate output matrix.

    Args:
        vocab_size: words in the vocabulary (33,278 for WikiText-2 with its end-of-sentence token).
        embed_dim: embedding size (200).
        hidden_dim: LSTM units per layer (200); must equal `embed_dim` when tied.
        n_layers: stacked LSTM layers (2).
        dropout: on the embeddings, between the LSTM layers and on the LSTM's output (0.2), in training mode.
        tie_weights: share the embedding table with the output layer (True).
        rngs: NNX random streams.

    Shapes: ids (B, T) -> logits (B, T, vocab_size). State: (h, c), each (n_layers, B, hidden_dim).
    Submodules: embed, rnn, drop, and `bias` (vocab_size,) when tied, else `decoder` (a Linear).

    Raises:
        ValueError: `tie_weights` with `hidden_dim != embed_dim`.
    """

    _name = "word_lm"

    def __init__(self, vocab_size: int = 33_278, embed_dim: int = 200, hidden_dim: int = 200, n_layers: int = 2,
                 dropout: float = 0.2, tie_weights: bool = True, *, rngs: nnx.Rngs):
        who = "word_lm"
        self.vocab_size = check_int(vocab_size, "vocab_size", low=1, who=who)
        embed_dim = check_int(embed_dim, "embed_dim", low=1, who=who)
        hidden_dim = check_int(hidden_dim, "hidden_dim", low=1, who=who)
        dropout = check_float(dropout, "dropout", low=0, high=1, who=who)
        self.tie_weights = check_choice(tie_weights, "tie_weights", (True, False), who=who)
        if tie_weights and hidden_dim != embed_dim:
            raise ValueError(f"word_lm: tie_weights needs hidden_dim == embed_dim (the output layer reads the "
                             f"embedding table), got hidden_dim={hidden_dim}, embed_dim={embed_dim}")
        self.embed = Embedding(self.vocab_size, embed_dim, rngs=rngs)
        init = uniform(-0.1, 0.1)                                   # the book's init_weights
        self.embed.weight[...] = init(rngs.params(), (self.vocab_size, embed_dim))
        self.rnn = LSTM(embed_dim, hidden_dim, num_layers=check_int(n_layers, "n_layers", low=1, who=who),
                        dropout=dropout, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        if tie_weights:
            self.bias = nnx.Param(jnp.zeros((self.vocab_size,), jnp.float32))
        else:
            self.decoder = Linear(hidden_dim, self.vocab_size, kernel_init=init,
                                  bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    def _embed(self, ids):
        return self.drop(self.embed(ids))

    def _logits(self, out):
        b, t, h = out.shape
        out = self.drop(out).reshape(b * t, h)                      # (B*T, H): one 2-D matmul (see CharRNN)
        if self.tie_weights:
            logits = self.embed.attend(out, self.bias[...])         # (B*T, H) @ (V, H).T -> (B*T, V)
        else:
            logits = self.decoder(out)
        return logits.reshape(b, t, self.vocab_size)


def generate(model: _RecurrentLM, prompt, max_len: int, *, key: jax.Array | None = None, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Continue `prompt` by `max_len` tokens: greedy without a key, else sampled (`dlcore.decode.sample`).

    The prompt but its last token is run once through `forward` to prime the state; decoding then starts
    from the last prompt token and feeds one token per step through `model.decode_step()`. This is what
    Géron's `extend_text` does (`next_char` with `torch.multinomial` over softmax(logits / temperature)),
    without re-running the growing text at every character. One jitted call: the temperature is an
    argument of it (the step's logits are divided by it), so sampling at several temperatures compiles once.

    Args:
        model: a `CharRNN` or `WordLM` in eval mode.
        prompt: (B, P) or (P,) integer ids in [0, vocab_size), P >= 1.
        max_len: tokens to generate.
        key: a `jax.random` key to sample with; None decodes greedily.
        temperature: > 0, divides the logits before sampling (sampling only).
        top_k, top_p: as `dlcore.decode.sample` (sampling only), applied after the temperature.

    Returns:
        int32 (B, max_len), or (max_len,) for a 1-D prompt: the generated tokens (the prompt left out).

    Raises:
        ValueError: the model in training mode, a prompt of the wrong shape or outside the vocabulary, a
            non-positive temperature.
    """
    model._check_eval("generate")
    ids = np.asarray(prompt)
    flat = ids.ndim == 1
    ids = ids[None] if flat else ids
    if ids.ndim != 2 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"generate: prompt must be integer ids of shape (B, P) or (P,) with P >= 1, got shape "
                         f"{np.shape(prompt)} dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= model.vocab_size:
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise ValueError(f"generate: token id {bad} of the prompt is outside the vocabulary [0, {model.vocab_size})")
    max_len = check_int(max_len, "max_len", low=1, who="generate")
    temperature = check_float(temperature, "temperature", low=0, low_open=True, who="generate")
    graphdef, state = nnx.split(model)
    sample = key is not None
    tokens = _generate(graphdef, state, jnp.asarray(ids, jnp.int32), key if sample else jax.random.key(0),
                       jnp.float32(temperature), max_len=max_len, sample=sample, top_k=top_k, top_p=top_p)
    tokens = np.asarray(tokens)
    return tokens[0] if flat else tokens


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "sample", "top_k", "top_p"))
def _generate(graphdef, state, ids, key, temperature, *, max_len, sample, top_k, top_p):
    model = nnx.merge(graphdef, state)
    h = model.initial_state(ids.shape[0])
    if ids.shape[1] > 1:
        _, h = model.forward(ids[:, :-1], h)                      # prime on the prompt but its last token
    step = model.decode_step()
    if not sample:
        return decode.greedy(step, h, ids[:, -1], max_len).tokens

    def tempered(tokens, h):
        logits, h = step(tokens, h)
        return logits / temperature, h

    return decode.sample(tempered, h, ids[:, -1], max_len, key, top_k=top_k, top_p=top_p).tokens


def token_nll(logits, targets) -> jax.Array:
    """Mean cross-entropy of every token of each row: logits (B, T, V), targets (B, T) -> (B,)."""
    return losses.cross_entropy(logits, targets).mean(-1)


def bptt_step(state, batch: dict, key: jax.Array, carry):
    """A Trainer step for truncated backpropagation through time: the recurrent state is the carry.

    The batch is one chunk of `B` parallel streams (`batch["x"]`, `batch["y"]`: (B, T) ids, the targets
    shifted by one); the state left by the previous chunk starts this one with its gradient stopped, so
    gradients flow through T steps only (the book's `repackage_hidden`, torch's `.detach()`), and the state
    after this chunk is carried to the next. Rows of weight 0 count in no loss. Pass it as
    `Trainer(model, tx, step=bptt_step, eval_step=bptt_eval_step, carry=model.initial_state, shuffle=False,
    drop_last=True, reset_carry=True)`, with the chunks in stream order (see Subramanian, ch. 7,
    "Generating the batches" and "Backpropagation through time").

    Logs: `loss`, the mean token cross-entropy (its exp is the perplexity).
    """
    h0 = jax.lax.stop_gradient(carry)
    w = batch["w"]

    def objective(params):
        logits, h = state.model(True, key, params).forward(batch["x"], h0)
        per = token_nll(logits, batch["y"])                               # (B,)
        return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0), h

    (value, h), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    return state.apply_gradients(grads), {"loss": value}, h


def bptt_eval_step(state, batch: dict, carry):
    """The evaluation twin of `bptt_step` (eval mode, no update): `(logs, carry)`; logs hold `loss`."""
    logits, h = state.model().forward(batch["x"], carry)
    per = token_nll(logits, batch["y"])
    w = batch["w"]
    return {"loss": jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)}, h
