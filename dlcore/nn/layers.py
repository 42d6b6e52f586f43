"""Layers with PyTorch's constructor arguments, defaults and initialisation, in NHWC layout.

Flax NNX has Linear, Conv and Dropout; these subclasses only change what a PyTorch user would
trip on: argument names, VALID padding by default, PyTorch's default init, and channel dropout.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
from flax import nnx

from dlcore.checks import check_int
from dlcore.nn import activations
from dlcore.nn.conv import Conv2d, _pair, max_pool2d  # noqa: F401  (kept importable from here)
from dlcore.nn.init import torch_uniform


class Linear(nnx.Linear):
    """`torch.nn.Linear(in_features, out_features, bias)` with PyTorch's default initialisation.

    Args:
        in_features: size of the last input axis.
        out_features: size of the last output axis.
        bias: whether to add a bias.
        kernel_init, bias_init: override PyTorch's default U(+-1/sqrt(in_features)).
        rngs: NNX random streams for initialisation.

    Shapes: (..., in_features) -> (..., out_features). The kernel is stored (in, out), the
    transpose of torch's `weight`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, kernel_init=None,
                 bias_init=None, rngs: nnx.Rngs):
        in_features = check_int(in_features, "in_features", low=1, who="Linear")
        out_features = check_int(out_features, "out_features", low=1, who="Linear")
        init = torch_uniform(in_features)
        super().__init__(in_features, out_features, use_bias=bias, kernel_init=kernel_init or init,
                         bias_init=bias_init or init, rngs=rngs)

    def __call__(self, x, out_sharding=None):
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects inputs whose last "
                             f"axis is {self.in_features}, got shape {tuple(x.shape)}")
        if x.ndim > 2 and out_sharding is None:
            # (B, T, in) as one (B*T, in) matrix: XLA:CPU's dot over several leading axes is slower
            # (a (20, 30, 200) @ (200, 10000) layer's gradient: about 20% less time flattened)
            return super().__call__(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], self.out_features)
        return super().__call__(x, out_sharding)


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


def flatten(x: jax.Array, start_dim: int = 1) -> jax.Array:
    """`torch.flatten(x, start_dim)`: (N, d1, d2, ...) -> (N, d1*d2*...).

    Note the order: NHWC flattens as (H, W, C), torch's NCHW as (C, H, W).
    """
    return x.reshape(x.shape[:start_dim] + (-1,))


def activation(name: str | Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """The activation function called `name`: any of `dlcore.nn.activations.names()` (relu, tanh,
    leaky_relu, gelu, silu, identity, ...), any case; a callable is returned as is.

    Raises:
        ValueError: for an unknown name (`dlcore.registry.UnknownNameError`, naming the close matches).
    """
    return activations.get(name)


def _activation_name(fn: str | Callable) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", type(fn).__name__)


class MLP(nnx.Module):
    """A stack of `Linear` layers with an activation between them (none after the last).

    Args:
        sizes: layer widths including input and output, e.g. (784, 300, 100, 10).
        activation: the hidden activation: a name from `dlcore.nn.activations.names()` (e.g.
            "relu", "tanh", "leaky_relu") or a function of arrays. An unknown name fails here.
        rngs: NNX random streams.

    Shapes: (N, ...) -> (N, sizes[-1]); inputs are flattened from axis 1, as `nn.Flatten` does.
    """

    def __init__(self, sizes: Sequence[int], activation: str | Callable = "relu", *, rngs: nnx.Rngs):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {tuple(sizes)}")
        self.sizes = tuple(check_int(s, f"sizes[{i}]", low=1, who="MLP") for i, s in enumerate(sizes))
        self._act = globals()["activation"](activation)
        self.activation = _activation_name(activation)
        self.layers = nnx.List([Linear(a, b, rngs=rngs) for a, b in zip(self.sizes[:-1], self.sizes[1:])])

    def __call__(self, x):
        x = flatten(x)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self._act(x)
        return x


class Activation(nnx.Module):
    """A stateless module applying an activation (a `nn.ReLU()` in a `Sequential`).

    Args:
        name: a name from `dlcore.nn.activations.names()` (an unknown one fails here) or a function.
        **options: keyword options of the function, e.g. `Activation("leaky_relu", negative_slope=0.2)`.
    """

    def __init__(self, name: str | Callable = "relu", **options):
        self._fn = activations.get(name, **options)
        self.name = _activation_name(name)

    def __call__(self, x):
        return self._fn(x)


class Identity(nnx.Module):
    """`torch.nn.Identity`: returns its input."""

    def __call__(self, x):
        return x


class Flatten(nnx.Module):
    """`torch.nn.Flatten(start_dim=1)`: (N, d1, d2, ...) -> (N, d1*d2*...), NHWC order (see `flatten`)."""

    def __init__(self, start_dim: int = 1):
        self.start_dim = start_dim

    def __call__(self, x):
        return flatten(x, self.start_dim)


class Sequential(nnx.Module):
    """`torch.nn.Sequential` whose children are named like torch's: "0", "1", ... or given names.

    `Sequential(a, b, c)` names its children "0", "1", "2"; `Sequential({"conv": a, "bn": b})` keeps
    the given names (torch's OrderedDict form). Stateless children (activations, pooling) keep
    their index, so parameter paths match a torch state dict's keys (`features.3.weight`), which is
    what `dlcore.weights` relies on.

    Shapes: whatever the chain of children maps (N, ...) to.
    """

    def __init__(self, *layers, **named):
        if len(layers) == 1 and isinstance(layers[0], dict):
            named, layers = dict(layers[0]), ()
        if layers and named:
            raise ValueError("Sequential takes either positional layers or named layers, not both")
        items = list(named.items()) if named else [(str(i), m) for i, m in enumerate(layers)]
        self._order = tuple(n for n, _ in items)
        for n, m in items:
            setattr(self, n, m)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self):
        return (getattr(self, n) for n in self._order)

    def __getitem__(self, i):
        if isinstance(i, str):
            return getattr(self, i)
        return getattr(self, self._order[i])

    def names(self) -> tuple[str, ...]:
        """Children's names in call order."""
        return self._order

    def __call__(self, x):
        for n in self._order:
            x = getattr(self, n)(x)
        return x
