"""Optimizers by name with PyTorch's arguments and PyTorch's update rules, built from optax.

Each factory takes ``torch.optim``'s arguments (same names, same defaults) and returns an
``optax.GradientTransformation`` whose trajectory matches ``torch.optim`` given the same initial
parameters and gradients. They are optax chains, so they compose with every optax tool (``chain``,
``multi_transform``, ``inject_hyperparams``, ``MultiSteps``).

Where optax's own optimizer differs from PyTorch's, the factory composes optax transforms in PyTorch's
order, or (each place said in its docstring and below) uses a small custom transform:

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
  multiplies the whole buffer as in PyTorch (optax's ``rmsprop`` scales before the trace);
* AdaMax: optax's rule with PyTorch's double-precision bias correction (custom transform);
* NAdam: PyTorch's (Dozat's) momentum schedule ``mu_t``, which optax.nadam lacks (custom transform).

``lr`` may be a number or an optax schedule ``step -> lr`` (step counts updates from 0; see
``dlcore.schedules``), equivalent to a PyTorch scheduler stepped after every ``optimizer.step()``; SGD's
and RMSprop's ``momentum`` and the Adam family's beta1 may be schedules too (1cycle's momentum
cycling). Transforms with weight decay need the parameters: call ``tx.update(grads, state, params)``.
For per-epoch changes, ``injectable(name, ...)`` keeps the hyperparameters in the optimizer state, where
``set_hyperparams`` (and the callbacks of ``dlcore.train.lr``) change them without recompiling.

Beyond the update rules:

* parameter groups by path pattern (``param_groups``): per-group learning rate, weight decay, freezing;
  ``no_decay`` / ``decay_mask`` leave biases and normalisation parameters out of weight decay;
* penalties and constraints as transforms: ``add_l1``, ``add_l2`` (the book's manual penalties),
  ``max_norm`` (after each step), ``keep_masks`` (keeps pruned weights at zero);
* gradient accumulation over k batches (``accumulate``);
* L-BFGS (``LBFGS``, ``lbfgs_minimize``): PyTorch's iteration, with or without the strong-Wolfe line
  search, driven from the host as PyTorch's is;
* gradient clipping (book 003 L3403-3425; Pascanu et al., 2013) as transforms (``clip_grad_norm``,
  ``clip_grad_value``, ``with_clipping``) and as pure functions on gradient pytrees (``clip_by_norm``,
  ``clip_by_value``).

References:
    Géron, Hands-On Machine Learning, PyTorch ed. (book 003) L3544-3764 ("Faster Optimizers");
    Ketkar & Moolayil, Deep Learning with Python (book 000) L5556-6173 (optimizer comparison);
    the ``torch.optim`` documentation for the exact update rules.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

__all__ = [
    "LBFGS",
    "accumulate",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_l1",
    "add_l2",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm",
    "clip_grad_value",
    "create",
    "decay_mask",
    "get_hyperparams",
    "injectable",
    "keep_masks",
    "lbfgs_minimize",
    "mask_of",
    "max_norm",
    "nadam",
    "named_leaves",
    "names",
    "no_decay",
    "param_groups",
    "path_str",
    "rmsprop",
    "set_hyperparams",
    "sgd",
    "weights_only",
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
    the dampening is 0; with dampening PyTorch's first buffer is still the undamped gradient. Also used
    when ``momentum`` is a schedule ``count -> m`` (1cycle's momentum cycling), which optax.trace cannot
    take.
    """

    def init_fn(params):
        return TorchMomentumState(count=jnp.zeros([], jnp.int32), buf=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        m = momentum(state.count) if callable(momentum) else momentum
        buf = jax.tree.map(
            lambda g, b: jnp.where(first, g, m * b + (1 - dampening) * g), updates, state.buf
        )
        if nesterov:
            out = jax.tree.map(lambda g, b: g + m * b, updates, buf)
        else:
            out = buf
        return out, TorchMomentumState(count=optax.safe_increment(state.count), buf=buf)

    return optax.GradientTransformation(init_fn, update_fn)


class TraceState(NamedTuple):
    """State of ``_trace``: the update count and the momentum buffer."""

    count: jax.Array
    buf: optax.Updates


def _trace(momentum: Any) -> optax.GradientTransformation:
    """``buf <- m * buf + g`` (RMSprop's momentum): optax.trace, or a custom trace for a scheduled ``m``."""
    if not callable(momentum):
        return optax.trace(decay=momentum)

    def init_fn(params):
        return TraceState(count=jnp.zeros([], jnp.int32), buf=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        m = momentum(state.count)
        buf = jax.tree.map(lambda g, b: m * b + g, updates, state.buf)
        return buf, TraceState(count=optax.safe_increment(state.count), buf=buf)

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
    log_b2 = _log_decay(b2)

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchAdamState(
            count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros if amsgrad else ()
        )

    def update_fn(updates, state, params=None):
        del params
        # A scheduled beta1 (1cycle's momentum cycling) enters both the moment and its correction at
        # its current value, as PyTorch's ``1 - beta1 ** step`` does.
        beta1 = b1(state.count) if callable(b1) else b1
        log_b1 = _log_decay(beta1)
        mu = optax.tree.update_moment(updates, state.mu, beta1, 1)
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


class TorchAdamaxState(NamedTuple):
    """State of ``_scale_by_torch_adamax``: count, first moment, exponentially weighted infinity norm."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _scale_by_torch_adamax(b1: Any, b2: Any, eps: Any) -> optax.GradientTransformation:
    """AdaMax's scaling as PyTorch computes it: ``m / (1 - b1**t) / max(b2 * u, |g| + eps)``.

    optax.scale_by_adamax has the same rule; this transform differs only in computing the bias correction
    as ``_scale_by_torch_adam`` does (double-precision ``log(b1)``) and in accepting a scheduled beta1.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchAdamaxState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        beta1 = b1(state.count) if callable(b1) else b1
        mu = optax.tree.update_moment(updates, state.mu, beta1, 1)
        nu = jax.tree.map(lambda g, u: jnp.maximum(b2 * u, jnp.abs(g) + eps), updates, state.nu)
        count = optax.safe_increment(state.count)
        correction1 = -jnp.expm1(count.astype(jnp.float32) * _log_decay(beta1))
        out = jax.tree.map(lambda m, u: (m / correction1) / u, mu, nu)
        return out, TorchAdamaxState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


class TorchNAdamState(NamedTuple):
    """State of ``_scale_by_torch_nadam``: count, product of the momentum schedule, moments."""

    count: jax.Array
    mu_product: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _scale_by_torch_nadam(b1: Any, b2: Any, eps: Any, momentum_decay: Any) -> optax.GradientTransformation:
    """NAdam's scaling as PyTorch computes it (Dozat's momentum schedule ``mu_t``).

    With ``mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``, ``P_t = mu_1 ... mu_t`` and
    ``d = sqrt(v / (1 - b2**t)) + eps``, the step direction is
    ``(1 - mu_t) / (1 - P_t) * g / d + mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d``.
    optax.nadam is Adam with a Nesterov look-ahead and no momentum schedule: a different trajectory.
    """
    log_b2 = _log_decay(b2)
    log_096 = math.log(0.96)

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchNAdamState(
            count=jnp.zeros([], jnp.int32), mu_product=jnp.ones([], jnp.float32), mu=zeros, nu=zeros
        )

    def update_fn(updates, state, params=None):
        del params
        beta1 = b1(state.count) if callable(b1) else b1
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        mu_t = beta1 * (1.0 - 0.5 * jnp.exp(t * momentum_decay * log_096))
        mu_next = beta1 * (1.0 - 0.5 * jnp.exp((t + 1.0) * momentum_decay * log_096))
        mu_product = state.mu_product * mu_t
        mu = optax.tree.update_moment(updates, state.mu, beta1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        correction2 = -jnp.expm1(t * log_b2)
        coef_g = (1.0 - mu_t) / (1.0 - mu_product)
        coef_m = mu_next / (1.0 - mu_product * mu_next)
        out = jax.tree.map(
            lambda g, m, v: (coef_g * g + coef_m * m) / (jnp.sqrt(v / correction2) + eps), updates, mu, nu
        )
        return out, TorchNAdamState(count=count, mu_product=mu_product, mu=mu, nu=nu)

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
        momentum: Momentum factor (>= 0), or a schedule ``count -> momentum`` (1cycle).
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
    m, d = _concrete(momentum), _concrete(dampening)
    if nesterov and ((m is not None and m == 0) or (d is not None and d != 0)):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
    parts = _decay(weight_decay)
    if not _is_zero(momentum):
        if _is_zero(dampening) and not callable(momentum):
            parts.append(optax.trace(decay=momentum, nesterov=nesterov))
        else:
            parts.append(_torch_momentum(momentum, dampening, nesterov))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _check_betas(betas: tuple[Any, Any]) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    if callable(betas[1]):
        raise ValueError("betas[1] cannot be a schedule; only beta1 may be (1cycle's momentum cycling).")
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
        betas: Decay rates of the first and second moment estimates, each in ``[0, 1)``; beta1 may be a
            schedule ``count -> beta1`` (1cycle's momentum cycling).
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
        betas: Decay rates of the moment estimates, each in ``[0, 1)``; beta1 may be a schedule.
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


def adamax(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """AdaMax: Adam with the infinity norm, ``u <- max(b2 * u, |g| + eps)``, step ``-lr * m_hat / u``.

    PyTorch's rule (eps inside the max, first moment bias-corrected, coupled weight decay); optax.adamax
    computes the same, this factory uses a custom transform only for PyTorch's double-precision bias
    correction and a schedulable beta1.

    Reference: book 003 L3695-3701; Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2015),
    section 7.1.

    Args:
        lr: Learning rate (>= 0) or an optax schedule; PyTorch's default 2e-3.
        betas: Decay rates of the first moment and of the infinity norm, each in ``[0, 1)``; beta1 may be
            a schedule.
        eps: Added to ``|g|`` inside the max (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    _check_betas(betas)
    return optax.chain(
        *_decay(weight_decay),
        _scale_by_torch_adamax(betas[0], betas[1], eps),
        optax.scale_by_learning_rate(lr),
    )


def nadam(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    """NAdam as PyTorch computes it: Adam with Nesterov momentum and Dozat's momentum schedule.

    ``mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``; the step is
    ``-lr * [(1 - mu_t) / (1 - prod mu) * g + mu_{t+1} / (1 - prod mu * mu_{t+1}) * m] /
    (sqrt(v_hat) + eps)``. A custom transform: optax.nadam has no momentum schedule (it equals
    PyTorch's only in the limit ``momentum_decay -> inf``), so its trajectory differs from the first step.
    ``decoupled_weight_decay=True`` decays the weights as AdamW does (PyTorch's NAdamW).

    Reference: book 003 L3703-3711 (and its NMT model, Nadam 1e-3, L7709-8102); Dozat, "Incorporating
    Nesterov Momentum into Adam" (2016).

    Args:
        lr: Learning rate (>= 0) or an optax schedule; PyTorch's default 2e-3.
        betas: Decay rates of the moment estimates, each in ``[0, 1)``; beta1 may be a schedule.
        eps: Added to the denominator's root (>= 0).
        weight_decay: L2 penalty (>= 0), coupled unless ``decoupled_weight_decay``.
        momentum_decay: Decay of the momentum schedule (>= 0), PyTorch's ``momentum_decay``.
        decoupled_weight_decay: Decay the weights directly, ``p -= lr * wd * p``.

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    _check("momentum_decay value", momentum_decay)
    _check_betas(betas)
    parts = [] if decoupled_weight_decay else _decay(weight_decay)
    parts.append(_scale_by_torch_nadam(betas[0], betas[1], eps, momentum_decay))
    if decoupled_weight_decay and not _is_zero(weight_decay):
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
        momentum: Momentum factor (>= 0), or a schedule ``count -> momentum`` (1cycle).
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
        parts.append(_trace(momentum))
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
    "adamax": adamax,
    "nadam": nadam,
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
    if key == "lbfgs":
        raise ValueError("LBFGS is not an optax transformation (it evaluates the function itself): use "
                         "dlcore.optim.LBFGS(...).step(fn, params) or dlcore.optim.lbfgs_minimize.")
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


# --------------------------------------------------------------------------------------------------
# Hyperparameters that change between epochs (learning-rate callbacks) without recompiling
# --------------------------------------------------------------------------------------------------


def _factory(name: str) -> Callable[..., optax.GradientTransformation]:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _OPTIMIZERS:
        create(name)  # raises the unknown-name error
    return _OPTIMIZERS[key]


def injectable(name: str, **kwargs: Any) -> optax.GradientTransformation:
    """``create(name, **kwargs)`` with its numeric hyperparameters kept in the optimizer state.

    ``optax.inject_hyperparams`` stores ``lr`` (and every other number) as an array of the state, so a
    callback can change it between epochs (``set_hyperparams``) without recompiling the jitted step: the
    PyTorch habit of writing ``group["lr"]`` in a scheduler. The arguments are checked now, as
    ``create`` checks them. The trajectory is the plain optimizer's (the injected numbers are float32,
    as PyTorch's are float64 on the host: Adam's bias corrections may move by ~1e-7).

    Args:
        name: An optimizer name (see ``names()``).
        **kwargs: Its arguments.

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose state is an ``InjectStatefulHyperparamsState``.
    """
    create(name, **kwargs)  # validates names and values at construction
    return optax.inject_hyperparams(_factory(name))(**kwargs)


def _inject_states(x: Any) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState)


def get_hyperparams(opt_state: Any, name: str = "lr") -> list[float]:
    """The current values of hyperparameter ``name`` in every injected optimizer of ``opt_state``.

    One value per ``injectable`` optimizer, in the order the state flattens (parameter groups by
    label). A scheduled hyperparameter reports the value of its last update.

    Raises:
        ValueError: If no injected optimizer has ``name``.
    """
    found = [float(st.hyperparams[name]) for st in jax.tree.leaves(opt_state, is_leaf=_inject_states)
             if _inject_states(st) and name in st.hyperparams]
    if not found:
        raise ValueError(f"The optimizer state holds no injected hyperparameter {name!r}; build the optimizer "
                         f"with dlcore.optim.injectable(...) (or param_groups(..., inject=True)).")
    return found


def set_hyperparams(opt_state: Any, name: str, values: float | Sequence[float]) -> Any:
    """A copy of ``opt_state`` with hyperparameter ``name`` set (one value, or one per injected optimizer).

    The new values keep the old arrays' dtype and shape, so a jitted step that takes the state as an
    argument does not recompile.

    Raises:
        ValueError: If ``name`` is not injected, is a schedule (its value is recomputed every update),
            or the number of values is wrong.
    """
    count = len(get_hyperparams(opt_state, name))
    vals = [values] * count if isinstance(values, (int, float)) else list(values)
    if len(vals) != count:
        raise ValueError(f"set_hyperparams: {count} injected optimizer(s) hold {name!r}, got {len(vals)} values.")
    it = iter(vals)

    def put(st):
        if not (_inject_states(st) and name in st.hyperparams):
            return st
        if name in st.hyperparams_states:
            raise ValueError(f"{name!r} is a schedule in this optimizer; it cannot be set by hand.")
        old = st.hyperparams[name]
        return st._replace(hyperparams={**st.hyperparams, name: jnp.asarray(next(it), old.dtype)})

    return jax.tree.map(put, opt_state, is_leaf=_inject_states)


# --------------------------------------------------------------------------------------------------
# Parameter paths, groups and masks
# --------------------------------------------------------------------------------------------------

Pattern = str | Sequence[str] | Callable[[str, Any], bool]


def path_str(path: Sequence[Any]) -> str:
    """A pytree key path as a dotted name: ``layers.0.kernel`` (an ``nnx.Variable``'s ``.value`` dropped)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:
            parts.append(str(k))
    if parts and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def named_leaves(params: Any) -> list[tuple[str, Any]]:
    """``(dotted path, array)`` of every leaf, as ``model.named_parameters()`` lists them.

    Args:
        params: An ``nnx.Module`` (its ``nnx.Param`` state), an ``nnx.State`` or any pytree of arrays.
    """
    return [(path_str(p), v) for p, v in jax.tree_util.tree_flatten_with_path(_as_params(params))[0]]


def _as_params(params: Any) -> Any:
    from flax import nnx

    if isinstance(params, nnx.Module):
        return nnx.state(params, nnx.Param)
    return params


def _matcher(pattern: Pattern) -> Callable[[str, Any], bool]:
    if callable(pattern):
        return pattern
    pats = [pattern] if isinstance(pattern, str) else list(pattern)
    if not pats or not all(isinstance(p, str) for p in pats):
        raise ValueError(f"A parameter pattern must be a regex string, a list of them or a function "
                         f"(path, array) -> bool; got {pattern!r}.")
    compiled = []
    for p in pats:
        try:
            compiled.append(re.compile(p))
        except re.error as err:
            raise ValueError(f"Bad parameter pattern {p!r}: {err}.") from None
    return lambda path, value: any(c.search(path) for c in compiled)


def no_decay(path: str, value: Any) -> bool:
    """True for parameters that weight decay should skip: biases and normalisation parameters.

    A parameter is skipped when its name ends in ``bias`` or it has fewer than two dimensions (the
    scale and shift of batch and layer norm, PReLU slopes, Swish betas): the book's
    ``"bias" in name or "bn" in name`` (003 L3960-3985), without relying on the attribute names.
    """
    return path.split(".")[-1].endswith("bias") or jnp.ndim(value) < 2


def weights_only(path: str, value: Any) -> bool:
    """The complement of ``no_decay``: weight matrices and kernels (2-D and more)."""
    return not no_decay(path, value)


def mask_of(params: Any, where: Pattern) -> Any:
    """A pytree of bools, True where ``where`` matches (an optax ``mask``), same structure as ``params``.

    Args:
        params: An ``nnx.Module``, ``nnx.State`` or pytree of arrays.
        where: Regex (searched in the dotted path), list of regexes, or ``fn(path, array) -> bool``.
    """
    match = _matcher(where)
    return jax.tree_util.tree_map_with_path(lambda p, v: bool(match(path_str(p), v)), _as_params(params))


def decay_mask(params: Any) -> Any:
    """``mask_of(params, weights_only)``: for ``optax.add_decayed_weights(wd, mask=...)`` and friends."""
    return mask_of(params, weights_only)


def param_groups(
    params: Any,
    groups: Sequence[dict[str, Any]],
    optimizer: str = "sgd",
    *,
    inject: bool = False,
    **defaults: Any,
) -> optax.GradientTransformation:
    """PyTorch's parameter groups, chosen by path pattern: per-group learning rate, weight decay, ...

    ``param_groups(model, [{"params": optim.no_decay, "weight_decay": 0.0}], "sgd", lr=0.05,
    weight_decay=1e-4)`` is the book's ``SGD([{"params": decayed, "weight_decay": 1e-4},
    {"params": bias_and_bn}], lr=0.05)`` (003 L3964-3985). Each group is a dict with ``"params"`` (a regex
    searched in the dotted parameter path such as ``"layers.0.kernel"``, a list of regexes, or a function
    ``(path, array) -> bool``) and any of the optimizer's arguments, which override ``defaults``; a
    group may instead say ``"frozen": True`` (no update at all, no optimizer state). A parameter belongs
    to the first group that matches it; parameters no group matches form a last group with the defaults.
    Built on ``optax.partition``: each group has its own optimizer state, as in PyTorch.

    Args:
        params: The model (``nnx.Module``), its ``nnx.State`` of parameters, or a pytree of arrays,
            used to check the patterns now.
        groups: The groups, in priority order.
        optimizer: An optimizer name (see ``names()``).
        inject: Build each group with ``injectable`` so its hyperparameters can be changed per epoch.
        **defaults: Arguments shared by every group (PyTorch's optimizer-level arguments).

    Returns:
        An ``optax.GradientTransformation`` over the whole parameter tree.

    Raises:
        ValueError: For an unknown optimizer or argument, a bad value, or a pattern that matches no
            parameter (or only parameters an earlier group took).
    """
    factory = _factory(optimizer)
    allowed = set(inspect.signature(factory).parameters)
    leaves = named_leaves(params)
    if not leaves:
        raise ValueError("param_groups: the parameter tree is empty.")
    matchers, txs = [], {}
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"param_groups: group {i} must be a dict with a 'params' pattern, got {group!r}.")
        overrides = {k: v for k, v in group.items() if k not in ("params", "frozen")}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(f"param_groups: group {i} sets {', '.join(unknown)}, which {optimizer} does not "
                             f"take; its arguments are: {', '.join(sorted(allowed))}.")
        matchers.append(_matcher(group["params"]))
        if group.get("frozen", False):
            txs[f"group{i}"] = optax.set_to_zero()
        else:
            make = injectable if inject else create
            txs[f"group{i}"] = make(optimizer, **{**defaults, **overrides})

    def label(path: str, value: Any) -> str:
        for i, m in enumerate(matchers):
            if m(path, value):
                return f"group{i}"
        return "default"

    used = {label(p, v) for p, v in leaves}
    for i, group in enumerate(groups):
        if f"group{i}" not in used:
            names_ = ", ".join(p for p, _ in leaves[:8]) + (", ..." if len(leaves) > 8 else "")
            raise ValueError(f"param_groups: the pattern of group {i} ({group['params']!r}) matches no "
                             f"parameter (or only parameters an earlier group took); parameters: {names_}.")
    if "default" in used:
        txs["default"] = (injectable if inject else create)(optimizer, **defaults)

    def labels(tree):
        return jax.tree_util.tree_map_with_path(lambda p, v: label(path_str(p), v), tree)

    return optax.partition(txs, labels)


# --------------------------------------------------------------------------------------------------
# Penalties, constraints and masks applied through the optimizer
# --------------------------------------------------------------------------------------------------


def _where_leaves(tree: Any, where: Pattern) -> Any:
    match = _matcher(where)
    return jax.tree_util.tree_map_with_path(lambda p, v: bool(match(path_str(p), v)), tree)


def add_l1(coef: float, where: Pattern = weights_only) -> optax.GradientTransformation:
    """Adds the gradient of the L1 penalty ``coef * sum(|p|)``: ``g + coef * sign(p)``.

    Chained before the optimizer (``optax.chain(add_l1(1e-4), adam(1e-3))``) this is the book's
    ``loss = main_loss + 1e-4 * sum(p.abs().sum())`` (003 L3987-3995; 000 L7831-8970) without the
    penalty in the reported loss; ``sign(0) = 0`` as autograd's ``abs`` backward gives.

    Args:
        coef: Penalty coefficient (>= 0).
        where: Which parameters are penalised (default: weights, not biases or norm parameters).

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    _check("l1 coefficient", coef)

    def f(updates, params=None):
        if params is None:
            raise ValueError("add_l1 needs the parameters: call tx.update(grads, state, params).")
        mask = _where_leaves(params, where)
        return jax.tree.map(lambda g, p, m: g + coef * jnp.sign(p) if m else g, updates, params, mask)

    return optax.stateless(f)


def add_l2(coef: float, where: Pattern = weights_only) -> optax.GradientTransformation:
    """Adds the gradient of the L2 penalty ``coef * sum(p**2)``: ``g + 2 * coef * p``.

    The book's manual penalty ``main_loss + 1e-4 * sum(p.pow(2).sum())`` (003 L3960-3973), applied
    only ``where`` (default: weights, not biases or norm parameters). Note the factor 2: it equals an
    optimizer ``weight_decay`` of ``2 * coef``.

    Args:
        coef: Penalty coefficient (>= 0).
        where: Which parameters are penalised.

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    _check("l2 coefficient", coef)

    def f(updates, params=None):
        if params is None:
            raise ValueError("add_l2 needs the parameters: call tx.update(grads, state, params).")
        mask = _where_leaves(params, where)
        return jax.tree.map(lambda g, p, m: g + 2 * coef * p if m else g, updates, params, mask)

    return optax.stateless(f)


def _norm_axes(ndim: int, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim - 1))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def max_norm(
    max_value: float, axis: int | Sequence[int] | None = None, eps: float = 1e-8, where: Pattern = weights_only
) -> optax.GradientTransformation:
    """Max-norm constraint applied after each step: every unit's incoming weights get ``||w|| <= r``.

    Put it last in the chain: it turns the update ``u`` into ``w' - p`` where ``w = p + u`` and
    ``w' = w * clip(||w||, 0, r) / (eps + ||w||)``, the book's ``apply_max_norm`` called after
    ``optimizer.step()`` (003 L4136-4160). The norm runs over ``axis``; the default (all axes but the
    last) is one norm per output unit for dlcore's ``(in, out)`` kernels and per filter for
    ``(kh, kw, in, out)`` conv kernels, PyTorch's ``dim=1`` / ``dim=[1, 2, 3]``.

    Args:
        max_value: The largest allowed norm ``r`` (> 0).
        axis: Axes of each norm; None for all but the last.
        eps: Smoothing term of the rescaling.
        where: Which parameters are constrained (default: weights, not biases).

    Returns:
        A stateless ``optax.GradientTransformation`` (needs ``params`` in ``update``).
    """
    if _concrete(max_value) is not None and _concrete(max_value) <= 0:
        raise ValueError(f"max_norm: max_value must be positive, got {max_value}.")

    def constrain(u, p, m):
        if not m:
            return u
        w = p + u
        norm = jnp.sqrt(jnp.sum(w * w, axis=_norm_axes(w.ndim, axis), keepdims=True))
        return w * (jnp.clip(norm, 0.0, max_value) / (eps + norm)) - p

    def f(updates, params=None):
        if params is None:
            raise ValueError("max_norm needs the parameters: call tx.update(grads, state, params).")
        return jax.tree.map(constrain, updates, params, _where_leaves(params, where))

    return optax.stateless(f)


def keep_masks(masks: Any) -> optax.GradientTransformation:
    """Multiplies every update by a 0/1 mask, so pruned weights stay zero while the rest trains.

    PyTorch's pruning reparametrises ``weight = weight_orig * mask``; here the weights are zeroed once
    (``dlcore.nn.regularization.l1_unstructured`` / ``ln_structured``) and this transform, last in the
    chain, keeps them there.

    Args:
        masks: A pytree like the parameters: arrays of 0/1 (or None to leave a leaf free).

    Returns:
        A stateless ``optax.GradientTransformation``.
    """

    def f(updates, params=None):
        del params
        return jax.tree.map(lambda u, m: u if m is None else u * m.astype(u.dtype), updates, masks,
                            is_leaf=lambda x: x is None)

    return optax.stateless(f)


def accumulate(tx: optax.GradientTransformation, every_k: int) -> optax.GradientTransformation:
    """Gradient accumulation: applies ``tx`` once every ``every_k`` calls to the mean of their gradients.

    The intermediate calls return zero updates. With equal-size micro-batches this is one step on a
    ``every_k`` times larger batch (the PyTorch loop that calls ``loss.backward()`` k times, dividing the
    loss by k, before ``optimizer.step()``). ``optax.MultiSteps`` underneath.

    Args:
        tx: The optimizer.
        every_k: Micro-batches per update (>= 1).

    Returns:
        An ``optax.GradientTransformationExtraArgs``.
    """
    if not isinstance(every_k, int) or isinstance(every_k, bool) or every_k < 1:
        raise ValueError(f"accumulate: every_k must be an int >= 1, got {every_k!r}.")
    return optax.MultiSteps(tx, every_k_schedule=every_k).gradient_transformation()


# --------------------------------------------------------------------------------------------------
# L-BFGS: a host-driven optimizer, as torch.optim.LBFGS is (it evaluates the function itself)
# --------------------------------------------------------------------------------------------------


def _cubic_min(x1, f1, g1, x2, f2, g2, lo=None, hi=None) -> float:
    """Minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clipped to [lo, hi].

    Nocedal & Wright, "Numerical Optimization" (2006), eq. 3.59; the midpoint when the cubic has no
    real minimiser. Default bounds: the interval between x1 and x2.
    """
    if lo is None:
        lo, hi = min(x1, x2), max(x1, x2)
    theta = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    disc = theta * theta - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    root = math.sqrt(disc)
    if x1 <= x2:
        x = x2 - (x2 - x1) * (g2 + root - theta) / (g2 - g1 + 2.0 * root)
    else:
        x = x1 - (x1 - x2) * (g1 + root - theta) / (g1 - g2 + 2.0 * root)
    return min(max(x, lo), hi)


class LBFGS:
    """L-BFGS with torch.optim.LBFGS's arguments, defaults and iteration, on a JAX function.

    ``step(fn, params)`` is PyTorch's ``optimizer.step(closure)``: up to ``max_iter`` iterations
    (``max_eval`` function evaluations) of limited-memory BFGS from ``params``, keeping the curvature
    history across calls. Without ``line_search_fn`` each iteration moves by a fixed step (``lr``; the
    very first by ``min(1, 1 / sum|g|) * lr``); with ``line_search_fn="strong_wolfe"`` the step comes
    from a bracketing line search with cubic interpolation that stops at the strong Wolfe conditions
    (c1 = 1e-4, c2 = 0.9), written from Nocedal & Wright's algorithms 3.5-3.6 with PyTorch's choices
    (bracket safeguards, evaluation budget). Both variants follow PyTorch's trajectory (tested).

    It runs on the host, one jitted ``value_and_grad`` per evaluation (the parameters are raveled to one
    vector), like PyTorch's Python loop: style transfer (book 001, ch. 7) optimises one image this way.
    optax.lbfgs is a different algorithm (its own line search and scaling), hence this class.

    Args:
        lr: Learning rate (> 0).
        max_iter: Iterations per ``step``.
        max_eval: Function evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad: Stop when ``max |g| <= tolerance_grad``.
        tolerance_change: Stop when the step or the loss change is below this.
        history_size: Curvature pairs kept.
        line_search_fn: None or ``"strong_wolfe"``.

    Example:
        >>> opt = LBFGS(line_search_fn="strong_wolfe")
        >>> for _ in range(5):
        ...     params, loss = opt.step(loss_fn, params)
    """

    def __init__(self, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        _check("learning rate", lr)
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"LBFGS: max_iter must be an int >= 1, got {max_iter!r}.")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"LBFGS: history_size must be an int >= 1, got {history_size!r}.")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}.")
        self.lr, self.max_iter, self.max_eval = float(lr), max_iter, max_eval
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.history_size, self.line_search_fn = history_size, line_search_fn
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}
        self._compiled: dict[Any, Any] = {}

    def _value_and_grad(self, fn, unravel, value_and_grad):
        if value_and_grad is not None:
            def evaluate(flat):
                value, grads = value_and_grad(unravel(flat))
                return float(value), ravel_pytree(grads)[0]

            return evaluate
        key = (fn, unravel)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(jax.value_and_grad(lambda flat: fn(unravel(flat))))
        vg = self._compiled[key]

        def evaluate(flat):
            value, grad = vg(flat)
            return float(value), grad

        return evaluate

    def step(self, fn: Callable[[Any], jax.Array] | None, params: Any, *,
             value_and_grad: Callable[[Any], tuple[Any, Any]] | None = None) -> tuple[Any, float]:
        """Runs one PyTorch ``LBFGS.step``: up to ``max_iter`` iterations on ``fn`` from ``params``.

        Args:
            fn: Scalar loss of the parameters (a pure JAX function, differentiated and jitted here).
            params: A pytree of float arrays.
            value_and_grad: Instead of ``fn``: a function ``params -> (loss, grads)`` called as is (e.g.
                one that evaluates on the host); grads has the structure of ``params``.

        Returns:
            ``(new params, loss at params)`` (PyTorch's step returns the loss before the step).
        """
        if (fn is None) == (value_and_grad is None):
            raise ValueError("LBFGS.step: give fn or value_and_grad, exactly one.")
        x, unravel = ravel_pytree(params)
        evaluate = self._value_and_grad(fn, unravel, value_and_grad)
        st = self.state
        loss, g = evaluate(x)
        orig_loss = loss
        evals = 1
        st["func_evals"] += 1
        if float(jnp.max(jnp.abs(g))) <= self.tolerance_grad:
            return unravel(x), orig_loss
        d, t = st.get("d"), st.get("t")
        s_hist, y_hist, rho = st.get("old_stps"), st.get("old_dirs"), st.get("ro")
        h_diag, g_prev, loss_prev = st.get("H_diag"), st.get("prev_flat_grad"), st.get("prev_loss")
        it = 0
        while it < self.max_iter:
            it += 1
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d, s_hist, y_hist, rho, h_diag = -g, [], [], [], 1.0
            else:
                y = g - g_prev
                s = d * t
                ys = jnp.dot(y, s)
                if float(ys) > 1e-10:
                    if len(y_hist) == self.history_size:
                        y_hist.pop(0), s_hist.pop(0), rho.pop(0)
                    y_hist.append(y), s_hist.append(s), rho.append(1.0 / ys)
                    h_diag = ys / jnp.dot(y, y)
                d = self._two_loop(-g, s_hist, y_hist, rho, h_diag)
            g_prev, loss_prev = g, loss
            t = (min(1.0, 1.0 / float(jnp.sum(jnp.abs(g)))) if st["n_iter"] == 1 else 1.0) * self.lr
            gtd = float(jnp.dot(g, d))
            if gtd > -self.tolerance_change:
                break
            ls_evals = 0
            if self.line_search_fn == "strong_wolfe":
                loss, g, t, ls_evals = self._strong_wolfe(evaluate, x, t, d, loss, g, gtd,
                                                          max_ls=self.max_eval - evals)
                x = x + t * d
            else:
                x = x + t * d
                if it != self.max_iter:  # PyTorch skips the last re-evaluation
                    loss, g = evaluate(x)
                    ls_evals = 1
            evals += ls_evals
            st["func_evals"] += ls_evals
            if it == self.max_iter or evals >= self.max_eval:
                break
            if float(jnp.max(jnp.abs(g))) <= self.tolerance_grad:
                break
            if float(jnp.max(jnp.abs(d * t))) <= self.tolerance_change or abs(loss - loss_prev) < self.tolerance_change:
                break
        st.update(d=d, t=t, old_stps=s_hist, old_dirs=y_hist, ro=rho, H_diag=h_diag, prev_flat_grad=g_prev,
                  prev_loss=loss_prev)
        return unravel(x), orig_loss

    @staticmethod
    def _two_loop(q, s_hist, y_hist, rho, h_diag):
        """The L-BFGS two-loop recursion: ``H @ q`` with the stored curvature pairs (N&W algorithm 7.4)."""
        alpha = [None] * len(s_hist)
        for i in range(len(s_hist) - 1, -1, -1):
            alpha[i] = jnp.dot(s_hist[i], q) * rho[i]
            q = q - alpha[i] * y_hist[i]
        r = q * h_diag
        for i in range(len(s_hist)):
            beta = jnp.dot(y_hist[i], r) * rho[i]
            r = r + (alpha[i] - beta) * s_hist[i]
        return r

    def _strong_wolfe(self, evaluate, x, t, d, f0, g0, gtd0, c1=1e-4, c2=0.9, max_ls=25):
        """Step length satisfying the strong Wolfe conditions: bracketing, then zoom (N&W alg. 3.5, 3.6).

        Returns ``(f, g, t, evaluations)`` at the accepted step.
        """
        d_max = float(jnp.max(jnp.abs(d)))
        f, g = evaluate(x + t * d)
        evals, ls_iter = 1, 0
        gtd = float(jnp.dot(g, d))
        t_old, f_old, g_old, gtd_old = 0.0, f0, g0, gtd0
        # Phase 1: grow the step until an interval is known to contain an acceptable point.
        bracket = None
        while ls_iter < max_ls:
            if f > f0 + c1 * t * gtd0 or (ls_iter > 1 and f >= f_old):
                bracket = [[t_old, f_old, g_old, gtd_old], [t, f, g, gtd]]
                break
            if abs(gtd) <= -c2 * gtd0:
                return f, g, t, evals
            if gtd >= 0:
                bracket = [[t_old, f_old, g_old, gtd_old], [t, f, g, gtd]]
                break
            t_next = _cubic_min(t_old, f_old, gtd_old, t, f, gtd, lo=t + 0.01 * (t - t_old), hi=10 * t)
            t_old, f_old, g_old, gtd_old = t, f, g, gtd
            t = t_next
            f, g = evaluate(x + t * d)
            evals += 1
            gtd = float(jnp.dot(g, d))
            ls_iter += 1
        if bracket is None:  # budget spent while growing: keep the better of the start and the last point
            points = [[0.0, f0, g0, gtd0], [t, f, g, gtd]]
            best = points[0] if points[0][1] <= points[1][1] else points[1]
            return best[1], best[2], best[0], evals
        # Phase 2: shrink the bracket [lo, hi] (lo has the lower value) until the conditions hold.
        lo, hi = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        stalled = False
        while ls_iter < max_ls:
            a, b = bracket[0][0], bracket[1][0]
            if abs(b - a) * d_max < self.tolerance_change:
                break
            t = _cubic_min(a, bracket[0][1], bracket[0][3], b, bracket[1][1], bracket[1][3])
            top, bottom = max(a, b), min(a, b)
            margin = 0.1 * (top - bottom)
            if min(top - t, t - bottom) < margin:  # too close to an end: move inside, or note it
                if stalled or t >= top or t <= bottom:
                    t = top - margin if abs(t - top) < abs(t - bottom) else bottom + margin
                    stalled = False
                else:
                    stalled = True
            else:
                stalled = False
            f, g = evaluate(x + t * d)
            evals += 1
            gtd = float(jnp.dot(g, d))
            ls_iter += 1
            if f > f0 + c1 * t * gtd0 or f >= bracket[lo][1]:
                bracket[hi] = [t, f, g, gtd]
                lo, hi = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
            else:
                if abs(gtd) <= -c2 * gtd0:
                    bracket[lo] = [t, f, g, gtd]
                    break
                if gtd * (bracket[hi][0] - bracket[lo][0]) >= 0:
                    bracket[hi] = list(bracket[lo])
                bracket[lo] = [t, f, g, gtd]
        t, f, g, _ = bracket[lo]
        return f, g, t, evals


def lbfgs_minimize(fn: Callable[[Any], jax.Array], params: Any, steps: int = 1,
                   **kwargs: Any) -> tuple[Any, list[float]]:
    """Runs ``steps`` calls of ``LBFGS(**kwargs).step(fn, ·)`` from ``params``.

    Args:
        fn: Scalar loss of the parameters.
        params: Initial pytree of float arrays.
        steps: Number of PyTorch ``optimizer.step(closure)`` calls.
        **kwargs: ``LBFGS`` arguments (lr, max_iter, ..., line_search_fn).

    Returns:
        ``(final params, [loss at the start of each step])``.
    """
    opt = LBFGS(**kwargs)
    losses = []
    for _ in range(steps):
        params, loss = opt.step(fn, params)
        losses.append(loss)
    return params, losses
