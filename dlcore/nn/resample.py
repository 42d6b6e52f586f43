"""Resizing with ``torch.nn.functional.interpolate``'s arithmetic, on channels-last arrays.

``interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None)`` and the ``Upsample``
layer take PyTorch's arguments and produce PyTorch's values, pixel for pixel:

* **output size**: ``size``, or ``floor(in * scale_factor)`` per spatial axis.
* **source coordinate** of output index ``d`` on an axis of ``in`` -> ``out`` samples, in float32 as
  torch's CPU kernels compute it. The scale is ``1 / scale_factor`` when a scale factor was given
  (not ``in / out``: the two differ when ``in * scale_factor`` is not an integer), else ``in / out``;
  with ``align_corners=True`` it is ``(in - 1) / (out - 1)`` whatever was given.
  - ``nearest``: ``floor(d * scale)``, clamped to ``in - 1``; on 2-D input an axis whose size is unchanged
    is copied and one exactly doubled takes ``d // 2`` (torch's 2-D kernel short-cuts both cases, its
    1-D and 3-D kernels do not; the two differ only for scale factors such as 1.1 on 5 pixels).
  - ``linear`` / ``bilinear`` / ``trilinear``: ``scale * (d + 0.5) - 0.5`` (half-pixel centres, negative
    values clamped to 0), or ``scale * d`` with ``align_corners=True``; the two neighbours weighted
    ``1 - t`` and ``t``. An axis whose size does not change is copied.
  - ``bicubic``: the same coordinate, not clamped, and Keys' cubic convolution with ``a = -0.75`` over the
    four neighbours ``floor(c) - 1 .. floor(c) + 2``, indices clamped to the border (edge replication).
* Each mode is separable: it is applied one spatial axis at a time (bilinear = linear along H, then W).

Layouts (channels last): 1-D ``(N, L, C)``, 2-D ``(N, H, W, C)``, 3-D ``(N, D, H, W, C)``. As in PyTorch,
``linear`` needs 1-D input, ``bilinear`` and ``bicubic`` 2-D, ``trilinear`` 3-D; ``nearest`` takes any.

Gradients are JAX's exact derivatives of this forward pass. PyTorch's CPU backward agrees with them,
except in a corner where torch's backward is not the derivative of its own forward: a ``scale_factor``
that leaves the size unchanged (or exactly doubles it) while ``floor(d / scale_factor)`` is not the
identity (``in=5, scale_factor=1.1``), for 1-D and 3-D ``nearest`` and for ``bicubic``, whose backward
passes assume a plain copy (or ``d // 2``) that the forward did not do.

References: Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 12, Semantic Segmentation
(upsampling by bilinear interpolation, beside transposed convolutions); Keys, "Cubic convolution
interpolation for digital image processing" (1981) for the cubic kernel.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore.checks import is_int

__all__ = ["Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "interpolate"]

# mode -> the spatial rank it needs (None: any)
_MODES = {"nearest": None, "linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_LAYOUTS = {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}
_CUBIC_A = -0.75   # PyTorch's (and OpenCV's) cubic convolution parameter


def _check_args(size, scale_factor, mode, align_corners, who: str):
    """Validate the arguments that do not depend on the input; returns (mode, align_corners)."""
    if mode not in _MODES:
        raise ValueError(f"{who}: unknown mode {mode!r}; choose one of {', '.join(map(repr, _MODES))}")
    if (size is None) == (scale_factor is None):
        what = "both" if size is not None else "neither"
        raise ValueError(f"{who}: give exactly one of size or scale_factor, got {what}")
    if size is not None:
        sizes = (size,) if is_int(size) else tuple(size) if isinstance(size, (tuple, list)) else None
        if not sizes or not all(is_int(s) and s >= 1 for s in sizes):
            raise ValueError(f"{who}: size must be a positive int or a tuple of them, got {size!r}")
    else:
        factors = (scale_factor,) if isinstance(scale_factor, numbers.Real) else (
            tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else None)
        if (not factors or not all(isinstance(f, numbers.Real) and not isinstance(f, bool)
                                   and math.isfinite(f) and f > 0 for f in factors)):
            raise ValueError(f"{who}: scale_factor must be a positive number or a tuple of them, "
                             f"got {scale_factor!r}")
    if align_corners is not None and mode == "nearest":
        raise ValueError(f"{who}: align_corners can only be set with the interpolating modes linear, bilinear, "
                         f"bicubic and trilinear, not {mode!r}")
    if align_corners not in (None, True, False):
        raise ValueError(f"{who}: align_corners must be None, True or False, got {align_corners!r}")
    return mode, bool(align_corners)


def _per_axis(value, nd: int, name: str, who: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != nd:
            raise ValueError(f"{who}: {name} {tuple(value)} has {len(value)} entries for {nd} spatial axes "
                             f"({_LAYOUTS[nd]} input)")
        return tuple(value)
    return (value,) * nd


def _scale(n_in: int, n_out: int, factor, align_corners: bool) -> np.float32:
    """torch's area_pixel_compute_scale, in float32: source pixels per output pixel."""
    if align_corners:
        return np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
    if factor is not None:
        return np.float32(1.0 / factor)
    return np.float32(n_in) / np.float32(n_out)


def _taps(n_in: int, n_out: int, factor, mode: str, align_corners: bool, nd: int):
    """Source indices (out, k) and weights (out, k) of one axis; k = 1, 2 or 4 taps (weights None: 1 tap)."""
    d = np.arange(n_out, dtype=np.float32)
    s = _scale(n_in, n_out, factor, align_corners)
    if mode == "nearest":
        if nd == 2 and n_out == n_in:              # torch's 2-D kernel short-cuts these two cases
            return np.arange(n_in)[:, None], None
        if nd == 2 and n_out == 2 * n_in:
            return (np.arange(n_out) // 2)[:, None], None
        idx = np.minimum(np.floor(d * s).astype(np.int64), n_in - 1)
        return idx[:, None], None
    if mode != "bicubic" and n_in == n_out:        # torch copies an axis whose size is unchanged
        return np.arange(n_in)[:, None], None
    if align_corners:
        c = s * d
    else:
        c = s * (d + np.float32(0.5)) - np.float32(0.5)
        if mode != "bicubic":
            c = np.maximum(c, np.float32(0))
    i0 = np.minimum(np.floor(c).astype(np.int64), n_in - 1)
    t = np.clip(c - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    if mode != "bicubic":
        i1 = i0 + (i0 < n_in - 1)
        return np.stack([i0, i1], 1), np.stack([np.float32(1) - t, t], 1)
    a = np.float32(_CUBIC_A)

    def near(x):      # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):       # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1).astype(np.float32)
    idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
    return idx, w


def _resample_axis(x: jax.Array, axis: int, idx: np.ndarray, w: np.ndarray | None) -> jax.Array:
    """out[..., o, ...] = sum_k w[o, k] * x[..., idx[o, k], ...] along `axis`: one gather, one weighted sum."""
    n_out, k = idx.shape
    y = jnp.take(x, jnp.asarray(idx.reshape(-1)), axis=axis)           # (..., out * k, ...)
    if w is None:
        return y
    y = y.reshape(*x.shape[:axis], n_out, k, *x.shape[axis + 1:])      # (..., out, k, ...)
    w = jnp.asarray(w, x.dtype).reshape(n_out, k, *(1,) * (x.ndim - axis - 1))
    return jnp.sum(y * w, axis=axis + 1)


def interpolate(x: jax.Array, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None) -> jax.Array:
    """``torch.nn.functional.interpolate`` on channels-last input: resize the spatial axes.

    Args:
        x: ``(N, L, C)``, ``(N, H, W, C)`` or ``(N, D, H, W, C)``; integer input is kept by ``nearest`` and
            cast to float32 by the interpolating modes.
        size: the output's spatial size, an int (every axis) or a tuple with one entry per spatial axis.
        scale_factor: a multiplier per spatial axis (a number or a tuple); the output size is
            ``floor(in * scale_factor)``. Give exactly one of ``size`` and ``scale_factor``.
        mode: ``"nearest"``, ``"linear"`` (1-D), ``"bilinear"`` (2-D), ``"bicubic"`` (2-D, ``a = -0.75``) or
            ``"trilinear"`` (3-D).
        align_corners: for the interpolating modes, map the corner pixels' centres onto each other
            (``True``) instead of their outer edges (``False``, the default, half-pixel centres).
        recompute_scale_factor: with ``scale_factor``, interpolate as if the computed output size had been
            given (scale ``in / out`` rather than ``1 / scale_factor``).

    Returns:
        ``(N, *size', C)``. The module docstring gives the exact index arithmetic.

    Raises:
        ValueError: an unknown mode, both or neither of ``size`` and ``scale_factor``, ``align_corners``
            with ``nearest``, a mode that does not fit the input's rank, or an empty output.
    """
    who = "interpolate"
    mode, ac = _check_args(size, scale_factor, mode, align_corners, who)
    nd = x.ndim - 2
    need = _MODES[mode]
    if nd not in _LAYOUTS or (need is not None and nd != need):
        want = _LAYOUTS[need] if need else "(N, L, C), (N, H, W, C) or (N, D, H, W, C)"
        raise ValueError(f"{who}: mode {mode!r} needs channels-last input {want}, got shape {tuple(x.shape)}")
    spatial = x.shape[1:-1]
    if size is not None:
        out, factors = _per_axis(size, nd, "size", who), (None,) * nd
    else:
        factors = tuple(float(f) for f in _per_axis(scale_factor, nd, "scale_factor", who))
        out = tuple(math.floor(float(n) * f) for n, f in zip(spatial, factors))
        if recompute_scale_factor:
            factors = (None,) * nd
    if min(out) < 1 or min(spatial) < 1:
        raise ValueError(f"{who}: input and output sizes must be greater than 0, got input {tuple(spatial)} and "
                         f"output {tuple(out)} (input shape {tuple(x.shape)})")
    if mode != "nearest" and not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)                  # nearest copies pixels and keeps the dtype (uint8 images)
    for axis, (n_in, n_out, f) in enumerate(zip(spatial, out, factors), start=1):
        idx, w = _taps(n_in, int(n_out), f, mode, ac, nd)
        x = _resample_axis(x, axis, idx, w)
    return x


class Upsample(nnx.Module):
    """``torch.nn.Upsample``: ``interpolate`` as a layer, with the same arguments and defaults.

    Args:
        size: output spatial size (int or tuple).
        scale_factor: spatial multiplier (number or tuple); exactly one of ``size`` and ``scale_factor``.
        mode: ``"nearest"`` (default), ``"linear"``, ``"bilinear"``, ``"bicubic"`` or ``"trilinear"``.
        align_corners: for the interpolating modes; None means False, as in PyTorch.
        recompute_scale_factor: as ``interpolate``.

    Shapes: ``(N, *spatial, C)`` -> ``(N, *spatial', C)``, channels last. No parameters.

    Example:
        >>> Upsample(scale_factor=2, mode="bilinear")(jnp.ones((1, 4, 4, 3))).shape
        (1, 8, 8, 3)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None):
        _check_args(size, scale_factor, mode, align_corners, type(self).__name__)
        self.size = tuple(size) if isinstance(size, list) else size
        self.scale_factor = tuple(scale_factor) if isinstance(scale_factor, list) else scale_factor
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def __call__(self, x: jax.Array) -> jax.Array:
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)


class UpsamplingNearest2d(Upsample):
    """``torch.nn.UpsamplingNearest2d``: ``Upsample(size, scale_factor, mode="nearest")`` on NHWC images."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    """``torch.nn.UpsamplingBilinear2d``: bilinear with ``align_corners=True`` (its one difference), NHWC."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", True)
