"""Mixed precision: one dtype policy for a model's parameters, its computation and its outputs.

A `Policy` says three dtypes:

- ``param_dtype``: how parameters are stored and updated (float32): the optimizer state, the gradients
  it receives and every update stay in this dtype, so updates much smaller than a weight are not lost;
- ``compute_dtype``: what the model computes in (bfloat16): inside the step the floating parameters and
  the floating inputs are cast to it, so matrix products and convolutions run on bfloat16 operands
  (half the memory traffic, and the bfloat16 units of recent GPUs and TPUs);
- ``output_dtype``: what the model's outputs are cast to before the loss and the metrics (float32), so
  the loss, its reduction and the metric sums are exact to float32.

The gradient of a cast is the cast back, so gradients arrive in ``param_dtype`` with no extra code. Batch
norm's running statistics are not parameters: they stay float32 (`dlcore.nn.BatchNorm2d` computes its
batch statistics in float32 from bfloat16 activations and hands the next layer bfloat16).

**Where it pays.** On GPUs and TPUs with bfloat16 units. XLA:CPU has no fast bfloat16 matrix product:
on a CPU a bfloat16 step is slower than a float32 one (about 2x for an MLP's matmuls here), so keep
"float32" there.

**No loss scaling.** bfloat16 has float32's exponent range (8 exponent bits), so small gradients do not
underflow and loss scaling is not needed (Kalamkar et al., "A Study of BFLOAT16 for Deep Learning
Training", 2019). float16 (5 exponent bits) needs dynamic loss scaling (Micikevicius et al., "Mixed
Precision Training", 2018), which dlcore does not do: float16 policies are refused with one line.

Named policies (`get`):

====================  ===========  ============  ===========
name                  parameters   computation   outputs
====================  ===========  ============  ===========
``"float32"``         float32      float32       float32      (the default: nothing is cast)
``"mixed_bfloat16"``  float32      bfloat16      float32      (alias ``"bfloat16"``)
====================  ===========  ============  ===========

Unlike Keras, where the policy ``"bfloat16"`` also stores the variables in bfloat16, here ``"bfloat16"``
is the mixed policy: parameters are never stored in bfloat16.

The books only name the idea: Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 11,
Training Deep Neural Networks, Practical Guidelines ("reduce the float precision from 32 bits to 16"),
and Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 3, section 3.6.1 Specifying the numeric type
with dtype (``torch.bfloat16``). PyTorch's ``torch.autocast(dtype=torch.bfloat16)`` is the same policy
applied op by op; here it is applied once, at the edges of the model.

Example (the Trainer):
    >>> trainer = Trainer(model, optim.adam(1e-3), losses.cross_entropy, precision="bfloat16")

Example (a step of your own):
    >>> policy = precision.get("bfloat16")
    >>> def loss(params):
    ...     model = policy.model(state, train=True, key=key, params=params)   # bfloat16 weights
    ...     outputs = policy.call(model, x)                                   # bfloat16 in, float32 out
    ...     return losses.reduce(losses.cross_entropy(outputs, y)), model
    >>> (value, model), grads = jax.value_and_grad(loss, has_aux=True)(state.params)   # float32 grads
    >>> state = state.apply_gradients(grads, policy.restore(model, state))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore.registry import Registry

__all__ = ["Policy", "get", "names"]

_FLOAT16 = ("float16", "mixed_float16", "fp16", "half")
_FLOAT16_LINE = ("float16 needs dynamic loss scaling, which dlcore does not do; use 'bfloat16' (float32's "
                 "range, no loss scaling, the same speed on hardware with bfloat16 units)")


def _dtype(value: Any, name: str) -> np.dtype:
    """`value` as a NumPy dtype accepted by a policy, or one line saying why not."""
    try:
        if value is None:
            raise TypeError
        dt = jnp.dtype(value)
    except TypeError:
        raise ValueError(f"Policy: {name} must be a floating dtype such as jnp.float32 or 'bfloat16', got "
                         f"{value!r}") from None
    if dt == jnp.float16:
        raise ValueError(f"Policy: {name}={dt.name}: {_FLOAT16_LINE}")
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"Policy: {name} must be a floating dtype (bfloat16, float32, float64), got {dt.name}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(f"Policy: {name}=float64 needs jax.config.update('jax_enable_x64', True) first")
    return dt


def _is_float(a) -> bool:
    return hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)


def _cast(tree, dtype):
    """Every floating leaf of `tree` as `dtype`; integer, boolean and key leaves (token ids, step counts,
    PRNG keys) and None untouched."""
    return jax.tree.map(lambda a: a.astype(dtype) if _is_float(a) and a.dtype != dtype else a, tree)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype parameters are stored in, the model computes in, and its outputs are cast to.

    Hashable (a `jax.jit` static argument). Build one directly, or by name with `get`.

    Args:
        param_dtype: storage of parameters, gradients and optimizer state: float32 (or float64).
        compute_dtype: what the model runs in: bfloat16, float32 or float64.
        output_dtype: the model outputs before the loss and metrics: float32 (or float64).

    Raises:
        ValueError: (one line) an integer or unknown dtype, float16 anywhere (it needs loss scaling,
            see the module docstring), parameters or outputs narrower than float32, or float64 without
            ``jax_enable_x64``.

    Example:
        >>> p = Policy()                      # float32 parameters, bfloat16 compute, float32 outputs
        >>> p.cast_inputs({"ids": ids, "x": x})  # x becomes bfloat16, the integer ids stay as they are
    """

    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.bfloat16
    output_dtype: Any = jnp.float32

    def __post_init__(self):
        for name in ("param_dtype", "compute_dtype", "output_dtype"):
            object.__setattr__(self, name, _dtype(getattr(self, name), name))
        for name in ("param_dtype", "output_dtype"):
            dt = getattr(self, name)
            if dt.itemsize < 4:
                why = ("an optimizer step smaller than 1/256 of a weight would be lost" if name == "param_dtype"
                       else "the loss and the metric sums would be rounded to 8 bits")
                raise ValueError(f"Policy: {name}={dt.name} is narrower than float32 ({why}); store parameters "
                                 f"and outputs in float32 and compute in {dt.name} (compute_dtype)")

    @property
    def name(self) -> str:
        """``"float32"``, ``"mixed_bfloat16"``, or ``"params=...,compute=...,output=..."`` for others."""
        f32, bf16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
        if self.param_dtype == f32 and self.output_dtype == f32 and self.compute_dtype in (f32, bf16):
            return "float32" if self.compute_dtype == f32 else "mixed_bfloat16"
        return f"params={self.param_dtype.name},compute={self.compute_dtype.name},output={self.output_dtype.name}"

    def __repr__(self) -> str:
        return f"Policy({self.name})"

    @property
    def noop(self) -> bool:
        """True for the all-float32 policy: nothing is cast anywhere (bit-identical to no policy)."""
        return self.param_dtype == self.compute_dtype == self.output_dtype == jnp.dtype(jnp.float32)

    # -- casts ---------------------------------------------------------------------------------------

    def cast_params(self, tree):
        """Floating leaves of `tree` (parameters: an ``nnx.State``, a dict of arrays) in `compute_dtype`; an
        ``nnx.Module`` gives a copy with its floating ``nnx.Param`` s cast (the module itself, and its
        batch-norm statistics, left as they are).

        Inside a differentiated function the cast's gradient casts back, so the gradient of a loss with
        respect to float32 parameters is float32.
        """
        if isinstance(tree, nnx.Module):
            graphdef, params, rest = nnx.split(tree, nnx.Param, ...)
            return nnx.merge(graphdef, _cast(params, self.compute_dtype), rest)
        return _cast(tree, self.compute_dtype)

    def cast_inputs(self, x):
        """Floating leaves of a batch's inputs `x` (an array, or a tuple / dict of them) in `compute_dtype`;
        integer inputs (token ids, class labels) untouched."""
        return _cast(x, self.compute_dtype)

    def cast_outputs(self, y):
        """Floating leaves of model outputs `y` in `output_dtype` (what the loss and metrics see)."""
        return _cast(y, self.output_dtype)

    def cast_to_param(self, tree):
        """Floating leaves of `tree` in `param_dtype` (how parameters and their optimizer state are kept)."""
        return _cast(tree, self.param_dtype)

    # -- a model under the policy ---------------------------------------------------------------------

    def model(self, state, train: bool = False, key: jax.Array | None = None, params=None):
        """`state.model(train, key, params)` with the floating parameters in `compute_dtype`.

        For a custom step (and for use without the Trainer): differentiate with respect to the float32
        ``params`` you pass; the model you get computes in `compute_dtype`. Run it with `call`.

        Args:
            state: a `dlcore.TrainState`.
            train: training mode (dropout on, batch statistics) or eval mode.
            key: reseeds the model's RNG streams (training mode).
            params: float32 parameters to use instead of the state's (the argument of a loss).
        """
        if not (hasattr(state, "model") and hasattr(state, "params") and hasattr(state, "graphdef")):
            raise ValueError(f"Policy.model takes a dlcore.TrainState, got {type(state).__name__}; for a module "
                             f"use policy.cast_params(module) (a copy with {self.compute_dtype.name} parameters)")
        return state.model(train, key, self.cast_params(state.params if params is None else params))

    def call(self, model, x, **kwargs):
        """``model(x)`` under the policy: floating inputs cast to `compute_dtype`, floating outputs to
        `output_dtype`. `x` may be a tuple (``model(*x)``) or a dict (``model(**x)``) of inputs."""
        from dlcore.data.protocol import call_model  # data does not import precision: no circle

        return self.cast_outputs(call_model(model, self.cast_inputs(x), **kwargs))

    def restore(self, model, state):
        """The non-parameter variables of `model` (batch-norm statistics...) with the dtypes of
        ``state.rest``: pass the result to ``state.apply_gradients(grads, model)``'s ``model`` as is,
        it is the module with its variables cast back in place. Variables that a layer wrote in
        `compute_dtype` would otherwise change the state's dtypes from step to step."""
        rest = nnx.state(model, nnx.All(nnx.Not(nnx.Param), nnx.Not(nnx.RngState)))
        nnx.update(model, restore_dtypes(rest, state.rest))
        return model


def restore_dtypes(tree, like):
    """`tree` with every floating leaf cast to the dtype of the matching leaf of `like` (same structure)."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype) if _is_float(a) and _is_float(b) and a.dtype != b.dtype
                        else a, tree, like)


POLICIES: Registry[Policy] = Registry("precision policy", normalize=str.lower)
POLICIES.register("float32", Policy(jnp.float32, jnp.float32, jnp.float32), aliases=("fp32", "full"))
POLICIES.register("mixed_bfloat16", Policy(jnp.float32, jnp.bfloat16, jnp.float32), aliases=("bfloat16", "bf16"))


def names() -> list[str]:
    """The named policies (aliases left out)."""
    return POLICIES.names()


def get(policy: str | Policy | None = None) -> Policy:
    """A `Policy` from a name, a `Policy` (returned as is) or None (the float32 policy).

    Raises:
        ValueError: (one line) an unknown name (with the close matches), a float16 name (loss scaling is not
            done, see the module docstring), or something that is neither a name nor a `Policy`.
    """
    if policy is None:
        return POLICIES.get("float32")
    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, str):
        raise ValueError(f"precision must be a policy name ({', '.join(names())}) or a dlcore.precision.Policy, "
                         f"got {type(policy).__name__} {policy!r}")
    if policy.strip().lower() in _FLOAT16:
        raise ValueError(f"precision {policy!r}: {_FLOAT16_LINE}")
    return POLICIES.get(policy)
