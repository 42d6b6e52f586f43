"""Weight-only int8 post-training quantization for inference.

Each Linear and Conv kernel ``W`` (dlcore's layout: the output channels on the last axis, (in, out) or
(*k, in/groups, out)) becomes int8 values ``q`` with one float32 scale per output channel::

    scale[o] = max |W[..., o]| / 127          (1 where a channel is all zeros)
    q[..., o] = clip(round(W[..., o] / scale[o]), -127, 127)

symmetric (no zero point), so each weight is off by at most ``scale[o] / 2``. The predict function
dequantizes inside the jitted (or exported) computation, ``W ≈ q * scale``; activations, biases, norms
and their statistics stay float32. Kernels take 4x fewer bytes (plus 4 bytes a channel); the
computation itself stays float32, so this saves memory and file size, not arithmetic.

The books only name quantization: Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch,
ch. 11, Training Deep Neural Networks, Practical Guidelines ("reduce the float precision from 32 bits
to 16 or even 8 bits", with the details in its Appendix B), and Antiga et al., Deep Learning with
PyTorch, 2nd ed., section 3.12, Generalized tensors are tensors, too (quantized tensors, left to a later
chapter). The scheme is the per-channel symmetric weight quantization of Krishnamoorthi (2018),
"Quantizing deep convolutional networks for efficient inference: A whitepaper".

Example:
    >>> q = quantize.quantize_int8(model)           # a dlcore.export.Predictor
    >>> q(x)                                         # close to model.eval(); model(x)
    >>> model_bytes = export.Predictor.from_model(model).kernel_nbytes
    >>> q.kernel_nbytes / model_bytes                # about 1/4
    >>> export.export(q, "model_int8.dlx", input_shape=(28, 28, 1))
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dlcore.export import ExportError, Predictor

__all__ = ["dequantize", "quantize_int8", "quantize_kernel"]


def quantize_kernel(kernel) -> tuple[np.ndarray, np.ndarray]:
    """One kernel's int8 values and per-output-channel scales.

    Args:
        kernel: a float array, output channels on the last axis: (in, out) or (*k, in/groups, out).

    Returns:
        (q, scale): int8 of the kernel's shape, and float32 (out,).

    Raises:
        ValueError: a kernel that is not a float array of rank >= 2, or holds NaN or inf.
    """
    w = np.asarray(kernel)
    if w.ndim < 2 or not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"quantize_kernel needs a float kernel of rank >= 2 (output channels last), got "
                         f"{w.dtype} of shape {w.shape}")
    w = w.astype(np.float32)
    if not np.isfinite(w).all():
        raise ValueError(f"quantize_kernel: the kernel of shape {w.shape} holds NaN or inf; it cannot be quantized")
    amax = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)           # (out,)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def dequantize(q, scale):
    """``q * scale`` as float32: the kernel the predict function uses."""
    return jnp.asarray(q).astype(jnp.float32) * jnp.asarray(scale, jnp.float32)


def quantize_int8(model) -> Predictor:
    """`model` with its Linear and Conv kernels stored as int8, for inference.

    Args:
        model: a Flax NNX module (a dlcore model) or a float `dlcore.export.Predictor`. It is not changed.

    Returns:
        A `Predictor`: callable on a batch (eval mode, jitted, kernels dequantized inside), with
        `kernel_nbytes` and `nbytes` for the size, and exportable by `dlcore.export.export`.

    Raises:
        ValueError: not a module, a model already quantized, one without a Linear or Conv kernel, or a
            kernel holding NaN or inf (named).
    """
    pred = Predictor.from_model(model)
    if pred.int8:
        raise ExportError("quantize_int8: this model's kernels are int8 already")
    if not pred.kernels:
        raise ExportError(f"quantize_int8: {pred.model_name} has no Linear or Conv kernel to quantize")
    weights = dict(pred.weights)
    for name in pred.kernels:
        try:
            q, scale = quantize_kernel(weights.pop(name))
        except ValueError as exc:
            raise ExportError(f"quantize_int8: {name}: {str(exc).split(': ', 1)[-1]}") from None
        weights[name + ".int8"], weights[name + ".scale"] = jnp.asarray(q), jnp.asarray(scale)
    return pred.replace(weights, pred.kernels)
