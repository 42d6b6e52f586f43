"""PyTorch state dicts in and out of dlcore models: torchvision-format weights, layouts converted.

dlcore's models name their submodules as torchvision does (`conv1`, `layer1.0.bn2`,
`features.3`, `classifier.1`), so a state-dict key is the module path joined by dots plus torch's
parameter name. What differs is the layout, and this module converts it:

| torch                                    | dlcore (Flax, channels-last)                     |
|------------------------------------------|--------------------------------------------------|
| Conv weight (out, in/groups, *k)         | kernel (*k, in/groups, out)                      |
| ConvTranspose weight (in, out/groups, *k)| kernel (*k, in, out/groups)                      |
| Linear weight (out, in)                  | kernel (in, out)                                 |
| Linear after a flatten of (C, H, W)      | kernel rows reordered to NHWC's (H, W, C)        |
| BatchNorm weight, bias                   | scale, bias                                      |
| BatchNorm running_mean, running_var      | mean, var (batch statistics)                     |
| BatchNorm num_batches_tracked            | loaded where the model keeps it, else ignored    |
| LayerNorm weight / nnx.Embed weight      | scale / embedding                                |
| Embedding weight (dlcore.nn.Embedding)   | weight, frozen (`from_pretrained`) or not        |
| RNN/LSTM/GRU(Cell) weight_ih_l0, ...     | the same names and layouts, unchanged            |

A model whose Linear follows a flatten of a conv map declares it as `torch_flatten = (("fc1",
(C, H, W)), ...)` (paths relative to the module holding the attribute).

dlcore's `nn.LayerNorm` and `nnx.LayerNorm` both map (`weight`, `bias`) to (`scale`, `bias`), so a torch
`Sequential(Linear, LayerNorm)` state dict loads and the export loads into torch.

Loading checks every tensor before changing anything: a missing, unexpected (with `strict`) or
misshapen tensor raises a `WeightsError` (a ValueError) naming it. Files: `.pth`/`.pt`/`.bin` are read
with torch, always with `weights_only=True` (tensors and containers only, never arbitrary pickled
objects), when it is installed; `.safetensors` files need only the `safetensors` package. A missing,
empty, truncated or foreign file is one line naming the file and what is wrong with it.

References: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2 (pretrained torchvision models);
Subramanian, Deep Learning with PyTorch, ch. 5/8 (transfer learning from ImageNet weights); Géron,
Hands-On ML ch. 12, Using TorchVision's Pretrained Models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import nnx

from dlcore.checks import check_choice
from dlcore.nn.conv import _ConvNd, _ConvTransposeNd
from dlcore.nn.embedding import Embedding
from dlcore.nn.norm import LayerNorm

__all__ = ["PRETRAINED", "TORCHVISION_URL", "WeightsError", "WeightsNotFoundError", "find_file", "load",
           "load_state_dict", "metadata", "pretrained", "pretrained_url", "save", "state_dict", "torch_keys"]


class WeightsError(ValueError):
    """A weights file or state dict dlcore cannot use: one line naming the file or tensor and the fault."""


@dataclass
class _Entry:
    key: str                      # torch state-dict key
    var: Any                      # the nnx.Variable
    torch_shape: tuple            # shape the torch tensor must have
    from_torch: Callable          # np.ndarray (torch layout) -> np.ndarray (dlcore layout)
    to_torch: Callable            # inverse
    optional: bool = False        # may be absent from a state dict (num_batches_tracked)


def _join(path) -> str:
    return ".".join(str(p) for p in path)


def _identity(a):
    return a


def _flatten_perm(chw):
    c, h, w = chw

    def from_torch(wt):                        # (out, C*H*W) -> (H*W*C, out)
        out = wt.shape[0]
        return wt.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, -1).T

    def to_torch(k):                           # (H*W*C, out) -> (out, C*H*W)
        out = k.shape[1]
        return k.T.reshape(out, h, w, c).transpose(0, 3, 1, 2).reshape(out, -1)

    return from_torch, to_torch


def _module_entries(prefix: str, m, flat: dict) -> list[_Entry]:
    def key(name):
        return f"{prefix}.{name}" if prefix else name

    out = []
    handled: set[str] = set()

    def add(attr, tname, from_t, to_t, tshape=None, optional=False):
        var = getattr(m, attr, None)
        if not isinstance(var, nnx.Variable):
            return
        shape = tuple(var[...].shape)
        out.append(_Entry(key(tname), var, tuple(tshape if tshape is not None else shape), from_t, to_t,
                          optional))
        handled.add(attr)

    if isinstance(m, _ConvTransposeNd):
        nd = m.nd
        kshape = tuple(m.kernel[...].shape)                  # (*k, in, out/g)
        add("kernel", "weight", lambda w: np.transpose(w, (*range(2, nd + 2), 0, 1)),
            lambda k: np.transpose(k, (nd, nd + 1, *range(nd))), (kshape[nd], kshape[nd + 1], *kshape[:nd]))
        add("bias", "bias", _identity, _identity)
    elif isinstance(m, (nnx.Conv, _ConvNd)):
        kshape = tuple(m.kernel[...].shape)                  # (*k, in/g, out)
        nd = len(kshape) - 2
        add("kernel", "weight", lambda w: np.transpose(w, (*range(2, nd + 2), 1, 0)),
            lambda k: np.transpose(k, (nd + 1, nd, *range(nd))), (kshape[-1], kshape[-2], *kshape[:nd]))
        add("bias", "bias", _identity, _identity)
    elif isinstance(m, nnx.Linear):
        kin, kout = m.kernel[...].shape
        if prefix in flat:
            c, h, w = flat[prefix]
            if c * h * w != kin:
                raise WeightsError(f"torch_flatten declares {prefix} sees a ({c}, {h}, {w}) map, but its "
                                   f"in_features is {kin}")
            f, t = _flatten_perm(flat[prefix])
        else:
            f, t = (lambda w: w.T), (lambda k: k.T)
        add("kernel", "weight", f, t, (kout, kin))
        add("bias", "bias", _identity, _identity)
    elif isinstance(m, nnx.BatchNorm):
        add("scale", "weight", _identity, _identity)
        add("bias", "bias", _identity, _identity)
        add("mean", "running_mean", _identity, _identity)
        add("var", "running_var", _identity, _identity)
        add("num_batches_tracked", "num_batches_tracked", _identity, _identity, optional=True)
    elif isinstance(m, (nnx.LayerNorm, LayerNorm)):
        add("scale", "weight", _identity, _identity)
        add("bias", "bias", _identity, _identity)
    elif isinstance(m, nnx.Embed):
        add("embedding", "weight", _identity, _identity)
    elif isinstance(m, Embedding):             # a frozen table is not an nnx.Param but is still saved
        add("weight", "weight", _identity, _identity)
    # anything else held directly (PReLU weights, custom parameters, other statistics): same name, shape
    for attr, var in vars(m).items():
        if attr in handled or not isinstance(var, (nnx.Param, nnx.BatchStat)):
            continue
        add(attr, attr, _identity, _identity)
    return out


def _entries(model: nnx.Module) -> list[_Entry]:
    flat: dict[str, tuple[int, int, int]] = {}
    modules = list(nnx.iter_modules(model))
    for path, m in modules:
        for sub, chw in getattr(m, "torch_flatten", ()) or ():
            flat[_join(tuple(path) + tuple(sub.split(".")))] = tuple(chw)
    entries = []
    for path, m in modules:
        entries += _module_entries(_join(path), m, flat)
    return entries


def torch_keys(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """The state-dict keys `model` reads and writes, with the torch shape of each tensor."""
    return {e.key: e.torch_shape for e in _entries(model)}


def _to_numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor, without importing torch
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def _strip_prefix(sd: Mapping[str, Any], keys: set[str]) -> dict:
    """Drop a `module.` prefix (DataParallel) when no model key starts with it."""
    if sd and all(k.startswith("module.") for k in sd) and not any(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def load_state_dict(model: nnx.Module, state_dict: Mapping[str, Any], *, strict: bool = True) -> nnx.Module:
    """Copy a PyTorch state dict (torch tensors or NumPy arrays) into `model`, in place.

    Args:
        model: a dlcore model whose submodule names match the state dict's (torchvision's for the
            ImageNet models).
        state_dict: key -> tensor, in torch's layouts (see the module docstring).
        strict: raise on tensors of the state dict the model has no place for (torch's `strict`);
            with `strict=False` missing and unexpected tensors are skipped. Shapes are always checked.

    Returns:
        `model`, with its parameters and batch statistics replaced.

    Raises:
        WeightsError: (a ValueError) a missing, unexpected, misshapen or non-tensor entry, named, before
            anything is changed.
    """
    check_choice(strict, "strict", (True, False), who="load_state_dict")
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"load_state_dict needs a mapping of names to tensors, got {type(state_dict).__name__}")
    entries = _entries(model)
    sd = _strip_prefix(state_dict, {e.key for e in entries})
    name = type(model).__name__
    known = {e.key for e in entries}
    if strict:
        missing = [e.key for e in entries if e.key not in sd and not e.optional]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise WeightsError(f"state dict is missing tensor {missing[0]!r}{more} that {name} needs")
        unexpected = [k for k in sd if k not in known and not k.endswith("num_batches_tracked")]
        if unexpected:
            more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
            raise WeightsError(f"unexpected tensor {unexpected[0]!r}{more} in the state dict: {name} has no "
                               f"such parameter (pass strict=False to skip it)")
    updates = []
    for e in entries:
        if e.key not in sd:
            continue
        if not _is_tensor(sd[e.key]):
            raise WeightsError(f"state dict entry {e.key!r} is a {type(sd[e.key]).__name__}, not a tensor")
        a = _to_numpy(sd[e.key])
        if tuple(a.shape) != e.torch_shape:
            raise WeightsError(f"tensor {e.key!r} has shape {tuple(a.shape)}, but {name} expects "
                               f"{e.torch_shape} (torch layout)")
        if np.iscomplexobj(a) and not np.iscomplexobj(np.empty(0, e.var[...].dtype)):
            raise WeightsError(f"tensor {e.key!r} is complex ({a.dtype}), but {name}'s parameter is "
                               f"{e.var[...].dtype}: its imaginary part would be dropped")
        value = e.from_torch(a)
        updates.append((e.var, jax.device_put(np.array(value, dtype=e.var[...].dtype, order="C"))))
    for var, value in updates:
        var[...] = value
    return model


def state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """`model`'s parameters and batch statistics as a PyTorch state dict of NumPy arrays (torch layouts).

    Batch norms get a `num_batches_tracked` entry (0 where the model does not count batches), so
    `torch_module.load_state_dict({k: torch.from_numpy(v) ...})` accepts the result strictly.
    """
    out: dict[str, np.ndarray] = {}
    for e in _entries(model):
        out[e.key] = np.array(e.to_torch(np.asarray(e.var[...])), order="C")
        if e.key.endswith("running_var"):
            nbt = e.key[: -len("running_var")] + "num_batches_tracked"
            out.setdefault(nbt, np.zeros((), np.int64))
    for k, v in out.items():
        if k.endswith("num_batches_tracked"):
            out[k] = np.asarray(v, np.int64)
    return out


def _is_tensor(v) -> bool:
    """A torch tensor or an array (NumPy, JAX): what a state dict holds."""
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read_safetensors(path: Path) -> Mapping[str, Any]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise WeightsError(f"reading {path} needs the safetensors package: pip install safetensors") from None
    try:
        return load_file(str(path))
    except OSError as e:
        raise WeightsError(f"weights file {path} cannot be read: {_one_line(e.strerror or e)}") from None
    except Exception as e:                     # SafetensorError: "Error while deserializing header: ..."
        why = _one_line(str(e).splitlines()[0] if str(e) else type(e).__name__)
        why = why.replace("Error while deserializing header:", "").strip()
        if not why.startswith("header"):
            why = f"header: {why}"
        raise WeightsError(f"weights file {path} is not a safetensors file: {why}") from None


def _names_something(qualname: str) -> bool:
    """False when `qualname` cannot be a real global: its module is loaded but lacks the name, as when a
    truncated file cuts a name short (`collections.Or`). Modules are looked up, never imported."""
    import sys

    parts = qualname.split(".")
    for i in range(len(parts) - 1, 0, -1):
        obj = sys.modules.get(".".join(parts[:i]))
        if obj is not None:
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
                if obj is None:
                    return False
            return True
    return True                                # a module not loaded here: take the name as written


def _read_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError:
        raise WeightsError(f"reading {path} needs torch (pip install torch), or convert it to "
                           f".safetensors where torch is installed") from None
    import pickle
    import re
    import warnings

    try:
        with warnings.catch_warnings():        # torch warns about pickle protocols it did not write
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError as e:
        raise WeightsError(f"weights file {path} cannot be read: {_one_line(e.strerror or e)}") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found and _names_something(found.group(1)):   # a whole pickled model, a custom class, ...
            raise WeightsError(f"weights file {path} holds pickled Python objects ({found.group(1)}), not "
                               f"just tensors; dlcore reads only tensors (torch.load with weights_only=True): "
                               f"save model.state_dict() instead") from None
        raise WeightsError(f"weights file {path} is not a PyTorch checkpoint: truncated or not a zip/pickle "
                           f"file") from None
    except Exception:                          # EOFError, RuntimeError (zip reader), KeyError, ...
        raise WeightsError(f"weights file {path} is not a PyTorch checkpoint: truncated or not a zip/pickle "
                           f"file") from None


def _read(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise WeightsError(f"weights file {path} cannot be read: {_one_line(e.strerror or e)}") from None
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = _read_torch(path)
    if isinstance(obj, Mapping):
        for k in ("state_dict", "model_state_dict", "model"):
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
        if obj and not any(_is_tensor(v) for v in obj.values()):
            first = next(iter(obj))
            raise WeightsError(f"weights file {path} does not hold a state dict: a dict with no tensors "
                               f"(first entry {first!r}: {type(obj[first]).__name__})")
        return obj
    raise WeightsError(f"weights file {path} does not hold a state dict (found {type(obj).__name__})")


def find_file(name: str) -> Path | None:
    """A pretrained weights file `name` (e.g. "vgg19-dcbb9e9d.pth") in `$DLCORE_WEIGHTS`, then in dlcore's cache
    (`~/.cache/dlcore/weights`, or `$DLCORE_DATA/weights`); None when it is in neither. Nothing is downloaded:
    the examples that use published weights say what they ran on without them."""
    from dlcore.data.sources import cache_dir

    for folder in (os.environ.get("DLCORE_WEIGHTS"), cache_dir() / "weights"):
        if folder and (Path(folder).expanduser() / name).is_file():
            return Path(folder).expanduser() / name
    return None


# --- pretrained weights: torchvision's published files ---------------------------------------------------

TORCHVISION_URL = "https://download.pytorch.org/models/"


class WeightsNotFoundError(WeightsError):
    """A pretrained weights file is not on this machine and could not be downloaded: one line saying which URL
    to fetch and where to put the file."""


def _densenet_keys(sd: Mapping[str, Any]) -> dict:
    """torchvision's DenseNet files predate its module names: `denselayer1.norm.1.weight` is `norm1.weight`
    today (torchvision renames them the same way when it loads them)."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                         r"running_var))$")
    out = {}
    for k, v in sd.items():
        m = pattern.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


@dataclass(frozen=True)
class _Published:
    file: str                                       # torchvision's file name, ending -<sha256 prefix>.pth
    fix_keys: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    @property
    def sha256_prefix(self) -> str:
        return self.file.rsplit("-", 1)[1].split(".")[0]


def _pretrained_registry():
    from dlcore.registry import Registry

    reg = Registry("pretrained weights", normalize=str.lower, listing="dlcore.weights.PRETRAINED.names()")
    # torchvision's IMAGENET1K_V1 files (torchvision/models/*.py, the Weights enums); the hex digits at the end
    # of each name are the first digits of the file's SHA-256, which torchvision and dlcore check
    for name, entry in {
        "alexnet": _Published("alexnet-owt-7be5be79.pth"),
        "vgg16": _Published("vgg16-397923af.pth"),
        "vgg19": _Published("vgg19-dcbb9e9d.pth"),
        "resnet18": _Published("resnet18-f37072fd.pth"),
        "resnet34": _Published("resnet34-b627a593.pth"),
        "resnet50": _Published("resnet50-0676ba61.pth"),
        "resnet101": _Published("resnet101-63fe2227.pth"),
        "densenet121": _Published("densenet121-a639ec97.pth", _densenet_keys),
        "inception_v3": _Published("inception_v3_google-0cc3c7bd.pth"),
        "convnext_tiny": _Published("convnext_tiny-983f1562.pth"),
        "convnext_base": _Published("convnext_base-6075fbad.pth"),
    }.items():
        reg.register(name, entry)
    return reg


PRETRAINED = _pretrained_registry()


def pretrained_url(name: str, *, base_url: str = TORCHVISION_URL) -> str:
    """The URL of model `name`'s published ImageNet weights (e.g. ".../resnet101-63fe2227.pth")."""
    return base_url.rstrip("/") + "/" + PRETRAINED.get(name).file


def pretrained(name: str, model: nnx.Module | None = None, *, download: bool = True, progress: bool | None = None,
               base_url: str = TORCHVISION_URL, strict: bool = True):
    """Torchvision's published ImageNet weights for model `name`: found locally, else downloaded and checked.

    The file keeps torchvision's name (`resnet101-63fe2227.pth`) and is looked for in `$DLCORE_WEIGHTS`, then in
    dlcore's cache (`~/.cache/dlcore/weights`, or `$DLCORE_DATA/weights`); a file found there is used as is.
    Otherwise it is downloaded from `base_url` into the cache, atomically and resumably
    (`dlcore.data.download.fetch`), and kept only when its SHA-256 starts with the hex digits at the end of
    its name (torchvision's own check). With downloading off (`download=False` or `$DLCORE_OFFLINE` set) or
    the network unreachable, one line says which URL to fetch and where to put the file.

    Args:
        name: one of `PRETRAINED.names()`: alexnet, vgg16, vgg19, resnet18/34/50/101, densenet121,
            inception_v3, convnext_tiny, convnext_base (any case).
        model: when given, the matching dlcore model (`models.create(name)`), loaded in place; DenseNet's old
            key names (`norm.1`) are renamed as torchvision does.
        download: allow a download when the file is not here.
        progress: show a download progress bar (None: only on a terminal).
        base_url: where the files are published (a mirror, or a local server in tests).
        strict: as `load_state_dict`, when loading into `model`.

    Returns:
        The file's Path when `model` is None; else `model` with the weights loaded.

    Raises:
        UnknownNameError: (a ValueError) `name` has no published file here.
        WeightsNotFoundError: (a WeightsError, a ValueError) not here and not downloadable: what to fetch, where.
        ChecksumError: (a ValueError) the download's SHA-256 does not start with the published digits; nothing
            is left in the cache.
        WeightsError: the file does not fit `model` (the tensor named).

    Example:
        >>> resnet = weights.pretrained("resnet101", models.create("resnet101"))  # doctest: +SKIP

    References: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2, section 2.1.3 (`resnet101(weights=
    ResNet101_Weights.DEFAULT)` downloads the ImageNet weights); Géron, Hands-On ML, ch. 12, Using TorchVision's
    Pretrained Models.
    """
    entry = PRETRAINED.get(name)
    check_choice(download, "download", (True, False), who="pretrained")
    if model is not None and not isinstance(model, nnx.Module):
        raise WeightsError(f"pretrained({name!r}, model) needs a dlcore model (models.create({name!r})), "
                           f"got {type(model).__name__}")
    path = find_file(entry.file)
    if path is None:
        path = _download_pretrained(name, entry, download=download, progress=progress, base_url=base_url)
    if model is None:
        return path
    sd = _read(path)
    if entry.fix_keys is not None:
        sd = entry.fix_keys(sd)
    return load_state_dict(model, sd, strict=strict)


def _download_pretrained(name, entry, *, download, progress, base_url) -> Path:
    from dlcore.data import download as dl
    from dlcore.data.sources import cache_dir, offline

    url = base_url.rstrip("/") + "/" + entry.file
    folder = cache_dir() / "weights"
    where = f"into {folder}/ (or a folder named by $DLCORE_WEIGHTS)"
    if not download or offline():
        why = "downloading is off (DLCORE_OFFLINE is set)" if offline() else "download=False"
        raise WeightsNotFoundError(f"{name} weights {entry.file} are not on this machine and {why}: fetch {url} "
                                   f"{where}")
    try:
        return dl.fetch(url, folder / entry.file, sha256_prefix=entry.sha256_prefix, progress=progress)
    except dl.DownloadError as e:
        why = _one_line(str(e).split(": ", 1)[-1], 100)
        raise WeightsNotFoundError(f"{name} weights {entry.file} could not be downloaded ({why}): fetch {url} "
                                   f"{where}") from None


def load(model: nnx.Module, path: str | os.PathLike, *, strict: bool = True) -> nnx.Module:
    """Load a torchvision-format weights file into `model` (in place) and return it.

    Args:
        model: the matching dlcore model, e.g. `models.create("resnet18")`.
        path: a `.safetensors` file (no torch needed) or a torch `.pth`/`.pt`/`.bin` state dict (or
            a checkpoint dict holding one under "state_dict"/"model_state_dict"/"model").
        strict: as `load_state_dict`.

    Raises:
        WeightsError: (a ValueError) one line naming the file when it is missing, a directory, empty,
            truncated, not a torch checkpoint or safetensors file, holds pickled objects other than
            tensors, or holds no state dict; or naming the tensor that does not fit `model`.

    Example:
        >>> model = weights.load(models.create("resnet18"), "resnet18-f37072fd.pth")  # doctest: +SKIP
    """
    return load_state_dict(model, _read(Path(path).expanduser()), strict=strict)


def save(model: nnx.Module, path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Write `model`'s weights in torch layout: `.safetensors` (needs `safetensors`) or `.pth` (needs torch).

    Args:
        metadata: strings stored in a `.safetensors` file's header beside the tensors (e.g. the model's
            name and its hyperparameters as JSON, so a fresh model can be rebuilt; Géron, Hands-On ML
            ch. 10, Saving and Loading PyTorch Models); read back with `metadata(path)`.
    """
    path = Path(path).expanduser()
    if metadata is not None:
        if path.suffix != ".safetensors":
            raise WeightsError(f"metadata is stored in .safetensors files only, not in {path.name!r}")
        if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in metadata.items()):
            raise WeightsError("metadata must map strings to strings (json.dumps anything else)")
    sd = state_dict(model)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(sd, str(path), metadata=None if metadata is None else dict(metadata))
    else:
        import torch

        torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, str(path))
    return path


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata `save(..., metadata=...)` stored in a `.safetensors` file ({} when none).

    Raises:
        WeightsError: the file is missing, empty, not a `.safetensors` file, or not one (one line).
    """
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise WeightsError(f"metadata is read from .safetensors files only, not from {path.name!r}")
    _read(path)                                # the same one-line errors as load
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})
