"""Padding layers with PyTorch's names and argument order, on channels-last arrays.

``padding`` is an int (the same on every side) or a tuple in PyTorch's order, last spatial axis first:
``(left, right)`` for the 1-D layers, ``(left, right, top, bottom)`` for the 2-D ones. In dlcore's
layouts that is ``(N, L, C)``'s L axis, and ``(N, H, W, C)``'s W axis (left, right) then H axis (top,
bottom); an unbatched ``(L, C)`` or ``(H, W, C)`` works too, as torch's ``(C, L)`` / ``(C, H, W)`` does.

* ``ReflectionPad*d`` mirrors the input about its edge without repeating the edge (``[a b c]`` padded
  by 2 on the left is ``[c b a b c]``); each pad must be smaller than that axis of the input.
* ``ReplicationPad*d`` repeats the edge value (``[a a a b c]``).
* ``ZeroPad*d`` / ``ConstantPad*d`` fill with 0 / ``value``; a negative pad crops, as in PyTorch.

Reference: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2, §2.2.3 A network that turns horses into
zebras (the CycleGAN generator opens with ``ReflectionPad2d(3)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_float, is_int

__all__ = ["ConstantPad1d", "ConstantPad2d", "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d",
           "ReplicationPad2d", "ZeroPad1d", "ZeroPad2d"]


class _Pad(nnx.Module):
    """Shared body: ``_nd`` spatial axes, ``_mode`` one of reflect, replicate, constant."""

    _nd = 2
    _mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        name, n = type(self).__name__, 2 * self._nd
        if is_int(padding):
            pads = (int(padding),) * n
        elif isinstance(padding, (tuple, list)) and len(padding) == n and all(is_int(p) for p in padding):
            pads = tuple(int(p) for p in padding)
        else:
            order = "(left, right)" if self._nd == 1 else "(left, right, top, bottom)"
            raise ValueError(f"{name}: padding must be an int or a {n}-tuple of ints {order}, got {padding!r}")
        if self._mode != "constant" and min(pads) < 0:
            raise ValueError(f"{name}: padding must not be negative, got {pads}")
        self.padding = pads
        self.value = check_float(value, "value", finite=False, who=name) if self._mode == "constant" else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, *spatial, C) or (*spatial, C) -> the same rank, spatial axes grown by the pads."""
        nd, name = self._nd, type(self).__name__
        if x.ndim not in (nd + 1, nd + 2):
            layout = "(N, L, C) or (L, C)" if nd == 1 else "(N, H, W, C) or (H, W, C)"
            raise ValueError(f"{name} expects channels-last input {layout}, got shape {tuple(x.shape)}")
        # torch's tuple runs from the last spatial axis backwards, in (before, after) pairs
        pairs = [(self.padding[2 * i], self.padding[2 * i + 1]) for i in range(nd)][::-1]
        spatial = x.shape[x.ndim - 1 - nd:x.ndim - 1]
        for size, (lo, hi), axis in zip(spatial, pairs, ("L",) if nd == 1 else ("H", "W")):
            if self._mode == "reflect" and max(lo, hi) >= size:
                raise ValueError(f"{name}{self.padding}: reflection padding ({lo}, {hi}) must be smaller than the "
                                 f"input's {axis} size {size} (input shape {tuple(x.shape)})")
            if self._mode == "replicate" and size == 0:
                raise ValueError(f"{name}: cannot replicate the edge of an empty axis (input shape {tuple(x.shape)})")
            if self._mode == "constant" and size + lo + hi < 0:
                raise ValueError(f"{name}{self.padding}: negative padding crops more than the input's size {size} "
                                 f"(input shape {tuple(x.shape)})")
        widths = [(0, 0)] * (x.ndim - 1 - nd) + pairs + [(0, 0)]
        if self._mode == "constant":
            return jax.lax.pad(x, jnp.asarray(self.value, x.dtype), [(lo, hi, 0) for lo, hi in widths])
        return jnp.pad(x, widths, mode="reflect" if self._mode == "reflect" else "edge")


class ReflectionPad1d(_Pad):
    """``torch.nn.ReflectionPad1d(padding)`` on ``(N, L, C)``: mirror ``(left, right)`` positions about the edges.

    Args:
        padding: an int, or ``(left, right)``; each smaller than L.
    """

    _nd, _mode = 1, "reflect"


class ReflectionPad2d(_Pad):
    """``torch.nn.ReflectionPad2d(padding)`` on NHWC images: mirror the border without repeating the edge.

    Args:
        padding: an int, or ``(left, right, top, bottom)`` in PyTorch's order (W's pads, then H's); each
            smaller than the axis it pads.

    Shapes: ``(N, H, W, C)`` -> ``(N, H + top + bottom, W + left + right, C)``.
    Reference: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2, §2.2.3 (CycleGAN's ResNet generator).
    """

    _nd, _mode = 2, "reflect"


class ReplicationPad1d(_Pad):
    """``torch.nn.ReplicationPad1d(padding)`` on ``(N, L, C)``: repeat the edge values; ``(left, right)``."""

    _nd, _mode = 1, "replicate"


class ReplicationPad2d(_Pad):
    """``torch.nn.ReplicationPad2d(padding)`` on NHWC images: repeat the edge rows and columns.

    Args:
        padding: an int, or ``(left, right, top, bottom)`` in PyTorch's order.
    """

    _nd, _mode = 2, "replicate"


class ConstantPad1d(_Pad):
    """``torch.nn.ConstantPad1d(padding, value)`` on ``(N, L, C)``; negative pads crop."""

    _nd, _mode = 1, "constant"

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ConstantPad2d(_Pad):
    """``torch.nn.ConstantPad2d(padding, value)`` on NHWC images; ``(left, right, top, bottom)``, negative crops."""

    _nd, _mode = 2, "constant"

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ZeroPad1d(_Pad):
    """``torch.nn.ZeroPad1d(padding)`` on ``(N, L, C)``: zeros, ``(left, right)``; negative pads crop."""

    _nd, _mode = 1, "constant"

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(_Pad):
    """``torch.nn.ZeroPad2d(padding)`` on NHWC images: zeros, ``(left, right, top, bottom)``; negative crops."""

    _nd, _mode = 2, "constant"

    def __init__(self, padding):
        super().__init__(padding, 0.0)
