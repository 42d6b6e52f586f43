"""One registry of models: `create(name, **kw)`, `names()`, parameter counts (`count_params`, `param_counts`),
and what `dlcore list` shows of each: its constructor arguments (`arguments`) and docstring summary (`summary`).

Names are case-insensitive (`create("ResNet34")` is `create("resnet34")`); an unknown name raises
`dlcore.registry.UnknownNameError` (a `ValueError`) naming the close matches.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import numpy as np
from flax import nnx

from dlcore.registry import Registry

MODELS: Registry[Callable[..., nnx.Module]] = Registry("model", normalize=str.lower, listing="dlcore list")


def register(name: str, factory: Callable[..., nnx.Module] | None = None, *, aliases: Iterable[str] = ()):
    """Register a model class or factory under `name`; without `factory`, a decorator that does.

    The factory takes the model's own keyword arguments and `rngs`.

    Raises:
        ValueError: when `name` (or an alias) is already registered.
    """
    return MODELS.register(name, factory, aliases=aliases)


def names() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def create(name: str, *, seed: int = 0, rngs: nnx.Rngs | None = None, **kwargs) -> nnx.Module:
    """Build the model registered as `name`.

    Args:
        name: a name from `names()` (any case).
        seed: seed of the `nnx.Rngs` used for initialisation and dropout, when `rngs` is not given.
        rngs: explicit random streams (overrides `seed`).
        **kwargs: the model's own constructor arguments.

    Raises:
        ValueError: for an unknown name (`UnknownNameError`, with the close matches).
    """
    factory = MODELS.get(name)
    return factory(**kwargs, rngs=rngs if rngs is not None else nnx.Rngs(seed))


def arguments(name: str) -> list[inspect.Parameter]:
    """The constructor arguments of model `name`, as `create(name, **kw)` takes them.

    Read from the registered factory's signature (a class's `__init__` less `self`), without building
    anything; `rngs` is left out, as `create` passes it.

    Raises:
        ValueError: for an unknown name (`UnknownNameError`, with the close matches).
    """
    factory = MODELS.get(name)
    # nnx.Module classes have a metaclass whose __call__ is (*args, **kwargs): read __init__ instead
    sig = inspect.signature(factory.__init__ if inspect.isclass(factory) else factory)
    params = list(sig.parameters.values())[1 if inspect.isclass(factory) else 0:]
    return [p for p in params if p.name != "rngs"]


def summary(name: str) -> str:
    """The first paragraph of model `name`'s docstring, on one line ("" when it has none).

    Raises:
        ValueError: for an unknown name (`UnknownNameError`, with the close matches).
    """
    doc = inspect.getdoc(MODELS.get(name)) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (`nnx.Param` leaves), as `sum(p.numel() for p in model.parameters())`."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


# --------------------------------------------------------------------------------------------------
# Parameter counts of the registered models, cached on disk
# --------------------------------------------------------------------------------------------------


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dlcore" / "param_counts.json"


def _source_digest() -> str:
    """A digest of what a default model's parameter count depends on: versions and model/layer code."""
    import flax

    h = hashlib.sha256(f"jax {jax.__version__} flax {flax.__version__}".encode())
    root = Path(__file__).resolve().parent.parent
    for path in sorted([*root.glob("nn/**/*.py"), *root.glob("models/**/*.py")]):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _model_key(name: str, factory: Any, digest: str) -> str | None:
    """The cache key of one model's count, or None when its source cannot be found (then not cached)."""
    try:
        source = Path(inspect.getsourcefile(factory) or "")
        text = source.read_bytes()
    except (TypeError, OSError):
        return None
    qualname = getattr(factory, "__qualname__", repr(factory))
    return hashlib.sha256(f"{digest} {name} {qualname} {source}".encode() + text).hexdigest()


def param_counts(model_names: Iterable[str] | None = None) -> dict[str, int]:
    """The parameter count (`count_params`) of each registered model built with its default arguments.

    Each model is built abstractly (`nnx.eval_shape`: shapes only, no weights allocated), which takes
    seconds for all of them; the counts are therefore cached in `$XDG_CACHE_HOME/dlcore/param_counts.json`
    (default `~/.cache/dlcore/`), each keyed by the model's name and a digest of the dlcore, JAX and
    Flax versions and of the source of `dlcore.nn`, `dlcore.models` and the model's own file. A change
    to any of these recomputes the counts on the next call (the first `dlcore list` after it is slower);
    an unwritable cache only costs the time.

    Args:
        model_names: the models wanted (any accepted spelling); all registered ones when None.

    Returns:
        ``{name: number of trainable scalars}``, by registered name, in the order asked.
    """
    wanted = names() if model_names is None else [MODELS.resolve(n) for n in model_names]
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
        if not isinstance(cached, dict):
            cached = {}
    except (OSError, ValueError):
        cached = {}
    digest = _source_digest()
    out, changed = {}, False
    for name in wanted:
        factory = MODELS.get(name)
        key = _model_key(name, factory, digest)
        hit = cached.get(name)
        if key is not None and isinstance(hit, list) and len(hit) == 2 and hit[0] == key:
            out[name] = int(hit[1])
            continue
        out[name] = count_params(nnx.eval_shape(lambda: create(name)))
        if key is not None:
            cached[name] = [key, out[name]]
            changed = True
    if changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, path)
        except OSError:
            pass
    return out
