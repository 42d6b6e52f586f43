"""Parameters by dotted path: names as ``model.named_parameters()`` gives them, patterns that select
them, and the boolean masks optax takes (``mask=``).

A pattern (``Pattern``) is a regex searched in the dotted path (``"layers.0.kernel"``), a list of regexes,
or a function ``(path, array) -> bool`` such as ``no_decay``. Parameter groups, penalties, pruning and
freezing (``dlcore.transfer``) all select parameters this way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Pattern", "decay_mask", "mask_of", "named_leaves", "no_decay", "path_matcher", "path_str",
           "weights_only"]

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


def as_params(params: Any) -> Any:
    """The ``nnx.Param`` state of a module; any other pytree as it is."""
    from flax import nnx

    if isinstance(params, nnx.Module):
        return nnx.state(params, nnx.Param)
    return params


def named_leaves(params: Any) -> list[tuple[str, Any]]:
    """``(dotted path, array)`` of every leaf, as ``model.named_parameters()`` lists them.

    Args:
        params: An ``nnx.Module`` (its ``nnx.Param`` state), an ``nnx.State`` or any pytree of arrays.
    """
    return [(path_str(p), v) for p, v in jax.tree_util.tree_flatten_with_path(as_params(params))[0]]


def path_matcher(pattern: Pattern) -> Callable[[str, Any], bool]:
    """The predicate ``(dotted path, array) -> bool`` that ``pattern`` stands for.

    Args:
        pattern: A regex searched in the dotted path, a list of regexes (any may match), or a function
            ``(path, array) -> bool``, returned as it is.

    Raises:
        ValueError: For an empty list, a non-string entry or a regex that does not compile.
    """
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
    ``"bias" in name or "bn" in name`` (Géron, Hands-On Machine Learning, PyTorch ed., ch. 11,
    Avoiding Overfitting Through Regularization, ℓ1 and ℓ2 Regularization), without relying on the
    attribute names.
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
    match = path_matcher(where)
    return jax.tree_util.tree_map_with_path(lambda p, v: bool(match(path_str(p), v)), as_params(params))


def decay_mask(params: Any) -> Any:
    """``mask_of(params, weights_only)``: for ``optax.add_decayed_weights(wd, mask=...)`` and friends."""
    return mask_of(params, weights_only)
