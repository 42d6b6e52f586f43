"""Weight initialisers, starting with PyTorch's defaults.

PyTorch initialises `nn.Linear` and `nn.Conv*` weights with
`kaiming_uniform_(a=sqrt(5))`, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and their biases
with the same bound. Flax defaults to LeCun normal and zero biases, so a reproduction of a book's
run that should start from the same distribution needs these (BOOKS.md, porting notes).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases.

    Args:
        fan_in: number of inputs of one output unit (in_features, or in_channels/groups * prod(kernel)).

    Returns:
        An initializer `(key, shape, dtype) -> array` usable as a Flax `kernel_init` or `bias_init`.
    """
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
