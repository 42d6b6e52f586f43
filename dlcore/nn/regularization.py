"""Regularisation the books teach: dropout variants, Monte Carlo dropout, weight penalties, pruning.

* ``AlphaDropout``: PyTorch's dropout for SELU networks, keeping mean and variance.
* ``MCDropout`` and ``mc_predict``: dropout left on at prediction time, averaged over samples.
* ``StochasticDepth``: torchvision's stochastic depth, dropping a residual branch for whole samples.
* ``l1_penalty`` / ``l2_penalty``: the book's manual penalties, for a custom loss (the optimizer-side
  forms are ``dlcore.optim.add_l1`` / ``add_l2``; the max-norm constraint is ``dlcore.optim.max_norm``).
* ``l1_unstructured`` / ``ln_structured``: ``torch.nn.utils.prune``'s magnitude pruning on parameter
  trees, returning the pruned tree and the masks (keep them at zero with ``dlcore.optim.keep_masks``).

References:
    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 11, Training Sparse Models and
    Avoiding Overfitting Through Regularization (l1/l2, dropout, MC dropout, max-norm); Ketkar & Moolayil,
    Deep Learning with Python, 2nd ed., ch. 5, A Practical Implementation in PyTorch (Listings 5-12 to 5-15).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int, is_int
from dlcore.nn.activations import SELU_ALPHA, SELU_SCALE

__all__ = ["AlphaDropout", "MCDropout", "StochasticDepth", "l1_penalty", "l1_unstructured", "l2_penalty",
           "ln_structured", "mc_predict", "sparsity"]


class AlphaDropout(nnx.Module):
    """``torch.nn.AlphaDropout(p)``: dropout that keeps a SELU network's mean and variance.

    Dropped units are set to SELU's negative saturation ``-alpha * scale`` (≈ -1.758) and the result is
    rescaled by ``a = ((1 - p) * (1 + p * alpha'^2)) ** -0.5`` and shifted by ``a * alpha' * p``, so zero
    mean / unit variance inputs stay so (Klambauer et al., "Self-Normalizing Neural Networks", 2017;
    Géron, ch. 11, Dropout). Off in eval mode (``deterministic``), like ``nnx.Dropout``.

    Args:
        p: Drop probability, in ``[0, 1]``.
        deterministic: Start in eval mode.
        rngs: Random streams (the ``dropout`` stream).
    """

    def __init__(self, p: float = 0.5, *, deterministic: bool = False, rng_collection: str = "dropout",
                 rngs: nnx.Rngs | None = None):
        check_float(p, "p", low=0, high=1, who="AlphaDropout")
        self.p, self.deterministic, self.rng_collection = p, deterministic, rng_collection
        self.rngs = rngs[rng_collection].fork() if isinstance(rngs, nnx.Rngs) else nnx.data(None)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
        det = self.deterministic if deterministic is None else deterministic
        if det or self.p == 0.0:
            return x
        if self.p == 1.0:
            return jnp.zeros_like(x)
        if self.rngs is None:
            raise ValueError("AlphaDropout in training mode needs rngs: AlphaDropout(p, rngs=nnx.Rngs(0)).")
        neg = SELU_ALPHA * SELU_SCALE  # the value a dropped unit takes is -neg
        a = 1.0 / math.sqrt((neg * neg * self.p + 1) * (1 - self.p))
        keep = jax.random.bernoulli(self.rngs(), 1.0 - self.p, x.shape)
        return jnp.where(keep, x, -neg) * a + a * neg * self.p


class MCDropout(nnx.Dropout):
    """Dropout that stays on in eval mode: the book's ``McDropout`` (Géron, ch. 11, Monte Carlo Dropout).

    Train a model with it, and every prediction is a Monte Carlo sample; average several with
    ``mc_predict``. ``model.eval()`` does not turn it off (its ``deterministic`` flag is ignored).

    Args:
        rate: Drop probability.
        rngs: Random streams (the ``dropout`` stream).
    """

    def __call__(self, inputs, *, deterministic: bool | None = None, rngs=None):
        del deterministic
        return super().__call__(inputs, deterministic=False, rngs=rngs)


class StochasticDepth(nnx.Dropout):
    """``torchvision.ops.StochasticDepth(p, mode)``: drop a residual branch, for whole samples or the batch.

    In training, ``"row"`` mode zeroes the input of each sample with probability ``p`` (one draw per sample,
    shared by all its other axes) and divides the kept ones by ``1 - p``; ``"batch"`` mode makes one draw
    for the whole batch. In eval mode (``deterministic``, set by ``model.eval()``) it is the identity. Put it
    on a residual branch, ``x + StochasticDepth(p)(f(x))``: a dropped sample then skips the block (Huang et
    al., "Deep Networks with Stochastic Depth", 2016; ConvNeXt's blocks, Liu et al., "A ConvNet for the
    2020s", 2022, which Géron, ch. 12, ConvNeXt, describes).

    A ``flax.nnx.Dropout`` (its ``rate`` is ``p``), so it draws from the ``dropout`` stream and whatever
    reseeds or switches dropout layers treats it as one.

    Args:
        p: Probability of dropping, in ``[0, 1]``.
        mode: ``"row"`` (per sample) or ``"batch"`` (the whole batch at once).
        deterministic: Start in eval mode.
        rng_collection: The stream the masks are drawn from.
        rngs: ``nnx.Rngs`` or one of its streams (``rngs.dropout``); needed in training when ``p > 0``.

    Shapes: (N, ...) -> (N, ...).
    """

    def __init__(self, p: float, mode: str = "row", *, deterministic: bool = False,
                 rng_collection: str = "dropout", rngs: nnx.Rngs | nnx.RngStream | None = None):
        p = check_float(p, "p", low=0, high=1, who="StochasticDepth")
        check_choice(mode, "mode", ("row", "batch"), who="StochasticDepth")
        super().__init__(p, deterministic=deterministic, rng_collection=rng_collection, rngs=rngs)
        self.p, self.mode = p, mode

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
        det = self.deterministic if deterministic is None else deterministic
        if det or self.p == 0.0:
            return x
        if x.ndim < 1:
            raise ValueError(f"StochasticDepth needs a batch (N, ...), got a scalar of shape {tuple(x.shape)}")
        if self.p == 1.0:
            return jnp.zeros_like(x)
        if rngs is None:
            rngs = self.rngs
        if rngs is None:
            raise ValueError("StochasticDepth in training mode needs rngs: StochasticDepth(p, rngs=nnx.Rngs(0)), "
                             "or call model.eval()")
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        else:
            key = rngs
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "row" else (1,) * x.ndim
        keep = jax.random.bernoulli(key, 1.0 - self.p, shape)   # (N, 1, ..., 1) or (1, ..., 1)
        return jnp.where(keep, x / (1.0 - self.p), jnp.zeros((), x.dtype))


def mc_predict(model: nnx.Module, x: jax.Array, n_samples: int = 100, *, seed: int = 0,
               transform: Callable[[jax.Array], jax.Array] | None = jax.nn.softmax) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo dropout: ``n_samples`` stochastic predictions per input, their mean and std.

    The model runs in eval mode (batch norm on running averages) with its dropout layers
    (``nnx.Dropout``, ``AlphaDropout``, ``MCDropout``) switched back on, as the book does with
    ``model.eval()`` then ``module.train()`` for each dropout (Géron, ch. 11, MC Dropout); ``transform`` (softmax by
    default) is applied to each sample before averaging, which "properly reflects the model's
    uncertainty". The user's model is left as it was.

    Args:
        model: A trained model with dropout layers.
        x: Inputs, shape ``(B, ...)``.
        n_samples: Samples per input.
        seed: Seed of the dropout masks.
        transform: Applied to each sample's output (None for raw outputs).

    Returns:
        ``(mean, std)`` over the samples, each of the output's shape ``(B, ...)`` (std with ddof=1, as
        ``torch.std``).
    """
    n_samples = check_int(n_samples, "n_samples", low=2, who="mc_predict")
    graphdef, state = nnx.split(model)
    clone = nnx.merge(graphdef, state, copy=True)
    clone.eval()
    dropouts = [m for _, m in nnx.iter_modules(clone) if isinstance(m, (nnx.Dropout, AlphaDropout))]
    if not dropouts:
        raise ValueError("mc_predict: the model has no dropout layer, every sample would be the same.")
    for m in dropouts:
        m.deterministic = False
    graphdef, state = nnx.split(clone)

    @jax.jit
    def sample(state, key):
        model_ = nnx.merge(graphdef, state, copy=True)
        nnx.reseed(model_, dropout=key, default=jax.random.fold_in(key, 1))
        out = model_(x)
        return out if transform is None else transform(out)

    keys = jax.random.split(jax.random.PRNGKey(seed), n_samples)
    outs = jax.lax.map(lambda k: sample(state, k), keys)
    return jnp.mean(outs, axis=0), jnp.std(outs, axis=0, ddof=1)


# --------------------------------------------------------------------------------------------------
# Penalties for custom losses
# --------------------------------------------------------------------------------------------------


def _selected(params: Any, where) -> list[jax.Array]:
    from dlcore.optim import as_params, path_matcher, path_str, weights_only

    match = path_matcher(weights_only if where is None else where)
    flat = jax.tree_util.tree_flatten_with_path(as_params(params))[0]
    return [v for p, v in flat if match(path_str(p), v)]


def l1_penalty(params: Any, where=None) -> jax.Array:
    """``sum(|p|)`` over the selected parameters (default: weights, not biases or norm parameters).

    The book's ``sum(param.abs().sum() for param in params_to_regularize)`` (Géron, ch. 11, l1 and l2
    Regularization): add ``coef * l1_penalty(params)`` to a custom loss.

    Args:
        params: An ``nnx.Module``, ``nnx.State`` or pytree of arrays.
        where: Pattern selecting the parameters (see ``dlcore.optim.param_groups``); None for weights.
    """
    leaves = _selected(params, where)
    return sum((jnp.sum(jnp.abs(v)) for v in leaves), jnp.zeros((), jnp.float32))


def l2_penalty(params: Any, where=None) -> jax.Array:
    """``sum(p ** 2)`` over the selected parameters (default: weights), the book's ``l2_loss`` (Géron, ch. 11)."""
    leaves = _selected(params, where)
    return sum((jnp.sum(jnp.square(v)) for v in leaves), jnp.zeros((), jnp.float32))


# --------------------------------------------------------------------------------------------------
# Magnitude pruning (torch.nn.utils.prune)
# --------------------------------------------------------------------------------------------------


def _count(amount: Any, size: int, fn: str) -> int:
    if is_int(amount):  # how many units
        return check_int(amount, "amount", low=0, high=size, who=fn)
    fraction = check_float(amount, "amount (an int count, or a fraction)", low=0, high=1, who=fn)
    return int(round(fraction * size))  # PyTorch's rounding (half to even)


def _prune_tree(params: Any, where, fn: str, leaf_mask: Callable[[jax.Array], jax.Array]):
    from dlcore.optim import as_params, path_matcher, path_str, weights_only

    match = path_matcher(weights_only if where is None else where)
    tree = as_params(params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    pruned, masks, hit = [], [], False
    for path, v in flat:
        if match(path_str(path), v):
            hit = True
            mask = leaf_mask(jnp.asarray(v))
            pruned.append(v * mask.astype(v.dtype))
            masks.append(mask.astype(v.dtype))
        else:
            pruned.append(v)
            masks.append(jnp.ones_like(v))
    if not hit:
        raise ValueError(f"{fn}: no parameter matches the pattern {where!r}.")
    return jax.tree.unflatten(treedef, pruned), jax.tree.unflatten(treedef, masks)


def l1_unstructured(params: Any, amount: float | int, where=None) -> tuple[Any, Any]:
    """``prune.l1_unstructured`` on every selected parameter: zero its ``amount`` smallest ``|w|``.

    Each parameter is pruned on its own (PyTorch prunes one module's tensor per call). ``amount``: an
    int is a count, a float a fraction rounded as PyTorch does (``round(amount * size)``).

    Args:
        params: An ``nnx.Module``, ``nnx.State`` or pytree of arrays.
        amount: How many (int) or what fraction (float) of each tensor's entries to zero.
        where: Pattern selecting the parameters (default: weights, not biases).

    Returns:
        ``(pruned params, masks)``: same structure as the parameters, masks of 0/1 (ones where not
        selected). Put them back with ``nnx.update(model, pruned)``; keep them sparse while training
        with ``optim.keep_masks(masks)``.
    """
    def leaf_mask(v):
        k = _count(amount, v.size, "l1_unstructured")
        order = jnp.argsort(jnp.abs(v).reshape(-1), stable=True)
        mask = jnp.ones(v.size, bool).at[order[:k]].set(False)
        return mask.reshape(v.shape)

    return _prune_tree(params, where, "l1_unstructured", leaf_mask)


def ln_structured(params: Any, amount: float | int, n: float = 2, axis: int = -1, where=None) -> tuple[Any, Any]:
    """``prune.ln_structured``: zero whole slices along ``axis`` with the smallest L-``n`` norms.

    The default ``axis=-1`` removes output units of a ``(in, out)`` kernel and output filters of a
    ``(kh, kw, in, out)`` conv kernel: PyTorch's ``dim=0`` on its ``(out, in, ...)`` weights.

    Args:
        params: An ``nnx.Module``, ``nnx.State`` or pytree of arrays.
        amount: How many (int) or what fraction (float) of the slices to remove.
        n: The norm's order (``math.inf`` allowed).
        axis: The axis whose slices are pruned.
        where: Pattern selecting the parameters (default: weights, not biases).

    Returns:
        ``(pruned params, masks)`` as in ``l1_unstructured``.
    """
    def leaf_mask(v):
        ax = axis % v.ndim
        k = _count(amount, v.shape[ax], "ln_structured")
        moved = jnp.moveaxis(v, ax, 0).reshape(v.shape[ax], -1)
        norms = jnp.linalg.norm(moved, ord=n, axis=1)
        order = jnp.argsort(norms, stable=True)
        keep = jnp.ones(v.shape[ax], bool).at[order[:k]].set(False)
        shape = [1] * v.ndim
        shape[ax] = v.shape[ax]
        return jnp.broadcast_to(keep.reshape(shape), v.shape)

    return _prune_tree(params, where, "ln_structured", leaf_mask)


def sparsity(params: Any, where=None) -> float:
    """Fraction of exact zeros among the selected parameters (default: weights)."""
    leaves = _selected(params, where)
    total = sum(v.size for v in leaves)
    if total == 0:
        raise ValueError("sparsity: no parameter selected.")
    return float(sum(jnp.sum(v == 0) for v in leaves) / total)
