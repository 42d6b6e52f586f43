"""Convolutions and pooling with PyTorch's arguments and arithmetic, on channels-last arrays.

Layouts: 1-D (N, L, C), 2-D (N, H, W, C), 3-D (N, D, H, W, C); a missing batch axis is added and
removed as torch does for unbatched input. Kernels are stored as Flax keeps them,
(*kernel_size, in/groups, out) for convolutions and (*kernel_size, in, out/groups) for transposed
convolutions; `dlcore.weights` converts torch's (out, in/groups, *k) and (in, out/groups, *k).

Output sizes follow torch: for each spatial axis of size L,
L' = floor((L + pad_lo + pad_hi - dilation*(k-1) - 1) / stride) + 1 (pooling with ceil_mode rounds
up, as torch does). A layer that would produce an empty output raises a ValueError that names it,
which is how "image too small for the model's strides" is reported before any computation.

References: Géron, Hands-On ML ch. 12 (convolutional and pooling layers, depthwise pooling, separable
convolutions); Ketkar & Moolayil, Deep Learning with Python, ch. 6; Dumoulin & Visin, "A guide to convolution
arithmetic for deep learning" (2016) for transposed convolutions; Krizhevsky et al. (2012) for LRN.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from dlcore.checks import check_choice, check_int
from dlcore.nn import conv_tuning
from dlcore.nn.init import torch_uniform

_SPECS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _ntuple(v, n: int, name: str, layer: str = "") -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(int(e) for e in v)
    if len(v) != n:
        raise ValueError(f"{layer + ': ' if layer else ''}{name} must be an int or a {n}-tuple, got {v}")
    return v


def _pair(v, name: str) -> tuple[int, int]:
    return _ntuple(v, 2, name)


def _spatial(x: jax.Array, nd: int, channels: int | None, layer: str, floating: bool = False):
    """Check the rank (and channel count, and with `floating` the float dtype) of `x`; returns (x with a batch
    axis, added_batch)."""
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{layer} expects float input, got {x.dtype}; convert images first, e.g. "
                         f"dlcore.data.transforms.to_float(x) for 0..255 pixels (PyTorch refuses them too)")
    if x.ndim == nd + 1:
        x, added = x[None], True
    elif x.ndim == nd + 2:
        added = False
    else:
        names = {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}[nd]
        raise ValueError(f"{layer} expects channels-last input {names}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{layer} expects {channels} input channels (last axis), "
                         f"got input of shape {tuple(x.shape)}")
    return x, added


def _out_size(size: int, k: int, s: int, lo: int, hi: int, d: int, layer: str, shape) -> int:
    eff = d * (k - 1) + 1
    out = (size + lo + hi - eff) // s + 1
    if size + lo + hi < eff or out < 1:
        raise ValueError(f"{layer}: input of spatial size {tuple(shape)} is too small for kernel "
                         f"{eff} with padding ({lo}, {hi}): the image is too small for the model's "
                         f"strides and kernels")
    return out


def _same_pads(sizes, kernel, stride, dilation) -> list[tuple[int, int]]:
    """TF/Keras 'same': output ceil(L/s); for stride 1 this is torch's padding='same'."""
    pads = []
    for L, k, s, d in zip(sizes, kernel, stride, dilation):
        out = -(-L // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - L, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _parse_padding(padding, nd: int, layer: str):
    """'same' / 'valid' / 'causal' (kept as str), or explicit ((lo, hi),) * nd."""
    if isinstance(padding, str):
        p = check_choice(padding.lower(), "padding (an int, a tuple or a str)", ("same", "valid", "causal"),
                         who=layer)
        if p == "valid":
            return ((0, 0),) * nd
        return p
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * nd
    padding = tuple(padding)
    if len(padding) != nd:
        raise ValueError(f"{layer}: padding must have {nd} entries, got {padding}")
    out = []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            out.append((int(p), int(p)))
        else:
            lo, hi = p
            out.append((int(lo), int(hi)))
    if any(lo < 0 or hi < 0 for lo, hi in out):
        raise ValueError(f"{layer}: padding must be non-negative, got {padding}")
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------------------


class _ConvNd(nnx.Conv):
    """Shared body of Conv1d/2d/3d: a kernel (*k, in/groups, out), a bias, and torch's arithmetic.

    A `flax.nnx.Conv` for `isinstance` (Flax tools and dlcore's Trainer recognise it) that sets its
    own, fewer attributes instead of calling `nnx.Conv.__init__`: abstract construction of a whole
    model zoo (`dlcore list`) costs time per attribute.
    """

    nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 kernel_init=None, bias_init=None, dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        nd = self.nd
        name = f"{type(self).__name__}({in_channels}, {out_channels}, kernel_size={kernel_size})"
        k = _ntuple(kernel_size, nd, "kernel_size", name)
        s = _ntuple(stride, nd, "stride", name)
        d = _ntuple(dilation, nd, "dilation", name)
        if min(k + s + d) < 1:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be positive")
        check_int(groups, "groups", low=1, who=name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        check_choice(padding_mode, "padding_mode", _PAD_MODES, who=name)
        pad = _parse_padding(padding, nd, name)
        if pad == "causal" and nd != 1:
            raise ValueError(f"{name}: causal padding is for 1-D convolutions")
        init = torch_uniform(in_channels // groups * math.prod(k))
        self.kernel = nnx.Param((kernel_init or init)(rngs.params(), (*k, in_channels // groups, out_channels),
                                                      param_dtype))
        self.bias = (nnx.Param((bias_init or init)(rngs.params(), (out_channels,), param_dtype)) if bias
                     else nnx.data(None))
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = k, s, d
        self.padding, self.padding_mode, self.dtype = pad, padding_mode, dtype

    @property
    def in_features(self) -> int:  # Flax's name
        return self.in_channels

    @property
    def out_features(self) -> int:
        return self.out_channels

    def describe(self) -> str:
        """A one-line torch-style description used in error messages."""
        extra = "" if self.stride == (1,) * self.nd else f", stride={self.stride}"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}{extra})")

    def _pads(self, sizes) -> list[tuple[int, int]]:
        if self.padding == "same":
            return _same_pads(sizes, self.kernel_size, self.stride, self.dilation)
        if self.padding == "causal":
            return [(self.dilation[0] * (self.kernel_size[0] - 1), 0)]
        return list(self.padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, *spatial, in_channels) -> (N, *spatial', out_channels)."""
        x, added = _spatial(x, self.nd, self.in_channels, self.describe(), floating=True)
        pads = self._pads(x.shape[1:-1])
        for L, k, s, d, (lo, hi) in zip(x.shape[1:-1], self.kernel_size, self.stride, self.dilation, pads):
            _out_size(L, k, s, lo, hi, d, self.describe(), x.shape[1:-1])
        if self.padding_mode != "zeros" and any(p != (0, 0) for p in pads):
            x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=_PAD_MODES[self.padding_mode])
            pads = [(0, 0)] * self.nd
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        y = conv_tuning.conv(x, kernel, self.stride, pads, self.dilation, self.groups, _SPECS[self.nd])
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y[0] if added else y


class Conv1d(_ConvNd):
    """`torch.nn.Conv1d` on (N, L, C) sequences; padding also accepts 'causal' (left only).

    Args:
        in_channels, out_channels: channels of input and output.
        kernel_size, stride, dilation: ints (or 1-tuples).
        padding: int, (lo, hi) pair in a 1-tuple, 'same', 'valid' (0, torch's default) or 'causal'
            (dilation*(k-1) zeros on the left only, as WaveNet and Géron, ch. 13, WaveNet, use).
        groups: feature groups.
        bias: add a bias.
        padding_mode: 'zeros', 'reflect', 'replicate' or 'circular'.
        kernel_init, bias_init: override PyTorch's default U(+-1/sqrt(fan_in)).
        rngs: NNX random streams.
    """

    nd = 1


class Conv2d(_ConvNd):
    """`torch.nn.Conv2d` on NHWC images with PyTorch's padding default (none) and initialisation.

    Args:
        in_channels: C of the input.
        out_channels: channels of the output.
        kernel_size: int or (kh, kw).
        stride: int or pair.
        padding: int, pair, pair of (lo, hi) pairs, `'same'` or `'valid'` (PyTorch's default is 0,
            i.e. VALID; Flax's is SAME). 'same' with stride > 1 pads as TF/Keras do (output
            ceil(H/stride)); torch only allows 'same' at stride 1, where both agree.
        dilation: int or pair.
        groups: feature groups (in_channels and out_channels must be divisible by it);
            groups=in_channels is a depthwise convolution.
        bias: whether to add a bias.
        padding_mode: 'zeros', 'reflect', 'replicate' or 'circular'.
        kernel_init, bias_init: override PyTorch's default U(+-1/sqrt(fan_in)) (see `dlcore.nn.init`).
        rngs: NNX random streams for initialisation.

    Shapes: (N, H, W, in_channels) -> (N, H', W', out_channels) with
    H' = floor((H + 2p - d*(k-1) - 1)/s) + 1, as in PyTorch. The kernel is (kh, kw, in/groups, out).

    Raises:
        ValueError: wrong channel count, or an input too small for the kernel (names the layer).
    """

    nd = 2


class Conv3d(_ConvNd):
    """`torch.nn.Conv3d` on (N, D, H, W, C) volumes; arguments as `Conv2d`."""

    nd = 3


class CausalConv1d(Conv1d):
    """A 1-D convolution that sees only the past: `Conv1d(..., padding='causal')`.

    Output t depends on inputs t - dilation*(k-1) .. t, and the length is kept (Géron, ch. 13, WaveNet).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 bias: bool = True, *, rngs: nnx.Rngs, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, 1, "causal", dilation, bias=bias,
                         rngs=rngs, **kwargs)


class DepthwiseConv2d(Conv2d):
    """Depthwise convolution: one spatial filter per input channel (`Conv2d(groups=in_channels)`).

    Args:
        in_channels: C of the input.
        kernel_size, stride, padding, dilation, bias: as `Conv2d`.
        depth_multiplier: filters per input channel; out_channels = in_channels * depth_multiplier.
        rngs: NNX random streams.

    Shapes: (N, H, W, C) -> (N, H', W', C * depth_multiplier). Reference: Géron, ch. 12 (Xception).
    """

    def __init__(self, in_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, depth_multiplier: int = 1, *, rngs: nnx.Rngs, **kwargs):
        super().__init__(in_channels, in_channels * depth_multiplier, kernel_size, stride, padding,
                         dilation, groups=in_channels, bias=bias, rngs=rngs, **kwargs)


class SeparableConv2d(nnx.Module):
    """Depthwise separable convolution: a depthwise `kernel_size` conv, then a 1x1 pointwise conv.

    Args:
        in_channels, out_channels: channels of input and output.
        kernel_size, stride, padding, dilation: of the depthwise convolution.
        bias: biases on both convolutions (Keras and Xception use none; Géron's module has both).
        depth_multiplier: depthwise filters per input channel.
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H', W', out_channels). Parameters:
    in*m*kh*kw + in*m*out (+ biases), against in*out*kh*kw for a full convolution.
    Reference: Géron, ch. 12 ("Xception"), Chollet (2017). Submodules `depthwise`, `pointwise`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, depth_multiplier: int = 1, *, rngs: nnx.Rngs):
        self.depthwise = DepthwiseConv2d(in_channels, kernel_size, stride, padding, dilation, bias,
                                         depth_multiplier, rngs=rngs)
        self.pointwise = Conv2d(in_channels * depth_multiplier, out_channels, 1, bias=bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.pointwise(self.depthwise(x))


class _ConvTransposeNd(nnx.ConvTranspose):
    """Shared body of ConvTranspose1d/2d/3d: the gradient of a convolution with respect to its input.

    A `flax.nnx.ConvTranspose` for `isinstance`, with its own attributes and kernel layout
    (`nnx.ConvTranspose.__init__` is not called).
    """

    nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, *,
                 kernel_init=None, bias_init=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        nd = self.nd
        name = f"{type(self).__name__}({in_channels}, {out_channels}, kernel_size={kernel_size})"
        k = _ntuple(kernel_size, nd, "kernel_size", name)
        s = _ntuple(stride, nd, "stride", name)
        p = _ntuple(padding, nd, "padding", name)
        op = _ntuple(output_padding, nd, "output_padding", name)
        d = _ntuple(dilation, nd, "dilation", name)
        check_int(groups, "groups", low=1, who=name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        if any(o >= max(st, dl) for o, st, dl in zip(op, s, d)):
            raise ValueError(f"{name}: output_padding {op} must be smaller than stride or dilation")
        # torch computes the fan from weight.size(1) = out/groups
        init = torch_uniform(out_channels // groups * math.prod(k))
        kshape = (*k, in_channels, out_channels // groups)
        self.kernel = nnx.Param((kernel_init or init)(rngs.params(), kshape, param_dtype))
        self.bias = (nnx.Param((bias_init or init)(rngs.params(), (out_channels,), param_dtype))
                     if bias else nnx.data(None))
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = k, s, p
        self.output_padding, self.dilation = op, d

    def describe(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride})")

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, *spatial, in) -> (N, *spatial', out), L' = (L-1)*s - 2p + d*(k-1) + output_padding + 1."""
        x, added = _spatial(x, self.nd, self.in_channels, self.describe(), floating=True)
        nd, g = self.nd, self.groups
        k = self.kernel[...]                                       # (*k, in, out/g)
        k = jnp.flip(k, axis=tuple(range(nd)))
        cin, cout_g = k.shape[-2], k.shape[-1]
        k = k.reshape(*self.kernel_size, g, cin // g, cout_g)      # in = (group, in/g)
        k = jnp.moveaxis(k, nd, nd + 1).reshape(*self.kernel_size, cin // g, g * cout_g)  # (*k, in/g, out)
        pads, crops = [], []
        for L, kk, s, p, op, d in zip(x.shape[1:-1], self.kernel_size, self.stride, self.padding,
                                      self.output_padding, self.dilation):
            lo, hi = d * (kk - 1) - p, d * (kk - 1) - p + op
            if (L - 1) * s + lo + hi + 1 - d * (kk - 1) < 1:
                raise ValueError(f"{self.describe()}: padding {self.padding} leaves an empty output "
                                 f"for input of spatial size {tuple(x.shape[1:-1])}")
            pads.append((max(lo, 0), max(hi, 0)))
            crops.append((max(-lo, 0), max(-hi, 0)))
        y = lax.conv_general_dilated(x, k, (1,) * nd, pads, lhs_dilation=self.stride,
                                     rhs_dilation=self.dilation, dimension_numbers=_SPECS[nd],
                                     feature_group_count=g)
        if any(c != (0, 0) for c in crops):
            y = y[(slice(None),) + tuple(slice(lo, y.shape[i + 1] - hi) for i, (lo, hi) in enumerate(crops))]
        if self.bias is not None:
            y = y + self.bias[...]
        return y[0] if added else y


class ConvTranspose1d(_ConvTransposeNd):
    """`torch.nn.ConvTranspose1d` on (N, L, C); see `ConvTranspose2d`."""

    nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """`torch.nn.ConvTranspose2d` on NHWC images (the DCGAN generator's upsampling layer, Subramanian, ch. 7).

    Args:
        in_channels, out_channels: channels of input and output.
        kernel_size, stride, padding, dilation: ints or pairs, with torch's meaning: `padding` is
            that of the convolution this layer transposes, so it trims `padding` rows and columns
            from each side of the full output.
        output_padding: extra rows/columns on the bottom/right, to pick among the input sizes a
            strided convolution maps to the same output size.
        groups: feature groups.
        bias: add a bias.
        kernel_init, bias_init: override PyTorch's default U(+-1/sqrt(out/groups * kh*kw)).
        rngs: NNX random streams.

    Shapes: (N, H, W, in) -> (N, H', W', out), H' = (H-1)*s - 2p + d*(k-1) + output_padding + 1.
    The kernel is stored (kh, kw, in, out/groups): torch's weight (in, out/groups, kh, kw) with the
    spatial axes moved first.
    """

    nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """`torch.nn.ConvTranspose3d` on (N, D, H, W, C); see `ConvTranspose2d`."""

    nd = 3


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------


def _pool_geometry(x, nd, kernel_size, stride, padding, dilation, ceil_mode, layer):
    """Per-axis (kernel, stride, dilation, (lo, hi) explicit pads, torch pad p, out size)."""
    k = _ntuple(kernel_size, nd, "kernel_size", layer)
    s = k if stride is None else _ntuple(stride, nd, "stride", layer)
    d = _ntuple(dilation, nd, "dilation", layer)
    sizes = x.shape[1:-1]
    if isinstance(padding, str):
        mode = check_choice(padding.lower(), "padding (an int, a tuple or a str)", ("same", "valid"), who=layer)
        pads = _same_pads(sizes, k, s, d) if mode == "same" else [(0, 0)] * nd
        ceil_mode = False
    else:
        p = _ntuple(padding, nd, "padding", layer)
        if any(2 * pp > kk for pp, kk in zip(p, k)):
            raise ValueError(f"{layer}: padding {p} must be at most half the kernel size {k}")
        pads = [(pp, pp) for pp in p]
    outs, full = [], []
    for L, kk, ss, dd, (lo, hi) in zip(sizes, k, s, d, pads):
        eff = dd * (kk - 1) + 1
        if L + lo + hi < eff:
            raise ValueError(f"{layer}: input of spatial size {tuple(sizes)} is smaller than the "
                             f"pooling window {eff} (padding ({lo}, {hi})): the image is too small "
                             f"for the model's strides")
        num = L + lo + hi - eff
        out = (num + (ss - 1 if ceil_mode else 0)) // ss + 1
        if ceil_mode and (out - 1) * ss >= L + lo:  # the last window must start inside the input
            out -= 1
        extra = max((out - 1) * ss + eff - (L + lo + hi), 0)
        outs.append(out)
        full.append((lo, hi + extra))
    return k, s, d, pads, full, outs


def _window_views(xp, k, s, d, outs):
    """The prod(k) strided views of `xp` (N, *spatial, C), one per window offset in row-major order:
    view[o][n, *i, c] = xp[n, *(i * s + o * d), c]."""
    views = []
    for offs in np.ndindex(*k):
        start = (0, *(o * dd for o, dd in zip(offs, d)), 0)
        limit = (xp.shape[0], *(st + (n - 1) * ss + 1 for st, n, ss in zip(start[1:-1], outs, s)), xp.shape[-1])
        views.append(lax.slice(xp, start, limit, (1, *s, 1)))
    return views


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _max_windows(xp, k, s, d, outs):
    """Max pooling of `xp` (N, *spatial, C), already padded with -inf: the elementwise max of the window
    views. Its gradient goes to the first maximum of each window (row-major window order), as PyTorch's
    max pooling sends it. Both directions are strided slices, pads and selects, which XLA:CPU fuses:
    several times faster than `reduce_window` and its select-and-scatter gradient (on this project's
    2-core CPU: 0.3 ms vs 9 ms for a 2x2 pool of (32, 24, 24, 32) forward and backward)."""
    y = None
    for v in _views(xp, k, s, d, outs):
        y = v if y is None else jnp.maximum(y, v)
    return y


def _tiles(k, s, d) -> bool:
    """Whether the windows tile the input (stride = kernel, no dilation): then a reshape finds them."""
    return all(kk == ss for kk, ss in zip(k, s)) and all(dd == 1 for dd in d)


def _views(xp, k, s, d, outs):
    """The window views of `_window_views`; for tiling windows, of a reshape of the tiled part of `xp`."""
    if not _tiles(k, s, d):
        return _window_views(xp, k, s, d, outs)
    tiled = xp[(slice(None), *(slice(0, n * kk) for n, kk in zip(outs, k)))]
    blocks = tiled.reshape(xp.shape[0], *(a for n, kk in zip(outs, k) for a in (n, kk)), xp.shape[-1])
    return [blocks[(slice(None), *(a for o in offs for a in (slice(None), o)))] for offs in np.ndindex(*k)]


def _max_windows_fwd(xp, k, s, d, outs):
    y = _max_windows(xp, k, s, d, outs)
    return y, (xp, y)


def _max_windows_bwd(k, s, d, outs, res, dy):
    xp, y = res
    taken = jnp.zeros(y.shape, bool)
    zero = np.zeros((), dy.dtype)
    parts = {}
    for offs, v in zip(np.ndindex(*k), _views(xp, k, s, d, outs)):
        hit = (v == y) & ~taken
        taken = taken | hit
        parts[offs] = jnp.where(hit, dy, zero)
    if _tiles(k, s, d):  # interleave the parts back into the tiles: no pads, no adds
        nd = len(k)

        def build(prefix, a):
            if a == nd:
                return parts[prefix]
            return jnp.stack([build(prefix + (i,), a + 1) for i in range(k[a])], axis=2 + a)  # after o_a

        dx = build((), 0).reshape(xp.shape[0], *(n * kk for n, kk in zip(outs, k)), xp.shape[-1])
        rest = [(0, L - n * kk) for L, n, kk in zip(xp.shape[1:-1], outs, k)]
        return (jnp.pad(dx, [(0, 0), *rest, (0, 0)]) if any(r[1] for r in rest) else dx,)
    dx = jnp.zeros(xp.shape, dy.dtype)
    for offs, part in parts.items():
        cfg = [(0, 0, 0)]
        for L, o, dd, n, ss in zip(xp.shape[1:-1], offs, d, outs, s):
            cfg.append((o * dd, L - o * dd - (n - 1) * ss - 1, ss - 1))
        dx = dx + lax.pad(part, zero, cfg + [(0, 0, 0)])
    return (dx,)


_max_windows.defvjp(_max_windows_fwd, _max_windows_bwd)


def _pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode, kind, count_include_pad=True,
          divisor_override=None, name=None):
    layer = name or f"{kind}_pool{nd}d(kernel_size={kernel_size}, stride={stride})"
    x, added = _spatial(x, nd, None, layer)
    k, s, d, pads, full, outs = _pool_geometry(x, nd, kernel_size, stride, padding, dilation,
                                               ceil_mode, layer)
    window, strides = (1, *k, 1), (1, *s, 1)
    padcfg = [(0, 0), *full, (0, 0)]
    if kind == "max":
        init = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
        xp = jnp.pad(x, padcfg, constant_values=init) if any(p != (0, 0) for p in full) else x
        y = _max_windows(xp, k, s, d, tuple(outs))
    else:
        y = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, strides, padcfg)
        if divisor_override is not None:
            y = y / divisor_override
        else:
            # torch's divisor: the window clipped to the padded input (count_include_pad) or to the
            # input itself; explicit 'same' padding never counts (Keras).
            include = count_include_pad and not isinstance(padding, str)
            div = np.ones((), np.float32)
            for i, (L, kk, ss, (lo, hi), out) in enumerate(zip(x.shape[1:-1], k, s, pads, outs)):
                start = np.arange(out) * ss - lo
                end = np.minimum(start + kk, L + hi)
                if not include:
                    start, end = np.maximum(start, 0), np.minimum(end, L)
                cnt = (end - start).astype(np.float32)
                div = div[..., None] * cnt if i else cnt
            y = y / jnp.asarray(div.reshape(1, *outs, 1), y.dtype)
    return y[0] if added else y


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """`F.max_pool1d` on (N, L, C); padding also 'same'/'valid'."""
    return _pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode, "max")


def max_pool2d(x: jax.Array, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False) -> jax.Array:
    """`F.max_pool2d` on NHWC input; stride defaults to kernel_size; padded cells count as -inf.

    Args:
        x: (N, H, W, C).
        kernel_size, stride, dilation: ints or pairs.
        padding: int or pair (at most half the kernel, as torch requires), or 'same' / 'valid'.
        ceil_mode: round the output size up (GoogLeNet's pools use it).

    Returns:
        (N, H', W', C), H' = floor((H + 2p - d*(k-1) - 1)/s) + 1 (ceil with ceil_mode).
    """
    return _pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode, "max")


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """`F.max_pool3d` on (N, D, H, W, C)."""
    return _pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode, "max")


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """`F.avg_pool1d` on (N, L, C)."""
    return _pool(x, 1, kernel_size, stride, padding, 1, ceil_mode, "avg", count_include_pad)


def avg_pool2d(x: jax.Array, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> jax.Array:
    """`F.avg_pool2d` on NHWC input, with torch's divisor rules.

    Args:
        x: (N, H, W, C).
        kernel_size, stride: ints or pairs (stride defaults to kernel_size).
        padding: int or pair, or 'same' (Keras: padded cells never counted) / 'valid'.
        ceil_mode: round the output size up.
        count_include_pad: count zero padding in the divisor (torch's default True).
        divisor_override: divide every window by this instead.

    Returns:
        (N, H', W', C).
    """
    return _pool(x, 2, kernel_size, stride, padding, 1, ceil_mode, "avg", count_include_pad,
                 divisor_override)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """`F.avg_pool3d` on (N, D, H, W, C)."""
    return _pool(x, 3, kernel_size, stride, padding, 1, ceil_mode, "avg", count_include_pad)


def _adaptive_bounds(size: int, out: int):
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)  # floor(i*L/o), ceil((i+1)*L/o)


def _adaptive(x, output_size, kind, nd=2):
    layer = f"adaptive_{kind}_pool{nd}d(output_size={output_size})"
    x, added = _spatial(x, nd, None, layer)
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * nd
    output_size = tuple(L if o is None else int(o) for o, L in zip(output_size, x.shape[1:-1]))
    if len(output_size) != nd or min(output_size) < 1:
        raise ValueError(f"{layer}: output_size must be {nd} positive ints")
    for axis, (L, o) in enumerate(zip(x.shape[1:-1], output_size), start=1):
        if L == o:
            continue
        if L % o == 0:  # equal windows: a reshape and a reduction
            shape = x.shape[:axis] + (o, L // o) + x.shape[axis + 1:]
            r = x.reshape(shape)
            x = r.mean(axis + 1) if kind == "avg" else r.max(axis + 1)
            continue
        start, end = _adaptive_bounds(L, o)
        if kind == "avg":  # overlapping windows: one averaging matrix (o, L)
            m = np.zeros((o, L), np.float32)
            for j, (a, b) in enumerate(zip(start, end)):
                m[j, a:b] = 1.0 / (b - a)
            x = jnp.moveaxis(jnp.tensordot(jnp.asarray(m, x.dtype), x, axes=([1], [axis])), 0, axis)
        else:
            parts = [lax.slice_in_dim(x, int(a), int(b), axis=axis).max(axis, keepdims=True)
                     for a, b in zip(start, end)]
            x = jnp.concatenate(parts, axis=axis)
    return x[0] if added else x


def adaptive_avg_pool2d(x: jax.Array, output_size) -> jax.Array:
    """`F.adaptive_avg_pool2d`: (N, H, W, C) -> (N, oh, ow, C), window i = [floor(iH/oh), ceil((i+1)H/oh)).

    `output_size` is an int or a pair; None in a pair keeps that axis. A 1x1 output is global
    average pooling; an output larger than the input repeats cells, as torch does.
    """
    return _adaptive(x, output_size, "avg")


def adaptive_max_pool2d(x: jax.Array, output_size) -> jax.Array:
    """`F.adaptive_max_pool2d` (values only): (N, H, W, C) -> (N, oh, ow, C)."""
    return _adaptive(x, output_size, "max")


def adaptive_avg_pool1d(x, output_size):
    """`F.adaptive_avg_pool1d`: (N, L, C) -> (N, output_size, C)."""
    return _adaptive(x, output_size, "avg", 1)


def adaptive_max_pool1d(x, output_size):
    """`F.adaptive_max_pool1d` (values only): (N, L, C) -> (N, output_size, C)."""
    return _adaptive(x, output_size, "max", 1)


def global_avg_pool2d(x: jax.Array, keepdims: bool = False) -> jax.Array:
    """Mean over H and W: (N, H, W, C) -> (N, C) (or (N, 1, 1, C)); Keras's GlobalAveragePooling2D."""
    x, added = _spatial(x, 2, None, "global_avg_pool2d")
    y = x.mean(axis=(1, 2), keepdims=keepdims)
    return y[0] if added else y


def global_max_pool2d(x: jax.Array, keepdims: bool = False) -> jax.Array:
    """Max over H and W: (N, H, W, C) -> (N, C) (or (N, 1, 1, C))."""
    x, added = _spatial(x, 2, None, "global_max_pool2d")
    y = x.max(axis=(1, 2), keepdims=keepdims)
    return y[0] if added else y


def depth_max_pool(x: jax.Array, kernel_size: int, stride: int | None = None, padding: int = 0) -> jax.Array:
    """Max pooling along the channel (last) axis (Géron, ch. 12, "depthwise max pooling").

    Shapes: (N, ..., C) -> (N, ..., C') with C' = floor((C + 2p - k)/s) + 1; stride defaults to k.
    Learns invariances across feature maps (e.g. rotations of one pattern).
    """
    s = kernel_size if stride is None else stride
    C = x.shape[-1]
    if C + 2 * padding < kernel_size:
        raise ValueError(f"depth_max_pool(kernel_size={kernel_size}): input has only {C} channels")
    window = (1,) * (x.ndim - 1) + (kernel_size,)
    strides = (1,) * (x.ndim - 1) + (s,)
    pads = [(0, 0)] * (x.ndim - 1) + [(padding, padding)]
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, window, strides, pads)


def local_response_norm(x: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> jax.Array:
    """`F.local_response_norm` across channels (AlexNet's LRN, Géron, ch. 12).

    b_c = a_c / (k + alpha/size * sum_{c' near c} a_{c'}^2)^beta, the window being `size` channels
    centred on c (size//2 before, (size-1)//2 after, zero beyond the edges), as torch computes.

    Shapes: (N, ..., C) -> same.
    """
    check_int(size, "size", low=1, who="local_response_norm")
    sq = x * x
    window = (1,) * (x.ndim - 1) + (size,)
    pads = [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)]
    ssum = lax.reduce_window(sq, np.array(0, x.dtype), lax.add, window, (1,) * x.ndim, pads)
    return x / (k + alpha / size * ssum) ** beta


class _Pool(nnx.Module):
    """Stateless pooling module: torch-style arguments kept as static attributes."""

    nd, kind = 2, "max"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        self.kernel_size = _ntuple(kernel_size, self.nd, "kernel_size", type(self).__name__)
        self.stride = self.kernel_size if stride is None else _ntuple(stride, self.nd, "stride")
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, self.nd, "padding")
        self.dilation = _ntuple(dilation, self.nd, "dilation")
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def describe(self) -> str:
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding})")

    def __call__(self, x: jax.Array) -> jax.Array:
        return _pool(x, self.nd, self.kernel_size, self.stride, self.padding, self.dilation,
                     self.ceil_mode, self.kind, self.count_include_pad, self.divisor_override,
                     name=self.describe())


class MaxPool1d(_Pool):
    """`torch.nn.MaxPool1d` on (N, L, C); see `max_pool1d`."""

    nd, kind = 1, "max"


class MaxPool2d(_Pool):
    """`torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False)` on NHWC.

    Shapes: (N, H, W, C) -> (N, H', W', C); see `max_pool2d`. Raises ValueError naming the layer
    when the input is smaller than the window.
    """

    nd, kind = 2, "max"


class MaxPool3d(_Pool):
    """`torch.nn.MaxPool3d` on (N, D, H, W, C)."""

    nd, kind = 3, "max"


class AvgPool1d(_Pool):
    """`torch.nn.AvgPool1d` on (N, L, C)."""

    nd, kind = 1, "avg"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)


class AvgPool2d(_Pool):
    """`torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode, count_include_pad, divisor_override)`.

    Shapes: (N, H, W, C) -> (N, H', W', C); see `avg_pool2d`.
    """

    nd, kind = 2, "avg"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)


class AvgPool3d(_Pool):
    """`torch.nn.AvgPool3d` on (N, D, H, W, C)."""

    nd, kind = 3, "avg"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)


class AdaptiveAvgPool2d(nnx.Module):
    """`torch.nn.AdaptiveAvgPool2d(output_size)`: (N, H, W, C) -> (N, oh, ow, C)."""

    def __init__(self, output_size):
        self.output_size = output_size if isinstance(output_size, (int, type(None))) else tuple(output_size)

    def __call__(self, x):
        return adaptive_avg_pool2d(x, self.output_size)


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """`torch.nn.AdaptiveMaxPool2d(output_size)` (values only): (N, H, W, C) -> (N, oh, ow, C)."""

    def __call__(self, x):
        return adaptive_max_pool2d(x, self.output_size)


class GlobalAvgPool2d(nnx.Module):
    """Global average pooling, (N, H, W, C) -> (N, C) (`keepdims`: (N, 1, 1, C)); Géron, ch. 12."""

    def __init__(self, keepdims: bool = False):
        self.keepdims = keepdims

    def __call__(self, x):
        return global_avg_pool2d(x, self.keepdims)


class GlobalMaxPool2d(GlobalAvgPool2d):
    """Global max pooling, (N, H, W, C) -> (N, C)."""

    def __call__(self, x):
        return global_max_pool2d(x, self.keepdims)


class DepthMaxPool(nnx.Module):
    """Max pooling over channels (Géron, ch. 12, `DepthPool`); see `depth_max_pool`."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def __call__(self, x):
        return depth_max_pool(x, self.kernel_size, self.stride, self.padding)


class LocalResponseNorm(nnx.Module):
    """`torch.nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0)` over the channel axis."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def __call__(self, x):
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)


__all__ = [
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "CausalConv1d",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "DepthMaxPool", "DepthwiseConv2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "LocalResponseNorm",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "SeparableConv2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "depth_max_pool", "global_avg_pool2d", "global_max_pool2d", "local_response_norm",
    "max_pool1d", "max_pool2d", "max_pool3d",
]
