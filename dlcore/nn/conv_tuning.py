"""How a convolution runs on a CPU: chosen per shape by measuring, as cuDNN's benchmark mode chooses on a GPU.

Why. XLA:CPU's convolution kernels are fast for some shapes and several times slower for others, and
their cost grows far faster than the batch once a call's arrays outgrow the core's cache. Measured on
this project's 2-core CPU (forward and both gradients, float32):

- Mastering PyTorch's ConvNet, its 16 -> 32 channel 3 x 3 convolution of 26 x 26 images: 122 ms for a
  batch of 256 in one call, 41 ms as 16 calls of 16 rows; at batch 32, 4.4 ms in one call, 2.7 ms as
  patches times a matrix (im2col);
- ResNet-18 on 32 x 32 images, a 256 -> 256 channel 3 x 3 convolution of 2 x 2 maps (batch 64): 92 ms
  in one call, 2.4 ms as im2col (at 1 x 1, 512 channels: 26 ms and 2.3 ms);
- Géron's Fashion-MNIST CNN, 128 -> 128 channels at 14 x 14: one call is best at batch 32, 16-row
  calls at batch 256 (150 vs 255 ms), im2col twice as slow.

No single rule fits, so dlcore measures. The first time a convolution of a given signature (input and
kernel shapes, dtype, stride, padding, dilation, groups) is traced on a CPU, each candidate lowering
runs each of its three passes (`PASSES`: the forward pass, the input's gradient, the kernel's gradient)
on random arrays of those shapes a few times. The lowering fastest in all three is kept for the
signature (the default unless another is at least `MARGIN` faster, XLA's own at least `XLA_MARGIN`:
oneDNN's kernel where it takes the convolution, else XLA's plain call; see `_plan`), and a pass runs
another lowering only where that one is far faster for it (`SPLIT`). Candidates: XLA's convolution of the whole
batch, of calls of 32, 16, 8 or 4 rows, im2col (the kernel-window patches of the input, gathered by
strided slices, times the kernel as a matrix; whole batch or 16-row calls; its times count
`IM2COL_PENALTY` more), and oneDNN's kernels where they are installed (`dlcore.nn.onednn`: 1-D and
2-D float32, groups 1; with them the ConvNet's convolution above takes 9 ms at batch 256). Every
candidate computes the same convolution: results agree to float32 rounding (tests/test_nn_conv.py,
tests/test_nn_onednn.py).

A pass of its own matters most for a network's first convolution, whose input needs no gradient (XLA
drops that pass from a training step): on 1-channel 28 x 28 images (batch 256, 5 x 5 kernels) oneDNN's
forward pass and kernel gradient take 0.5 and 1.0 ms and its input gradient 5.5 ms, so im2col is the
fastest in all three, yet took 2.9 + 3.5 ms for the two passes a step runs.

The choices are kept for the process and written to ``<dlcore cache>/conv_choices.json`` (see
`dlcore.data.sources.cache_dir`), keyed by the signature, the CPU model, its core count, jaxlib's
version, oneDNN's (or its absence) and a digest of the code that lowers and chooses (a release that
changes either measures again), so a later run reuses them without measuring. Convolutions of fewer
than `MIN_FLOPS` floating-point operations (forward) are not measured: they run as one XLA call.
Measuring a signature takes 4-11 s once here, most of it compiling each candidate's passes;
``DLCORE_CONV_TUNING=off`` (or ``conv_tuning.MODE = "off"``) runs every convolution as one XLA call.
Nothing changes on a GPU or TPU, where XLA calls cuDNN or its own kernels.

A choice is made when the calling function is traced (shapes are static), so a compiled function
keeps the lowering it was traced with. Where the three passes get different lowerings, the convolution
is a `jax.custom_vjp` of them: reverse-mode derivatives of any order work, forward mode (`jax.jvp`,
`jax.jacfwd`) raises; ``DLCORE_CONV_TUNING=off`` gives XLA's convolution with both.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax

from dlcore import cpu
from dlcore.nn import onednn

__all__ = ["MARGIN", "MIN_FLOPS", "MODE", "PASSES", "XLA_MARGIN", "candidates", "choice", "choices_path", "conv",
           "im2col_conv", "recording", "whole_batches"]

MODE = os.environ.get("DLCORE_CONV_TUNING", "auto").strip().lower() or "auto"
MIN_FLOPS = 4e6  # multiply-adds x 2 of the forward call below which nothing is measured
MARGIN = 0.9  # another lowering replaces the default only when it takes at most 90% of its time
XLA_MARGIN = 0.6  # XLA's own convolution replaces oneDNN's only at 60% of its time (see `_plan`)
# im2col's measured times count this much more. In a network XLA fuses its strided slices (and, in the
# input's gradient, its sum of padded slices) into the neighbouring operations and recomputes them in
# each: in Subramanian's MNIST CNN (batch 32) the input gradient of the second convolution, measured
# level with oneDNN's alone (0.33 ms), went into each of max pooling's four gradient parts, 0.9 ms in all.
IM2COL_PENALTY = 1.15
SPLIT = 0.6  # a pass leaves the signature's lowering for another that takes at most 60% of its time
_REPEATS = 3  # timed calls of each lowering and pass at least; more, up to _ROUNDS, until _ENOUGH_S is spent
_ROUNDS = 15
_ENOUGH_S = 0.3

Choice = tuple[str, int]  # ("xla", "im2col" or "onednn", rows per call)
PASSES = ("forward", "input_grad", "kernel_grad")
Plan = tuple[Choice, Choice, Choice]  # a lowering for each of PASSES
_ALGOS = ("xla", "im2col", "onednn")
_CHOICES: dict[str, Plan] = {}
_LOADED = False


# True while a step whose batch is split over a device mesh is traced: slices of a split batch would
# move rows between devices, so each device convolves its rows in one call.
_WHOLE_BATCH: contextvars.ContextVar[bool] = contextvars.ContextVar("dlcore_conv_whole_batch", default=False)


# While `recording()` is open: the signatures traced and the lowering each got.
_SEEN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("dlcore_conv_seen", default=None)


@contextlib.contextmanager
def recording():
    """Within it, every measured-size convolution traced is collected, signature -> its plan (a (lowering, rows
    a call) pair for each of `PASSES`), in the dict it yields (e.g. for a benchmark to say which kernels ran)."""
    seen: dict[str, Plan] = {}
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)


@contextlib.contextmanager
def whole_batches():
    """Within it, traced convolutions take the whole batch in one XLA call (a batch split over a mesh)."""
    token = _WHOLE_BATCH.set(True)
    try:
        yield
    finally:
        _WHOLE_BATCH.reset(token)


def candidates(n: int, groups: int, with_onednn: bool = False) -> list[Choice]:
    """The lowerings measured for a batch of `n` rows; the plain whole-batch XLA call first.

    `with_onednn`: whether oneDNN's kernel is a candidate (`dlcore.nn.onednn`: installed, and the
    convolution one it takes).
    """
    out = [("xla", n)] + [("xla", r) for r in (32, 16, 8, 4) if r < n]
    if groups == 1:
        out += [("im2col", n)] + ([("im2col", 16)] if 16 < n else [])
    if with_onednn:
        out.append(("onednn", n))
    return out


def im2col_conv(x: jax.Array, kernel: jax.Array, stride, padding, dilation) -> jax.Array:
    """A channels-last convolution (groups 1) as patches times a matrix.

    Args:
        x: (N, *spatial, C_in).
        kernel: (*k, C_in, C_out).
        stride, dilation: one int per spatial axis; padding: one (lo, hi) pair per spatial axis.

    Returns:
        (N, *spatial', C_out), spatial' as `lax.conv_general_dilated` gives.

    The patches are gathered one spatial axis at a time, the last first: a 5 x 5 kernel takes 5 strided
    slices along the width, concatenated on the channel axis, then 5 along the height of that, 10 slices
    where one pass over all taps takes 25. This matters in a network, where XLA fuses the operations
    that make the input (bias, max pooling, ReLU) into every slice and computes them again in each: in
    Subramanian's MNIST CNN at batch 32 the second convolution's slices took 1.07 ms of a 2-2.1 ms step
    tap by tap, 0.76 ms axis by axis, and the step 1.6-1.7 ms (best of 4 alternated processes).

    A kernel tap that meets only padding at every output position adds nothing, so its patch and kernel
    rows are left out: a 3 x 3 kernel with padding 1 over a 1 x 1 map is its centre tap alone, a ninth of
    the work (ResNet-18's last stage on 32 x 32 images). Along each axis such taps are at the ends, so
    the kernel is cut by a slice (whose gradient is a pad).
    """
    nd = x.ndim - 2
    cout = kernel.shape[-1]
    xp = jnp.pad(x, [(0, 0), *padding, (0, 0)]) if any(p != (0, 0) for p in padding) else x
    outs = [(L - d * (kk - 1) - 1) // s + 1 for L, kk, s, d in zip(xp.shape[1:-1], kernel.shape[:nd], stride, dilation)]
    taps = []  # per axis, the range of taps that read some real (unpadded) input
    for kk, d, s, n, (lo, _), size in zip(kernel.shape[:nd], dilation, stride, outs, padding, x.shape[1:-1]):
        live = [t for t in range(kk) if any(lo <= t * d + i * s < lo + size for i in range(n))] or [0]  # none: zeros
        taps.append(range(live[0], live[-1] + 1))
    patches = xp
    for axis in reversed(range(nd)):  # (N, *outs, taps_0 * ... * taps_last * C_in) in the kernel's order
        cols = []
        for t in taps[axis]:
            start, limit, step = [0] * xp.ndim, list(patches.shape), [1] * xp.ndim
            start[axis + 1] = t * dilation[axis]
            limit[axis + 1] = start[axis + 1] + (outs[axis] - 1) * stride[axis] + 1
            step[axis + 1] = stride[axis]
            cols.append(lax.slice(patches, start, limit, step))
        patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    weights = kernel[tuple(slice(r.start, r.stop) for r in taps)].reshape(-1, cout)
    y = patches.reshape(-1, weights.shape[0]) @ weights
    return y.reshape(x.shape[0], *outs, cout)


def _run(choice: Choice, x: jax.Array, xla: Callable, im2col: Callable, dnnl: Callable) -> jax.Array:
    algo, rows = choice
    fn = {"xla": xla, "im2col": im2col, "onednn": dnnl}[algo]
    n = x.shape[0]
    if rows >= n:
        return fn(x)
    return jnp.concatenate([fn(x[i:i + rows]) for i in range(0, n, rows)], axis=0)


def _pass(which: str, lower: Callable, opt: Choice, x_aval, k_aval) -> Callable:
    """One pass of convolving by lowering `opt` (`lower(opt, x, k)`):
    forward (x, k) -> y; input_grad (dy, k) -> dx; kernel_grad (x, dy) -> dk.

    The gradients are the lowering's own transposes (a convolution is linear in each argument, so the
    point the vjp is taken at does not matter; XLA drops the unused forward call)."""
    if which == "forward":
        return lambda x, k: lower(opt, x, k)
    if which == "input_grad":
        return lambda dy, k: jax.vjp(lambda x: lower(opt, x, k), jnp.zeros(x_aval.shape, x_aval.dtype))[1](dy)[0]
    return lambda x, dy: jax.vjp(lambda k: lower(opt, x, k), jnp.zeros(k_aval.shape, k_aval.dtype))[1](dy)[0]


# A convolution whose passes run different lowerings. Each gradient pass is an ordinary differentiable
# function, so gradients of gradients work (by each lowering's own transposes).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _planned(x, k, passes):
    return passes[0](x, k)


def _planned_forward(x, k, passes):
    return passes[0](x, k), (x, k)


def _planned_backward(passes, res, dy):
    x, k = res
    return passes[1](dy, k), passes[2](x, dy)


_planned.defvjp(_planned_forward, _planned_backward)


def choices_path() -> Path:
    """Where measured choices are kept between runs."""
    from dlcore.data.sources import cache_dir

    return cache_dir() / "conv_choices.json"


def _machine() -> str:
    dnnl = f"onednn {onednn.version()}" if onednn.available() else "no onednn"
    return f"{cpu.identity()}|{os.cpu_count()} cores|jaxlib {jaxlib.__version__}|{dnnl}|lowerings {_lowerings()}"


@functools.cache
def _lowerings() -> str:
    """A digest of the code that makes a choice: the lowerings (im2col, calls of fewer rows, the passes,
    oneDNN's handlers), the candidates, how they are timed and how a plan is drawn from the times (with
    its constants). Choices made by other code are measured again. Where the source cannot be read (an
    installation of compiled files only), "unread": such choices are kept until the machine's key changes."""
    try:
        code = [inspect.getsource(f).encode() for f in (im2col_conv, _run, _pass, candidates, _measure, _plan)]
        code.append(onednn.source().read_bytes())
    except OSError:
        return "unread"
    constants = repr((MIN_FLOPS, MARGIN, XLA_MARGIN, IM2COL_PENALTY, SPLIT, _REPEATS, _ROUNDS, _ENOUGH_S)).encode()
    return hashlib.sha256(b"\0".join([*code, constants])).hexdigest()[:12]


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    try:
        saved = json.loads(choices_path().read_text()).get(_machine(), {})
        for key, plan in saved.items():  # {pass: [lowering, rows]} per signature; anything else is measured again
            if isinstance(plan, dict) and all(isinstance(plan.get(p), list) and len(plan[p]) == 2
                                              and plan[p][0] in _ALGOS and isinstance(plan[p][1], int)
                                              and plan[p][1] > 0 for p in PASSES):
                _CHOICES[key] = tuple((plan[p][0], plan[p][1]) for p in PASSES)
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # no file, or an unreadable one: measure again


def _save() -> None:
    path = choices_path()
    try:
        try:
            whole = json.loads(path.read_text())
            whole = whole if isinstance(whole, dict) else {}
        except (OSError, ValueError):
            whole = {}
        mine = whole.get(_machine(), {})
        mine = mine if isinstance(mine, dict) else {}
        mine.update({k: {p: list(c) for p, c in zip(PASSES, plan)} for k, plan in _CHOICES.items()})
        whole[_machine()] = mine
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(whole, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: the choices last for this process


def _measure(options: list[Choice], x_shape, k_shape, dtype, lower: Callable) -> Plan:
    """For each of `PASSES`, a lowering of `options` (see `_plan`), from each one's time for each pass
    (best of `_REPEATS` to `_ROUNDS` calls)."""
    with jax.ensure_compile_time_eval():
        rng = np.random.default_rng(0)  # NumPy's: jax.random would compile a function per shape

        def normal(shape, scale=1.0):
            return jnp.asarray(np.asarray(scale * rng.standard_normal(shape, np.float32), dtype))

        x, k = normal(x_shape), normal(k_shape, 0.1)
        dy = normal(jax.eval_shape(lambda x, k: lower(options[0], x, k), x, k).shape)
        inputs = dict(zip(PASSES, ((x, k), (dy, k), (x, dy))))
        lowered = {(which, opt): jax.jit(_pass(which, lower, opt, x, k)).lower(*args)
                   for which, args in inputs.items() for opt in options}
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # XLA compiles off the GIL
            compiled = dict(zip(lowered, pool.map(lambda low: low.compile(), lowered.values())))
        for (which, opt), fn in compiled.items():
            jax.block_until_ready(fn(*inputs[which]))  # a first call: buffers, oneDNN's primitives
        # A round runs each option's three passes one after another, as a step runs them; the options
        # alternate between rounds, so a busy moment hits them alike. Alternated call by call, oneDNN's
        # calls looked up to 2x slower than in a step (its threads asleep, its caches cold).
        every = {which: {opt: math.inf for opt in options} for which in PASSES}
        left, spent = list(options), 0.0
        for rounds in range(1, _ROUNDS + 1):
            for opt in left:
                for which in PASSES:
                    t0 = time.perf_counter()
                    jax.block_until_ready(compiled[which, opt](*inputs[which]))
                    took = time.perf_counter() - t0
                    every[which][opt], spent = min(every[which][opt], took), spent + took
            if rounds < _REPEATS:
                continue
            if spent > _ENOUGH_S:
                break
            # far behind in all after _REPEATS rounds: done (one slow call, a thread waking, is not enough)
            total = {o: sum(every[w][o] for w in PASSES) for o in left}
            left = [o for o in left if total[o] <= 3 * min(total.values())]
    return _plan(every, options)


def _plan(times: dict[str, dict[Choice, float]], options: list[Choice]) -> Plan:
    """The plan from each option's time for each pass (`times[pass][option]`, seconds).

    A plan shares one lowering among the three passes, and a pass takes another only where that one
    takes at most `SPLIT` of the shared one's time: e.g. a first layer's input gradient, unused in
    training, where oneDNN's kernel is slow (its forward pass and kernel gradient fast). A plan's cost is
    its passes' times. The plan chosen is the default's (its lowering shared, no pass split off to XLA's
    own convolution) unless another costs at most `MARGIN` of it, or `XLA_MARGIN` where that one brings
    in XLA's convolution, shared or in a pass, against oneDNN's. Alternatives of near-equal times stay
    together: mixing them would follow the measurement's noise. im2col's times count `IM2COL_PENALTY` more
    throughout.

    The default is oneDNN's kernel where it is a candidate (the library PyTorch calls), else XLA's plain
    call (`options[0]`). Measured alone, a small convolution's lowerings are often within this machine's
    noise of each other (oneDNN's three passes of a 64 -> 64 convolution of 8 x 8 maps at batch 64: 2.5
    and 4.4 ms in two measurements a second apart), and XLA's own convolution costs a network more than it
    does alone: a step holding one cannot run its epoch as one `lax.scan` (`dlcore.train.Trainer`'s
    epoch_mode "auto"). Subramanian's MNIST CNN at batch 32 (10 -> 20 channels at 12 x 12: oneDNN 1.06 ms,
    XLA 1.11 ms alone, XLA chosen as the plain call) took 1.88-2.23 ms a step with XLA's, 1.65-1.81 with
    oneDNN's; ResNet-18 with its 128 -> 128 convolutions of 4 x 4 maps (batch 64; XLA 2.9, oneDNN 3.3 ms
    alone) 48-60 ms a step with XLA's, 43-44 ms with oneDNN's (alternated processes).
    """
    times = {w: {o: t * (IM2COL_PENALTY if o[0] == "im2col" else 1.0) for o, t in times[w].items()}
             for w in PASSES}
    default = next((o for o in options if o[0] == "onednn"), options[0])

    def plan(shared: Choice, xla_splits: bool) -> Plan:  # with or without passes split off to XLA's own
        out = []
        for w in PASSES:
            best = min((o for o in options if xla_splits or o[0] != "xla" or o == shared), key=times[w].get)
            out.append(best if times[w][best] <= SPLIT * times[w][shared] else shared)
        return tuple(out)

    def cost(p: Plan) -> float:
        return sum(times[w][o] for w, o in zip(PASSES, p))

    def xla(p: Plan) -> bool:
        return any(o[0] == "xla" for o in p)

    def margin(p: Plan) -> float:
        return XLA_MARGIN if default[0] == "onednn" and xla(p) and not xla(base) else MARGIN

    base = plan(default, xla_splits=default[0] == "xla")
    # the cheapest plan that beats the default's by its margin (the default's own plan at the latest)
    plans = {plan(o, splits) for o in options for splits in (False, True)}
    return next(p for p in sorted(plans, key=lambda p: (cost(p), p))
                if p == base or cost(p) <= margin(p) * cost(base))


def choice(x_shape, kernel_shape, dtype, stride, padding, dilation, groups, lower: Callable) -> Plan:
    """The lowering of each pass of one convolution signature (see `PASSES`): remembered, read from the
    cache file, or measured."""
    n = x_shape[0]
    key = f"{tuple(x_shape)}|{tuple(kernel_shape)}|{jnp.dtype(dtype).name}|{tuple(stride)}|" \
          f"{tuple(map(tuple, padding))}|{tuple(dilation)}|{groups}"
    _load()
    if key not in _CHOICES:  # seconds of silence otherwise: say what is happening, once a signature
        print(f"dlcore: timing the CPU lowerings of a {tuple(x_shape)} x {tuple(kernel_shape)} convolution "
              f"(once; kept in {choices_path()}; DLCORE_CONV_TUNING=off skips)", file=sys.stderr, flush=True)
        dnnl = onednn.available() and onednn.supports(x_shape, kernel_shape, dtype, groups, padding)
        _CHOICES[key] = _measure(candidates(n, groups, dnnl), x_shape, kernel_shape, dtype, lower)
        _save()
    seen = _SEEN.get()
    if seen is not None:
        seen[key] = _CHOICES[key]
    return _CHOICES[key]


def conv(x: jax.Array, kernel: jax.Array, stride, padding, dilation, groups: int, dimension_numbers) -> jax.Array:
    """A channels-last convolution, lowered as measured on a CPU (see the module docstring).

    Args:
        x: (N, *spatial, C_in); kernel: (*k, C_in / groups, C_out).
        stride, dilation: per spatial axis; padding: (lo, hi) per spatial axis.
        groups: feature groups (im2col is a candidate for groups 1 only).
        dimension_numbers: channels-last specs for `lax.conv_general_dilated`.

    Inside `whole_batches()` (a batch split over a device mesh) it is one XLA call.
    """
    def xla(part, k=kernel):
        return lax.conv_general_dilated(part, k, stride, padding, rhs_dilation=dilation,
                                        dimension_numbers=dimension_numbers, feature_group_count=groups)

    def lower(opt, x, k):
        return _run(opt, x, lambda p: xla(p, k), lambda p: im2col_conv(p, k, stride, padding, dilation),
                    lambda p: onednn.conv(p, k, stride, padding, dilation))

    if MODE not in ("auto", "off"):
        raise ValueError(f"DLCORE_CONV_TUNING (dlcore.nn.conv_tuning.MODE) must be 'auto' or 'off', got {MODE!r}")
    if MODE == "off" or _WHOLE_BATCH.get() or jax.default_backend() != "cpu" or x.shape[0] < 2:
        return xla(x)
    y_shape = jax.eval_shape(xla, jax.ShapeDtypeStruct(x.shape, x.dtype)).shape
    if 2 * math.prod(y_shape) * math.prod(kernel.shape[:-1]) < MIN_FLOPS:
        return xla(x)
    plan = choice(x.shape, kernel.shape, x.dtype, stride, padding, dilation, groups, lower)
    if plan[0] == plan[1] == plan[2]:  # one lowering: plainly differentiable, forward mode too
        return lower(plan[0], x, kernel)
    avals = jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)
    passes = tuple(_pass(which, lower, opt, *avals) for which, opt in zip(PASSES, plan))
    return _planned(x, kernel, passes)
