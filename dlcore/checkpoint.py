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
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
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


def save(directory: str | os.PathLike, step: int, tree: Any, meta: dict, *, keep: int = 2) -> Path:
    """Write the array `tree`, JSON-able `meta` and their digest as checkpoint `step` of `directory`.

    A checkpoint already at `step` (a corrupt one that a resume skipped) is replaced.

    Args:
        directory: the run's checkpoint directory (created if needed).
        step: an increasing integer (dlcore uses the epoch).
        tree: pytree of arrays.
        meta: JSON-serialisable dict.
        keep: how many checkpoints to keep; older ones are deleted after this one is complete.

    Returns:
        The directory of this checkpoint.
    """
    import orbax.checkpoint as ocp

    step = check_int(step, "step", low=0, who="checkpoint.save")
    keep = check_int(keep, "keep", low=1, who="checkpoint.save")
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


def _unreadable(directory: Path, step: int, exc: Exception) -> CheckpointError:
    _quiet_closed_loop()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = f"{type(exc).__name__}: {first[:300]}" if isinstance(exc, KeyError) else first[:300]
    return CheckpointError(f"checkpoint {directory / str(step)} cannot be restored ({first}); "
                           f"it is corrupt or was written for another model: delete it to start over",
                           f"cannot be read: {first}")


def restore(directory: str | os.PathLike, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Read checkpoint `step` (default: the latest) of `directory` into the structure of `template`,
    verifying every array and the metadata against the digest written with them.

    A checkpoint written before digests existed restores unverified.

    Args:
        directory: the run's checkpoint directory.
        template: a pytree with the same structure, shapes and dtypes as the saved one (e.g. a
            freshly initialised state's tree).
        step: which checkpoint; None for the latest.

    Returns:
        (tree, meta).

    Raises:
        CheckpointError: no checkpoint, or one that is unreadable, fails verification (the message
            names the first altered array) or does not fit `template`.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    where = directory / str(step)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), template)
    out = _read(directory, step, state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    tree, meta = out["state"], out["meta"]
    got = jax.tree.map(lambda a: (np.shape(a), str(np.asarray(a).dtype)), tree)
    want = jax.tree.map(lambda a: (np.shape(a), str(np.asarray(a).dtype)), template)
    if got != want:
        raise CheckpointError(f"checkpoint {where} does not match the model: "
                              f"saved shapes differ from the model's", "saved shapes differ from the model's")
    if _DIGEST_ITEM in out:
        _verify_arrays(where, out[_DIGEST_ITEM], tree)
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
        template: as for `restore`, or a function (a plain function or method) from a checkpoint's
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
