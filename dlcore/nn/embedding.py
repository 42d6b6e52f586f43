"""`torch.nn.Embedding` in NNX: a lookup table with PyTorch's init, `padding_idx` and `from_pretrained`.

References: Raschka, Build a Large Language Model (From Scratch), ch. 2, "Creating token embeddings";
Stevens, Antiga and Viehmann, Deep Learning with PyTorch, ch. 4, "Text embeddings".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore.checks import check_choice, check_int
from dlcore.nn.init import normal

__all__ = ["Embedding", "Frozen"]


class Frozen(nnx.Variable):
    """A weight that is saved and loaded but not trained: not an `nnx.Param`.

    `nnx.split(model, nnx.Param, ...)` (what `dlcore.train.TrainState` and `jax.grad` over parameters
    use) leaves it out of the parameters, so the optimizer never sees it and no gradient is taken for it:
    torch's `requires_grad=False`. `dlcore.weights` still reads and writes it under its torch name.
    """


class Embedding(nnx.Module):
    """`torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx)`: row `ids` of a learned table.

    The table `weight` (num_embeddings, embedding_dim) is drawn from N(0, 1), as torch does, with the
    `padding_idx` row set to zero. That row receives no gradient: the lookup reads it through
    `jax.lax.stop_gradient`, so it stays where it is (zero, unless it was loaded otherwise) under any
    optimizer, as torch's does.

    Args:
        num_embeddings: size of the vocabulary.
        embedding_dim: size of each vector.
        padding_idx: a row (negative counts from the end, as in torch) kept constant and out of the
            gradient; None for none.
        rngs: NNX random streams (the `params` stream draws the table).

    Shapes: integer ids (...) -> (..., embedding_dim). State-dict name: `weight`, torch's layout.

    Token ids must lie in [0, num_embeddings). Concrete ids (NumPy or JAX arrays outside `jit`) are
    checked and an id outside raises a one-line ValueError; under `jit` the ids are tracers that cannot
    be checked, and JAX clamps an out-of-range id silently to the nearest row (`mode="clip"`).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *,
                 rngs: nnx.Rngs | None = None, _weight=None, _freeze: bool = False):
        who = "Embedding"
        self.num_embeddings = check_int(num_embeddings, "num_embeddings", low=1, who=who)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", low=1, who=who)
        if padding_idx is not None:
            padding_idx = check_int(padding_idx, "padding_idx", low=-self.num_embeddings,
                                    high=self.num_embeddings - 1, who=who)
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        check_choice(_freeze, "freeze", (True, False), who=who)
        if _weight is None:
            if rngs is None:
                raise ValueError("Embedding needs rngs=nnx.Rngs(seed) to draw its table "
                                 "(or use Embedding.from_pretrained(table))")
            table = normal(1.0)(rngs.params(), (self.num_embeddings, self.embedding_dim), jnp.float32)
            if padding_idx is not None:
                table = table.at[padding_idx].set(0.0)
        else:
            table = jnp.asarray(_weight)
            if table.shape != (self.num_embeddings, self.embedding_dim):
                raise ValueError(f"Embedding: the table has shape {tuple(table.shape)}, expected "
                                 f"({self.num_embeddings}, {self.embedding_dim})")
        self.freeze = bool(_freeze)
        self.weight = Frozen(table) if self.freeze else nnx.Param(table)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None) -> "Embedding":
        """`torch.nn.Embedding.from_pretrained`: an Embedding holding `embeddings` as its table.

        Args:
            embeddings: a float array (num_embeddings, embedding_dim): NumPy, JAX or a torch tensor.
            freeze: keep the table fixed. It is then stored as a `Frozen` variable rather than an
                `nnx.Param`, so it is not among the model's parameters: no gradient, no optimizer
                update, not counted as trainable; `dlcore.weights` still saves and loads it as `weight`.
                With `freeze=False` it is an ordinary `nnx.Param`.
            padding_idx: as in the constructor; the row is kept as given (not zeroed), as torch keeps it.

        Raises:
            ValueError: a table that is not 2-D or not floating point.
        """
        if hasattr(embeddings, "detach"):          # a torch tensor, without importing torch
            embeddings = embeddings.detach().cpu().numpy()
        table = np.asarray(embeddings)
        if table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
            raise ValueError(f"Embedding.from_pretrained needs a 2-D float table (num_embeddings, embedding_dim), "
                             f"got shape {table.shape} dtype {table.dtype}")
        check_choice(freeze, "freeze", (True, False), who="Embedding.from_pretrained")
        return cls(table.shape[0], table.shape[1], padding_idx, _weight=table, _freeze=freeze)

    def _check_ids(self, ids):
        dtype = getattr(ids, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"Embedding expects integer token ids, got "
                             f"{'dtype ' + str(dtype) if dtype is not None else type(ids).__name__}")
        if isinstance(ids, jax.core.Tracer) or np.size(ids) == 0:
            return
        a = np.asarray(ids)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= self.num_embeddings:
            bad = lo if lo < 0 else hi
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): token id {bad} is outside "
                             f"the vocabulary [0, {self.num_embeddings})")

    def attend(self, hidden, bias=None):
        """Logits over the vocabulary from hidden states through the same table: weight tying.

        ``hidden @ weight.T (+ bias)``: (..., embedding_dim) -> (..., num_embeddings). The output layer of
        a language model shares the embedding's weights this way (Press & Wolf, 2017; Inan et al., 2017),
        as PyTorch's word language model does with ``decoder.weight = encoder.weight``.

        Args:
            hidden: (..., embedding_dim).
            bias: optional (num_embeddings,), e.g. an ``nnx.Param`` of the output layer.
        """
        hidden = jnp.asarray(hidden)
        if hidden.shape[-1:] != (self.embedding_dim,):
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}).attend expects hidden states "
                             f"whose last axis is {self.embedding_dim}, got shape {hidden.shape}")
        w = self.weight[...]
        if self.freeze:
            w = jax.lax.stop_gradient(w)
        flat = hidden.reshape(-1, self.embedding_dim) @ w.T                # one 2-D matmul (faster on XLA:CPU)
        logits = flat.reshape(*hidden.shape[:-1], self.num_embeddings)
        return logits if bias is None else logits + jnp.asarray(bias)

    def __call__(self, ids):
        """Rows of the table: integer ids (...) -> (..., embedding_dim)."""
        if isinstance(ids, (list, tuple, int)):
            ids = np.asarray(ids)
        self._check_ids(ids)
        w = self.weight[...]
        if self.freeze:
            w = jax.lax.stop_gradient(w)
        elif self.padding_idx is not None:
            # the padding row is read through stop_gradient: its gradient is zero, as in torch
            is_pad = (jnp.arange(self.num_embeddings) == self.padding_idx)[:, None]
            w = jnp.where(is_pad, jax.lax.stop_gradient(w), w)
        return jnp.take(w, jnp.asarray(ids), axis=0, mode="clip")
