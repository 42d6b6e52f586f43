"""Serialised predict functions: a model's forward pass in eval mode as one file that runs without its code.

`export(model, path, input_shape=...)` traces the model's eval-mode forward pass once with a symbolic
batch size (`jax.export` with `jax.export.symbolic_shape("batch")`) and writes the StableHLO that
results, with the weights inside it as constants (``weights="inside"``) or as an argument of the
function (``weights="argument"``: the same file then runs any weights of that architecture, e.g.
`save_weights`' file). `load(path)` reads it back as an `ExportedModel`, a callable ``(B, *input_shape)
-> outputs`` for any batch size B, compiled once per batch size. Loading needs only JAX and NumPy: not
the model's class, not Flax, not dlcore's models (this module imports nothing else at its top, so even
a copy of this one file can load an export).

This is what TorchScript and `torch.jit.save`/`torch.jit.load` do for PyTorch (Géron, Hands-On Machine
Learning with Scikit-Learn and PyTorch, ch. 10, Compiling and Optimizing a PyTorch Model): the
computation is traced once and serialised, and the program that loads it needs no Python model code.
As with `torch.jit.trace`, Python control flow is frozen at export time; only the batch size stays free.

The file::

    b"DLCOREXP"                 8 bytes, the magic
    format version              uint32, little-endian (FORMAT_VERSION)
    header length               uint32, little-endian
    header                      UTF-8 JSON: format version, dlcore and jax versions, the input spec
                                {"shape": [null, ...], "dtype"}, the output spec, "weights_inside", the
                                names, shapes and dtypes of the weights when they are an argument, the
                                int8 kernels, the platforms, and the payload's length and SHA-256
    payload                     `jax.export.Exported.serialize()`

`load` checks each part before JAX sees it, so a file that is not an export, one of another format
version, a truncated or corrupted one (the SHA-256) or one written for other platforms is one line (an
`ExportError`, a ValueError), never a traceback from inside JAX; so are inputs of the wrong shape or
kind and weights that do not fit, at call time.

Int8 weight-only quantization (`dlcore.quantize.quantize_int8`) gives a `Predictor` whose Linear and
Conv kernels are int8 with a float32 scale per output channel; `export` takes it as it takes a model.

Example:
    >>> export.export(model, "convnet.dlx", input_shape=(28, 28, 1))          # doctest: +SKIP
    >>> predict = export.load("convnet.dlx")      # in another process, without the model's code
    >>> predict(np.zeros((5, 28, 28, 1), np.float32)).shape
    (5, 10)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FORMAT_VERSION", "MAGIC", "ExportError", "ExportedModel", "Predictor", "default_input_shape", "export",
           "load", "read_header", "registered_model", "restore_weights", "save_weights", "weights_of"]

MAGIC = b"DLCOREXP"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")           # magic, format version, header length
_MAX_HEADER = 64 * 1024 * 1024             # a longer "header" is a corrupt length field
_KERNEL_SUFFIXES = (".int8", ".scale")     # an int8 kernel's two weights: "fc1/kernel.int8", ".scale"


class ExportError(ValueError):
    """An export that cannot be written, read or called as asked: one line saying what and what to do."""


def _one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _one_line(text.splitlines()[0] if text else type(exc).__name__)


def _shape_text(shape: Sequence[Any]) -> str:
    dims = ["B" if d is None else str(d) for d in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


# -- a model as flat weights and a pure function of them -------------------------------------------

def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):    # DictKey, SequenceKey, GetAttrKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


class Predictor:
    """A model in eval mode as named weights and a pure function of them: ``apply(weights, x)``.

    What `export` traces, and what int8 quantization (`dlcore.quantize.quantize_int8`) changes: its
    `weights` map names such as ``"fc1/kernel"`` or ``"bn/mean"`` (the module path joined by "/") to
    arrays; an int8 kernel is stored as ``"fc1/kernel.int8"`` (int8, the kernel's shape) and
    ``"fc1/kernel.scale"`` (float32, one scale per output channel, the last axis) and dequantized inside
    the traced function. RNG streams (unused in eval mode) stay inside as constants.

    Build one with `Predictor.from_model(model)`; the model is not changed (its train/eval mode
    included), and the predictor keeps the weights the model had then (train on, and build another).
    Calling it runs the jitted forward pass: ``predictor(x)`` equals ``model.eval(); model(x)``.

    Attributes:
        weights: name -> jax array.
        kernels: names of the Linear and Conv kernels (what int8 quantization quantizes).
        int8: the kernels stored as int8 (empty for a float model).
        dtypes: each weight's dtype as the model holds it (a dequantized kernel takes its own).
    """

    def __init__(self, graphdef, rngs, treedef, names: Sequence[str], dtypes: Mapping[str, Any],
                 weights: Mapping[str, jax.Array], kernels: Sequence[str], int8: Sequence[str] = (),
                 model_name: str = ""):
        self.graphdef, self.rngs, self.treedef = graphdef, rngs, treedef
        self.names = tuple(names)
        self.dtypes = dict(dtypes)
        self.weights = dict(weights)
        self.kernels = tuple(kernels)
        self.int8 = frozenset(int8)
        self.model_name = model_name
        self._jit = jax.jit(self.apply)

    @classmethod
    def from_model(cls, model) -> "Predictor":
        """`model`'s eval-mode forward pass (dropout off, batch norm on its running averages).

        Raises:
            ExportError: `model` is not a Flax NNX module.
        """
        from flax import nnx

        from dlcore.nn.conv import _ConvNd, _ConvTransposeNd

        if isinstance(model, Predictor):
            return model
        if not isinstance(model, nnx.Module):
            raise ExportError(f"export needs a Flax NNX module (a dlcore model) or a Predictor, got "
                              f"{type(model).__name__}")
        # A second module over the same arrays: switching it to eval mode leaves `model`'s mode alone.
        view = nnx.merge(*nnx.split(model))
        view.eval()
        graphdef, rngs, rest = nnx.split(view, nnx.RngState, ...)
        flat, treedef = jax.tree_util.tree_flatten_with_path(rest)
        names, weights, dtypes = [], {}, {}
        for path, leaf in flat:
            parts = [_key_name(k) for k in path]
            if len(parts) > 1 and parts[-1] == "value":  # a Variable's own field, not part of the name
                parts = parts[:-1]
            name = "/".join(parts)
            if name in weights or name.endswith(_KERNEL_SUFFIXES):
                raise ExportError(f"export: two weights of {type(model).__name__} share the name {name!r}")
            a = jnp.asarray(leaf)
            names.append(name)
            weights[name] = a
            dtypes[name] = a.dtype
        kinds = (nnx.Linear, nnx.Conv, nnx.ConvTranspose, _ConvNd, _ConvTransposeNd)
        kernels = []
        for path, m in nnx.iter_modules(view):
            name = "/".join(str(p) for p in (*path, "kernel"))
            if isinstance(m, kinds) and name in weights and weights[name].ndim >= 2 \
                    and jnp.issubdtype(weights[name].dtype, jnp.floating):
                kernels.append(name)
        return cls(graphdef, rngs, treedef, names, dtypes, weights, kernels, model_name=type(model).__name__)

    def replace(self, weights: Mapping[str, jax.Array], int8: Sequence[str]) -> "Predictor":
        """The same model with other weights (e.g. quantized ones)."""
        return Predictor(self.graphdef, self.rngs, self.treedef, self.names, self.dtypes, weights, self.kernels,
                         int8, self.model_name)

    def _leaf(self, weights: Mapping[str, jax.Array], name: str) -> jax.Array:
        if name in self.int8:                  # dequantize: (..., out) int8 times (out,) float32 scales
            q, scale = weights[name + ".int8"], weights[name + ".scale"]
            return (q.astype(jnp.float32) * scale).astype(self.dtypes[name])
        return weights[name]

    def apply(self, weights: Mapping[str, jax.Array], x: jax.Array) -> Any:
        """The forward pass as a pure function of the weights: traceable, jittable, exportable.

        Args:
            weights: as `self.weights` (same names, shapes and dtypes).
            x: a batch, (B, *input_shape).
        """
        from flax import nnx

        state = jax.tree_util.tree_unflatten(self.treedef, [self._leaf(weights, n) for n in self.names])
        return nnx.merge(self.graphdef, self.rngs, state)(x)

    def __call__(self, x) -> Any:
        """``model(x)`` in eval mode, jitted (compiled once per input shape)."""
        return self._jit(self.weights, x)

    @property
    def nbytes(self) -> int:
        """Bytes of all the weights (kernels, biases, norms, statistics)."""
        return int(sum(a.size * a.dtype.itemsize for a in self.weights.values()))

    @property
    def kernel_nbytes(self) -> int:
        """Bytes of the Linear and Conv kernels: float, or int8 with their float32 scales."""
        total = 0
        for k in self.kernels:
            for name in ((k + ".int8", k + ".scale") if k in self.int8 else (k,)):
                total += self.weights[name].size * self.weights[name].dtype.itemsize
        return int(total)


def weights_of(model) -> dict[str, np.ndarray]:
    """The weights an export made with ``weights="argument"`` takes, as NumPy arrays by name.

    Args:
        model: a Flax NNX module or a `Predictor` (e.g. an int8 one).
    """
    return {k: np.asarray(v) for k, v in Predictor.from_model(model).weights.items()}


def save_weights(model, path: str | os.PathLike) -> Path:
    """Write `weights_of(model)` to a NumPy `.npz` file (no pickle) that `load(..., weights=path)` reads."""
    path = Path(path).expanduser()
    if path.suffix != ".npz":
        raise ExportError(f"save_weights writes a NumPy .npz file; give a path ending in .npz, not {path.name!r}")
    _check_parent(path, "save_weights")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **weights_of(model))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# -- registered models and checkpoints (what `dlcore export NAME` builds) ---------------------------

def _flat_names(tree: Any) -> dict[str, Any]:
    """Leaves of nested dicts (or an nnx.State) by "/"-joined path, a Variable's trailing "value" dropped."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [_key_name(k) for k in path]
        if len(parts) > 1 and parts[-1] == "value":
            parts = parts[:-1]
        out["/".join(parts)] = leaf
    return out


def default_input_shape(name: str) -> tuple[int, ...] | None:
    """One example's shape for registered model `name` built with its defaults, read from its constructor's
    arguments: ``image_size`` and ``in_channels`` give (H, W, C) (NHWC), ``sizes`` (an MLP) gives
    (sizes[0],), ``in_features`` gives (in_features,), ``length`` (a signal) gives (length,); None when the
    arguments do not say (sequence models, whose length is free, and ImageNet models, whose size is not an
    argument).

    Raises:
        ValueError: an unknown model name (with the close matches).
    """
    from dlcore.models.registry import arguments

    defaults = {p.name: p.default for p in arguments(name) if p.default is not p.empty}
    if isinstance(defaults.get("image_size"), int) and isinstance(defaults.get("in_channels"), int):
        return (defaults["image_size"], defaults["image_size"], defaults["in_channels"])
    sizes = defaults.get("sizes")
    if isinstance(sizes, (tuple, list)) and sizes and isinstance(sizes[0], int):
        return (sizes[0],)
    if isinstance(defaults.get("in_features"), int):
        return (defaults["in_features"],)
    if isinstance(defaults.get("length"), int) and "input_size" not in defaults:   # MNIST-1D signals (N, 40)
        return (defaults["length"],)
    return None


def restore_weights(model, directory: str | os.PathLike):
    """Put the weights (and batch-norm statistics) of a dlcore checkpoint into `model`, in place.

    Reads the newest checkpoint of `directory`, verified (`dlcore.checkpoint.load`): a `Trainer`'s
    (`Checkpoint` callback, `dlcore run NAME --checkpoint DIR`) of one model, or a model saved with
    `checkpoint.save(directory, step, model)`. RNG streams and optimizer state are not used.

    Returns:
        `model`.

    Raises:
        ValueError: (one line) no or a corrupt checkpoint (`CheckpointError`), one of several models, or
            weights that are missing from it or have other shapes than `model`'s (named).
    """
    from flax import nnx

    from dlcore import checkpoint

    tree, _ = checkpoint.load(directory)
    state = tree.get("state") if isinstance(tree, dict) else None
    if isinstance(state, dict) and "params" in state:            # a Trainer's checkpoint of one model
        saved = {**_flat_names(state["params"]), **_flat_names(state.get("rest") or {})}
    elif isinstance(state, dict) and state and all(isinstance(v, dict) and "params" in v for v in state.values()):
        raise ExportError(f"checkpoint {directory} holds several models ({', '.join(sorted(state))}); export "
                          f"them one at a time from Python (dlcore.export.export)")
    else:                                                        # checkpoint.save(directory, step, model)
        saved = {k: v for k, v in _flat_names(tree).items() if "rngs" not in k.split("/")}
    target = nnx.state(model, nnx.Not(nnx.RngState))
    flat, treedef = jax.tree_util.tree_flatten(target)
    names = list(_flat_names(target))
    kind = type(model).__name__
    missing = [n for n in names if n not in saved]
    if missing:
        raise ExportError(f"checkpoint {directory} lacks {missing[0]!r}" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + f" that {kind} needs: is it a "
            f"checkpoint of this model?")
    extra = [n for n in saved if n not in set(names)]
    if extra:
        raise ExportError(f"checkpoint {directory} holds {extra[0]!r}, which {kind} does not have: is it a "
                          f"checkpoint of this model?")
    leaves = []
    for n, old in zip(names, flat):
        new = np.asarray(saved[n])
        if new.shape != tuple(old.shape):
            raise ExportError(f"checkpoint {directory}: {n!r} is {_spec_text(new.shape, new.dtype)} but {kind} "
                              f"has {_spec_text(old.shape, old.dtype)} (trained with other arguments?)")
        leaves.append(jnp.asarray(new, old.dtype))
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, leaves))
    return model


def registered_model(name: str, *, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                     input_shape: Sequence[int] | None = None):
    """What `dlcore export NAME` exports: model `name` with its defaults, weights from `checkpoint` if given.

    `name` may also be a checkpoint directory of a run whose recorded hyperparameters name the model
    (``"model"``, or an ``"example"`` of the same name, as `dlcore run mnist_convnet --checkpoint DIR` records).

    Args:
        input_shape: one example's shape; None for `default_input_shape(name)`.

    Returns:
        (model name, model, input shape).

    Raises:
        ValueError: (one line) an unknown name, no input shape given or known (before the model is built),
            a checkpoint that does not say its model, or one that does not fit it.
    """
    from dlcore import checkpoint as ckpt
    from dlcore import models
    from dlcore.models.registry import MODELS

    if checkpoint is None and Path(name).expanduser().is_dir():    # NAME is the checkpoint
        checkpoint = name
        hp = ckpt.latest_good_meta(Path(name).expanduser()).get("hyperparameters") or {}
        known = [hp[k] for k in ("model", "example") if isinstance(hp.get(k), str) and hp[k].lower() in
                 {n.lower() for n in MODELS.names()}]
        if not known:
            raise ExportError(f"checkpoint {name} does not record which registered model it holds; name it: "
                              f"dlcore export MODEL --checkpoint {name}")
        name = known[0]
    if checkpoint is not None and not Path(checkpoint).expanduser().is_dir():
        raise ExportError(f"--checkpoint {checkpoint} is not a directory")
    name = MODELS.resolve(name)
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(name)
    if shape is None:
        raise ExportError(f"the arguments of model {name} do not say its input shape: give it (--input-shape, one "
                          f"example without the batch axis, e.g. 224,224,3)")
    model = models.create(name, seed=seed)
    if checkpoint is not None:
        restore_weights(model, Path(checkpoint).expanduser())
    return name, model, shape


# -- export ----------------------------------------------------------------------------------------

def _check_parent(path: Path, who: str) -> None:
    if path.is_dir():
        raise ExportError(f"{who}: {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"{who}: the folder {parent} does not exist; create it first")


def _input_shape(input_shape: Any) -> tuple[int, ...]:
    from dlcore.checks import is_int

    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or \
            not all(is_int(d) and d >= 1 for d in input_shape):
        raise ExportError(f"export: input_shape must be one example's shape, a tuple of ints >= 1 without the "
                          f"batch axis (e.g. (28, 28, 1)), got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


def _dtype(dtype: Any, who: str) -> np.dtype:
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ExportError(f"{who}: dtype {dtype!r} is not a dtype name such as 'float32' or 'int32'") from None
    if not (jnp.issubdtype(dt, jnp.number) or dt == jnp.bool_):
        raise ExportError(f"{who}: dtype {dtype!r} is not numeric")
    return dt


def _spec_of(aval, batch) -> dict:
    shape = [None if d is batch or (not isinstance(d, int) and str(d) == str(batch)) else
             (int(d) if isinstance(d, int) else str(d)) for d in aval.shape]
    return {"shape": shape, "dtype": str(aval.dtype)}


def _plain(outputs: Any) -> Any:
    """Named tuples of outputs (GoogLeNet's) as dicts: a loader knows dicts without the class's code."""
    return jax.tree_util.tree_map(lambda t: dict(t._asdict()) if hasattr(t, "_asdict") else t, outputs,
                                  is_leaf=lambda t: hasattr(t, "_asdict"))


def export(model, path: str | os.PathLike, *, input_shape: Sequence[int], dtype: Any = "float32",
           weights: str = "inside", platforms: Sequence[str] | None = ("cpu", "cuda")) -> Path:
    """Serialise `model`'s eval-mode forward pass, with a symbolic batch size, to `path`.

    Args:
        model: a Flax NNX module (a dlcore model, trained or not) or a `Predictor` (e.g. from
            `dlcore.quantize.quantize_int8`). It is not changed.
        path: the file to write (atomically: a reader never sees half a file).
        input_shape: one example's shape, without the batch axis: (28, 28, 1) for MNIST images (NHWC),
            (784,) for flat vectors, (T,) for token ids.
        dtype: the inputs' dtype ("float32", "int32" for token ids, ...).
        weights: "inside" (constants of the function: one self-contained file) or "argument" (the file
            holds the computation only; the weights come at load or call time, `weights_of` /
            `save_weights`).
        platforms: where the file may run ("cpu", "cuda", "rocm", "tpu"); default CPU and NVIDIA GPUs, so a
            file written on either runs on both. None: only the platform of this process.

    Returns:
        `path`. The loaded function returns what the model returns (an array, or a tuple, list or dict of
        them), a named tuple as a dict of its fields.

    Raises:
        ExportError: (a ValueError, one line) a bad argument, an input shape the model cannot take (with
            the model's own first error line), a forward pass that needs a concrete batch size, or a
            path that cannot be written; all before anything is written.
    """
    from dlcore.checks import check_choice

    path = Path(path).expanduser()
    check_choice(weights, "weights", ("inside", "argument"), who="export")
    shape = _input_shape(input_shape)
    dt = _dtype(dtype, "export")
    if platforms is not None:
        if isinstance(platforms, str) or not platforms:
            raise ExportError(f"export: platforms must be a non-empty sequence such as ('cpu', 'cuda'), got "
                              f"{platforms!r}")
        for p in platforms:
            check_choice(p, "platforms", ("cpu", "cuda", "rocm", "tpu"), who="export")
        platforms = tuple(dict.fromkeys(platforms))
    _check_parent(path, "export")
    pred = Predictor.from_model(model)
    wspec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in pred.weights.items()}
    try:                                       # a concrete batch of 2 first: the model's own shape errors
        jax.eval_shape(pred.apply, wspec, jax.ShapeDtypeStruct((2, *shape), dt))
    except Exception as exc:
        raise ExportError(f"export: {pred.model_name} does not take inputs of shape {_shape_text((None, *shape))} "
                          f"{dt}: {_first_line(exc)}") from None
    batch, = jax.export.symbolic_shape("batch")
    x_spec = jax.ShapeDtypeStruct((batch, *shape), dt)
    try:
        if weights == "inside":
            exp = jax.export.export(jax.jit(lambda x: _plain(pred.apply(pred.weights, x))),
                                    platforms=platforms)(x_spec)
        else:
            exp = jax.export.export(jax.jit(lambda w, x: _plain(pred.apply(w, x))), platforms=platforms)(wspec, x_spec)
        payload = bytes(exp.serialize())
    except Exception as exc:
        why = _first_line(exc)
        if "symbolic" in why.lower() or "dimension" in why.lower() or "polymorphi" in why.lower():
            raise ExportError(f"export: {pred.model_name}'s forward pass cannot be exported with a free batch size "
                              f"({why}); a model whose Python code needs the batch size as a number cannot be "
                              f"exported this way") from None
        raise ExportError(f"export: {pred.model_name}'s forward pass cannot be exported: {why}") from None
    header = {
        "format": "dlcore-export", "format_version": FORMAT_VERSION,
        "dlcore": _dlcore_version(), "jax": jax.__version__,
        "model": pred.model_name,
        "input": {"shape": [None, *shape], "dtype": str(dt)},
        "outputs": [_spec_of(a, batch) for a in exp.out_avals],
        "weights_inside": weights == "inside",
        "weights": None if weights == "inside" else
        {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in pred.weights.items()},
        "int8_kernels": sorted(pred.int8),
        "platforms": list(exp.platforms),
        "payload": {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
    }
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)))
            f.write(head)
            f.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"export: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


# -- load ------------------------------------------------------------------------------------------

def _read(path: Path) -> tuple[dict, bytes]:
    """The verified header and payload of export file `path`."""
    if not path.exists():
        raise ExportError(f"export file {path} does not exist")
    if path.is_dir():
        raise ExportError(f"export file {path} is a directory, not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"export file {path} cannot be read: {exc.strerror or exc}") from None
    if not data:
        raise ExportError(f"export file {path} is empty (0 bytes)")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise ExportError(f"{path} is not a dlcore export file (it does not start with {MAGIC.decode()}); write one "
                          f"with dlcore.export.export or `dlcore export`")
    if len(data) < _PREFIX.size:
        raise ExportError(f"export file {path} is truncated ({len(data)} bytes, not even its header)")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ExportError(f"export file {path} has dlcore export format version {version}; this dlcore reads "
                          f"version {FORMAT_VERSION}: export the model again with this dlcore (or load it with "
                          f"the dlcore that wrote it)")
    if head_len > _MAX_HEADER:
        raise ExportError(f"export file {path} is corrupt: its header length field says {head_len} bytes")
    end = _PREFIX.size + head_len
    if len(data) < end:
        raise ExportError(f"export file {path} is truncated: {len(data)} bytes, shorter than its header "
                          f"({end} bytes)")
    try:
        header = json.loads(data[_PREFIX.size:end].decode("utf-8"))
        payload_spec = header["payload"]
        size, digest = int(payload_spec["bytes"]), str(payload_spec["sha256"])
        if not (isinstance(header["input"]["shape"], list) and isinstance(header["weights_inside"], bool)):
            raise TypeError
        jnp.dtype(header["input"]["dtype"])
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise ExportError(f"export file {path} is corrupt: its header is not the JSON document dlcore "
                          f"writes") from None
    payload = data[end:]
    if len(payload) < size:
        raise ExportError(f"export file {path} is truncated: {len(payload)} of its {size} payload bytes are "
                          f"there; copy or export it again")
    if len(payload) > size:
        raise ExportError(f"export file {path} is corrupt: {len(payload) - size} bytes follow its payload")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ExportError(f"export file {path} is corrupt: its payload's SHA-256 differs from the one in its "
                          f"header; copy or export it again")
    return header, payload


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of an export file (versions, input and output specs, weights), verified as `load` does."""
    return _read(Path(path).expanduser())[0]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ExportError(f"weights file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise ExportError(f"weights file {path} is not a NumPy .npz file of arrays: {_first_line(exc)}") from None


class ExportedModel:
    """A loaded export: ``fn(x)`` (or ``fn(x, weights)``) for a batch ``x`` of shape (B, *input_shape).

    Each batch size compiles once; later calls with it reuse the compiled function.

    Attributes:
        path: the file it came from.
        header: the file's header (see the module docstring).
        input_shape: one example's shape (without the batch axis); dtype: the inputs' dtype.
        weights_inside: False when the weights are an argument (`weights`: the bound ones, or None).
        int8_kernels: the kernels stored as int8.
    """

    def __init__(self, path: Path, header: dict, exported, weights: Mapping[str, Any] | None):
        self.path, self.header, self._exported = path, header, exported
        self.input_shape = tuple(header["input"]["shape"][1:])
        self.dtype = jnp.dtype(header["input"]["dtype"])
        self.weights_inside = bool(header["weights_inside"])
        self.int8_kernels = tuple(header.get("int8_kernels") or ())
        self._call = jax.jit(exported.call)
        self.weights = None if weights is None else self._check_weights(weights)

    def __repr__(self) -> str:
        return (f"ExportedModel({str(self.path)!r}, input {_shape_text((None, *self.input_shape))} {self.dtype}, "
                f"weights {'inside' if self.weights_inside else 'as an argument'})")

    def _check_weights(self, weights: Any) -> dict:
        if self.weights_inside:
            raise ExportError(f"export {self.path.name} holds its weights; call it without weights")
        if isinstance(weights, (str, os.PathLike)):
            weights = _read_npz(Path(weights).expanduser())
        if not isinstance(weights, Mapping):
            raise ExportError(f"weights must be a mapping of names to arrays (dlcore.export.weights_of) or an .npz "
                              f"path, got {type(weights).__name__}")
        want = self.header["weights"] or {}
        missing = [k for k in want if k not in weights]
        if missing:
            raise ExportError(f"weights lack {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                                 else "") + f" that export {self.path.name} needs")
        extra = [k for k in weights if k not in want]
        if extra:
            raise ExportError(f"weights hold {extra[0]!r}, which export {self.path.name} does not take")
        out = {}
        for k, spec in want.items():
            a = weights[k]
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                a = np.asarray(a)
            if tuple(a.shape) != tuple(spec["shape"]) or str(a.dtype) != spec["dtype"]:
                raise ExportError(f"weight {k!r} is {_spec_text(a.shape, a.dtype)}, but export {self.path.name} "
                                  f"takes {_spec_text(spec['shape'], spec['dtype'])}")
            out[k] = a
        return out

    def _check_input(self, x: Any) -> Any:
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            try:
                x = np.asarray(x)
            except Exception as exc:
                raise ExportError(f"export {self.path.name} takes an array, got {type(x).__name__}: "
                                  f"{_first_line(exc)}") from None
        want = _shape_text((None, *self.input_shape))
        if x.dtype == object or not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
            raise ExportError(f"export {self.path.name} takes {want} {self.dtype} inputs, got an array of "
                              f"{x.dtype}")
        if len(x.shape) != 1 + len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape:
            raise ExportError(f"export {self.path.name} takes inputs of shape {want} {self.dtype}, got "
                              f"{tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ExportError(f"export {self.path.name}: the batch is empty (shape {tuple(x.shape)}); give at "
                              f"least one example")
        if x.dtype != self.dtype:
            floating = jnp.issubdtype(self.dtype, jnp.floating)
            if jnp.issubdtype(x.dtype, jnp.floating) and not floating:
                raise ExportError(f"export {self.path.name} takes {self.dtype} inputs (e.g. token ids), got "
                                  f"{x.dtype}")
            x = jnp.asarray(x, self.dtype)      # float64, or ints into a float model: the exported dtype
        return x

    def __call__(self, x: Any, weights: Mapping[str, Any] | str | os.PathLike | None = None) -> Any:
        """The model's outputs for the batch `x` (B, *input_shape).

        Args:
            x: the inputs; a float array of another precision (float64) is cast to the exported dtype.
            weights: for an export with its weights as an argument: a mapping as `weights_of` gives it, or
                an `.npz` file (`save_weights`), unless `load` bound them already.

        Raises:
            ExportError: (one line) inputs of the wrong shape or kind, an empty batch, or weights that are
                missing, not wanted, or do not fit.
        """
        x = self._check_input(x)
        if self.weights_inside:
            if weights is not None:
                self._check_weights(weights)   # raises: the file holds its weights
            return self._call(x)
        w = self._check_weights(weights) if weights is not None else self.weights
        if w is None:
            raise ExportError(f"export {self.path.name} takes its weights as an argument: call it as fn(x, weights) "
                              f"or load it with load(path, weights=...) (dlcore.export.weights_of or an .npz file "
                              f"from save_weights)")
        return self._call(w, x)


def _spec_text(shape: Sequence[Any], dtype: Any) -> str:
    """``"(3, 3, 1, 16) float32"``: an array's shape and dtype as messages show them."""
    return f"{_shape_text(tuple(shape))} {dtype}"


def load(path: str | os.PathLike, weights: Mapping[str, Any] | str | os.PathLike | None = None) -> ExportedModel:
    """Read an export file: a callable that runs the model without its Python code.

    Args:
        path: a file `export` (or `dlcore export`) wrote.
        weights: for a file whose weights are an argument, the weights to bind (a mapping from
            `weights_of`, or an `.npz` file from `save_weights`); they can also be given at each call.

    Returns:
        An `ExportedModel`: ``fn(x)`` -> outputs, for any batch size.

    Raises:
        ExportError: (a ValueError, one line) the file is missing, empty, not an export, of another
            format version, truncated or corrupt (its SHA-256), written for other platforms, or
            unreadable by this JAX; or `weights` do not fit.
    """
    path = Path(path).expanduser()
    header, payload = _read(path)
    try:
        exported = jax.export.deserialize(bytearray(payload))
    except Exception as exc:
        raise ExportError(f"export file {path} cannot be read by jax {jax.__version__} (it was written with jax "
                          f"{header.get('jax', '?')}): {_first_line(exc)}") from None
    here = jax.default_backend()
    here = "cuda" if here == "gpu" else here
    platforms = [str(p) for p in exported.platforms]
    if here not in platforms:
        raise ExportError(f"export file {path} was exported for {', '.join(platforms)}, not for {here}: export it "
                          f"again with platforms including {here!r}")
    n_in = len(exported.in_avals)
    if n_in != (1 if header["weights_inside"] else 1 + len(header.get("weights") or {})):
        raise ExportError(f"export file {path} is corrupt: its header and its function disagree on the arguments")
    return ExportedModel(path, header, exported, weights)


def _dlcore_version() -> str:
    """The installed dlcore's version, read from its metadata (importing the package from here would make a
    circle: dlcore imports this module)."""
    from importlib import metadata

    try:
        return metadata.version("dlcore")
    except metadata.PackageNotFoundError:
        return "unknown"
