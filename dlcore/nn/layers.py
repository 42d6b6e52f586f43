"""Layers with PyTorch's constructor arguments, defaults and initialisation, in NHWC layout.

Flax NNX has Linear, Conv and Dropout; these subclasses only change what a PyTorch user would
trip on: argument names, VALID padding by default, PyTorch's default init, and channel dropout.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.nn.init import torch_uniform


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


class Linear(nnx.Linear):
    """`torch.nn.Linear(in_features, out_features, bias)` with PyTorch's default initialisation.

    Args:
        in_features: size of the last input axis.
        out_features: size of the last output axis.
        bias: whether to add a bias.
        rngs: NNX random streams for initialisation.

    Shapes: (..., in_features) -> (..., out_features). The kernel is stored (in, out), the
    transpose of torch's `weight`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rngs: nnx.Rngs):
        init = torch_uniform(in_features)
        super().__init__(in_features, out_features, use_bias=bias, kernel_init=init, bias_init=init,
                         rngs=rngs)


class Conv2d(nnx.Conv):
    """`torch.nn.Conv2d` on NHWC images with PyTorch's padding default (none) and initialisation.

    Args:
        in_channels: C of the input.
        out_channels: channels of the output.
        kernel_size: int or (kh, kw).
        stride: int or pair.
        padding: int, pair, `'same'` or `'valid'` (PyTorch's default is 0, i.e. VALID; Flax's is SAME).
        dilation: int or pair.
        groups: feature groups (in_channels and out_channels must be divisible by it).
        bias: whether to add a bias.
        rngs: NNX random streams for initialisation.

    Shapes: (N, H, W, in_channels) -> (N, H', W', out_channels) with
    H' = floor((H + 2p - d*(k-1) - 1)/s) + 1, as in PyTorch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, rngs: nnx.Rngs):
        kh, kw = _pair(kernel_size, "kernel_size")
        if isinstance(padding, str):
            if padding.lower() not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            pad = padding.upper()
        else:
            ph, pw = _pair(padding, "padding")
            pad = ((ph, ph), (pw, pw))
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        init = torch_uniform(in_channels // groups * kh * kw)
        super().__init__(in_channels, out_channels, (kh, kw), strides=_pair(stride, "stride"),
                         padding=pad, kernel_dilation=_pair(dilation, "dilation"),
                         feature_group_count=groups, use_bias=bias, kernel_init=init, bias_init=init,
                         rngs=rngs)


class Dropout2d(nnx.Dropout):
    """`torch.nn.Dropout2d`: zeroes whole channels of NHWC feature maps with probability `rate`.

    One Bernoulli draw per (example, channel), broadcast over H and W (a mask of shape
    (N, 1, 1, C)), and survivors scaled by 1/(1-rate). Off in eval mode.

    Args:
        rate: probability of dropping a channel.
        rngs: NNX random streams (the `dropout` stream, or `default`).
    """

    def __init__(self, rate: float, *, rngs: nnx.Rngs | None = None):
        super().__init__(rate, broadcast_dims=(1, 2), rngs=rngs)

    def __call__(self, x, **kwargs):
        if x.ndim != 4:
            raise ValueError(f"Dropout2d expects NHWC input of rank 4, got shape {x.shape}")
        return super().__call__(x, **kwargs)


def max_pool2d(x: jax.Array, kernel_size, stride=None) -> jax.Array:
    """`F.max_pool2d` on NHWC input with VALID padding; stride defaults to kernel_size.

    Shapes: (N, H, W, C) -> (N, floor((H-k)/s)+1, floor((W-k)/s)+1, C).
    """
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return nnx.max_pool(x, window_shape=k, strides=s, padding="VALID")


def flatten(x: jax.Array, start_dim: int = 1) -> jax.Array:
    """`torch.flatten(x, start_dim)`: (N, d1, d2, ...) -> (N, d1*d2*...).

    Note the order: NHWC flattens as (H, W, C), torch's NCHW as (C, H, W).
    """
    return x.reshape(x.shape[:start_dim] + (-1,))


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "identity": lambda x: x,
}


def activation(name: str):
    """The activation function called `name` (relu, tanh, sigmoid, gelu, silu, identity)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}") from None


class MLP(nnx.Module):
    """A stack of `Linear` layers with an activation between them (none after the last).

    Args:
        sizes: layer widths including input and output, e.g. (784, 300, 100, 10).
        activation: name of the hidden activation (see `activation`).
        rngs: NNX random streams.

    Shapes: (N, ...) -> (N, sizes[-1]); inputs are flattened from axis 1, as `nn.Flatten` does.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", *, rngs: nnx.Rngs):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {tuple(sizes)}")
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self._act = globals()["activation"](activation)
        self.layers = nnx.List([Linear(a, b, rngs=rngs) for a, b in zip(self.sizes[:-1], self.sizes[1:])])

    def __call__(self, x):
        x = flatten(x)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self._act(x)
        return x
