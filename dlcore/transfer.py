r"""Transfer learning: new heads, frozen backbones, differential learning rates, precomputed features,
ensembles.

The books' recipe (Ketkar & Moolayil, Deep Learning with Python, 2nd ed., ch. 6, the VGG16 transfer
learning of Listing 6-15; Subramanian, Deep Learning with PyTorch, ch. 5, Classifying dogs and cats using
transfer learning, and ch. 8, Modern Network Architectures; Géron, Hands-On Machine Learning, PyTorch
ed., ch. 11, Reusing Pretrained Layers, Transfer Learning with PyTorch, and ch. 12, Pretrained Models
for Transfer Learning): take a trained network, put a new classifier head on it
(``model.fc = nn.Linear(512, 2)``), freeze the rest (``requires_grad = False``) and train the head,
then unfreeze and fine-tune at a lower learning rate.
Here freezing is an optimizer matter, as everywhere in optax: a frozen parameter's update is zero and
it has no optimizer state at all (``optim.param_groups`` with ``"frozen": True``). When the backbone
is frozen for good, its outputs can be computed once ("pre-convoluted features": Subramanian, ch. 5,
Calculating pre-convoluted features) and a small head trained on them in seconds.

Example:
    >>> model = dlcore.models.create("resnet18", num_classes=1000)
    >>> transfer.replace_head(model, "fc", Linear(512, 2, rngs=nnx.Rngs(0)))
    >>> tx = transfer.trainable(model, r"^fc\.", "sgd", lr=1e-3, momentum=0.9)   # head only
    >>> tx = transfer.differential_lr(model, {r"^fc\.": 1e-3}, "sgd", lr=1e-4)  # fine-tune all
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dlcore import optim

__all__ = ["dense_to_conv", "differential_lr", "ensemble_predict", "extract_features", "freeze", "frozen_paths",
           "precompute_features", "replace_head", "trainable"]


# -- heads ----------------------------------------------------------------------------------------


def _child(parent: Any, key: str) -> Any:
    if hasattr(parent, key):
        return getattr(parent, key)
    if key.lstrip("-").isdigit() and hasattr(parent, "__getitem__") and hasattr(parent, "__len__"):
        try:  # nnx.List children (an MLP's "layers.3")
            return parent[int(key)]
        except (IndexError, KeyError, TypeError):
            pass
    raise AttributeError(key)


def _set_child(parent: Any, key: str, value: Any) -> None:
    if hasattr(parent, key) or not key.lstrip("-").isdigit():
        setattr(parent, key, value)
    else:
        parent[int(key)] = value


def replace_head(model: nnx.Module, attr: str, new_module: Any) -> nnx.Module:
    """Put ``new_module`` in place of the submodule at ``attr``: the book's ``model.fc = nn.Linear(...)``.

    Args:
        model: The network, changed in place.
        attr: Attribute path of the head, dotted for nested children: ``"fc"`` (ResNet),
            ``"classifier.6"`` (VGG), ``"classifier.1"`` (MobileNetV2), ``"14"`` (a Sequential),
            ``"layers.3"`` (an ``MLP``'s ``nnx.List``).
        new_module: The new head (an ``nnx.Module`` or any callable layer).

    Returns:
        ``model`` itself, for chaining.

    Raises:
        AttributeError: When ``attr`` names no existing submodule (the message names the attribute and
            lists the children present at the level where the lookup failed).
    """
    if not isinstance(attr, str) or not attr:
        raise ValueError(f"replace_head: attr must be a non-empty attribute path such as 'fc', got {attr!r}.")
    parts = attr.split(".")
    parent = model
    for depth, key in enumerate(parts):
        try:
            current = _child(parent, key)
        except AttributeError:
            where = ".".join(parts[:depth]) or type(model).__name__
            children = sorted(n for n, v in vars(parent).items() if isinstance(v, nnx.Module))
            if not children and hasattr(parent, "__len__"):
                children = [str(i) for i in range(len(parent))]
            raise AttributeError(
                f"replace_head: {type(model).__name__} has no submodule {attr!r} ({where} has no attribute "
                f"{key!r}); its children there are: {', '.join(children) or '(none)'}.") from None
        if depth < len(parts) - 1:
            parent = current
    _set_child(parent, parts[-1], new_module)
    return model


def dense_to_conv(linear: nnx.Linear, feature_shape: Sequence[int], *, flatten_order: str = "hwc",
                  stride: int = 1) -> nnx.Module:
    """The convolution that computes what a dense layer on flattened feature maps computes, weights copied.

    Géron, ch. 12, Fully Convolutional Networks: a dense layer on top of ``H x W x C`` feature maps is a
    convolution with as many filters as units, an ``H x W`` kernel and "valid" padding; on the same maps it
    gives the same numbers in a ``(B, 1, 1, units)`` array, and on larger maps a grid of them, one per
    ``H x W`` window (Long et al., 2015).

    Args:
        linear: the dense layer (``dlcore.nn.layers.Linear`` or ``nnx.Linear``), ``in_features = H * W * C``.
        feature_shape: ``(H, W, C)`` of the feature maps the dense layer's input was flattened from.
        flatten_order: how they were flattened: ``"hwc"`` for a channels-last reshape (dlcore's
            ``x.reshape(B, -1)``), ``"chw"`` for PyTorch's ``nn.Flatten`` of NCHW maps (weights ported from
            torch).
        stride: the convolution's stride (1 slides the dense layer over every window).

    Returns:
        A ``dlcore.nn.conv.Conv2d(C, units, (H, W), stride)`` holding the dense layer's weights.
    """
    from dlcore.nn.conv import Conv2d

    if not isinstance(linear, nnx.Linear):
        raise ValueError(f"dense_to_conv: linear must be a Linear layer, got {type(linear).__name__}")
    try:
        h, w, c = (int(v) for v in feature_shape)
    except (TypeError, ValueError):
        raise ValueError(f"dense_to_conv: feature_shape must be (H, W, C), got {feature_shape!r}") from None
    if min(h, w, c) < 1 or h * w * c != linear.in_features:
        raise ValueError(f"dense_to_conv: feature_shape {(h, w, c)} holds {h * w * c} features but the layer takes "
                         f"{linear.in_features}; give the (H, W, C) its input was flattened from")
    if flatten_order not in ("hwc", "chw"):
        raise ValueError(f"dense_to_conv: flatten_order must be 'hwc' or 'chw', got {flatten_order!r}")
    out = linear.out_features
    kernel = jnp.asarray(linear.kernel[...])
    kernel = (kernel.reshape(h, w, c, out) if flatten_order == "hwc"
              else kernel.reshape(c, h, w, out).transpose(1, 2, 0, 3))  # (H, W, C, out): Flax's HWIO
    conv = Conv2d(c, out, (h, w), stride, bias=linear.bias is not None, rngs=nnx.Rngs(0))
    conv.kernel[...] = kernel.astype(conv.kernel[...].dtype)
    if linear.bias is not None:
        conv.bias[...] = linear.bias[...]
    return conv


# -- freezing and learning rates ------------------------------------------------------------------


def frozen_paths(model_or_params: Any, where: optim.Pattern) -> list[str]:
    """The dotted parameter paths ``where`` matches (what ``freeze`` would freeze), in tree order."""
    match = optim.path_matcher(where)
    return [p for p, v in optim.named_leaves(model_or_params) if match(p, v)]


def _build(model_or_params: Any, frozen: set[str], groups: Sequence[dict], optimizer: str,
           defaults: dict) -> optax.GradientTransformation:
    leaves = optim.named_leaves(model_or_params)
    if not leaves:
        raise ValueError("transfer: the model has no parameters.")
    if len(frozen) == len(leaves):
        raise ValueError("transfer: every parameter would be frozen; nothing would train.")
    all_groups = list(groups)
    if frozen:
        all_groups = [{"params": lambda p, v: p in frozen, "frozen": True}, *all_groups]
    if not all_groups:
        return optim.create(optimizer, **defaults)
    return optim.param_groups(model_or_params, all_groups, optimizer, **defaults)


def freeze(model_or_params: Any, where: optim.Pattern, optimizer: str = "sgd",
           **defaults: Any) -> optax.GradientTransformation:
    """An optimizer that leaves the parameters ``where`` matches untouched: ``requires_grad = False``.

    Frozen parameters get a zero update and no optimizer state (no momentum or Adam moments are
    allocated for them), as PyTorch when they are left out of the optimizer. Batch-norm running
    statistics are not parameters: as in PyTorch they still move when the model runs in train mode;
    to keep a backbone entirely fixed, run it in eval mode once (``precompute_features``).

    Args:
        model_or_params: The model (or its parameter state), to resolve the patterns now.
        where: What to freeze: a regex searched in dotted paths (``"^features\\."``), a list of regexes,
            or ``fn(path, array) -> bool``.
        optimizer: Optimizer name for the rest (see ``optim.names()``).
        **defaults: Its arguments (``lr=...``, ``momentum=...``).

    Raises:
        ValueError: When ``where`` matches nothing, or everything.
    """
    paths = frozen_paths(model_or_params, where)
    if not paths:
        raise ValueError(f"freeze: the pattern {where!r} matches no parameter.")
    return _build(model_or_params, set(paths), [], optimizer, defaults)


def trainable(model_or_params: Any, where: optim.Pattern, optimizer: str = "sgd",
              **defaults: Any) -> optax.GradientTransformation:
    """The converse of ``freeze``: only the parameters ``where`` matches train (e.g. a new head).

    ``trainable(model, "^fc\\.", "sgd", lr=1e-3)`` is the book's ``for p in model.parameters():
    p.requires_grad = False`` followed by a new ``model.fc`` (Géron, Hands-On Machine Learning,
    PyTorch ed., ch. 12, Pretrained Models for Transfer Learning; Subramanian, Deep Learning with
    PyTorch, ch. 5, Freezing the layers).

    Raises:
        ValueError: When ``where`` matches no parameter.
    """
    match = optim.path_matcher(where)
    leaves = optim.named_leaves(model_or_params)
    if not any(match(p, v) for p, v in leaves):
        raise ValueError(f"trainable: the pattern {where!r} matches no parameter.")
    frozen = {p for p, v in leaves if not match(p, v)}
    return _build(model_or_params, frozen, [], optimizer, defaults)


def differential_lr(model_or_params: Any, lrs: Mapping[Any, float] | Sequence[tuple[Any, float]],
                    optimizer: str = "sgd", *, frozen: optim.Pattern | None = None,
                    **defaults: Any) -> optax.GradientTransformation:
    """Per-layer learning rates (discriminative fine-tuning): a thin wrapper over ``optim.param_groups``.

    ``differential_lr(model, {"^fc\\.": 1e-3}, "sgd", lr=1e-4)`` trains the head at 1e-3 and
    everything else at ``lr`` (the book's ``SGD([{"params": model.fc.parameters(), "lr": 1e-3}],
    lr=1e-4)``). The first pattern that matches a parameter gives its rate.

    Args:
        model_or_params: The model or its parameter state.
        lrs: ``{pattern: lr}`` or ``[(pattern, lr), ...]``, in priority order.
        optimizer: Optimizer name.
        frozen: Optionally, a pattern of parameters to freeze as well.
        **defaults: The optimizer's arguments, ``lr`` being the rate of unmatched parameters.
    """
    items = list(lrs.items()) if isinstance(lrs, Mapping) else list(lrs)
    groups = [{"params": pat, "lr": lr} for pat, lr in items]
    paths = set(frozen_paths(model_or_params, frozen)) if frozen is not None else set()
    if frozen is not None and not paths:
        raise ValueError(f"differential_lr: the frozen pattern {frozen!r} matches no parameter.")
    return _build(model_or_params, paths, groups, optimizer, defaults)


# -- features -------------------------------------------------------------------------------------


def _eval_fn(model_or_fn: Any) -> Callable[[jax.Array], jax.Array]:
    """A jitted eval-mode forward pass of a module (a copy: the caller's mode is left alone), or the
    callable itself."""
    if isinstance(model_or_fn, nnx.Module):
        graphdef, state = nnx.split(model_or_fn)
        clone = nnx.merge(graphdef, state, copy=True)
        clone.eval()
        graphdef, state = nnx.split(clone)
        fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
        return lambda x: fn(state, x)
    if callable(model_or_fn):
        return model_or_fn
    raise TypeError(f"expected an nnx.Module or a callable, got {type(model_or_fn).__name__}")


def _batched(fn: Callable, x: Any, batch_size: int | None) -> np.ndarray:
    x = np.asarray(x)
    if batch_size is None or batch_size >= len(x):
        return np.asarray(fn(jax.device_put(x)))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        pad = batch_size - len(chunk)
        if pad:  # one shape, one compilation
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out.append(np.asarray(fn(jax.device_put(chunk)))[: batch_size - pad])
    return np.concatenate(out)


def extract_features(model: nnx.Module, x: Any, upto: str, *, batch_size: int | None = 256,
                     flatten: bool = False) -> np.ndarray:
    """The output of submodule ``upto`` for inputs ``x``, in eval mode: a backbone's features.

    The whole model runs (a forward hook records the layer), on an eval-mode copy, so batch norm uses
    its running averages and dropout is off; the caller's model is not changed.

    Args:
        model: The network.
        x: Inputs ``(N, ...)``.
        upto: Attribute path of the layer whose output to return (``"features"``, ``"layer4"``,
            ``"conv_unit_4"``); see ``dlcore.inspect.summary`` for the names.
        batch_size: Rows per forward pass (None: all at once).
        flatten: Flatten each example's features to one vector.

    Returns:
        A NumPy array ``(N, ...)`` (``(N, D)`` when flattened).
    """
    from dlcore.inspect import _recording

    graphdef, state = nnx.split(model)
    clone = nnx.merge(graphdef, state, copy=True)
    clone.eval()

    def fn(xb):
        with _recording(clone, [upto]) as records:
            clone(xb)
        return records[upto]

    out = _batched(fn, x, batch_size)
    return out.reshape(len(out), -1) if flatten else out


def precompute_features(backbone_fn: Any, split: Mapping[str, Any], batch_size: int = 256, *,
                        flatten: bool = True) -> dict[str, np.ndarray]:
    """Run a frozen backbone over a split once: ``{"x": features, "y": labels, ...}`` to train a head on.

    The "pre-convoluted features" of Subramanian, Deep Learning with PyTorch, ch. 5, Calculating
    pre-convoluted features: the convolutional part of a pretrained network is
    applied to every image once, and only the classifier is trained, on its outputs, for many epochs.

    Args:
        backbone_fn: An ``nnx.Module`` (run in eval mode, on a copy) or a function ``x -> features``.
        split: A split with ``"x"`` and usually ``"y"``; its other arrays are passed through.
        batch_size: Rows per forward pass.
        flatten: Flatten each example's features to a vector (what a Linear head takes).
    """
    if "x" not in split:
        raise ValueError(f"precompute_features: the split needs an 'x' array; it has {sorted(split)}")
    fn = _eval_fn(backbone_fn)
    feats = _batched(fn, split["x"], batch_size)
    if flatten:
        feats = feats.reshape(len(feats), -1)
    return {**{k: np.asarray(v) for k, v in split.items() if k != "x"}, "x": feats}


# -- ensembles ------------------------------------------------------------------------------------


def ensemble_predict(models_or_fns: Sequence[Any], x: Any, *, batch_size: int | None = 256,
                     transform: Callable[[jax.Array], jax.Array] | None = jax.nn.softmax) -> np.ndarray:
    """The mean of several models' probabilities: the book's ensemble of classifiers (Subramanian,
    Deep Learning with PyTorch, ch. 8, Model ensembling).

    Each member's outputs (logits or log-probabilities: softmax gives the same probabilities for
    both) go through ``transform`` and are averaged; ``argmax`` of the result is the ensemble's vote.
    For a binary model with one logit, pass ``transform=jax.nn.sigmoid``.

    Args:
        models_or_fns: ``nnx.Module``s (run in eval mode, on copies) or functions ``x -> outputs``,
            e.g. ``lambda x: head(backbone_features(x))``.
        x: Inputs ``(N, ...)``.
        batch_size: Rows per forward pass.
        transform: Applied to each member's outputs before averaging (None: average raw outputs).

    Returns:
        ``(N, C)`` mean probabilities as a NumPy array.
    """
    members = list(models_or_fns)
    if not members:
        raise ValueError("ensemble_predict: no models given.")
    total = None
    for m in members:
        fn = _eval_fn(m)
        out = _batched(lambda xb, fn=fn: transform(fn(xb)) if transform else fn(xb), x, batch_size)
        if total is not None and out.shape != total.shape:
            raise ValueError(f"ensemble_predict: members disagree on the output shape: {total.shape} vs {out.shape}")
        total = out.astype(np.float64) if total is None else total + out
    return (total / len(members)).astype(np.float32)
