"""Learning-rate (and momentum) schedules with ``torch.optim.lr_scheduler``'s names and sequences.

Each factory returns a schedule ``t -> value``: a pure function of the step count, jittable, so it can
be passed as ``lr`` to any ``dlcore.optim`` optimizer (or any optax optimizer). ``t`` counts whatever
the PyTorch scheduler's ``step()`` counts:

* **per step**: ``optim.sgd(lr=schedules.cosine_annealing_lr(0.1, T_max=1000))`` is PyTorch's
  ``scheduler.step()`` after every ``optimizer.step()`` (the schedule is evaluated at the update count);
* **per epoch**: ``dlcore.train.LRScheduler(schedules.exponential_lr(0.05, gamma=0.9))`` with an
  ``optim.injectable`` optimizer is ``scheduler.step()`` at the end of every epoch (the callback writes
  ``schedule(epoch)`` into the optimizer state between epochs, without recompiling); or, inside the
  jitted loop, ``per_epoch(schedule, steps_per_epoch)``.

``schedule(t)`` equals the learning rate PyTorch's optimizer holds after ``t`` calls of
``scheduler.step()`` (tested against PyTorch for every factory). PyTorch's recursive ("chainable")
updates are written here in closed form. Reduce-on-plateau depends on measured values, not on ``t``:
``Plateau`` is its state machine and ``dlcore.train.ReduceLROnPlateau`` the callback.

References:
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Training Deep Neural Networks, sections
    "Learning Rate Scheduling" to "1cycle Scheduling"; the ``torch.optim.lr_scheduler`` documentation
    for the exact sequences.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import optax

from dlcore.checks import check_choice, check_float, check_int
from dlcore.registry import Registry

__all__ = [
    "Plateau",
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "create",
    "exponential_lr",
    "lambda_lr",
    "linear_lr",
    "multistep_lr",
    "names",
    "one_cycle_lr",
    "one_cycle_momentum",
    "per_epoch",
    "polynomial_lr",
    "sequential_lr",
    "step_lr",
]

Schedule = Callable[[Any], Any]


# --------------------------------------------------------------------------------------------------
# Argument checks (construction time, plain Python numbers)
# --------------------------------------------------------------------------------------------------


def _lr(value: Any, name: str = "lr") -> float:
    return check_float(value, name, low=0, finite=False)


def _t(t: Any) -> jnp.ndarray:
    return jnp.asarray(t, jnp.float32)


# --------------------------------------------------------------------------------------------------
# Schedules of the step count
# --------------------------------------------------------------------------------------------------


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``StepLR``: ``lr * gamma ** (t // step_size)``.

    Args:
        lr: Initial learning rate (>= 0).
        step_size: Steps between decays (>= 1).
        gamma: Multiplicative factor of each decay (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, gamma = _lr(lr), check_float(gamma, "gamma", low=0, finite=False)
    step_size = check_int(step_size, "step_size", low=1)
    return lambda t: lr * gamma ** jnp.floor_divide(jnp.asarray(t, jnp.int32), step_size).astype(jnp.float32)


def multistep_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``MultiStepLR``: ``lr * gamma ** (number of milestones <= t)`` (a repeated milestone counts twice).

    Args:
        lr: Initial learning rate (>= 0).
        milestones: Step counts at which the rate is multiplied by ``gamma`` (ints >= 1).
        gamma: Multiplicative factor (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, gamma = _lr(lr), check_float(gamma, "gamma", low=0, finite=False)
    ms = [check_int(m, "milestone", low=1) for m in milestones]
    if not ms:
        raise ValueError("multistep_lr: milestones must not be empty.")
    marks = jnp.asarray(sorted(ms), jnp.int32)
    return lambda t: lr * gamma ** jnp.sum(jnp.asarray(t, jnp.int32) >= marks).astype(jnp.float32)


def exponential_lr(lr: float, gamma: float) -> Schedule:
    """``ExponentialLR``: ``lr * gamma ** t``.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Exponential Scheduling.

    Args:
        lr: Initial learning rate (>= 0).
        gamma: Multiplicative factor per step (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, gamma = _lr(lr), check_float(gamma, "gamma", low=0, finite=False)
    return lambda t: lr * gamma ** _t(t)


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:  # noqa: N803
    """``CosineAnnealingLR``: ``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Cosine Annealing,
    Equation 11-10. Past ``T_max`` the cosine goes on, back up to ``lr`` at
    ``2 * T_max``, as PyTorch's recursive form does (use ``cosine_annealing_warm_restarts`` to restart
    instead).

    Args:
        lr: The largest rate, at ``t = 0`` (>= 0).
        T_max: Steps of the half period (>= 1).
        eta_min: The smallest rate, at ``t = T_max`` (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, eta_min = _lr(lr), _lr(eta_min, "eta_min")
    T_max = check_int(T_max, "T_max", low=1)  # noqa: N806
    return lambda t: eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * _t(t) / T_max)) / 2


def cosine_annealing_warm_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:  # noqa: N803
    """``CosineAnnealingWarmRestarts`` (SGDR): cosine annealing restarted every cycle, cycles growing by ``T_mult``.

    Cycle ``i`` lasts ``T_0 * T_mult**i`` steps; within it ``lr_t = eta_min + (lr - eta_min) *
    (1 + cos(pi * T_cur / T_i)) / 2``. ``t`` may be fractional (PyTorch's ``step(epoch + i / iters)``).

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Cosine Annealing with Warm
    Restarts; Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts" (2017).

    Args:
        lr: The rate at the start of every cycle (>= 0).
        T_0: Steps of the first cycle (>= 1).
        T_mult: Growth factor of the cycle length (int >= 1).
        eta_min: The rate approached at the end of every cycle (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, eta_min = _lr(lr), _lr(eta_min, "eta_min")
    T_0, T_mult = check_int(T_0, "T_0", low=1), check_int(T_mult, "T_mult", low=1)  # noqa: N806

    def schedule(t):
        t = _t(t)
        if T_mult == 1:
            t_cur, t_i = jnp.mod(t, T_0), jnp.float32(T_0)
        else:
            # Cycle n starts at T_0 * (T_mult**n - 1) / (T_mult - 1); the log estimate of n is corrected
            # by one either way, since float32 rounding of the log can land just below an integer.
            def start(n):
                return T_0 * (T_mult ** n - 1) / (T_mult - 1)

            n = jnp.floor(jnp.log(t / T_0 * (T_mult - 1) + 1) / math.log(T_mult))
            n = jnp.where(start(n + 1) <= t, n + 1, n)
            n = jnp.where(start(n) > t, n - 1, n)
            t_cur, t_i = t - start(n), T_0 * T_mult ** n
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2

    return schedule


def linear_lr(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5) -> Schedule:
    """``LinearLR``: the factor goes linearly from ``start_factor`` to ``end_factor`` over ``total_iters``.

    ``lr * (start + (end - start) * min(t, total_iters) / total_iters)``: the book's warm-up from 10% to
    100% over 3 epochs is ``linear_lr(lr, 0.1, 1.0, 3)`` (Géron, Hands-On Machine Learning, PyTorch ed.,
    ch. 11, Warming Up the Learning Rate). Chain it with another
    schedule with ``sequential_lr``.

    Args:
        lr: The base learning rate (>= 0).
        start_factor: Factor at ``t = 0``, in ``(0, 1]``.
        end_factor: Factor from ``t = total_iters`` on, in ``[0, 1]``.
        total_iters: Steps of the ramp (>= 1).

    Returns:
        A schedule ``t -> lr``.
    """
    lr = _lr(lr)
    start = check_float(start_factor, "start_factor", low=0, high=1, low_open=True, finite=False)
    end = check_float(end_factor, "end_factor", low=0, high=1, finite=False)
    total = check_int(total_iters, "total_iters", low=1)
    return lambda t: lr * (start + (end - start) * jnp.minimum(_t(t), total) / total)


def constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> Schedule:
    """``ConstantLR``: ``lr * factor`` for the first ``total_iters`` steps, ``lr`` after.

    Args:
        lr: The base learning rate (>= 0).
        factor: Factor during the first steps, in ``[0, 1]``.
        total_iters: Steps with the reduced rate (>= 1).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, factor = _lr(lr), check_float(factor, "factor", low=0, high=1, finite=False)
    total = check_int(total_iters, "total_iters", low=1)
    return lambda t: jnp.where(_t(t) < total, lr * factor, lr)


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> Schedule:
    """``PolynomialLR``: ``lr * (1 - min(t, total_iters) / total_iters) ** power``.

    Args:
        lr: The base learning rate (>= 0).
        total_iters: Steps until the rate reaches 0 (>= 1).
        power: Exponent of the decay (>= 0).

    Returns:
        A schedule ``t -> lr``.
    """
    lr, power = _lr(lr), check_float(power, "power", low=0, finite=False)
    total = check_int(total_iters, "total_iters", low=1)
    return lambda t: lr * (1 - jnp.minimum(_t(t), total) / total) ** power


def lambda_lr(lr: float, lr_lambda: Callable[[Any], Any]) -> Schedule:
    """``LambdaLR``: ``lr * lr_lambda(t)``; ``lr_lambda`` must be jittable to be used per step.

    Args:
        lr: The base learning rate (>= 0).
        lr_lambda: The factor as a function of the step count.

    Returns:
        A schedule ``t -> lr``.
    """
    lr = _lr(lr)
    if not callable(lr_lambda):
        raise ValueError(f"lambda_lr: lr_lambda must be a function of the step, got {lr_lambda!r}.")
    return lambda t: lr * lr_lambda(t)


def sequential_lr(schedules: Sequence[Schedule], milestones: Sequence[int]) -> Schedule:
    """``SequentialLR``: schedule ``i`` from ``milestones[i - 1]`` on, restarted at its own step 0.

    ``sequential_lr([linear_lr(0.1, 0.1, 1.0, 3), cosine_annealing_lr(0.1, 20)], [3])`` warms up for 3
    steps, then anneals (the book's "warm up, then another schedule":
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Warming Up the Learning Rate). It is
    ``optax.join_schedules``.

    Args:
        schedules: ``k`` schedules.
        milestones: ``k - 1`` increasing step counts (>= 1).

    Returns:
        A schedule ``t -> lr``.
    """
    schedules = list(schedules)
    ms = [check_int(m, "milestone", low=1) for m in milestones]
    if len(schedules) < 1 or len(ms) != len(schedules) - 1:
        raise ValueError(f"sequential_lr: expected len(schedules) - 1 milestones, got {len(schedules)} "
                         f"schedules and {len(ms)} milestones.")
    if any(b <= a for a, b in zip(ms, ms[1:])):
        raise ValueError(f"sequential_lr: milestones must increase, got {ms}.")
    if not all(callable(s) for s in schedules):
        raise ValueError("sequential_lr: every schedule must be a function of the step count.")
    return optax.join_schedules(schedules, ms)


def _one_cycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    if three_phase:
        return [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1]
    return [pct_start * total_steps - 1, total_steps - 1]


def _anneal(strategy: str) -> Callable[[Any, Any, Any], Any]:
    check_choice(strategy, "anneal_strategy", ("cos", "linear"))
    if strategy == "cos":
        return lambda start, end, pct: end + (start - end) / 2 * (jnp.cos(math.pi * pct) + 1)
    return lambda start, end, pct: (end - start) * pct + start


def _piecewise(total_steps: int, pct_start: float, three_phase: bool, anneal_strategy: str,
               values: Sequence[float]) -> Schedule:
    """The 1cycle shape: phase ``i`` goes from ``values[i]`` to ``values[i + 1]`` up to its end step."""
    ends = _one_cycle_phases(total_steps, pct_start, three_phase)
    anneal = _anneal(anneal_strategy)

    def schedule(t):
        t = _t(t)
        out = jnp.float32(values[-1])
        start_step = 0.0
        pieces = []
        for i, end_step in enumerate(ends):
            pct = (t - start_step) / (end_step - start_step)
            pieces.append((end_step, anneal(values[i], values[i + 1], pct)))
            start_step = end_step
        # The first phase whose end is >= t; past the last end, the cycle's final value (PyTorch raises): annealing
        # on would take a linear rate below 0 and a cosine one back up to its maximum.
        for end_step, value in reversed(pieces):
            out = jnp.where(t <= end_step, value, out)
        return out

    return schedule


def _check_one_cycle(total_steps, pct_start, three_phase) -> tuple[int, float]:
    total_steps = check_int(total_steps, "total_steps", low=1)
    pct_start = check_float(pct_start, "pct_start", low=0, high=1, finite=False)
    ends = _one_cycle_phases(total_steps, pct_start, bool(three_phase))
    starts = [0.0] + ends[:-1]
    if any(e <= s for s, e in zip(starts, ends)):
        raise ValueError(f"one_cycle: total_steps={total_steps} and pct_start={pct_start} leave a phase "
                         f"without steps; use more steps or another pct_start.")
    return total_steps, pct_start


def one_cycle_lr(max_lr: float, total_steps: int, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    """``OneCycleLR``'s learning rate: up from ``max_lr / div_factor`` to ``max_lr``, then far down.

    Phase 1 (to step ``pct_start * total_steps - 1``) anneals from ``initial = max_lr / div_factor`` to
    ``max_lr``; phase 2 (to ``total_steps - 1``) from ``max_lr`` to ``initial / final_div_factor``.
    With ``three_phase`` the second phase returns to ``initial`` at ``2 * pct_start * total_steps - 2``
    and a third goes down to the minimum. Steps past ``total_steps - 1`` hold the final value (PyTorch
    raises an error there; annealing on would take a linear rate below 0). Pair it with
    ``one_cycle_momentum`` for the momentum.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, 1cycle Scheduling; Smith, "A
    Disciplined Approach to Neural Network Hyper-Parameters: Part 1" (2018).

    Args:
        max_lr: Peak learning rate (> 0).
        total_steps: Steps of the whole cycle (>= 1): PyTorch's ``total_steps`` or ``epochs *
            steps_per_epoch``.
        pct_start: Fraction of the cycle spent increasing the rate, in ``[0, 1]``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: ``initial = max_lr / div_factor`` (> 0).
        final_div_factor: ``min = initial / final_div_factor`` (> 0).
        three_phase: Use the three-phase variant.

    Returns:
        A schedule ``t -> lr``.
    """
    max_lr = check_float(max_lr, "max_lr", low=0, finite=False)
    div = check_float(div_factor, "div_factor", low=0, low_open=True, finite=False)
    final_div = check_float(final_div_factor, "final_div_factor", low=0, low_open=True, finite=False)
    total_steps, pct_start = _check_one_cycle(total_steps, pct_start, three_phase)
    initial = max_lr / div
    minimum = initial / final_div
    values = [initial, max_lr, initial, minimum] if three_phase else [initial, max_lr, minimum]
    return _piecewise(total_steps, pct_start, bool(three_phase), anneal_strategy, values)


def one_cycle_momentum(total_steps: int, pct_start: float = 0.3, anneal_strategy: str = "cos",
                       base_momentum: float = 0.85, max_momentum: float = 0.95,
                       three_phase: bool = False) -> Schedule:
    """``OneCycleLR``'s momentum cycling: down from ``max_momentum`` to ``base_momentum``, then back up.

    The mirror image of ``one_cycle_lr`` over the same phases (the third phase of ``three_phase`` stays
    at ``max_momentum``). Pass it where PyTorch would cycle it: ``sgd(momentum=...)``,
    ``rmsprop(momentum=...)``, or ``adam(betas=(schedule, 0.999))`` (and ``adamw``, ``nadam``,
    ``adamax``), with the same ``total_steps``.

    Args:
        total_steps: Steps of the whole cycle (>= 1).
        pct_start: Fraction of the cycle spent decreasing the momentum.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        base_momentum: The lowest momentum, at the peak learning rate (>= 0).
        max_momentum: The highest momentum, at the start and end, ``>= base_momentum``.
        three_phase: Use the three-phase variant.

    Returns:
        A schedule ``t -> momentum``.
    """
    base = check_float(base_momentum, "base_momentum", low=0, finite=False)
    top = check_float(max_momentum, "max_momentum", low=base, finite=False)
    total_steps, pct_start = _check_one_cycle(total_steps, pct_start, three_phase)
    values = [top, base, top, top] if three_phase else [top, base, top]
    return _piecewise(total_steps, pct_start, bool(three_phase), anneal_strategy, values)


def per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
    """A per-epoch schedule used per step: ``t -> schedule(t // steps_per_epoch)``.

    Equivalent to PyTorch's ``scheduler.step()`` once per epoch, with no callback: pass the result as
    the optimizer's ``lr`` when every epoch has ``steps_per_epoch`` updates.

    Args:
        schedule: A schedule of the epoch count.
        steps_per_epoch: Optimizer updates per epoch (>= 1).

    Returns:
        A schedule of the update count.
    """
    steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", low=1)
    return lambda t: schedule(jnp.floor_divide(jnp.asarray(t, jnp.int32), steps_per_epoch))


# name -> (factory, PyTorch's class name, "" where PyTorch has no such class)
_BY_NAME: dict[str, tuple[Callable[..., Schedule], str]] = {
    "step": (step_lr, "StepLR"),
    "multistep": (multistep_lr, "MultiStepLR"),
    "exponential": (exponential_lr, "ExponentialLR"),
    "cosine": (cosine_annealing_lr, "CosineAnnealingLR"),
    "cosine_warm_restarts": (cosine_annealing_warm_restarts, "CosineAnnealingWarmRestarts"),
    "linear": (linear_lr, "LinearLR"),
    "constant": (constant_lr, "ConstantLR"),
    "polynomial": (polynomial_lr, "PolynomialLR"),
    "lambda": (lambda_lr, "LambdaLR"),
    "sequential": (sequential_lr, "SequentialLR"),
    "one_cycle": (one_cycle_lr, "OneCycleLR"),
    "one_cycle_momentum": (one_cycle_momentum, ""),
}
_TORCH_KEYS = {torch.lower() for _, torch in _BY_NAME.values() if torch}


def _schedule_key(name: str) -> str:
    """The stored key of a spelling: PyTorch's class name in any case and with or without underscores
    (``"CosineAnnealingLR"``, ``"cosine_annealing_lr"``) is its lower-case alias; otherwise the
    lower-case name without a ``_lr`` suffix (``"step_lr"`` is ``"step"``)."""
    key = name.lower()
    squeezed = key.replace("_", "")
    if squeezed in _TORCH_KEYS:
        return squeezed
    return key[:-3] if key.endswith("_lr") else key


SCHEDULES: Registry[Callable[..., Schedule]] = Registry("schedule", normalize=_schedule_key)
for _name, (_factory, _torch) in _BY_NAME.items():
    SCHEDULES.register(_name, _factory, aliases=[_torch] if _torch else [])
del _name, _factory, _torch


def names() -> list[str]:
    """Names ``create`` knows, sorted."""
    return SCHEDULES.names()


def create(name: str, **kwargs: Any) -> Schedule:
    """Builds a schedule by name: ``create("cosine", lr=0.1, T_max=20)`` is ``cosine_annealing_lr(...)``.

    Names are the PyTorch class names without ``LR``, snake-cased (``step``, ``multistep``,
    ``exponential``, ``cosine``, ``cosine_warm_restarts``, ``linear``, ``constant``, ``polynomial``,
    ``lambda``, ``sequential``, ``one_cycle``, ``one_cycle_momentum``); the ``*_lr`` suffix and
    PyTorch's CamelCase (``"CosineAnnealingLR"``) are accepted too.

    Raises:
        ValueError: For an unknown name (`dlcore.registry.UnknownNameError`, naming the close
            matches), an unknown or missing argument, or a bad value.
    """
    key = SCHEDULES.resolve(name)
    factory = SCHEDULES.get(key)
    signature = inspect.signature(factory)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        raise ValueError(f"schedule {key} takes no argument(s) {', '.join(unknown)}; its arguments are: "
                         f"{', '.join(signature.parameters)}.")
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"schedule {key}{signature}: {err}.") from None
    return factory(**kwargs)


# --------------------------------------------------------------------------------------------------
# Reduce on plateau: a state machine of measured values, not of the step count
# --------------------------------------------------------------------------------------------------


class Plateau:
    """``ReduceLROnPlateau``'s state machine: multiply the rates by ``factor`` when a metric stalls.

    ``step(metric)`` is PyTorch's ``scheduler.step(metric)`` and returns the new rates. A value better
    than ``best`` (``mode="min"``, ``threshold_mode="rel"``: ``metric < best * (1 - threshold)``; ``"abs"``:
    ``metric < best - threshold``; mirrored for ``"max"``) resets the count of bad epochs; after more
    than ``patience`` bad epochs each rate becomes ``max(lr * factor, min_lr)`` (unchanged when the
    decrease is below ``eps``), then ``cooldown`` epochs pass without counting. optax.contrib's
    reduce_on_plateau scales updates inside the step from an averaged loss, a different rule.

    Reference: Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Performance Scheduling.

    Args:
        lr: The current learning rate, or one per parameter group.
        mode: ``"min"`` or ``"max"``.
        factor: Multiplier of each reduction, in ``[0, 1)``.
        patience: Bad epochs tolerated before a reduction (>= 0).
        threshold: Smallest change that counts as an improvement (>= 0).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: Epochs after a reduction during which bad epochs are not counted (>= 0).
        min_lr: Lower bound of the rates (one, or one per group).
        eps: Smallest reduction that is applied.
    """

    def __init__(self, lr: float | Sequence[float], mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8):
        check_choice(mode, "mode", ("min", "max"), who="Plateau")
        check_choice(threshold_mode, "threshold_mode", ("rel", "abs"), who="Plateau")
        self.factor = check_float(factor, "factor", low=0, high=1, high_open=True, finite=False)
        check_int(patience, "patience", low=0, who="Plateau")
        check_int(cooldown, "cooldown", low=0, who="Plateau")
        self.lrs = [_lr(v) for v in ([lr] if isinstance(lr, numbers.Real) else lr)]
        mins = [min_lr] * len(self.lrs) if isinstance(min_lr, numbers.Real) else list(min_lr)
        if len(mins) != len(self.lrs):
            raise ValueError(f"Plateau: {len(self.lrs)} rates but {len(mins)} min_lr values.")
        self.min_lrs = [_lr(v, "min_lr") for v in mins]
        self.mode, self.threshold_mode = mode, threshold_mode
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.threshold = check_float(threshold, "threshold", low=0, finite=False)
        self.eps = check_float(eps, "eps", low=0, finite=False)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            bound = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return metric < bound
        bound = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return metric > bound

    def step(self, metric: float) -> list[float]:
        """Records one epoch's ``metric``; returns the rates to use from now on."""
        metric = float(metric)
        self.last_epoch += 1
        if self.is_better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new = []
            for lr, low in zip(self.lrs, self.min_lrs):
                reduced = max(lr * self.factor, low)
                new.append(reduced if lr - reduced > self.eps else lr)
            self.lrs = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return list(self.lrs)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state, for checkpoints."""
        return {"lrs": self.lrs, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_epoch": self.last_epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restores ``state_dict()``."""
        self.lrs = [float(v) for v in d["lrs"]]
        self.best = float(d["best"])
        self.num_bad_epochs = int(d["num_bad_epochs"])
        self.cooldown_counter = int(d["cooldown_counter"])
        self.last_epoch = int(d["last_epoch"])
