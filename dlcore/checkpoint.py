"""Checkpoints: one format (Orbax), written atomically, verified on restore, with a clear error when
one is unusable.

A checkpoint is a directory per step holding three Orbax items: ``state``, the array tree (weights,
other variables, optimizer state, step, PRNG key); ``meta``, a JSON document (epoch, hyperparameters,
history, callback state); and ``digest``, a JSON document that makes bit rot visible::

    {"format": "dlcore-sha256/1",
     "arrays": {"state/params/l1/kernel/value": {"dtype": "float32", "shape": [8, 16], "sha256": "..."},
                ...},
     "meta": "<sha256 of the canonical JSON of the meta item>"}

An array's path joins its dict keys, sequence indices and attribute names with "/" (the same for a
restore into a template and for a template-free `load`, which turns named tuples into dicts). Its
SHA-256 is taken over ``"<dtype>|<shape>|"`` in ASCII (e.g. ``"float32|(8, 16)|"``) followed by the
array's bytes in C order; the meta digest over ``json.dumps(meta, sort_keys=True,
separators=(",", ":"))`` of the document as read back. `restore`, `load` and `restore_meta` recompute
them and raise `CheckpointError` naming the checkpoint and the first altered array (or the metadata).
Hashing costs one pass over the arrays on each save and restore (about 0.6 s per GB on one CPU core).

Orbax writes each step into a temporary directory and renames it when complete, so the digest is
covered by the same atomic rename; a run killed while saving leaves the previous checkpoint intact,
and the older ones are pruned only after a new one is finalised. `restore_latest_good` (what
`Trainer.fit(resume=True)` uses) falls back from a corrupt newest checkpoint to the newest good one.

The digest is an item of its own rather than a field of ``meta`` so that whether a checkpoint has one
is a directory name: a flipped bit in a field's key would have made a verified checkpoint look like
an old one. Checkpoints written before digests existed (no ``digest`` item) still restore, unverified.

A model is checkpointed by passing the ``nnx.Module`` itself::

    checkpoint.save("ckpt", 1, model, {"epoch": 1})     # parameters, batch statistics, RNG streams
    model, meta = checkpoint.restore("ckpt", model)     # written back into `model` in place

What is saved is ``nnx.state(model)`` as nested dicts (paths such as ``l1/kernel``, ``bn/mean``,
``drop/rngs/key``), with each typed RNG key stored as its raw key data (``jax.random.key_data``) and
its stream's draw count beside it; `restore` wraps the key data back into keys of the model's own
implementation. A restored model therefore gives the same outputs and draws the same next dropout
masks as the model had when it was saved. A tree holding typed keys, strings or other Python objects
is refused by `save` with one line before anything is written.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_int
from dlcore.signals import deferred_signals

DIGEST_FORMAT = "dlcore-sha256/1"
_DIGEST_ITEM = "digest"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not match the model it is restored into.

    ``reason`` is the message without the checkpoint's path and the advice (what a fallback reports).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def _manager(directory: str | os.PathLike, keep: int = 2, create: bool = True):
    import orbax.checkpoint as ocp

    path = Path(directory).expanduser().absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(path, options=options)


# -- digests -------------------------------------------------------------------------------------

def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    """(path, leaf) pairs; a path is independent of whether a node is a dict, a list or a named tuple."""
    return [("/".join(_key_name(k) for k in path), leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _array_record(a: Any) -> dict:
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype}|{tuple(a.shape)}|".encode("ascii"))
    h.update(a.reshape(-1).view(np.uint8))  # raises for object arrays, which Orbax cannot save either
    return {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": h.hexdigest()}


def _meta_digest(meta: Any) -> str:
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def digest(tree: Any, meta: dict) -> dict:
    """The digest document `save` writes with `tree` and `meta` (see the module docstring)."""
    meta = json.loads(json.dumps(meta))  # what a reader will see: tuples become lists, keys strings
    return {"format": DIGEST_FORMAT, "arrays": {p: _array_record(a) for p, a in _leaves(tree)},
            "meta": _meta_digest(meta)}


def _corrupt(where: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {where} is corrupt: {reason}; restore an older checkpoint "
                           f"(Trainer.fit(resume=True) does) or delete it to start over", reason)


def _check_digest_doc(where: Path, doc: Any) -> dict:
    if (not isinstance(doc, dict) or doc.get("format") != DIGEST_FORMAT
            or not isinstance(doc.get("arrays"), dict) or not isinstance(doc.get("meta"), str)):
        raise _corrupt(where, f"its digest is not a {DIGEST_FORMAT} document")
    return doc


def _verify_meta(where: Path, doc: dict, meta: Any) -> None:
    if _meta_digest(meta) != doc["meta"]:
        raise _corrupt(where, "its metadata does not match its digest")


def _verify_arrays(where: Path, doc: dict, tree: Any) -> None:
    records = doc["arrays"]
    seen = set()
    for path, leaf in _leaves(tree):
        seen.add(path)
        want = records.get(path)
        if not isinstance(want, dict):
            raise _corrupt(where, f"array {path} is not in its digest")
        got = _array_record(leaf)
        if (got["dtype"], got["shape"]) != (want.get("dtype"), want.get("shape")):
            raise CheckpointError(
                f"checkpoint {where} does not match the model: array {path} was saved as "
                f"{want.get('dtype')}{tuple(want.get('shape') or ())} and is restored as "
                f"{got['dtype']}{tuple(got['shape'])}",
                f"array {path} was saved as {want.get('dtype')}{tuple(want.get('shape') or ())}, "
                f"the model has {got['dtype']}{tuple(got['shape'])}")
        if got["sha256"] != want.get("sha256"):
            raise _corrupt(where, f"array {path} does not match its digest")
    missing = sorted(set(records) - seen)
    if missing:
        raise _corrupt(where, f"array {missing[0]} of its digest was not restored")


# -- what a checkpoint can hold -------------------------------------------------------------------

_PASS_INSTEAD = ("pass the nnx.Module itself (checkpoint.save(directory, step, model) saves its RNG keys as raw "
                 "key data), nnx.state(model, nnx.Param) for the weights alone, or a tree of numeric arrays "
                 "(jax.random.key_data(key) for a key)")


def _is_module(x: Any) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Module)


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _module_tree(model: Any) -> dict:
    """`nnx.state(model)` as nested dicts of arrays, each typed RNG key replaced by its raw key data."""
    from flax import nnx

    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, nnx.to_pure_dict(nnx.state(model)))


def _into_module(model: Any, tree: dict) -> None:
    """Write the arrays of `tree` (from `_module_tree`'s layout) into `model` in place, wrapping key data back
    into typed keys of the model's own implementation and placing each array where the model's one lives."""
    from flax import nnx

    state = nnx.state(model)

    def back(old, new):
        if _is_key(old):
            new = jax.random.wrap_key_data(jnp.asarray(new), impl=jax.random.key_impl(old))
        else:
            new = jnp.asarray(new, dtype=old.dtype)
        sharding = getattr(old, "sharding", None)
        return jax.device_put(new, sharding) if sharding is not None else new

    nnx.replace_by_pure_dict(state, jax.tree.map(back, nnx.to_pure_dict(state), tree))
    nnx.update(model, state)


def _savable(leaf: Any) -> bool:
    dtype = np.asarray(leaf).dtype
    return dtype == np.bool_ or jnp.issubdtype(dtype, jnp.number)


def _check_tree(tree: Any, who: str) -> None:
    """One ValueError line for the first leaf a checkpoint cannot hold (typed keys, strings, objects)."""
    for path, leaf in _leaves(tree):
        where = f"at {path!r}" if path else "as its only leaf"
        if _is_key(leaf):
            raise ValueError(f"{who}: the tree holds a typed jax.random key {where} ({leaf.dtype}), which NumPy "
                             f"cannot store; {_PASS_INSTEAD}")
        try:
            ok = _savable(leaf)
        except Exception:  # noqa: BLE001 - anything NumPy cannot turn into an array
            ok = False
        if not ok:
            if isinstance(leaf, (str, bytes)):
                what = f"a string {leaf!r:.40}"
            else:
                what = f"an object of type {type(leaf).__name__}"
                what += f" with dtype {leaf.dtype}" if hasattr(leaf, "dtype") else ""
            raise ValueError(f"{who}: the tree holds {what} {where}, which is not a numeric array; {_PASS_INSTEAD}")


def _check_meta(meta: Any, who: str) -> dict:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"{who}: meta must be a JSON-able dict or None, got a {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who}: meta must be JSON-able (str, numbers, bools, None, lists and dicts with "
                         f"string keys): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return meta


def _layout(tree: Any) -> dict[str, tuple[str, tuple]]:
    return {p: (str(np.asarray(a).dtype), tuple(np.shape(a))) for p, a in _leaves(tree)}


def _saved_layout(where: Path) -> dict[str, tuple[str, tuple]] | None:
    """Path -> (dtype, shape) of the saved array tree, from Orbax's own metadata; None when unreadable (the
    restore itself then says what is wrong)."""
    import orbax.checkpoint as ocp

    handler = ocp.StandardCheckpointHandler()
    try:
        tree = handler.metadata(where / "state").tree
        return {p: (str(np.dtype(m.dtype)), tuple(m.shape)) for p, m in _leaves(tree)}
    except Exception:  # noqa: BLE001
        return None
    finally:
        handler.close()


def _fmt(layout: tuple[str, tuple]) -> str:
    return f"{layout[0]}{layout[1]}"


def _check_layout(where: Path, template: Any) -> None:
    """One CheckpointError line naming the first path whose array is missing on one side or differs in shape
    or dtype between the checkpoint and the model, before any array is read."""
    saved = _saved_layout(where)
    if saved is None:
        return
    model = _layout(template)
    for path in sorted(set(saved) | set(model)):
        s, m = saved.get(path), model.get(path)
        if s == m:
            continue
        if s is None:
            reason = f"the model's array {path} ({_fmt(m)}) is not in the checkpoint"
        elif m is None:
            reason = f"the checkpoint's array {path} ({_fmt(s)}) is not in the model"
        else:
            reason = f"array {path} was saved as {_fmt(s)}, the model has {_fmt(m)}"
        raise CheckpointError(f"checkpoint {where} does not match the model: {reason}", reason)


# -- steps -----------------------------------------------------------------------------------------

def steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints in `directory`, ascending (empty when there is none)."""
    if not Path(directory).expanduser().is_dir():
        return []
    with _manager(directory, create=False) as mngr:
        return sorted(mngr.all_steps())


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint's step, or None."""
    s = steps(directory)
    return s[-1] if s else None


def save(directory: str | os.PathLike, step: int, model_or_tree: Any, meta: dict | None = None, *,
         keep: int = 2) -> Path:
    """Write a model's arrays (or an array tree), JSON-able `meta` and their digest as checkpoint `step`
    of `directory`.

    An ``nnx.Module`` is saved whole: ``nnx.state(model)`` as nested dicts, i.e. its parameters, its
    other variables (batch-norm statistics, counters) and its RNG streams, each typed key stored as raw
    key data (``jax.random.key_data``) next to its draw count. `restore` puts the keys back, so a
    restored model gives the same outputs and draws the same next dropout masks as the saved one.

    A tree must hold numeric (or bool) arrays and scalars only; a typed ``jax.random`` key, a string or
    another Python object is refused with one ValueError line saying what to pass instead, before
    anything is written. A checkpoint already at `step` (a corrupt one that a resume skipped) is
    replaced.

    Args:
        directory: the run's checkpoint directory (created if needed).
        step: an increasing integer (dlcore uses the epoch).
        model_or_tree: an ``nnx.Module``, or a pytree of arrays (e.g. ``nnx.state(model, nnx.Param)``).
        meta: JSON-serialisable dict (epoch, hyperparameters, ...); None for ``{}``.
        keep: how many checkpoints to keep; older ones are deleted after this one is complete.

    Returns:
        The directory of this checkpoint.

    Example:
        >>> checkpoint.save("ckpt", 1, model, {"epoch": 1})
        >>> model, meta = checkpoint.restore("ckpt", model)
    """
    import orbax.checkpoint as ocp

    step = check_int(step, "step", low=0, who="checkpoint.save")
    keep = check_int(keep, "keep", low=1, who="checkpoint.save")
    meta = _check_meta(meta, "checkpoint.save")
    if _is_module(model_or_tree):
        tree = _module_tree(model_or_tree)
    else:
        _check_tree(model_or_tree, "checkpoint.save")
        tree = model_or_tree
    tree = jax.tree.map(np.asarray, tree)
    doc = digest(tree, meta)
    with deferred_signals(), _manager(directory, keep) as mngr:  # Ctrl-C waits for the write to finish
        if step in mngr.all_steps():
            mngr.delete(step)
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                meta=ocp.args.JsonSave(meta),
                                                digest=ocp.args.JsonSave(doc)), force=True)
        mngr.wait_until_finished()
    return Path(directory).expanduser().absolute() / str(step)


def _has_digest(directory: Path, step: int) -> bool:
    return (directory / str(step) / _DIGEST_ITEM).is_dir()


def _read(directory: Path, step: int, **items) -> dict:
    """Orbax restore of `items` (and the digest, where the checkpoint has one) from checkpoint `step`."""
    import orbax.checkpoint as ocp

    if _has_digest(directory, step):
        items[_DIGEST_ITEM] = ocp.args.JsonRestore()
    _quiet_failed_read(directory / str(step))
    try:
        with _manager(directory, create=False) as mngr:
            out = mngr.restore(step, args=ocp.args.Composite(**items))
        out = {k: out[k] for k in items}
    except Exception as exc:  # Orbax raises many types for unreadable files
        raise _unreadable(directory, step, exc) from exc
    where = directory / str(step)
    if out.get("meta") is None:
        raise CheckpointError(f"checkpoint {where} has no metadata; it is incomplete", "it has no metadata")
    if _DIGEST_ITEM in out:
        out[_DIGEST_ITEM] = _check_digest_doc(where, out[_DIGEST_ITEM])
        _verify_meta(where, out[_DIGEST_ITEM], out["meta"])
    if not isinstance(out["meta"], dict):
        raise _corrupt(where, f"its metadata is a JSON {type(out['meta']).__name__}, not an object")
    return out


def restore_meta(directory: str | os.PathLike, step: int | None = None) -> dict:
    """Only the JSON document of checkpoint `step` (default: the latest) of `directory`, verified
    against its digest (unverified for a checkpoint written before digests)."""
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    return _read(directory, step, meta=ocp.args.JsonRestore())["meta"]


def _pick_step(directory: Path, step: int | None) -> int:
    available = steps(directory)
    if not available:
        raise CheckpointError(f"no checkpoint in {directory}: train without resume first, "
                              f"or point to the directory a run wrote", "there is none")
    step = available[-1] if step is None else check_int(step, "step", low=0)
    if step not in available:
        raise CheckpointError(f"checkpoint {step} is not in {directory}; available: {available}",
                              "it is not there")
    return step


def _quiet_closed_loop() -> None:
    """Silence what a failed Orbax read leaves behind: TensorStore completes the restore's other reads
    after Orbax has closed its event loop, and Python prints each hand-over as an unraisable
    ``RuntimeError: Event loop is closed`` (dozens of tracebacks after the one-line error). Exactly those
    are dropped; every other unraisable exception goes to the hook in place before."""
    previous = sys.unraisablehook
    if getattr(previous, "_dlcore_quiet", False):
        return

    def hook(unraisable) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError)
                and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    hook._dlcore_quiet = True
    sys.unraisablehook = hook


class _FailedReadTasks(logging.Filter):
    """Drops asyncio's "Task (or Future) exception was never retrieved" reports of the unreadable checkpoints
    in `paths`: Orbax reads a checkpoint's arrays as concurrent tasks, raises the first failure and leaves the
    others' (the same corrupt file, each with a traceback) to be logged when they are collected."""

    def __init__(self):
        super().__init__()
        self.paths: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        first = msg.split("\n", 1)[0]  # "Task exception was never retrieved", or "Future ..." for a bare future
        return not (first.endswith("exception was never retrieved") and any(p in msg for p in self.paths))


_FAILED_READS = _FailedReadTasks()


def _quiet_failed_read(where: Path) -> None:
    """Before reading checkpoint `where`: should the read fail, what it leaves behind is dropped (the closed
    loop's unraisable errors, the other tasks' never-retrieved exceptions), so that the failure is the one
    line of its `CheckpointError`. Set up before the read: some of those arrive before Orbax raises."""
    _quiet_closed_loop()
    _FAILED_READS.paths.add(str(where) + os.sep)
    asyncio_log = logging.getLogger("asyncio")
    if _FAILED_READS not in asyncio_log.filters:
        asyncio_log.addFilter(_FAILED_READS)


def _unreadable(directory: Path, step: int, exc: Exception) -> CheckpointError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = f"{type(exc).__name__}: {first[:300]}" if isinstance(exc, KeyError) else first[:300]
    return CheckpointError(f"checkpoint {directory / str(step)} cannot be restored ({first}); "
                           f"it is corrupt or was written for another model: delete it to start over",
                           f"cannot be read: {first}")


def restore(directory: str | os.PathLike, model_or_template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Read checkpoint `step` (default: the latest) of `directory` into a model, or into the structure of a
    template tree, verifying every array and the metadata against the digest written with them.

    Given an ``nnx.Module`` (one `save` was given, or a freshly built one of the same architecture), the
    arrays are written into it in place (``nnx.update``), RNG keys wrapped back from their key data, and
    the module itself is returned. Nothing is written into it unless the whole checkpoint verifies; its
    training/eval mode (``model.train()`` / ``model.eval()``) is not state and stays as it is. A
    checkpoint written before digests existed restores unverified.

    Args:
        directory: the run's checkpoint directory.
        model_or_template: an ``nnx.Module``, or a pytree with the same structure, shapes and dtypes as the
            saved one (e.g. a freshly initialised state's tree).
        step: which checkpoint; None for the latest.

    Returns:
        (model, meta) for a module, (tree, meta) for a template.

    Raises:
        CheckpointError: no checkpoint, or one that is unreadable, fails verification (the message
            names the first altered array) or does not fit the model or template (the message names the
            first path that differs, with both shapes).
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    where = directory / str(step)
    module = model_or_template if _is_module(model_or_template) else None
    template = _module_tree(module) if module is not None else model_or_template
    _check_layout(where, template)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), template)
    out = _read(directory, step, state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    tree, meta = out["state"], out["meta"]
    got, want = _layout(tree), _layout(template)
    if got != want:
        raise CheckpointError(f"checkpoint {where} does not match the model: "
                              f"saved shapes differ from the model's", "saved shapes differ from the model's")
    if _DIGEST_ITEM in out:
        _verify_arrays(where, out[_DIGEST_ITEM], tree)
    if module is not None:
        _into_module(module, tree)
        return module, meta
    return tree, meta


def load(directory: str | os.PathLike, step: int | None = None) -> tuple[Any, dict]:
    """Checkpoint `step` (default: the latest) as saved, without a template: nested dicts of arrays,
    verified like `restore` (unverified for a checkpoint written before digests).

    For inspection and comparison; to continue training use `restore` (or `Trainer.fit(resume=True)`).
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    out = _read(directory, step, state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    if _DIGEST_ITEM in out:
        _verify_arrays(directory / str(step), out[_DIGEST_ITEM], out["state"])
    return out["state"], out["meta"]


def latest_good_meta(directory: str | os.PathLike) -> dict:
    """The JSON document of the newest checkpoint whose metadata reads and verifies (checks such as a
    resume's settings look at it; `restore_latest_good` says which checkpoints it skips when it restores).

    Raises:
        CheckpointError: no checkpoint, or none whose metadata verifies (the newest one's reason).
    """
    directory = Path(directory).expanduser().absolute()
    available = steps(directory)
    if not available:
        _pick_step(directory, None)  # raises "no checkpoint in ..."
    first_error = None
    for step in reversed(available):
        try:
            return restore_meta(directory, step)
        except CheckpointError as exc:
            first_error = first_error or exc
    raise first_error


def restore_latest_good(directory: str | os.PathLike, template: Any | Callable[[dict], Any], *,
                        stacklevel: int = 2) -> tuple[Any, dict, int]:
    """The newest checkpoint of `directory` that reads and verifies, falling back past bad ones.

    Tries the checkpoints newest first. When the newest is unreadable or fails verification, one
    `RuntimeWarning` line names each skipped checkpoint with why and the one used instead. Checkpoints
    written before digests restore unverified.

    Args:
        directory: the run's checkpoint directory.
        template: as for `restore` (an ``nnx.Module`` is restored in place and returned as the tree),
            or a function (a plain function or method) from a checkpoint's
            verified metadata to its template, for trees whose structure the metadata records (the
            `Checkpoint` callback's).
        stacklevel: the warning's `stacklevel` as seen from the caller (2: the line that called this).

    Returns:
        (tree, meta, step).

    Raises:
        CheckpointError: no checkpoint, or none is good (one line with each one's reason).
    """
    stacklevel = check_int(stacklevel, "stacklevel", low=1, who="restore_latest_good")
    directory = Path(directory).expanduser().absolute()
    available = steps(directory)
    if not available:
        _pick_step(directory, None)  # raises "no checkpoint in ..."
    bad: list[tuple[int, str]] = []
    for step in reversed(available):
        try:
            tmpl = template(restore_meta(directory, step)) if inspect.isroutine(template) else template
            tree, meta = restore(directory, tmpl, step)
        except CheckpointError as exc:
            bad.append((step, exc.reason))
            continue
        if bad:
            skipped = ", ".join(f"{directory / str(s)} ({why})" for s, why in bad)
            warnings.warn(f"skipped {'bad checkpoints' if len(bad) > 1 else 'a bad checkpoint'}: {skipped}; "
                          f"using {directory / str(step)}, the newest good one", RuntimeWarning,
                          stacklevel=stacklevel)
        return tree, meta, step
    reasons = "; ".join(f"{s}: {why}" for s, why in bad)
    raise CheckpointError(f"no good checkpoint in {directory} ({reasons}); delete the directory to start over")
