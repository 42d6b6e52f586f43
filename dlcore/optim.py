"""Optimizers by name with PyTorch's arguments and PyTorch's update rules, built from optax.

Each factory takes ``torch.optim``'s arguments (same names, same defaults) and returns an
``optax.GradientTransformation`` whose trajectory matches ``torch.optim`` given the same initial
parameters and gradients. They are optax chains, so they compose with every optax tool (``chain``,
``multi_transform``, ``inject_hyperparams``, ``MultiSteps``).

Where optax's own optimizer differs from PyTorch's, the factory composes optax transforms in PyTorch's
order, or (three places, each said in its docstring and below) uses a small custom transform:

* weight decay is *coupled* (L2: ``g + wd * p`` before anything else) in every PyTorch optimizer but
  AdamW, which decays the weights directly (``p -= lr * wd * p``);
* SGD with ``dampening``: PyTorch's momentum buffer starts as the raw gradient (custom transform);
* Adam/AdamW: PyTorch computes the bias corrections ``1 - b**t`` in double precision (optax in float32,
  1e-5 off), and its ``amsgrad`` keeps the maximum of the *raw* second moment, bias-corrected with the
  current step (optax: the maximum of the bias-corrected moments) (custom transform);
* Adagrad: ``eps`` outside the square root and a zero initial accumulator (optax: inside, 0.1), plus
  ``lr_decay`` (custom transform and a schedule);
* RMSprop: ``alpha`` is optax's ``decay``, ``eps`` sits outside the square root
  (``eps_in_sqrt=False``), and the momentum buffer holds unscaled steps, so a learning-rate schedule
  multiplies the whole buffer as in PyTorch (optax's ``rmsprop`` scales before the trace).

``lr`` may be a number or an optax schedule ``step -> lr`` (step counts updates from 0), equivalent to a
PyTorch scheduler stepped after every ``optimizer.step()``. Transforms with weight decay need the
parameters: call ``tx.update(grads, state, params)``.

Gradient clipping (book 003 L3403-3425; Pascanu et al., 2013) comes as transforms
(``clip_grad_norm``, ``clip_grad_value``, ``with_clipping``) and as pure functions on gradient pytrees
(``clip_by_norm``, ``clip_by_value``).

References:
    Géron, Hands-On Machine Learning, PyTorch ed. (book 003) L3544-3764 ("Faster Optimizers");
    Ketkar & Moolayil, Deep Learning with Python (book 000) L5556-6173 (optimizer comparison);
    the ``torch.optim`` documentation for the exact update rules.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm",
    "clip_grad_value",
    "create",
    "names",
    "rmsprop",
    "sgd",
    "with_clipping",
]

ScalarOrSchedule = float | jax.Array | optax.Schedule


# --------------------------------------------------------------------------------------------------
# Argument checks. Hyperparameters may be traced (optax.inject_hyperparams, vmapped sweeps): those are
# left unchecked, and only plain Python numbers decide the structure of a chain, so that init and
# update always build the same chain.
# --------------------------------------------------------------------------------------------------


def _concrete(x: Any) -> float | None:
    if callable(x) or isinstance(x, jax.core.Tracer):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _check(name: str, value: Any, low: float = 0.0, high: float | None = None, *, high_open=False):
    v = _concrete(value)
    if v is None:
        return
    bad = v < low or (high is not None and (v >= high if high_open else v > high))
    if bad or math.isnan(v):
        bracket = ")" if high_open else "]"
        where = f">= {low}" if high is None else f"in [{low}, {high}{bracket}"
        raise ValueError(f"Invalid {name}: {value!r}; it must be {where}.")


def _is_zero(x: Any) -> bool:
    """True only for a plain Python zero: an array, even a concrete one, may be traced in update."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


def _decay(weight_decay: Any) -> list[optax.GradientTransformation]:
    """Coupled (L2) weight decay, ``g + wd * p``: applied first, as PyTorch adds it to the gradient."""
    return [] if _is_zero(weight_decay) else [optax.add_decayed_weights(weight_decay)]


# --------------------------------------------------------------------------------------------------
# Custom transforms, only where optax's semantics differ from PyTorch's
# --------------------------------------------------------------------------------------------------


class TorchMomentumState(NamedTuple):
    """State of ``_torch_momentum``: the update count and the momentum buffer."""

    count: jax.Array
    buf: optax.Updates


def _torch_momentum(momentum: Any, dampening: Any, nesterov: bool) -> optax.GradientTransformation:
    """PyTorch SGD's momentum buffer: ``buf = g`` on the first step, then ``m * buf + (1 - d) * g``.

    optax.trace starts from a zero buffer, ``buf = m * 0 + g = g``, which agrees with PyTorch only when
    the dampening is 0; with dampening PyTorch's first buffer is still the undamped gradient.
    """

    def init_fn(params):
        return TorchMomentumState(count=jnp.zeros([], jnp.int32), buf=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        buf = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1 - dampening) * g), updates, state.buf
        )
        if nesterov:
            out = jax.tree.map(lambda g, b: g + momentum * b, updates, buf)
        else:
            out = buf
        return out, TorchMomentumState(count=optax.safe_increment(state.count), buf=buf)

    return optax.GradientTransformation(init_fn, update_fn)


def _log_decay(b: Any) -> Any:
    """log(b), in double precision when b is a Python number (see ``_scale_by_torch_adam``)."""
    if isinstance(b, (int, float)):
        return math.log(b) if b > 0 else -math.inf  # b = 0: b**t = exp(-inf) = 0, no correction
    return jnp.log(b)


class TorchAdamState(NamedTuple):
    """State of ``_scale_by_torch_adam``: count, moments, and (AMSGrad) the max raw second moment."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates  # () without AMSGrad


def _scale_by_torch_adam(b1: Any, b2: Any, eps: Any, amsgrad: bool) -> optax.GradientTransformation:
    """Adam's scaling as PyTorch computes it: ``m_hat / (sqrt(v) / sqrt(1 - b2**t) + eps)``.

    Two differences from optax.scale_by_adam / scale_by_amsgrad make this custom transform necessary:

    * Bias corrections. PyTorch computes ``1 - b**t`` in double precision on the host; optax in float32,
      where ``1 - float32(0.999)`` is off by 1.3e-5 relative (the float32 0.999 itself is), about 6e-6
      on every early step: parameter trajectories drift apart by more than rtol 1e-5 within 50 steps.
      Here ``1 - b**t = -expm1(t * log(b))`` with ``log(b)`` taken in double precision, accurate to
      ~1e-7 in float32.
    * AMSGrad. PyTorch keeps the maximum of the *raw* second moments and divides it by the current
      step's correction; optax keeps the maximum of the bias-corrected moments, a different rule that
      gives different steps whenever an early gradient was large.
    """
    log_b1, log_b2 = _log_decay(b1), _log_decay(b2)

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchAdamState(
            count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros if amsgrad else ()
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        correction1 = -jnp.expm1(t * log_b1)
        root_correction2 = jnp.sqrt(-jnp.expm1(t * log_b2))
        if amsgrad:
            nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
            denominator_source = nu_max
        else:
            nu_max = ()
            denominator_source = nu
        out = jax.tree.map(
            lambda m, v: (m / correction1) / (jnp.sqrt(v) / root_correction2 + eps), mu, denominator_source
        )
        return out, TorchAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


class TorchAdagradState(NamedTuple):
    """State of ``_scale_by_torch_adagrad``: the running sum of squared gradients."""

    sum_of_squares: optax.Updates


def _scale_by_torch_adagrad(initial_accumulator_value: Any, eps: Any) -> optax.GradientTransformation:
    """PyTorch Adagrad's scaling ``g / (sqrt(sum g**2) + eps)``.

    optax.scale_by_rss puts eps inside the root, ``g * rsqrt(sum + eps)``, and defaults the accumulator to
    0.1 (PyTorch: 0), which changes the first steps by orders of magnitude.
    """

    def init_fn(params):
        return TorchAdagradState(optax.tree.full_like(params, initial_accumulator_value))

    def update_fn(updates, state, params=None):
        del params
        total = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        out = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, total)
        return out, TorchAdagradState(total)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------------


def sgd(
    lr: ScalarOrSchedule,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and weight decay.

    ``g <- g + wd * p``; with momentum, ``buf <- g`` on the first step and ``m * buf + (1 - d) * g``
    after; the step is ``-lr * (g + m * buf)`` with Nesterov, ``-lr * buf`` without. optax.trace when
    ``dampening`` is 0; a custom transform otherwise (optax has no dampening and would damp the first
    step, where PyTorch does not).

    Reference: book 003 L3548-3609 (momentum, Nesterov); Sutskever et al., "On the
    importance of initialization and momentum in deep learning" (2013).

    Args:
        lr: Learning rate (>= 0) or an optax schedule.
        momentum: Momentum factor (>= 0).
        dampening: Dampening of the momentum's gradient term (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0`` as in PyTorch.

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: On a negative argument or Nesterov without momentum or with dampening.
    """
    _check("learning rate", lr)
    _check("momentum value", momentum)
    _check("dampening value", dampening)
    _check("weight_decay value", weight_decay)
    if nesterov and (_is_zero(momentum) or not _is_zero(dampening)):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
    parts = _decay(weight_decay)
    if not _is_zero(momentum):
        if _is_zero(dampening):
            parts.append(optax.trace(decay=momentum, nesterov=nesterov))
        else:
            parts.append(_torch_momentum(momentum, dampening, nesterov))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _check_betas(betas: tuple[Any, Any]) -> None:
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    _check("beta parameter at index 0", betas[0], 0.0, 1.0, high_open=True)
    _check("beta parameter at index 1", betas[1], 0.0, 1.0, high_open=True)


def _adam_scaling(betas, eps, amsgrad: bool) -> optax.GradientTransformation:
    return _scale_by_torch_adam(betas[0], betas[1], eps, amsgrad)


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """Adam with PyTorch's coupled weight decay and PyTorch's AMSGrad.

    ``weight_decay`` is an L2 penalty added to the gradient before the moments (use ``adamw`` for
    decoupled decay). ``eps`` is outside the square root in both libraries. The scaling is a custom
    transform, not optax.scale_by_adam: it computes the bias corrections as accurately as PyTorch (optax's
    float32 ``1 - b2**t`` is 1e-5 off) and, with ``amsgrad``, keeps the maximum of the raw second moment
    as PyTorch does (optax's ``amsgrad`` takes the maximum of bias-corrected moments, a different rule).

    Reference: book 003 L3661; Kingma & Ba, "Adam: A Method for Stochastic Optimization"
    (2015); Reddi et al., "On the Convergence of Adam and Beyond" (2018) for AMSGrad.

    Args:
        lr: Learning rate (>= 0) or an optax schedule.
        betas: Decay rates of the first and second moment estimates, each in ``[0, 1)``.
        eps: Added to the denominator's root (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).
        amsgrad: Use the AMSGrad variant.

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    _check_betas(betas)
    return optax.chain(
        *_decay(weight_decay), _adam_scaling(betas, eps, amsgrad), optax.scale_by_learning_rate(lr)
    )


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """AdamW: Adam with decoupled weight decay, ``p <- p - lr * (adam_step + wd * p)``.

    Same rule as PyTorch (which multiplies ``p`` by ``1 - lr * wd`` before the Adam step, the same
    thing since the Adam step does not depend on ``p``) and as optax.adamw; the decay is scaled by the
    current learning rate, so it follows a schedule. The Adam scaling is ``adam``'s (PyTorch's bias
    corrections and ``amsgrad``).

    Reference: book 003 L3713; Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization" (2019).

    Args:
        lr: Learning rate (>= 0) or an optax schedule.
        betas: Decay rates of the moment estimates, each in ``[0, 1)``.
        eps: Added to the denominator's root (>= 0).
        weight_decay: Decoupled decay coefficient (>= 0); PyTorch's default 1e-2.
        amsgrad: Use the AMSGrad variant.

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    _check_betas(betas)
    parts = [_adam_scaling(betas, eps, amsgrad)]
    if not _is_zero(weight_decay):
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> optax.GradientTransformation:
    """RMSprop with PyTorch's arguments: ``alpha`` smoothing, ``eps`` outside the root.

    ``v <- alpha * v + (1 - alpha) * g**2``; the step direction is ``g / (sqrt(v) + eps)``, or
    ``g / (sqrt(v - mean(g)**2) + eps)`` when ``centered``; with momentum it is accumulated in
    ``buf <- m * buf + direction`` and the step is ``-lr * buf``. Adapted from optax: ``alpha`` is optax's
    ``decay``, ``eps_in_sqrt=False`` (optax's default puts eps inside the root), and the learning rate is
    applied after the momentum trace, as PyTorch does (optax.rmsprop applies it before, which differs
    under a schedule).

    Reference: book 003 L3638; book 000 L6041; Hinton, Coursera lecture 6e (2012); Graves, "Generating
    Sequences With Recurrent Neural Networks" (2013) for the centered form.

    Args:
        lr: Learning rate (>= 0) or an optax schedule.
        alpha: Smoothing constant of the squared-gradient average (>= 0).
        eps: Added to the denominator (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).
        momentum: Momentum factor (>= 0).
        centered: Normalise by the estimated variance instead of the raw second moment.

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("momentum value", momentum)
    _check("weight_decay value", weight_decay)
    _check("alpha value", alpha)
    parts = _decay(weight_decay)
    if centered:
        parts.append(optax.scale_by_stddev(decay=alpha, eps=eps, eps_in_sqrt=False))
    else:
        parts.append(optax.scale_by_rms(decay=alpha, eps=eps, eps_in_sqrt=False))
    if not _is_zero(momentum):
        parts.append(optax.trace(decay=momentum))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def adadelta(
    lr: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adadelta with PyTorch's defaults (``lr=1.0``, ``rho=0.9``, ``eps=1e-6``) and coupled decay.

    ``delta = sqrt(E[dx**2] + eps) / sqrt(E[g**2] + eps) * g`` and the step is ``-lr * delta``; optax's
    scale_by_adadelta computes exactly this.

    Reference: book 004 L126-136 and its MNIST ConvNet (Adadelta lr 0.5); Zeiler, "ADADELTA: An Adaptive
    Learning Rate Method" (2012).

    Args:
        lr: Coefficient that scales delta (>= 0) or an optax schedule.
        rho: Decay of the running averages, in ``[0, 1]``.
        eps: Added inside both roots (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("rho value", rho, 0.0, 1.0)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    return optax.chain(
        *_decay(weight_decay), optax.scale_by_adadelta(rho=rho, eps=eps), optax.scale_by_learning_rate(lr)
    )


def adagrad(
    lr: ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
) -> optax.GradientTransformation:
    """Adagrad as PyTorch computes it: ``-lr_t * g / (sqrt(sum g**2) + eps)``.

    ``lr_t = lr / (1 + t * lr_decay)`` at update ``t`` (from 0). A custom scaling transform replaces
    optax.scale_by_rss, which puts ``eps`` inside the root and starts the accumulator at 0.1.

    Reference: book 003 L3610; Duchi et al., "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization" (2011).

    Args:
        lr: Learning rate (>= 0) or an optax schedule (``lr_decay`` then divides the schedule's value).
        lr_decay: Learning-rate decay (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).
        initial_accumulator_value: Starting value of the sum of squares (>= 0).
        eps: Added to the denominator (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("lr_decay value", lr_decay)
    _check("weight_decay value", weight_decay)
    _check("initial_accumulator_value", initial_accumulator_value)
    _check("epsilon value", eps)
    rate = lr
    if not _is_zero(lr_decay):
        base = lr if callable(lr) else (lambda count: lr)

        def rate(count):
            return base(count) / (1 + count * lr_decay)

    return optax.chain(
        *_decay(weight_decay),
        _scale_by_torch_adagrad(initial_accumulator_value, eps),
        optax.scale_by_learning_rate(rate),
    )


_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "adam": adam,
    "adamw": adamw,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adagrad": adagrad,
}


def names() -> list[str]:
    """Names ``create`` knows, sorted."""
    return sorted(_OPTIMIZERS)


def create(name: str, **kwargs: Any) -> optax.GradientTransformation:
    """Builds an optimizer by name with PyTorch-style keyword arguments.

    Example: ``create("sgd", lr=0.02, momentum=0.9)`` is ``torch.optim.SGD(params, lr=0.02,
    momentum=0.9)``.

    Args:
        name: One of ``names()`` (case-insensitive).
        **kwargs: The optimizer's arguments, as in its factory (``sgd``, ``adam``, ...).

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: For an unknown name, an argument the optimizer does not take, or a bad value.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; known optimizers: {', '.join(names())}.")
    factory = _OPTIMIZERS[key]
    signature = inspect.signature(factory)
    params = signature.parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"{key} takes no argument(s) {', '.join(unknown)}; its arguments are: {', '.join(params)}."
        )
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"{key}{signature}: {err}.") from None
    return factory(**kwargs)


# --------------------------------------------------------------------------------------------------
# Gradient clipping
# --------------------------------------------------------------------------------------------------


def _total_norm(grads: optax.Updates, norm_type: float) -> jax.Array:
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(grads)]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    if norm_type == math.inf:
        return jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in leaves]))
    if norm_type == 2.0:
        return optax.tree.norm(grads)
    return jnp.sum(jnp.stack([jnp.sum(jnp.abs(g) ** norm_type) for g in leaves])) ** (1.0 / norm_type)


def clip_by_norm(grads: optax.Updates, max_norm: float, norm_type: float = 2.0) -> optax.Updates:
    """Scales a gradient pytree so that its total norm is at most ``max_norm`` (``clip_grad_norm_``).

    The norm is over all leaves together; the scale is ``min(1, max_norm / (norm + 1e-6))``, PyTorch's
    formula (optax.clip_by_global_norm has no 1e-6 and leaves gradients under the limit untouched).
    Clipping by norm keeps the gradient's direction: ``[0.9, 100.0]`` becomes ``[0.00899964, 0.9999595]``
    for ``max_norm=1`` (book 003 L3421).

    Args:
        grads: A pytree of gradient arrays.
        max_norm: Largest allowed total norm (> 0).
        norm_type: The p of the p-norm (2.0 by default; ``math.inf`` for the max norm).

    Returns:
        The clipped pytree, same structure and shapes.
    """
    if isinstance(max_norm, (int, float)) and max_norm <= 0:
        raise ValueError(f"clip_by_norm: max_norm must be positive, got {max_norm}.")
    norm = _total_norm(grads, norm_type)
    scale = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: (g * scale).astype(jnp.asarray(g).dtype), grads)


def clip_by_value(grads: optax.Updates, clip_value: float) -> optax.Updates:
    """Clips every gradient component to ``[-clip_value, clip_value]`` (``clip_grad_value_``).

    Unlike clipping by norm this can turn the gradient: ``[0.9, 100.0]`` becomes ``[0.9, 1.0]`` for
    ``clip_value=1`` (book 003 L3421).

    Args:
        grads: A pytree of gradient arrays.
        clip_value: Largest allowed magnitude of a component (> 0).

    Returns:
        The clipped pytree, same structure and shapes.
    """
    if isinstance(clip_value, (int, float)) and clip_value <= 0:
        raise ValueError(f"clip_by_value: clip_value must be positive, got {clip_value}.")
    return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads)


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """Transform form of ``clip_by_norm`` (PyTorch's ``clip_grad_norm_`` at every step).

    Reference: book 003 L3403-3425; Pascanu et al., "On the difficulty of training
    recurrent neural networks" (2013).

    Args:
        max_norm: Largest allowed total norm (> 0).
        norm_type: The p of the p-norm.

    Returns:
        A stateless ``optax.GradientTransformation``.
    """
    if isinstance(max_norm, (int, float)) and max_norm <= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}.")
    return optax.stateless(lambda updates, params=None: clip_by_norm(updates, max_norm, norm_type))


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """Transform form of ``clip_by_value`` (PyTorch's ``clip_grad_value_``; it is optax.clip).

    Reference: book 003 L3403-3425.

    Args:
        clip_value: Largest allowed magnitude of a component (> 0).

    Returns:
        A stateless ``optax.GradientTransformation``.
    """
    if isinstance(clip_value, (int, float)) and clip_value <= 0:
        raise ValueError(f"clip_grad_value: clip_value must be positive, got {clip_value}.")
    return optax.clip(clip_value)


def with_clipping(
    tx: optax.GradientTransformation,
    *,
    max_norm: float | None = None,
    clip_value: float | None = None,
) -> optax.GradientTransformation:
    """Clips gradients before the optimizer: ``optax.chain(clip, tx)``.

    This is the order of a PyTorch loop that calls ``clip_grad_norm_`` (or ``clip_grad_value_``) between
    ``loss.backward()`` and ``optimizer.step()``: clipping sees the raw gradients, before weight decay.

    Args:
        tx: The optimizer.
        max_norm: Clip by total norm (see ``clip_grad_norm``).
        clip_value: Clip each component (see ``clip_grad_value``).

    Returns:
        The chained transformation; ``tx`` itself when neither limit is given.

    Raises:
        ValueError: If both limits are given: choose one, the order of two clippings changes the result.
    """
    if max_norm is not None and clip_value is not None:
        raise ValueError(
            "with_clipping: give max_norm or clip_value, not both (their order changes the result); "
            "chain clip_grad_value and clip_grad_norm yourself to have both."
        )
    if max_norm is not None:
        return optax.chain(clip_grad_norm(max_norm), tx)
    if clip_value is not None:
        return optax.chain(clip_grad_value(clip_value), tx)
    return tx
