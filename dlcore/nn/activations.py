"""Activation functions and modules with PyTorch's names, arguments and defaults.

Every activation the books use, as a pure function of arrays and as an NNX
module named like its ``torch.nn`` class. The modules with state are the ones PyTorch has:
``PReLU`` (learnable slopes), ``Swish`` (learnable beta), ``RReLU`` (random slopes in training, their
mean in eval; it follows ``model.train()`` / ``model.eval()`` through its ``deterministic`` flag, as
``nnx.Dropout`` does).

Layout: channel axis last (dlcore is NHWC), so ``PReLU(num_parameters=C)`` and ``GLU(dim=-1)`` act on
the last axis where PyTorch's act on axis 1.

References:
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Training Deep Neural Networks, section
    "Better Activation Functions" (with "Leaky ReLU", "ELU and SELU" and "GELU, Swish, SwiGLU, Mish, and
    ReLU²"); the ``torch.nn`` documentation for the exact definitions.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int
from dlcore.registry import Registry

__all__ = [
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU",
    "LogSigmoid", "LogSoftmax", "Mish", "PReLU", "RReLU", "ReLU", "ReLU6", "ReLUSquared", "SELU",
    "SiLU", "Sigmoid", "Softmax", "Softplus", "Softsign", "SwiGLU", "Swish", "Tanh", "celu", "elu",
    "gelu", "get", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "identity",
    "leaky_relu", "log_sigmoid", "log_softmax", "mish", "names", "prelu", "relu", "relu6",
    "relu_squared", "rrelu", "selu", "sigmoid", "silu", "softmax", "softplus", "softsign", "swiglu",
    "swish", "tanh",
]

# SELU's constants (Klambauer et al., 2017), as torch.nn.SELU has them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_GELU_APPROXIMATIONS = ("none", "tanh", "sigmoid")


# --------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------


def sigmoid(x: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def relu(x: jax.Array) -> jax.Array:
    """``max(0, x)``."""
    return jax.nn.relu(x)


def relu6(x: jax.Array) -> jax.Array:
    """``min(max(0, x), 6)``."""
    return jnp.clip(x, 0.0, 6.0)


def relu_squared(x: jax.Array) -> jax.Array:
    """ReLU²: ``max(0, x) ** 2``.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish, SwiGLU, Mish, and
    ReLU²; So et al., "Primer" (2021).
    """
    return jnp.square(jax.nn.relu(x))


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``max(negative_slope * x, x)`` for slopes below 1; PyTorch's default slope is 0.01.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Better Activation Functions, Leaky
    ReLU.
    """
    return jnp.where(x >= 0, x, negative_slope * x)


def prelu(x: jax.Array, weight: jax.Array) -> jax.Array:
    """Leaky ReLU with slopes ``weight``: a scalar, or one per channel of the last axis."""
    return jnp.where(x >= 0, x, weight * x)


def rrelu(x: jax.Array, lower: float = 1.0 / 8, upper: float = 1.0 / 3, *, training: bool = False,
          key: jax.Array | None = None) -> jax.Array:
    """Randomized leaky ReLU: slopes drawn from ``U(lower, upper)`` per element in training, their mean
    ``(lower + upper) / 2`` in eval (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Better
    Activation Functions, Leaky ReLU; Xu et al., 2015).

    Args:
        x: Input.
        lower, upper: Range of the random negative slopes.
        training: Draw random slopes (needs ``key``); otherwise use the mean slope.
        key: PRNG key for the slopes.
    """
    if not training:
        return leaky_relu(x, (lower + upper) / 2)
    if key is None:
        raise ValueError("rrelu: training=True needs a PRNG key.")
    slope = jax.random.uniform(key, x.shape, x.dtype, lower, upper)
    return jnp.where(x >= 0, x, slope * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, ELU and SELU, Equation 11-2.
    """
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def celu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0) / alpha))


def selu(x: jax.Array) -> jax.Array:
    """Scaled ELU, ``scale * elu(x, alpha)`` with alpha ≈ 1.6733, scale ≈ 1.0507 (self-normalising;
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, ELU and SELU). Pair it with LeCun-normal init,
    standardised inputs and ``AlphaDropout``."""
    return SELU_SCALE * elu(x, SELU_ALPHA)


def gelu(x: jax.Array, approximate: str = "none") -> jax.Array:
    """GELU, ``x * Phi(x)`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish, SwiGLU,
    Mish, and ReLU², Equation 11-3).

    Args:
        x: Input.
        approximate: ``"none"`` (exact, with erf; PyTorch's default), ``"tanh"`` (PyTorch's
            ``approximate="tanh"``), or ``"sigmoid"`` (``x * sigmoid(1.702 x)``, the book's fast
            approximation in the same section).
    """
    check_choice(approximate, "approximate", _GELU_APPROXIMATIONS, who="gelu")
    if approximate == "sigmoid":
        return x * jax.nn.sigmoid(1.702 * x)
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def silu(x: jax.Array) -> jax.Array:
    """SiLU (Swish with beta 1): ``x * sigmoid(x)``."""
    return jax.nn.silu(x)


def swish(x: jax.Array, beta: float | jax.Array = 1.0) -> jax.Array:
    """Generalised Swish: ``x * sigmoid(beta * x)``.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish, SwiGLU, Mish, and
    ReLU²; Ramachandran et al. (2017).
    """
    return x * jax.nn.sigmoid(beta * x)


def softplus(x: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold`` (PyTorch's rule)."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)


def mish(x: jax.Array) -> jax.Array:
    """Mish: ``x * tanh(softplus(x))``.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish, SwiGLU, Mish, and
    ReLU²; Misra (2019).
    """
    return x * jnp.tanh(softplus(x))


def softsign(x: jax.Array) -> jax.Array:
    """``x / (1 + |x|)``."""
    return x / (1 + jnp.abs(x))


def log_sigmoid(x: jax.Array) -> jax.Array:
    """``log(sigmoid(x))``, computed stably."""
    return jax.nn.log_sigmoid(x)


def hardtanh(x: jax.Array, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """``clip(x, min_val, max_val)``."""
    check_float(min_val, "min_val", high=max_val, high_open=True, finite=False, who="hardtanh")
    return jnp.clip(x, min_val, max_val)


def hardsigmoid(x: jax.Array) -> jax.Array:
    """PyTorch's piecewise-linear sigmoid: ``relu6(x + 3) / 6``."""
    return relu6(x + 3.0) / 6.0


def hardswish(x: jax.Array) -> jax.Array:
    """``x * relu6(x + 3) / 6`` (MobileNetV3; Howard et al., 2019).

    The book's choice when runtime latency matters: Géron, Hands-On Machine Learning, PyTorch ed.,
    ch. 11, Practical Guidelines.
    """
    return x * hardsigmoid(x)


def hardshrink(x: jax.Array, lambd: float = 0.5) -> jax.Array:
    """``x`` where ``|x| > lambd``, 0 elsewhere."""
    return jnp.where(jnp.abs(x) > lambd, x, 0.0)


def softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """Softmax over ``dim`` (the class axis, last by default)."""
    return jax.nn.softmax(x, axis=dim)


def log_softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """Log-softmax over ``dim``, computed stably."""
    return jax.nn.log_softmax(x, axis=dim)


def _halves(x: jax.Array, dim: int, fn: str) -> tuple[jax.Array, jax.Array]:
    if x.shape[dim] % 2:
        raise ValueError(f"{fn}: the size of axis {dim} must be even to split it in halves, got shape {x.shape}.")
    return jnp.split(x, 2, axis=dim)


def glu(x: jax.Array, dim: int = -1) -> jax.Array:
    """Gated linear unit: ``a * sigmoid(b)`` with ``a, b`` the halves of ``x`` along ``dim``
    (Dauphin et al., 2016). Shapes: ``(..., 2H) -> (..., H)``."""
    a, b = _halves(x, dim, "glu")
    return a * jax.nn.sigmoid(b)


def swiglu(x: jax.Array, beta: float | jax.Array = 1.0, dim: int = -1) -> jax.Array:
    """SwiGLU: ``swish(z1, beta) * z2`` with ``z1, z2`` the halves of ``x`` along ``dim``.

    Precede it with a linear layer of twice the width. Shapes: ``(..., 2H) -> (..., H)``.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish, SwiGLU, Mish, and
    ReLU²; Shazeer (2020).
    """
    a, b = _halves(x, dim, "swiglu")
    return swish(a, beta) * b


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class _Fn(nnx.Module):
    """An activation without parameters: calls ``_fn(x, **options)``."""

    _fn: Callable = staticmethod(lambda x: x)

    def _options(self) -> dict[str, Any]:
        return {}

    def __call__(self, x: jax.Array) -> jax.Array:
        return type(self)._fn(x, **self._options())


def _simple(name: str, fn: Callable, doc: str) -> type:
    cls = type(name, (_Fn,), {"_fn": staticmethod(fn), "__doc__": doc})
    cls.__module__ = __name__
    return cls


Sigmoid = _simple("Sigmoid", sigmoid, "``torch.nn.Sigmoid``.")
Tanh = _simple("Tanh", tanh, "``torch.nn.Tanh``.")
ReLU = _simple("ReLU", relu, "``torch.nn.ReLU``.")
ReLU6 = _simple("ReLU6", relu6, "``torch.nn.ReLU6``.")
ReLUSquared = _simple("ReLUSquared", relu_squared, "ReLU² (``relu(x) ** 2``).")
SELU = _simple("SELU", selu, "``torch.nn.SELU``; pair with ``dlcore.nn.regularization.AlphaDropout``.")
SiLU = _simple("SiLU", silu, "``torch.nn.SiLU`` (Swish with beta 1).")
Mish = _simple("Mish", mish, "``torch.nn.Mish``.")
Softsign = _simple("Softsign", softsign, "``torch.nn.Softsign``.")
LogSigmoid = _simple("LogSigmoid", log_sigmoid, "``torch.nn.LogSigmoid``.")
Hardsigmoid = _simple("Hardsigmoid", hardsigmoid, "``torch.nn.Hardsigmoid``.")
Hardswish = _simple("Hardswish", hardswish, "``torch.nn.Hardswish``.")


class LeakyReLU(_Fn):
    """``torch.nn.LeakyReLU(negative_slope=0.01)``."""

    _fn = staticmethod(leaky_relu)

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def _options(self):
        return {"negative_slope": self.negative_slope}


class ELU(_Fn):
    """``torch.nn.ELU(alpha=1.0)``."""

    _fn = staticmethod(elu)

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def _options(self):
        return {"alpha": self.alpha}


class CELU(ELU):
    """``torch.nn.CELU(alpha=1.0)``."""

    _fn = staticmethod(celu)

    def __init__(self, alpha: float = 1.0):
        if alpha == 0:
            raise ValueError("CELU: alpha cannot be 0.")
        super().__init__(alpha)


class GELU(_Fn):
    """``torch.nn.GELU(approximate="none")``; also ``"tanh"`` and the book's ``"sigmoid"``."""

    _fn = staticmethod(gelu)

    def __init__(self, approximate: str = "none"):
        check_choice(approximate, "approximate", _GELU_APPROXIMATIONS, who="GELU")
        self.approximate = approximate

    def _options(self):
        return {"approximate": self.approximate}


class Softplus(_Fn):
    """``torch.nn.Softplus(beta=1.0, threshold=20.0)``."""

    _fn = staticmethod(softplus)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta, self.threshold = beta, threshold

    def _options(self):
        return {"beta": self.beta, "threshold": self.threshold}


class Hardtanh(_Fn):
    """``torch.nn.Hardtanh(min_val=-1.0, max_val=1.0)``."""

    _fn = staticmethod(hardtanh)

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        check_float(min_val, "min_val", high=max_val, high_open=True, finite=False, who="Hardtanh")
        self.min_val, self.max_val = min_val, max_val

    def _options(self):
        return {"min_val": self.min_val, "max_val": self.max_val}


class Hardshrink(_Fn):
    """``torch.nn.Hardshrink(lambd=0.5)``."""

    _fn = staticmethod(hardshrink)

    def __init__(self, lambd: float = 0.5):
        self.lambd = lambd

    def _options(self):
        return {"lambd": self.lambd}


class Softmax(_Fn):
    """``torch.nn.Softmax(dim)``; the class axis is last by default."""

    _fn = staticmethod(softmax)

    def __init__(self, dim: int = -1):
        self.dim = dim

    def _options(self):
        return {"dim": self.dim}


class LogSoftmax(Softmax):
    """``torch.nn.LogSoftmax(dim)``; the class axis is last by default."""

    _fn = staticmethod(log_softmax)


class GLU(Softmax):
    """``torch.nn.GLU(dim=-1)``: ``(..., 2H) -> (..., H)``."""

    _fn = staticmethod(glu)


class PReLU(nnx.Module):
    """``torch.nn.PReLU(num_parameters=1, init=0.25)``: leaky ReLU with learnable slopes.

    One slope shared by all channels, or one per channel of the last axis (``num_parameters=C``;
    PyTorch's channel axis is 1). The slopes are ``nnx.Param`` named ``weight``, shape
    ``(num_parameters,)``; ``optim.no_decay`` leaves them out of weight decay (PyTorch's docs advise
    against decaying them).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Better Activation Functions, Leaky
    ReLU; He et al., "Delving Deep into Rectifiers" (2015).
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init; accepted for a uniform constructor
        num_parameters = check_int(num_parameters, "num_parameters", low=1, who="PReLU")
        self.num_parameters = num_parameters
        self.weight = nnx.Param(jnp.full((num_parameters,), init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.weight[...]
        if self.num_parameters > 1 and (x.ndim == 0 or x.shape[-1] != self.num_parameters):
            raise ValueError(f"PReLU: {self.num_parameters} slopes need {self.num_parameters} channels on the "
                             f"last axis, got shape {x.shape}.")
        return prelu(x, w if self.num_parameters > 1 else w[0])


class Swish(nnx.Module):
    """Swish with a learnable (or fixed) beta: ``x * sigmoid(beta * x)``.

    The book's parametrised Swish (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, GELU, Swish,
    SwiGLU, Mish, and ReLU²): "a single trainable beta for the whole model, or one per layer". With
    ``learnable=False`` it is a fixed hyperparameter (``beta=1`` is ``SiLU``, ``beta=1.702``
    approximates GELU).

    Args:
        beta: Initial value of beta.
        learnable: Make beta an ``nnx.Param`` (shape ``()``).
    """

    def __init__(self, beta: float = 1.0, learnable: bool = True, *, rngs: nnx.Rngs | None = None):
        del rngs
        self.learnable = learnable
        self.beta = nnx.Param(jnp.asarray(beta, jnp.float32)) if learnable else float(beta)

    def __call__(self, x: jax.Array) -> jax.Array:
        beta = self.beta[...] if self.learnable else self.beta
        return swish(x, beta)


class SwiGLU(nnx.Module):
    """SwiGLU as an activation: ``swish(z1, beta) * z2`` over the two halves of axis ``dim``.

    Put it after a linear layer of twice the width (``Linear(d, 2 * h)`` then ``SwiGLU()`` gives h
    features). ``learnable`` makes beta a parameter, as in ``Swish``.
    Shapes: ``(..., 2H) -> (..., H)``.
    """

    def __init__(self, beta: float = 1.0, dim: int = -1, learnable: bool = False, *, rngs: nnx.Rngs | None = None):
        del rngs
        self.dim, self.learnable = dim, learnable
        self.beta = nnx.Param(jnp.asarray(beta, jnp.float32)) if learnable else float(beta)

    def __call__(self, x: jax.Array) -> jax.Array:
        beta = self.beta[...] if self.learnable else self.beta
        return swiglu(x, beta, self.dim)


class RReLU(nnx.Module):
    """``torch.nn.RReLU(lower=1/8, upper=1/3)``: random negative slopes in training, their mean in eval.

    Like ``nnx.Dropout`` it has a ``deterministic`` flag that ``model.train()`` / ``model.eval()`` set,
    and draws from the ``dropout`` random stream (the Trainer reseeds it at every step).

    Args:
        lower, upper: Range of the slopes, ``0 <= lower <= upper``.
        deterministic: Eval behaviour (mean slope) when True.
        rngs: Random streams; needed for training mode.
    """

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, *, deterministic: bool = False,
                 rng_collection: str = "dropout", rngs: nnx.Rngs | None = None):
        check_float(lower, "lower", low=0, high=upper, finite=False, who="RReLU")  # 0 <= lower <= upper
        self.lower, self.upper = lower, upper
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        self.rngs = rngs[rng_collection].fork() if isinstance(rngs, nnx.Rngs) else nnx.data(None)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
        det = self.deterministic if deterministic is None else deterministic
        if det:
            return rrelu(x, self.lower, self.upper, training=False)
        if self.rngs is None:
            raise ValueError("RReLU in training mode needs rngs: RReLU(..., rngs=nnx.Rngs(0)).")
        return rrelu(x, self.lower, self.upper, training=True, key=self.rngs())


def _gelu_tanh(x: jax.Array) -> jax.Array:
    """GELU's tanh approximation, ``gelu(x, "tanh")``."""
    return gelu(x, "tanh")


def identity(x: jax.Array) -> jax.Array:
    """``torch.nn.Identity``: ``x`` unchanged."""
    return x


ACTIVATIONS: Registry[Callable] = Registry("activation", normalize=str.lower)
for _fn, _aliases in [
    (sigmoid, ()), (tanh, ()), (relu, ()), (relu6, ()), (relu_squared, ("relu2",)),
    (leaky_relu, ("leakyrelu",)), (elu, ()), (celu, ()), (selu, ()), (gelu, ()), (silu, ()),
    (swish, ()), (softplus, ()), (mish, ()), (softsign, ()), (log_sigmoid, ("logsigmoid",)),
    (hardtanh, ()), (hardsigmoid, ()), (hardswish, ()), (hardshrink, ()), (softmax, ()),
    (log_softmax, ("logsoftmax",)), (glu, ()), (swiglu, ()), (rrelu, ()), (identity, ()),
]:
    ACTIVATIONS.register(_fn.__name__, _fn, aliases=_aliases)
ACTIVATIONS.register("gelu_tanh", _gelu_tanh)
del _fn, _aliases


def names() -> list[str]:
    """Names ``get`` knows, sorted (case-insensitive; ``relu2``, ``leakyrelu``, ``logsigmoid`` and
    ``logsoftmax`` are accepted aliases)."""
    return ACTIVATIONS.names()


def get(name: str | Callable, **options: Any) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name``, with keyword options bound (``get("leaky_relu",
    negative_slope=0.2)``); a callable is returned as is (with ``options`` bound). Learnable ones
    (PReLU, Swish with learnable beta) are modules: use the class.

    Raises:
        ValueError: For an unknown name (`dlcore.registry.UnknownNameError`, naming the close matches).
    """
    fn = name if callable(name) else ACTIVATIONS.get(name)
    if not options:
        return fn
    return functools.partial(fn, **options)
