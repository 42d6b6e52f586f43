"""The update rules PyTorch computes differently from optax, as optax ``GradientTransformation``s.

Each is used by ``dlcore.optim.optimizers`` only where optax's own transform gives another trajectory
than ``torch.optim`` (the docstrings say how). The states are NamedTuples, as optax's are.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore.optim._checks import _is_zero


class TorchMomentumState(NamedTuple):
    """State of ``_torch_momentum``: the update count and the momentum buffer."""

    count: jax.Array
    buf: optax.Updates


def _torch_momentum(momentum: Any, dampening: Any, nesterov: bool) -> optax.GradientTransformation:
    """PyTorch SGD's momentum buffer: ``buf = g`` on the first step, then ``m * buf + (1 - d) * g``.

    optax.trace starts from a zero buffer, ``buf = m * 0 + g = g``, which agrees with PyTorch only when
    the dampening is 0; with dampening PyTorch's first buffer is still the undamped gradient. Also used
    when ``momentum`` is a schedule ``count -> m`` (1cycle's momentum cycling), which optax.trace cannot
    take: with ``dampening=0`` and no Nesterov it is then optax.trace's ``buf <- m * buf + g`` (RMSprop's
    momentum) with ``m`` read at the current count. The state keeps the count beside the buffer, which
    optax.TraceState has no room for.
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


def _momentum(momentum: Any, dampening: Any, nesterov: bool) -> optax.GradientTransformation:
    """PyTorch's momentum buffer: optax.trace where it agrees (no dampening, a fixed momentum factor),
    ``_torch_momentum`` otherwise (SGD's dampening; a scheduled momentum in SGD or RMSprop)."""
    if _is_zero(dampening) and not callable(momentum):
        return optax.trace(decay=momentum, nesterov=nesterov)
    return _torch_momentum(momentum, dampening, nesterov)


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
