"""PyTorch's parameter groups: per-group learning rate, weight decay or freezing, chosen by path pattern."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import jax
import optax

from dlcore.optim._checks import HyperparameterError
from dlcore.optim.hyperparams import injectable
from dlcore.optim.optimizers import _factory, create
from dlcore.optim.paths import named_leaves, path_matcher, path_str

__all__ = ["param_groups"]


def _build(optimizer: str, inject: bool, defaults: dict[str, Any], overrides: dict[str, Any],
           group: str) -> optax.GradientTransformation:
    """One group's optimizer; a bad hyperparameter names the group that set it (or the defaults)."""
    try:
        return (injectable if inject else create)(optimizer, **{**defaults, **overrides})
    except HyperparameterError as err:
        where = group if err.arg.split("[")[0] in overrides else "defaults"
        raise ValueError(f"param_groups: {where}: {err}") from None


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
    {"params": bias_and_bn}], lr=0.05)`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11,
    Avoiding Overfitting Through Regularization, ℓ1 and ℓ2 Regularization). Each group is a dict with
    ``"params"`` (a regex searched in the dotted parameter path such as ``"layers.0.kernel"``, a list of
    regexes, or a function ``(path, array) -> bool``) and any of the optimizer's arguments, which
    override ``defaults``; a
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
        matchers.append(path_matcher(group["params"]))
        if group.get("frozen", False):
            txs[f"group{i}"] = optax.set_to_zero()
        else:
            txs[f"group{i}"] = _build(optimizer, inject, defaults, overrides, f"group {i}")

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
        txs["default"] = _build(optimizer, inject, defaults, {}, "the default group")

    def labels(tree):
        return jax.tree_util.tree_map_with_path(lambda p, v: label(path_str(p), v), tree)

    return optax.partition(txs, labels)
