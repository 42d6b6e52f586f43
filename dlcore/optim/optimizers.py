"""The optimizers by name, with ``torch.optim``'s arguments, defaults and update rules, built from optax.

Each factory takes ``torch.optim``'s arguments (same names, same defaults) and returns an
``optax.GradientTransformation`` whose trajectory matches ``torch.optim`` given the same initial
parameters and gradients: optax transforms composed in PyTorch's order, and the transforms of
``dlcore.optim.transforms`` where optax's rule differs. ``create(name, **kwargs)`` builds one by name.

Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers (each factory
names its section); the ``torch.optim`` documentation for the exact update rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import optax

from dlcore.optim._checks import _check, _check_flag, _concrete, _is_zero
from dlcore.optim.transforms import (
    _momentum,
    _scale_by_torch_adagrad,
    _scale_by_torch_adam,
    _scale_by_torch_adamax,
    _scale_by_torch_nadam,
)
from dlcore.registry import Registry

__all__ = ["OPTIMIZERS", "adadelta", "adagrad", "adam", "adamax", "adamw", "create", "names", "nadam",
           "rmsprop", "sgd"]

ScalarOrSchedule = float | jax.Array | optax.Schedule

OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer", normalize=str.lower)


def _decay(weight_decay: Any) -> list[optax.GradientTransformation]:
    """Coupled (L2) weight decay, ``g + wd * p``: applied first, as PyTorch adds it to the gradient."""
    return [] if _is_zero(weight_decay) else [optax.add_decayed_weights(weight_decay)]


def _chain(scaling: optax.GradientTransformation, lr: Any, weight_decay: Any, *,
           decoupled: bool = False) -> optax.GradientTransformation:
    """PyTorch's order: coupled decay, the optimizer's scaling, decoupled decay (AdamW's), ``-lr``."""
    parts = [] if decoupled else _decay(weight_decay)
    parts.append(scaling)
    if decoupled and not _is_zero(weight_decay):
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


@OPTIMIZERS.register("sgd")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, Momentum
    and Nesterov Accelerated Gradient; Sutskever et al., "On the importance of initialization and
    momentum in deep learning" (2013).

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
    _check("lr", lr, schedule=True, who="sgd")
    _check("momentum", momentum, schedule=True, who="sgd")
    _check("dampening", dampening, who="sgd")
    _check("weight_decay", weight_decay, who="sgd")
    _check_flag("nesterov", nesterov, who="sgd")
    m, d = _concrete(momentum), _concrete(dampening)
    if nesterov and ((m is not None and m == 0) or (d is not None and d != 0)):
        raise ValueError("sgd: Nesterov momentum requires a momentum and zero dampening.")
    parts = _decay(weight_decay)
    if not _is_zero(momentum):
        parts.append(_momentum(momentum, dampening, nesterov))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def _check_adam_args(who: str, lr: Any, betas: tuple[Any, Any], eps: Any, weight_decay: Any,
                     flags: dict[str, Any], **more: Any) -> None:
    """The Adam family's checks, in PyTorch's order: lr, eps, weight decay, any ``more``, then betas."""
    _check("lr", lr, schedule=True, who=who)
    _check("eps", eps, who=who)
    _check("weight_decay", weight_decay, who=who)
    for name, value in more.items():
        _check(name, value, who=who)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{who}: betas must be a pair (beta1, beta2), got {betas!r}")
    if callable(betas[1]) and not isinstance(betas[1], jax.core.Tracer):
        raise ValueError(f"{who}: betas[1] cannot be a schedule; only beta1 may be (1cycle's momentum cycling)")
    _check("betas[0]", betas[0], 0, 1, high_open=True, schedule=True, who=who)
    _check("betas[1]", betas[1], 0, 1, high_open=True, who=who)
    for name, value in flags.items():
        _check_flag(name, value, who=who)


@OPTIMIZERS.register("adam")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, Adam; Kingma & Ba,
    "Adam: A Method for Stochastic Optimization" (2015); Reddi et al., "On the Convergence of Adam and
    Beyond" (2018) for AMSGrad.

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
    _check_adam_args("adam", lr, betas, eps, weight_decay, {"amsgrad": amsgrad})
    return _chain(_scale_by_torch_adam(betas[0], betas[1], eps, amsgrad), lr, weight_decay)


@OPTIMIZERS.register("adamw")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, AdamW; Loshchilov &
    Hutter, "Decoupled Weight Decay Regularization" (2019).

    Args:
        lr: Learning rate (>= 0) or an optax schedule.
        betas: Decay rates of the moment estimates, each in ``[0, 1)``; beta1 may be a schedule.
        eps: Added to the denominator's root (>= 0).
        weight_decay: Decoupled decay coefficient (>= 0); PyTorch's default 1e-2.
        amsgrad: Use the AMSGrad variant.

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check_adam_args("adamw", lr, betas, eps, weight_decay, {"amsgrad": amsgrad})
    return _chain(_scale_by_torch_adam(betas[0], betas[1], eps, amsgrad), lr, weight_decay, decoupled=True)


@OPTIMIZERS.register("adamax")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, AdaMax; Kingma & Ba,
    "Adam: A Method for Stochastic Optimization" (2015), section 7.1.

    Args:
        lr: Learning rate (>= 0) or an optax schedule; PyTorch's default 2e-3.
        betas: Decay rates of the first moment and of the infinity norm, each in ``[0, 1)``; beta1 may be
            a schedule.
        eps: Added to ``|g|`` inside the max (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check_adam_args("adamax", lr, betas, eps, weight_decay, {})
    return _chain(_scale_by_torch_adamax(betas[0], betas[1], eps), lr, weight_decay)


@OPTIMIZERS.register("nadam")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, NAdam (and
    Nadam 1e-3 for the translation model of ch. 14, An Encoder-Decoder Network for Neural Machine
    Translation); Dozat, "Incorporating Nesterov Momentum into Adam" (2016).

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
    _check_adam_args("nadam", lr, betas, eps, weight_decay, {"decoupled_weight_decay": decoupled_weight_decay},
                     momentum_decay=momentum_decay)
    return _chain(_scale_by_torch_nadam(betas[0], betas[1], eps, momentum_decay), lr, weight_decay,
                  decoupled=decoupled_weight_decay)


@OPTIMIZERS.register("rmsprop")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, RMSProp; Ketkar &
    Moolayil, Deep Learning with Python, 2nd ed., ch. 3, RMSprop and Listing 3-5 (centered, momentum
    0.1); Hinton, Coursera lecture 6e (2012); Graves, "Generating Sequences With Recurrent Neural
    Networks" (2013) for the centered form.

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
    _check("lr", lr, schedule=True, who="rmsprop")
    _check("eps", eps, who="rmsprop")
    _check("momentum", momentum, schedule=True, who="rmsprop")
    _check("weight_decay", weight_decay, who="rmsprop")
    _check("alpha", alpha, who="rmsprop")
    _check_flag("centered", centered, who="rmsprop")
    parts = _decay(weight_decay)
    if centered:
        parts.append(optax.scale_by_stddev(decay=alpha, eps=eps, eps_in_sqrt=False))
    else:
        parts.append(optax.scale_by_rms(decay=alpha, eps=eps, eps_in_sqrt=False))
    if not _is_zero(momentum):
        parts.append(_momentum(momentum, 0.0, False))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


@OPTIMIZERS.register("adadelta")
def adadelta(
    lr: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adadelta with PyTorch's defaults (``lr=1.0``, ``rho=0.9``, ``eps=1e-6``) and coupled decay.

    ``delta = sqrt(E[dx**2] + eps) / sqrt(E[g**2] + eps) * g`` and the step is ``-lr * delta``; optax's
    scale_by_adadelta computes exactly this.

    Reference: Jha, Mastering PyTorch, ch. 1, A refresher on deep learning, Optimization schedule, and
    its MNIST ConvNet (Training a neural network using PyTorch: Adadelta lr 0.5); Zeiler, "ADADELTA: An
    Adaptive Learning Rate Method" (2012).

    Args:
        lr: Coefficient that scales delta (>= 0) or an optax schedule.
        rho: Decay of the running averages, in ``[0, 1]``.
        eps: Added inside both roots (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("lr", lr, schedule=True, who="adadelta")
    _check("rho", rho, 0, 1, who="adadelta")
    _check("eps", eps, who="adadelta")
    _check("weight_decay", weight_decay, who="adadelta")
    return _chain(optax.scale_by_adadelta(rho=rho, eps=eps), lr, weight_decay)


@OPTIMIZERS.register("adagrad")
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

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, AdaGrad;
    Duchi et al., "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization" (2011).

    Args:
        lr: Learning rate (>= 0) or an optax schedule (``lr_decay`` then divides the schedule's value).
        lr_decay: Learning-rate decay (>= 0).
        weight_decay: Coupled L2 penalty (>= 0).
        initial_accumulator_value: Starting value of the sum of squares (>= 0).
        eps: Added to the denominator (>= 0).

    Returns:
        An ``optax.GradientTransformation``.
    """
    _check("lr", lr, schedule=True, who="adagrad")
    _check("lr_decay", lr_decay, who="adagrad")
    _check("weight_decay", weight_decay, who="adagrad")
    _check("initial_accumulator_value", initial_accumulator_value, who="adagrad")
    _check("eps", eps, who="adagrad")
    rate = lr
    if not _is_zero(lr_decay):
        base = lr if callable(lr) else (lambda count: lr)

        def rate(count):
            return base(count) / (1 + count * lr_decay)

    return _chain(_scale_by_torch_adagrad(initial_accumulator_value, eps), rate, weight_decay)


def _factory(name: str) -> Callable[..., optax.GradientTransformation]:
    """The factory registered as ``name``, or the error that says why there is none."""
    if isinstance(name, str) and name.strip().lower() == "lbfgs":
        raise ValueError("LBFGS is not an optax transformation (it evaluates the function itself): use "
                         "dlcore.optim.LBFGS(...).step(fn, params) or dlcore.optim.lbfgs_minimize.")
    return OPTIMIZERS.get(name)


def names() -> list[str]:
    """Names ``create`` knows, sorted."""
    return OPTIMIZERS.names()


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
        ValueError: For an unknown name (``dlcore.registry.UnknownNameError``, with the close matches), an
            argument the optimizer does not take, or a bad value.
    """
    factory = _factory(name)
    key = OPTIMIZERS.resolve(name)
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
