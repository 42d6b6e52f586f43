"""Weight initialisers with PyTorch's names and formulas, for Flax kernels.

Every function returns an initializer `(key, shape, dtype=float32) -> array`, usable as a Flax
`kernel_init` / `bias_init` or called directly. Shapes follow Flax's layouts: a Linear kernel is
(in, out) and a convolution kernel is (*kernel_size, in/groups, out), so

    fan_in  = in/groups  * prod(kernel_size)      (torch: weight.size(1) * receptive field)
    fan_out = out        * prod(kernel_size)      (torch: weight.size(0) * receptive field)

which are exactly the fans PyTorch computes on its (out, in/groups, *kernel_size) weights.

PyTorch initialises `nn.Linear` and `nn.Conv*` weights with `kaiming_uniform_(a=sqrt(5))`, which
is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and their biases with the same bound. Flax defaults to
LeCun normal and zero biases, so a reproduction of a book's run that should start from the same
distribution needs `torch_uniform` (BOOKS.md, porting notes). Hands-On ML (003, ch. 11 "Glorot and
He Initialization", Table 11-1) gives the Glorot / He / LeCun rules; DCGAN (Radford et al. 2016;
Subramanian, ch. 7) draws weights from N(0, 0.02).

Unlike Keras, the normal variants here are plain (untruncated) normals, as `torch.nn.init` draws.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from dlcore.checks import check_choice, check_float


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw_flat(key, n: int, dtype, dist: str, a, b):
    """a + b * U(0, 1) or a + b * N(0, 1), n of them (one compilation per size bucket)."""
    if dist == "uniform":
        return a + b * jax.random.uniform(key, (n,), dtype)
    return a + b * jax.random.normal(key, (n,), dtype)


_CHUNK = 1 << 16  # values per call of `_draw_chunk`: one compilation serves every size


@functools.partial(jax.jit, static_argnums=(2, 3))
def _draw_chunk(words, offset, n: int, dist: str, a, b):
    """Values `offset` .. `offset + n - 1` of `a + b * jax.random.uniform(key, (size,))` (or `normal`) for any
    size beyond them, float32, where `words` is the threefry key's data. With JAX's partitionable threefry (its
    default), value i is a function of the key and the counter i alone: the two hashes of the 64-bit counter
    (0, i) xor-ed into 32 random bits, whose top 23 become the mantissa of a float in [1, 2), minus 1; a normal
    value is sqrt(2) * erfinv of a uniform one in (-1, 1). This is `jax.random`'s arithmetic, step for step, so
    the uniform values are bit for bit its own, and erfinv(u) is too (tests/test_nn_init.py checks both); for a
    normal draw `b` already holds the factor sqrt(2)."""
    count = offset + jax.lax.iota(jnp.uint32, n)
    hashed = threefry_2x32(words, jnp.concatenate([jnp.zeros(n, jnp.uint32), count]))
    bits = hashed[:n] ^ hashed[n:]
    one = jnp.asarray(np.array(1.0, np.float32).view(np.uint32))
    floats = jax.lax.bitcast_convert_type(jax.lax.shift_right_logical(bits, jnp.uint32(9)) | one, jnp.float32)
    floats = floats - jnp.float32(1.0)
    if dist == "uniform":
        return a + b * floats  # jax.random.uniform's floats * (1 - 0) + 0, max(0, .): the same floats
    lo, hi = np.nextafter(np.float32(-1.0), np.float32(0.0)), np.float32(1.0)
    u = jax.lax.max(jnp.float32(lo), floats * (jnp.float32(hi) - jnp.float32(lo)) + jnp.float32(lo))
    return a + b * jax.lax.erf_inv(u)  # b: the scale times sqrt(2), multiplied by `_draw`


def _threefry_words(key, dtype):
    """The key's two uint32 words where `_draw_chunk` gives `jax.random`'s own values (float32, JAX's threefry
    with partitionable counters, its default), else None."""
    if jnp.dtype(dtype) != jnp.float32 or not getattr(jax.config, "jax_threefry_partitionable", True):
        return None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key) if key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32" \
            else None
    if key.shape != (2,) or key.dtype != jnp.uint32 or getattr(jax.config, "jax_default_prng_impl",
                                                                "threefry2x32") != "threefry2x32":
        return None
    return key


def _draw(key, shape, dtype, dist: str, a: float, b: float) -> jax.Array:
    """`a + b * sample` of `shape`: `jax.random.uniform(key, (size,))` (or `normal`), reshaped.

    Eager initialisation would compile one XLA program per distinct shape of a `jax.random` call: about a third
    of a second each on a CPU, mostly the threefry hash, so seconds for a ResNet. Since value i of a float32 draw
    depends on the key and i alone, eagerly the values are drawn in chunks of 65,536 by one compiled program
    (`_draw_chunk`) and joined and cut on the host: one compilation in all. Other dtypes and PRNGs draw a flat
    vector whose length is rounded up to a power of two (a draw of n values begins with those of any smaller
    draw), one compilation per size bucket. The values depend on (key, shape) alone, eagerly or under
    `jit`/`eval_shape` alike (to the bit for float32 threefry draws; in the buckets a normal draw under `jit`
    can differ in its last bit, where XLA folds the scale into `jax.random.normal`'s own constant).
    """
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    words = _threefry_words(key, dtype) if size < 2 ** 32 - _CHUNK else None
    if words is not None:
        # a normal value is b * (sqrt(2) * erfinv(u)) in jax.random; here (b * sqrt(2)) * erfinv(u), one float32
        # product with the constant made first, because under jit XLA folds the two constants into one, and the
        # eager draw must give the traced one's values (it may differ from b * jax.random.normal in the last bit)
        a, b = np.float32(a), np.float32(b) * (np.float32(np.sqrt(2)) if dist == "normal" else np.float32(1))
        first = _draw_chunk(words, np.uint32(0), _CHUNK, dist, a, b)
        if isinstance(first, jax.core.Tracer):  # under jit or eval_shape: the whole draw in the trace
            return _draw_chunk(words, np.uint32(0), max(size, 1), dist, a, b)[:size].reshape(shape)
        parts = [np.asarray(first)] + [np.asarray(_draw_chunk(words, np.uint32(start), _CHUNK, dist, a, b))
                                       for start in range(_CHUNK, size, _CHUNK)]
        flat = np.concatenate(parts)[:size]
    else:
        n = max(256, 1 << max(size - 1, 0).bit_length())
        flat = _draw_flat(key, n, jnp.dtype(dtype), dist, jnp.asarray(a, dtype), jnp.asarray(b, dtype))
        if isinstance(flat, jax.core.Tracer):
            return flat[:size].reshape(shape)
        flat = np.asarray(flat)[:size]
    # eagerly, cut on the host and put the result on the device: no compilation per shape (`jnp.asarray` of a
    # NumPy array compiles a copy program for each new shape)
    return jax.device_put(flat.reshape(shape))


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Flax kernel: (in, out) or (*kernel_size, in/groups, out)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan-in and fan-out need a kernel of rank >= 2, got shape {shape}")
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """`torch.nn.init.calculate_gain`: the recommended gain for a nonlinearity.

    Args:
        nonlinearity: 'linear', 'conv1d/2d/3d', 'conv_transpose1d/2d/3d', 'sigmoid', 'tanh', 'relu',
            'leaky_relu' or 'selu'.
        param: negative slope of 'leaky_relu' (default 0.01).

    Returns:
        1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for ReLU, sqrt(2/(1+slope^2)) for leaky
        ReLU (the "leaky gain"), 3/4 for SELU.
    """
    name = nonlinearity.lower()
    if name in ("linear", "identity", "sigmoid") or name.startswith(("conv", "conv_transpose")):
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if name == "selu":
        return 3.0 / 4.0
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def _fan(shape, mode: str) -> int:
    check_choice(mode, "mode", ("fan_in", "fan_out", "fan_avg"))
    fan_in, fan_out = _fans(shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    return (fan_in + fan_out) / 2


def _scaled(std_fn, distribution: str):
    """An initializer drawing from U(-sqrt(3)*std, sqrt(3)*std) or N(0, std^2), std = std_fn(shape)."""
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"distribution must be 'uniform' or 'normal', got {distribution!r}")

    def init(key, shape, dtype=jnp.float32):
        std = std_fn(tuple(shape))
        if distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return _draw(key, shape, dtype, "uniform", -bound, 2 * bound)
        return _draw(key, shape, dtype, "normal", 0.0, std)

    return init


def glorot_uniform(gain: float = 1.0):
    """`xavier_uniform_`: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    return _scaled(lambda s: gain * math.sqrt(2.0 / sum(_fans(s))), "uniform")


def glorot_normal(gain: float = 1.0):
    """`xavier_normal_`: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    return _scaled(lambda s: gain * math.sqrt(2.0 / sum(_fans(s))), "normal")


def he_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu"):
    """`kaiming_uniform_`: U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    Args:
        a: negative slope of a leaky ReLU (used when nonlinearity='leaky_relu').
        mode: 'fan_in' (preserves forward variance) or 'fan_out' (backward).
        nonlinearity: see `calculate_gain`.
    """
    gain = calculate_gain(nonlinearity, a)
    return _scaled(lambda s: gain / math.sqrt(_fan(s, mode)), "uniform")


def he_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu"):
    """`kaiming_normal_`: N(0, std^2), std = gain / sqrt(fan) (He et al. 2015)."""
    gain = calculate_gain(nonlinearity, a)
    return _scaled(lambda s: gain / math.sqrt(_fan(s, mode)), "normal")


def lecun_uniform():
    """LeCun uniform: U(-b, b), b = sqrt(3 / fan_in) (for SELU networks, Géron, ch. 11)."""
    return _scaled(lambda s: 1.0 / math.sqrt(_fans(s)[0]), "uniform")


def lecun_normal():
    """LeCun normal: N(0, 1/fan_in), torch's `kaiming_normal_(w, nonlinearity='linear')`."""
    return _scaled(lambda s: 1.0 / math.sqrt(_fans(s)[0]), "normal")


def orthogonal(gain: float = 1.0):
    """`orthogonal_` (Saxe et al. 2014): a (semi-)orthogonal matrix scaled by `gain`.

    The kernel is viewed as (prod(shape[:-1]), out); torch's weight is its transpose, so torch's
    W @ W.T = I (rows orthonormal when out <= fan_in) holds here as K.T @ K = I.
    """
    return jax.nn.initializers.orthogonal(scale=gain, column_axis=-1)


def normal(std: float = 0.02, mean: float = 0.0):
    """`normal_(mean, std)`; the default N(0, 0.02) is DCGAN's init for conv weights (Subramanian, ch. 7)."""

    def init(key, shape, dtype=jnp.float32):
        return _draw(key, shape, dtype, "normal", mean, std)

    return init


def uniform(a: float = 0.0, b: float = 1.0):
    """`uniform_(a, b)`: U(a, b)."""

    def init(key, shape, dtype=jnp.float32):
        return _draw(key, shape, dtype, "uniform", a, b - a)

    return init


def constant(value: float):
    """`constant_(value)`: every entry equal to `value`."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


def zeros():
    """`zeros_`."""
    return constant(0.0)


def ones():
    """`ones_`."""
    return constant(1.0)


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases.

    Args:
        fan_in: number of inputs of one output unit (in_features, or in_channels/groups * prod(kernel)).

    Returns:
        An initializer `(key, shape, dtype) -> array` usable as a Flax `kernel_init` or `bias_init`.
    """
    check_float(fan_in, "fan_in", low=0, low_open=True, who="torch_uniform")
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return _draw(key, shape, dtype, "uniform", -bound, 2 * bound)

    return init


def torch_default():
    """PyTorch's default weight init, `kaiming_uniform_(a=sqrt(5))`, with the fan read off the shape.

    Equal to `torch_uniform(fan_in)`; use it where the shape is only known at init time.
    """
    return _scaled(lambda s: 1.0 / math.sqrt(3.0 * _fans(s)[0]), "uniform")


# PyTorch's spellings
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


class InitKeys:
    """Initialisation keys for a whole model at the cost of one draw from `rngs.params()`.

    Each `nnx.Rngs` draw updates a counter Variable; under `nnx.eval_shape` (parameter counts,
    `dlcore list`) every update costs time proportional to the trace so far, which makes abstract
    construction of a net with hundreds of layers quadratic. `InitKeys(rngs)` draws one key and
    hands out `fold_in(key, i)`, i = 0, 1, ... from `params()`; any other stream (`.dropout`,
    `.default`) is the wrapped `Rngs`' own, so pass `rngs.dropout` to dropout layers.

    Layers that only need `rngs.params()` at construction (Linear, Conv, BatchNorm) accept it in
    place of an `nnx.Rngs`. Same seed, same weights.
    """

    def __init__(self, rngs):
        self.rngs = rngs.rngs if isinstance(rngs, InitKeys) else rngs
        self._key = self.rngs.params()
        self._count = 0

    def params(self) -> jax.Array:
        """The next initialisation key."""
        self._count += 1
        return jax.random.fold_in(self._key, self._count - 1)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("rngs", "_key", "_count"):
            raise AttributeError(name)
        return getattr(self.rngs, name)
