"""Batch and layer normalisation with PyTorch's arguments, statistics and momentum convention.

Flax has ``nnx.BatchNorm`` and ``nnx.LayerNorm``; these modules exist because three PyTorch
behaviours differ and a reader of the books would meet each of them:

* **momentum**: PyTorch's ``momentum=0.1`` weighs the *new* batch (``running = (1 - m) * running +
  m * batch``); Flax's ``momentum=0.99`` weighs the *old* average. ``BatchNorm*d`` takes PyTorch's
  number (Géron, ch. 11, Batch Normalization, warns about it); Flax's equivalent is ``1 - momentum``.
  ``momentum=None`` is PyTorch's cumulative average (``1 / num_batches_tracked``).
* **running variance**: PyTorch updates it with the *unbiased* batch variance (``n / (n - 1)``) while
  normalising with the biased one; Flax uses the biased one for both.
* **layer norm shape**: ``LayerNorm(normalized_shape)`` normalises over any number of trailing axes with
  a scale and shift of that shape (Géron, ch. 11, Layer Normalization).

Layout is channel-last: ``BatchNorm1d`` takes ``(N, C)`` or ``(N, L, C)`` (PyTorch: ``(N, C, L)``),
``BatchNorm2d`` ``(N, H, W, C)``, ``BatchNorm3d`` ``(N, D, H, W, C)``; the statistics are per channel over
all other axes. Training mode (batch statistics, running averages updated) and eval mode (running
averages) follow ``model.train()`` / ``model.eval()`` through ``use_running_average``.

The batch norms subclass ``nnx.BatchNorm`` and keep its variable names (``scale``, ``bias``; statistics
``mean``, ``var``, plus ``num_batches_tracked``); PyTorch calls them ``weight``, ``bias``,
``running_mean``, ``running_var``. The instance norms hold only what their PyTorch counterpart holds,
under PyTorch's names (``weight``, ``bias`` when affine; ``running_mean``, ``running_var``,
``num_batches_tracked`` when tracking), so a state dict maps one to one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "LayerNorm"]


class _NoKeys:
    """Stands in for ``nnx.Rngs``: batch norm's initial scale (1) and bias (0) need no random key."""

    def params(self):
        return None


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _batch_norm(x, scale, bias, eps):
    """Batch normalisation with the batch's statistics over every axis but the last (channels).

    Returns (y, mean, biased var), y = (x - mean) / sqrt(var + eps) * scale + bias; x (..., C), the rest (C,).
    Its gradient is written out (Ioffe & Szegedy, 2015, section 3): two passes over the batch (the sums of
    dy and dy * x_hat, then dx), where differentiating the forward pass takes several.
    """
    return _batch_norm_fwd(x, scale, bias, eps)[0]


def _batch_norm_fwd(x, scale, bias, eps):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=axes)  # biased: what normalises the batch
    rstd = jax.lax.rsqrt(var + eps)
    y = centred * (rstd * scale) + bias
    return (y, mean, var), (x, mean, rstd, scale)


def _batch_norm_bwd(eps, res, cot):
    x, mean, rstd, scale = res
    dy, dmean, dvar = cot
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    centred = x - mean
    dbias = jnp.sum(dy, axis=axes)
    dscale = jnp.sum(dy * centred, axis=axes) * rstd  # sum(dy * x_hat)
    dx = (rstd * scale) * (dy - dbias / n - centred * (rstd * dscale / n))
    dx = dx + dmean / n + centred * (2 * dvar / n)  # the statistics' own outputs (zero when unused)
    return dx, dscale, dbias


_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class _BatchNorm(nnx.BatchNorm):
    """Shared implementation; subclasses fix the accepted input ranks.

    A subclass of ``nnx.BatchNorm`` (same variables: ``scale``, ``bias``, ``mean``, ``var``; Flax's
    ``momentum`` attribute holds ``1 - torch momentum``), plus ``num_batches_tracked``; ``__call__``
    follows PyTorch.
    """

    _ranks: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, use_running_average: bool = False,
                 rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init (scale 1, bias 0); accepted for a uniform constructor
        who = type(self).__name__
        num_features = check_int(num_features, "num_features", low=1, who=who)
        check_float(eps, "eps", low=0, low_open=True, finite=False, who=who)
        if momentum is not None:  # PyTorch's convention: the weight of the new batch (Flax's 0.99 is 0.01)
            check_float(momentum, "momentum", low=0, high=1, who=who)
        super().__init__(num_features, use_running_average=use_running_average,
                         momentum=0.9 if momentum is None else 1.0 - momentum, epsilon=eps, use_bias=affine,
                         use_scale=affine, rngs=_NoKeys())
        self.eps, self.torch_momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None, mask=None) -> jax.Array:
        if mask is not None:
            raise ValueError(f"{type(self).__name__} does not take a mask.")
        name = type(self).__name__
        if x.ndim not in self._ranks:
            raise ValueError(f"{name} expects input of shape {self._layout}, got shape {x.shape}.")
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) got {x.shape[-1]} channels on the last axis "
                             f"(dlcore is channel-last), shape {x.shape}.")
        eval_mode = self.use_running_average if use_running_average is None else use_running_average
        # Under mixed precision (dlcore.precision) x, scale and bias are bfloat16 and the statistics
        # float32: the statistics are computed in float32 (a bfloat16 batch mean keeps 8 bits, which the
        # running averages would keep too) and the output has the dtype of x, scale and bias, so the next
        # layer still computes in bfloat16. float32 inputs run exactly as before.
        out_dtype = jnp.result_type(x, *(v[...] for v in (self.scale, self.bias) if v is not None))
        out_dtype = out_dtype if jnp.issubdtype(out_dtype, jnp.inexact) else jnp.float32  # integer inputs
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        if not eval_mode and x.size // x.shape[-1] <= 1:  # var 0: output all zeros, running var pulled to 0
            raise ValueError(f"{name} expects more than 1 value per channel when training, got input of shape "
                             f"{x.shape} (as PyTorch: a batch of one row has no batch statistics; use eval mode "
                             f"or a larger batch)")
        if not (eval_mode and self.track_running_stats):  # the batch's statistics
            c = x.shape[-1]
            scale = jnp.ones((c,), x.dtype) if self.scale is None else self.scale[...].astype(x.dtype)
            bias = jnp.zeros((c,), x.dtype) if self.bias is None else self.bias[...].astype(x.dtype)
            y, mean, var = _batch_norm(x, scale, bias, self.eps)
            if not eval_mode and self.track_running_stats:
                n = x.size // x.shape[-1]
                count = self.num_batches_tracked[...] + 1
                self.num_batches_tracked[...] = count
                m = 1.0 / count.astype(jnp.float32) if self.torch_momentum is None else self.torch_momentum
                unbiased = var * (n / max(n - 1, 1))
                self.mean[...] = (1 - m) * self.mean[...] + m * mean
                self.var[...] = (1 - m) * self.var[...] + m * unbiased
            return y.astype(out_dtype)
        mean, var = self.mean[...], self.var[...]  # eval mode: the running statistics
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(out_dtype)


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d`` on ``(N, C)`` or channel-last sequences ``(N, L, C)``.

    Args:
        num_features: C.
        eps: Added to the variance.
        momentum: PyTorch's convention (weight of the new batch), or None for a cumulative average.
        affine: Learn a per-channel ``scale`` and ``bias``.
        track_running_stats: Keep running averages for eval; when False, batch statistics always.
        use_running_average: Start in eval mode.

    Reference: Géron, ch. 11, Batch Normalization; Ioffe & Szegedy, "Batch Normalization" (2015).
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, L, C)"


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d`` on NHWC images ``(N, H, W, C)``; arguments as ``BatchNorm1d``."""

    _ranks = (4,)
    _layout = "(N, H, W, C)"


class BatchNorm3d(_BatchNorm):
    """``torch.nn.BatchNorm3d`` on ``(N, D, H, W, C)`` volumes; arguments as ``BatchNorm1d``."""

    _ranks = (5,)
    _layout = "(N, D, H, W, C)"


class LayerNorm(nnx.Module):
    """``torch.nn.LayerNorm(normalized_shape)``: normalise over the trailing axes of that shape.

    ``LayerNorm((100, 200))`` on ``(32, 3, 100, 200)`` inputs normalises each of the 32 x 3 planes
    with its own mean and (biased) variance, then applies a ``scale`` and ``bias`` of shape (100, 200)
    (Géron, ch. 11, Layer Normalization). Same in training and eval.

    Args:
        normalized_shape: An int or the trailing shape to normalise over.
        eps: Added to the variance.
        elementwise_affine: Learn ``scale`` (init 1) and ``bias`` (init 0) of shape ``normalized_shape``.
        bias: Learn the ``bias`` too (PyTorch's ``bias`` argument).

    Reference: Ba et al., "Layer Normalization" (2016).
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, rngs: nnx.Rngs | None = None):
        del rngs
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got {normalized_shape!r}.")
        check_float(eps, "eps", low=0, low_open=True, finite=False, who="LayerNorm")
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine, self.use_bias = elementwise_affine, bias and elementwise_affine
        if elementwise_affine:
            self.scale = nnx.Param(jnp.ones(shape, jnp.float32))
        if self.use_bias:
            self.bias = nnx.Param(jnp.zeros(shape, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ValueError(f"LayerNorm{self.normalized_shape} needs inputs ending in that shape, got {x.shape}.")
        axes = tuple(range(x.ndim - k, x.ndim))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.elementwise_affine:
            y = y * self.scale[...]
        if self.use_bias:
            y = y + self.bias[...]
        return y


class _InstanceNorm(nnx.Module):
    """Shared body of ``InstanceNorm1d`` / ``InstanceNorm2d``; subclasses fix the spatial rank."""

    _nd: int = 2
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, *, use_running_average: bool = False,
                 rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init (weight 1, bias 0, running mean 0, running var 1)
        who = type(self).__name__
        num_features = check_int(num_features, "num_features", low=1, who=who)
        check_float(eps, "eps", low=0, low_open=True, finite=False, who=who)
        if momentum is not None:
            check_float(momentum, "momentum", low=0, high=1, who=who)
        check_choice(affine, "affine", (True, False), who=who)
        check_choice(track_running_stats, "track_running_stats", (True, False), who=who)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.use_running_average = use_running_average  # nnx's eval() / train() flip it, as for batch norm
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32)) if affine else nnx.data(None)
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32)) if affine else nnx.data(None)
        if track_running_stats:
            self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
            self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
            # kept for the state dict only: PyTorch's instance norm never increments it
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = nnx.data(None)

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        name, nd = type(self).__name__, self._nd
        if x.ndim not in (nd + 1, nd + 2):
            raise ValueError(f"{name} expects channel-last input {self._layout}, got shape {tuple(x.shape)}.")
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) got {x.shape[-1]} channels on the last axis "
                             f"(dlcore is channel-last), shape {tuple(x.shape)}.")
        added = x.ndim == nd + 1
        if added:                                     # unbatched, as torch accepts (C, *spatial)
            x = x[None]
        eval_mode = self.use_running_average if use_running_average is None else use_running_average
        use_input_stats = not eval_mode or not self.track_running_stats
        axes = tuple(range(1, nd + 1))                # the spatial axes of (N, *spatial, C)
        if use_input_stats:
            n = math.prod(x.shape[1:-1])
            if n <= 1:
                raise ValueError(f"{name} needs more than 1 spatial element per channel to compute instance "
                                 f"statistics, got input of shape {tuple(x.shape)}.")
            mean = jnp.mean(x, axis=axes, keepdims=True)                    # (N, 1.., C)
            var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)  # biased: what normalises
            if not eval_mode and self.track_running_stats and self.momentum is not None:
                # torch averages the per-instance statistics over the batch; the variance unbiased
                m = self.momentum
                inst_mean = jnp.mean(mean.reshape(x.shape[0], -1), axis=0)
                inst_var = jnp.mean(var.reshape(x.shape[0], -1), axis=0) * (n / (n - 1))
                self.running_mean[...] = (1 - m) * self.running_mean[...] + m * jax.lax.stop_gradient(inst_mean)
                self.running_var[...] = (1 - m) * self.running_var[...] + m * jax.lax.stop_gradient(inst_var)
        else:
            mean, var = self.running_mean[...], self.running_var[...]
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight[...] + self.bias[...]
        return y[0] if added else y


class InstanceNorm1d(_InstanceNorm):
    """``torch.nn.InstanceNorm1d`` on channel-last sequences ``(N, L, C)`` (or unbatched ``(L, C)``).

    Each example's channels are normalised over their own L positions (biased variance), in training
    and eval alike unless ``track_running_stats``: then training also updates ``running_mean`` and
    ``running_var`` (the batch mean of the instance means and of the *unbiased* instance variances,
    weighted by ``momentum`` as in batch norm) and eval mode normalises with them. As in PyTorch,
    ``momentum=None`` leaves the running statistics unchanged and ``num_batches_tracked`` stays 0.

    Args:
        num_features: C.
        eps: Added to the variance.
        momentum: Weight of the new statistics in the running averages (PyTorch's convention).
        affine: Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: Keep running averages and use them in eval mode.
        use_running_average: Start in eval mode (``model.eval()`` / ``model.train()`` set it).

    Variables, in PyTorch's names: ``weight``, ``bias`` (affine); ``running_mean``, ``running_var``,
    ``num_batches_tracked`` (tracked). Shapes: input and output ``(N, L, C)``.

    Reference: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2, §2.2.3 A network that turns horses
    into zebras (the CycleGAN generator); Ulyanov et al., "Instance Normalization" (2016).
    """

    _nd = 1
    _layout = "(N, L, C) or (L, C)"


class InstanceNorm2d(_InstanceNorm):
    """``torch.nn.InstanceNorm2d`` on NHWC images ``(N, H, W, C)`` (or unbatched ``(H, W, C)``).

    Each image's channels are normalised over their own H x W pixels; arguments, modes and variables as
    ``InstanceNorm1d``. The CycleGAN ResNet generator uses it without affine parameters (Antiga et al., Deep
    Learning with PyTorch, 2nd ed., ch. 2, §2.2.3 A network that turns horses into zebras).

    Reference: Ulyanov et al., "Instance Normalization: The Missing Ingredient for Fast Stylization" (2016).
    """

    _nd = 2
    _layout = "(N, H, W, C) or (H, W, C)"
