"""oneDNN's convolution kernels on a CPU, called from compiled JAX code through XLA's FFI.

Why. XLA:CPU convolves with one generic kernel; PyTorch on a CPU calls oneDNN (Intel's deep-learning
kernel library, which runs on any x86-64 CPU with AVX2 or AVX-512), whose kernels are written for each
instruction set and layout. Measured on this project's 2-core AVX-512 CPU, forward plus both gradients,
float32: Mastering PyTorch's ConvNet's 16 -> 32 channel 3 x 3 convolution of 26 x 26 images at batch 256
takes 55 ms in XLA and 9 ms in oneDNN; Géron's 128 -> 128 channel convolution of 14 x 14 maps 150 ms and
65 ms. `dlcore.nn.conv_tuning` measures oneDNN beside XLA's lowerings for every large convolution and
keeps whichever is fastest, so this module is used automatically where it helps.

How. oneDNN comes from the package registry: ``pip install "dlcore[cpu]"`` installs its CPU build
(``onednn-cpu-gomp``, with its headers, Linux x86-64). The first time it is needed, dlcore compiles
``onednn_conv.cc`` (beside this file: three FFI handlers, one per pass) with the system's C++ compiler
(``$CXX``, else ``g++``) into ``<dlcore cache>/onednn/`` (a few seconds, once per source, jaxlib and
oneDNN version) and registers the handlers with XLA. Without oneDNN, a compiler or an x86-64 Linux
CPU, `available()` is False (`why_unavailable()` says why) and convolutions run as XLA's.
``DLCORE_ONEDNN=off`` turns it off; ``DLCORE_ONEDNN_ROOT`` points at a oneDNN installed elsewhere
(a folder with ``include/oneapi/dnnl/dnnl.hpp`` and ``lib/libdnnl.so``).

What. `conv` is a 1-D or 2-D channels-last convolution with groups 1, float32 (oneDNN 3.2's bfloat16
kernels were measured no faster here, some 30x slower), with
gradients of every order in reverse mode (each pass's gradient is made of the other two passes);
forward-mode differentiation (`jax.jvp`) is not defined for it. Under `jax.vmap` it runs once per
mapped element.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

__all__ = ["MODE", "available", "conv", "source", "supports", "version", "why_unavailable"]

MODE = os.environ.get("DLCORE_ONEDNN", "auto").strip().lower() or "auto"
_SOURCE = Path(__file__).with_name("onednn_conv.cc")
_TARGETS = {p: f"dlcore_onednn_conv_{p}" for p in ("forward", "backward_data", "backward_weights")}
_STATE: dict = {}  # "ready": bool, "why": str, "version": str
_REGISTERED: set[str] = set()  # handlers registered with XLA in this process (once each)


def _root() -> Path | None:
    """The first oneDNN installation (headers and shared library) found, or None."""
    env = os.environ.get("DLCORE_ONEDNN_ROOT")
    roots = [Path(env)] if env else [Path(sys.prefix), Path(sys.base_prefix), Path("/usr/local"), Path("/usr")]
    for root in roots:
        if (root / "include/oneapi/dnnl/dnnl.hpp").is_file() and (_libdir(root) is not None):
            return root
    return None


def _libdir(root: Path) -> Path | None:
    for sub in ("lib", "lib64", "lib/x86_64-linux-gnu"):
        if (root / sub / "libdnnl.so").exists():
            return root / sub
    return None


def _version(root: Path) -> str:
    text = (root / "include/oneapi/dnnl/dnnl_version.h").read_text()
    parts = [re.search(rf"#define DNNL_VERSION_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) if m else "?" for m in parts)


def _library_path(root: Path, version: str) -> tuple[str, Path]:
    """The C++ compiler, and where the handlers compiled by it for this source, jaxlib and oneDNN live."""
    from dlcore.data.sources import cache_dir

    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on PATH")
    tag = hashlib.sha256(b"|".join([_SOURCE.read_bytes(), jaxlib.__version__.encode(), str(root).encode(),
                                    version.encode(), compiler.encode()])).hexdigest()[:16]
    return compiler, cache_dir() / "onednn" / f"conv-{tag}.so"


def _build(root: Path, version: str, again: bool = False) -> Path:
    """The compiled handlers' shared library: from dlcore's cache, or compiled into it now (`again`:
    compile even if the cache has it, e.g. a truncated file that does not load)."""
    compiler, out = _library_path(root, version)
    libdir = _libdir(root)
    if out.is_file() and not again:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"dlcore: compiling the oneDNN {version} convolution kernels (once; into {out.parent})",
          file=sys.stderr, flush=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", str(_SOURCE), "-I", jax.ffi.include_dir(),
           "-I", str(root / "include"), "-L", str(libdir), "-ldnnl", f"-Wl,-rpath,{libdir}", "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"compiling {_SOURCE.name} failed: {last}")
    os.replace(tmp, out)
    return out


def _prepare() -> None:
    if _STATE:
        return
    if MODE not in ("auto", "off"):  # before anything is remembered: every call says it
        raise ValueError(f"DLCORE_ONEDNN (dlcore.nn.onednn.MODE) must be 'auto' or 'off', got {MODE!r}")
    _STATE.update(ready=False, why="", version="")
    if MODE == "off":
        _STATE["why"] = "turned off (DLCORE_ONEDNN=off)"
        return
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _STATE["why"] = f"dlcore builds oneDNN kernels on x86-64 Linux only, not {platform.system()} {platform.machine()}"
        return
    root = _root()
    if root is None:
        _STATE["why"] = 'oneDNN is not installed (pip install "dlcore[cpu]")'
        return
    try:
        _STATE["version"] = _version(root)
        try:
            lib = _load(_build(root, _STATE["version"]))
        except OSError:  # a damaged file in the cache: compile it again
            lib = _load(_build(root, _STATE["version"], again=True))
        for name in _TARGETS.values():
            if name not in _REGISTERED:
                jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
                _REGISTERED.add(name)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as err:
        _STATE["why"] = f"oneDNN found in {root} but not usable: {err}"
        print(f"dlcore: {_STATE['why']}; convolutions run as XLA's", file=sys.stderr, flush=True)
        return
    _STATE["ready"] = True


def _load(path: Path) -> ctypes.CDLL:
    # oneDNN's OpenMP threads wait for work asleep, not spinning, unless the user says otherwise: they are
    # started from XLA's worker threads, whose spinning siblings they would otherwise compete with for the
    # cores (measured with another process busy on one of 2 cores: 64-72 ms against 18-20 ms a call). The
    # OpenMP runtime reads the setting once, when it loads, which is now; where a library loaded before
    # (PyTorch ships the same libgomp.so.1) brought it, that runtime is shared and keeps its setting.
    policy = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = policy or "PASSIVE"
    try:
        return ctypes.cdll.LoadLibrary(str(path))
    finally:
        if policy is None:
            del os.environ["OMP_WAIT_POLICY"]


def available() -> bool:
    """True when oneDNN's convolutions can run here (compiles and registers them on first call)."""
    _prepare()
    return _STATE["ready"]


def why_unavailable() -> str:
    """Why `available()` is False, in one line ("" when it is True)."""
    _prepare()
    return _STATE["why"]


def source() -> Path:
    """The C++ source of the FFI handlers (compiled on first use)."""
    return _SOURCE


def version() -> str:
    """oneDNN's version ("" when it is not available)."""
    _prepare()
    return _STATE["version"] if _STATE["ready"] else ""


@dataclasses.dataclass(frozen=True)
class _Geometry:
    x_shape: tuple[int, ...]  # (N, H, W, C)
    k_shape: tuple[int, ...]  # (KH, KW, C, O)
    y_shape: tuple[int, ...]  # (N, OH, OW, O)
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]  # lo_h, hi_h, lo_w, hi_w
    dilation: tuple[int, int]


def _call(target: str, shape, dtype, a, b, g: _Geometry):
    return jax.ffi.ffi_call(_TARGETS[target], jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")(
        a, b, x_shape=np.array(g.x_shape, np.int64), k_shape=np.array(g.k_shape, np.int64),
        strides=np.array(g.strides, np.int64), padding=np.array(g.padding, np.int64),
        dilation=np.array(g.dilation, np.int64))


# The three passes are bilinear and each is the others' transpose, so each one's gradient is made of
# the other two; this gives gradients of gradients (e.g. a gradient penalty) as well.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _forward(x, k, g):
    return _call("forward", g.y_shape, x.dtype, x, k, g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _backward_data(dy, k, g):
    return _call("backward_data", g.x_shape, dy.dtype, dy, k, g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _backward_weights(x, dy, g):
    return _call("backward_weights", g.k_shape, x.dtype, x, dy, g)


_forward.defvjp(lambda x, k, g: (_forward(x, k, g), (x, k)),
                lambda g, res, ct: (_backward_data(ct, res[1], g), _backward_weights(res[0], ct, g)))
_backward_data.defvjp(lambda dy, k, g: (_backward_data(dy, k, g), (dy, k)),
                      lambda g, res, ct: (_forward(ct, res[1], g), _backward_weights(ct, res[0], g)))
_backward_weights.defvjp(lambda x, dy, g: (_backward_weights(x, dy, g), (x, dy)),
                         lambda g, res, ct: (_backward_data(res[1], ct, g), _forward(res[0], ct, g)))


def supports(x_shape, kernel_shape, dtype, groups: int, padding) -> bool:
    """Whether `conv` takes this convolution (1-D or 2-D, groups 1, float32, padding >= 0)."""
    return len(x_shape) in (3, 4) and len(kernel_shape) == len(x_shape) and groups == 1 \
        and jnp.dtype(dtype) == jnp.float32 and kernel_shape[-2] == x_shape[-1] \
        and all(lo >= 0 and hi >= 0 for lo, hi in padding)


def conv(x: jax.Array, kernel: jax.Array, stride, padding, dilation) -> jax.Array:
    """A channels-last convolution (groups 1) by oneDNN; `available()` must be True.

    Args:
        x: (N, L, C_in) or (N, H, W, C_in), float32.
        kernel: (K, C_in, C_out) or (KH, KW, C_in, C_out), x's dtype.
        stride, dilation: one int per spatial axis; padding: one (lo, hi) pair per spatial axis.

    Returns:
        (N, L', C_out) or (N, H', W', C_out), the sizes `lax.conv_general_dilated` gives.
    """
    if not available():
        raise RuntimeError(f"dlcore.nn.onednn.conv: {why_unavailable()}")
    if not supports(x.shape, kernel.shape, x.dtype, 1, padding) or kernel.dtype != x.dtype:
        raise ValueError(f"dlcore.nn.onednn.conv takes 1-D or 2-D channels-last float32 input with a "
                         f"kernel of its dtype and channels; got x {x.shape} {x.dtype}, kernel {kernel.shape} "
                         f"{kernel.dtype}")
    one_d = x.ndim == 3
    if one_d:  # a 1-D convolution is a 2-D one over a height of 1
        x, kernel = x[:, None], kernel[None]
        stride, dilation, padding = (1, *stride), (1, *dilation), [(0, 0), *padding]
    n, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    (plh, phh), (plw, phw) = padding
    oh = (h + plh + phh - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + plw + phw - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    g = _Geometry(tuple(x.shape), tuple(kernel.shape), (n, oh, ow, o), tuple(map(int, stride)),
                  (int(plh), int(phh), int(plw), int(phw)), tuple(map(int, dilation)))
    y = _forward(x, kernel, g)
    return y[:, 0] if one_d else y
