"""Looking inside a model: summaries, intermediate activations, batch-norm folding, grids.

MC-dropout prediction lives with the dropout layers: `dlcore.nn.regularization.mc_predict`.

The books look inside PyTorch models with forward hooks (`register_forward_hook`) and `torchsummary`;
here the same questions are answered by running the model with its submodules' calls recorded.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _name(path) -> str:
    return ".".join(str(p) for p in path)


def _params(module: nnx.Module) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param))))


@contextlib.contextmanager
def _recording(model: nnx.Module, layers: Iterable[str] | None):
    """Record the output of each selected submodule's `__call__` (a forward hook per layer).

    Each selected instance is given, for the duration, a subclass of its own class whose `__call__`
    stores its output; the original classes are put back on exit.
    """
    wanted = None if layers is None else set(layers)
    records: dict[str, Any] = {}
    swapped = []
    modules = {_name(p): m for p, m in nnx.iter_modules(model) if p}
    if wanted is not None:
        missing = sorted(wanted - set(modules))
        if missing:
            raise ValueError(f"no layer named {missing[0]!r} in {type(model).__name__}; layers: "
                             f"{', '.join(sorted(modules)[:40])}")
    for name, mod in modules.items():
        if wanted is not None and name not in wanted:
            continue
        cls = type(mod)

        def call(self, *args, __name=name, __cls=cls, **kwargs):
            out = __cls.__call__(self, *args, **kwargs)
            records[__name] = out
            return out

        object.__setattr__(mod, "__class__", type(cls.__name__, (cls,), {"__call__": call}))
        swapped.append((mod, cls))
    try:
        yield records
    finally:
        for mod, cls in swapped:
            object.__setattr__(mod, "__class__", cls)


def activations(model: nnx.Module, x: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
    """Outputs of the named layers for input `x`: what the books get from forward hooks.

    Args:
        model: the module (its current train/eval mode is used).
        x: a batch, e.g. (N, H, W, C).
        layers: attribute paths of submodules, e.g. ["cn1", "layers.0"].

    Returns:
        {layer path: its output for `x`} (the last call's output when a layer runs several times).
    """
    with _recording(model, layers) as records:
        model(x)
    return dict(records)


def summary(model: nnx.Module, x_shape: Sequence[int], dtype=jnp.float32) -> list[dict[str, Any]]:
    """Layer-by-layer summary: path, type, output shape and parameters, like `torchsummary`.

    Computed abstractly with `jax.eval_shape`: no arithmetic runs.

    Args:
        model: the module.
        x_shape: input shape including the batch, e.g. (1, 224, 224, 3).

    Returns:
        One row per submodule that was called, in call order: {"layer", "type", "output_shape", "params"}.
    """
    order: list[str] = []
    shapes: dict[str, Any] = {}
    types = {_name(p): type(m).__name__ for p, m in nnx.iter_modules(model) if p}
    counts = {_name(p): _params(m) for p, m in nnx.iter_modules(model) if p}

    graphdef, state = nnx.split(model)

    def forward(v):
        # a copy made inside the trace, so layers that update state (dropout RNG counts, batch
        # statistics) do so at this trace level and the user's model is untouched
        copy = nnx.merge(graphdef, state, copy=True)
        with _recording(copy, None) as records:
            out = copy(v)
            for k, o in records.items():
                if k not in shapes:
                    order.append(k)
                shapes[k] = jax.tree.map(lambda a: tuple(a.shape), o)
        return out

    try:
        jax.eval_shape(forward, jax.ShapeDtypeStruct(tuple(x_shape), dtype))
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"input of shape {tuple(x_shape)} does not fit {type(model).__name__}: {text[:300]}") from None
    return [{"layer": k, "type": types[k], "output_shape": shapes[k], "params": counts[k]} for k in order]


def format_summary(rows: list[dict[str, Any]], total: int | None = None) -> str:
    """The rows of `summary` as a text table, with the total parameter count."""
    lines = [f"{'layer':<32} {'type':<20} {'output shape':<24} {'params':>12}"]
    for r in rows:
        lines.append(f"{r['layer']:<32} {r['type']:<20} {str(r['output_shape']):<24} {r['params']:>12,}")
    if total is not None:
        lines.append(f"total parameters: {total:,}")
    return "\n".join(lines)


def fold_batch_norm(conv: nnx.Conv, bn: nnx.BatchNorm) -> nnx.Conv:
    """A copy of `conv` with the following eval-mode `bn` folded into its kernel and bias.

    bn(conv(x)) = scale * (conv(x) - mean) / sqrt(var + eps) + shift, so the folded conv has kernel
    k * s and bias (b - mean) * s + shift with s = scale / sqrt(var + eps), per output channel.
    Outputs are equal (to rounding) and inference skips the normalisation.
    """
    if bn.mean.shape[-1] != conv.out_features:
        raise ValueError(f"batch norm has {bn.mean.shape[-1]} features but the conv has {conv.out_features} outputs")
    s = (bn.scale[...] if bn.scale is not None else 1.0) / jnp.sqrt(bn.var[...] + bn.epsilon)
    shift = bn.bias[...] if bn.bias is not None else 0.0
    folded = nnx.clone(conv)
    b = conv.bias[...] if conv.bias is not None else 0.0
    folded.kernel[...] = conv.kernel[...] * s
    new_bias = (b - bn.mean[...]) * s + shift
    if folded.bias is None:
        folded.bias = nnx.Param(new_bias)
        folded.use_bias = True
    else:
        folded.bias[...] = new_bias
    return folded


def image_grid(images: np.ndarray, ncols: int = 8, pad: int = 1, normalize: bool = True) -> np.ndarray:
    """Tile images (N, H, W) or (N, H, W, C) into one (rows*(H+pad), ncols*(W+pad), C) array.

    With `normalize`, each image is scaled to [0, 1] on its own (as filter visualisations do).
    Used for filter grids (`kernel` (kh, kw, in, out) -> transpose to (out, kh, kw, in)) and
    activation maps.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if normalize:
        lo = images.min(axis=(1, 2, 3), keepdims=True)
        hi = images.max(axis=(1, 2, 3), keepdims=True)
        images = (images - lo) / np.maximum(hi - lo, 1e-12)
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    grid = np.zeros((rows * (h + pad), ncols * (w + pad), c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = img
    return grid


def filter_grid(kernel: jax.Array, ncols: int = 8) -> np.ndarray:
    """The filters of a conv kernel (kh, kw, in, out) as a grid; colour when in = 3, else the first input channel."""
    k = np.asarray(kernel)
    if k.ndim != 4:
        raise ValueError(f"kernel must be (kh, kw, in, out), got shape {k.shape}")
    k = np.transpose(k, (3, 0, 1, 2))  # (out, kh, kw, in)
    return image_grid(k if k.shape[-1] == 3 else k[..., :1], ncols=ncols)
