"""The MNIST-1D baselines (Greydanus and Kobak, 2024): logistic regression, MLP, CNN and GRU, registered by name.

The four models whose test accuracies the paper sets side by side (Greydanus and Kobak, Scaling Down
Deep Learning with MNIST-1D, ICML 2024: logistic regression ~32%, MLP ~68%, CNN ~94%, GRU
~91%), with the paper's sizes. Each takes a batch of signals (N, L), L = 40 by default, and returns
logits (N, 10). The submodules carry the names of the paper's PyTorch models (`linear`, `linear1`..,
`conv1`.., `gru`), so their state dicts load with `dlcore.weights.load_state_dict`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_int
from dlcore.models.registry import register
from dlcore.nn.conv import Conv1d
from dlcore.nn.layers import Linear
from dlcore.nn.recurrent import GRU

__all__ = ["MNIST1DCNN", "MNIST1DGRU", "MNIST1DLogistic", "MNIST1DMLP"]


def _check_signals(x, length: int, model: str) -> jax.Array:
    """x must be a batch of 1-D signals (N, length); a clear error before any computation otherwise."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2 or shape[1] != length:
        raise ValueError(f"{model} expects a batch of signals (N, {length}), got shape {shape}; "
                         f"MNIST-1D's x is (N, 40) (dlcore.data.load('mnist1d'))")
    return jnp.asarray(x)


@register("mnist1d_logistic")
class MNIST1DLogistic(nnx.Module):
    """Logistic regression on MNIST-1D: one Linear layer (Greydanus and Kobak, 2024: ~32%).

    Linear(length, num_classes); trained with cross-entropy it is multinomial logistic regression.
    410 parameters at the defaults.

    Args:
        length: points per signal (40).
        num_classes: outputs (10).
        rngs: NNX random streams.

    Shapes: (N, length) -> (N, num_classes) logits. Submodule: linear.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.length = check_int(length, "length", low=1, who="mnist1d_logistic")
        self.linear = Linear(self.length, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.linear(_check_signals(x, self.length, "mnist1d_logistic"))


@register("mnist1d_mlp")
class MNIST1DMLP(nnx.Module):
    """The MNIST-1D MLP: two hidden ReLU layers, the second residual (Greydanus and Kobak, 2024: ~68%).

    h1 = relu(linear1(x)); h2 = h1 + relu(linear2(h1)); logits = linear3(h2), with `hidden` = 100
    units. 15,210 parameters at the defaults.

    Args:
        length: points per signal (40).
        num_classes: outputs (10).
        hidden: width of the two hidden layers (100).
        rngs: NNX random streams.

    Shapes: (N, length) -> (N, hidden) -> (N, hidden) -> (N, num_classes) logits.
    Submodules: linear1, linear2, linear3.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, hidden: int = 100, *, rngs: nnx.Rngs):
        self.length = check_int(length, "length", low=1, who="mnist1d_mlp")
        self.linear1 = Linear(self.length, hidden, rngs=rngs)
        self.linear2 = Linear(hidden, hidden, rngs=rngs)
        self.linear3 = Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.linear1(_check_signals(x, self.length, "mnist1d_mlp")))  # (N, hidden)
        h = h + jax.nn.relu(self.linear2(h))                                         # residual
        return self.linear3(h)


def _conv_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@register("mnist1d_cnn")
class MNIST1DCNN(nnx.Module):
    """The MNIST-1D CNN: three strided 1-D convolutions and a linear read-out (Greydanus and Kobak, 2024:
    ~94%).

    conv1 (1 -> 25, k5, stride 2, pad 1) -> ReLU -> conv2 (25 -> 25, k3, s2, p1) -> ReLU -> conv3
    (25 -> 25, k3, s2, p1) -> ReLU -> flatten -> Linear(5 * 25 = 125, 10). Lengths 40 -> 19 -> 10 -> 5.
    No pooling: the strides downsample; the shared kernels give the translation prior the MLP lacks.
    5,210 parameters at the defaults.

    Args:
        length: points per signal (40); sets the read-out's fan-in.
        num_classes: outputs (10).
        channels: feature maps of each convolution (25).
        rngs: NNX random streams.

    Shapes: (N, length) -> (N, length, 1) (channels last) -> (N, 19, 25) -> (N, 10, 25) -> (N, 5, 25)
    -> (N, 125) -> (N, num_classes) logits. Submodules: conv1, conv2, conv3, linear.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, channels: int = 25, *, rngs: nnx.Rngs):
        self.length = check_int(length, "length", low=5, who="mnist1d_cnn")
        self.conv1 = Conv1d(1, channels, 5, stride=2, padding=1, rngs=rngs)
        self.conv2 = Conv1d(channels, channels, 3, stride=2, padding=1, rngs=rngs)
        self.conv3 = Conv1d(channels, channels, 3, stride=2, padding=1, rngs=rngs)
        out = _conv_len(_conv_len(_conv_len(self.length, 5, 2, 1), 3, 2, 1), 3, 2, 1)  # 5 at length 40
        self.linear = Linear(out * channels, num_classes, rngs=rngs)
        # dlcore.weights: torch flattens (C, L); dlcore's map is (L, C). Declared as (C, H, W) = (C, L, 1).
        self.torch_flatten = (("linear", (channels, out, 1)),)

    def __call__(self, x):
        h = _check_signals(x, self.length, "mnist1d_cnn")[..., None]    # (N, L, 1)
        h = jax.nn.relu(self.conv1(h))                                   # (N, 19, C)
        h = jax.nn.relu(self.conv2(h))                                   # (N, 10, C)
        h = jax.nn.relu(self.conv3(h))                                   # (N, 5, C)
        return self.linear(h.reshape(h.shape[0], -1))                    # (N, 5 * C) -> (N, classes)


@register("mnist1d_gru")
class MNIST1DGRU(nnx.Module):
    """The MNIST-1D GRU: a small bidirectional GRU read out at every step (Greydanus and Kobak, 2024:
    ~91%).

    Each signal is a sequence of `length` scalars; a bidirectional GRU (hidden 6 each way, torch's
    gates and initialisation, a `lax.scan` over time) turns it into (N, length, 12); all its outputs,
    flattened, feed Linear(length * 12 = 480, 10). 5,134 parameters at the defaults.

    Args:
        length: time steps (40); sets the read-out's fan-in.
        num_classes: outputs (10).
        hidden_size: GRU state per direction (6).
        bidirectional: run a backward direction too (True, as the paper).
        rngs: NNX random streams.

    Shapes: (N, length) -> (N, length, 1) -> (N, length, D * hidden_size) -> (N, length * D * hidden_size)
    -> (N, num_classes) logits, D = 2 when bidirectional. Submodules: gru, linear.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, hidden_size: int = 6, bidirectional: bool = True,
                 *, rngs: nnx.Rngs):
        self.length = check_int(length, "length", low=1, who="mnist1d_gru")
        self.gru = GRU(1, hidden_size, bidirectional=bidirectional, rngs=rngs)
        d = 2 if bidirectional else 1
        self.linear = Linear(self.length * d * hidden_size, num_classes, rngs=rngs)

    def __call__(self, x):
        h = _check_signals(x, self.length, "mnist1d_gru")[..., None]    # (N, T, 1): batch first
        out, _ = self.gru(h)                                             # (N, T, D * H)
        return self.linear(out.reshape(out.shape[0], -1))                # (N, T * D * H) -> (N, classes)
