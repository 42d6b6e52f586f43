"""Checkpoints: one format (Orbax), written atomically, with a clear error when one is unusable.

A checkpoint is a directory per step holding the array tree (weights, other variables, optimizer
state, step, PRNG key) and a JSON document (epoch, hyperparameters, history, callback state).
Orbax writes each step into a temporary directory and renames it when complete, so a run killed
while saving leaves the previous checkpoint intact, and the older ones are pruned only after a new
one is finalised.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from dlcore.signals import deferred_signals


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match the model it is restored into."""


def _manager(directory: str | os.PathLike, keep: int = 2, create: bool = True):
    import orbax.checkpoint as ocp

    path = Path(directory).expanduser().absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(path, options=options)


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
    """Write the array `tree` and JSON-able `meta` as checkpoint `step` of `directory`.

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

    tree = jax.tree.map(np.asarray, tree)
    with deferred_signals(), _manager(directory, keep) as mngr:  # Ctrl-C waits for the write to finish
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                meta=ocp.args.JsonSave(meta)), force=True)
        mngr.wait_until_finished()
    return Path(directory).expanduser().absolute() / str(step)


def restore_meta(directory: str | os.PathLike, step: int | None = None) -> dict:
    """Only the JSON document of checkpoint `step` (default: the latest) of `directory`."""
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    try:
        with _manager(directory, create=False) as mngr:
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as exc:
        raise _unreadable(directory, step, exc) from exc
    if meta is None:
        raise CheckpointError(f"checkpoint {directory / str(step)} has no metadata; it is incomplete")
    return meta


def _pick_step(directory: Path, step: int | None) -> int:
    available = steps(directory)
    if not available:
        raise CheckpointError(f"no checkpoint in {directory}: train without resume first, "
                              f"or point to the directory a run wrote")
    step = available[-1] if step is None else step
    if step not in available:
        raise CheckpointError(f"checkpoint {step} is not in {directory}; available: {available}")
    return step


def _unreadable(directory: Path, step: int, exc: Exception) -> CheckpointError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointError(f"checkpoint {directory / str(step)} cannot be restored ({first[:300]}); "
                           f"it is corrupt or was written for another model: delete it to start over")


def restore(directory: str | os.PathLike, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Read checkpoint `step` (default: the latest) of `directory` into the structure of `template`.

    Args:
        directory: the run's checkpoint directory.
        template: a pytree with the same structure, shapes and dtypes as the saved one (e.g. a
            freshly initialised state's tree).
        step: which checkpoint; None for the latest.

    Returns:
        (tree, meta).

    Raises:
        CheckpointError: no checkpoint, or one that is corrupt or does not fit `template`.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), template)
    try:
        with _manager(directory, create=False) as mngr:
            out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             meta=ocp.args.JsonRestore()))
        tree, meta = out["state"], out["meta"]
    except Exception as exc:  # Orbax raises many types for unreadable files
        raise _unreadable(directory, step, exc) from exc
    if meta is None:
        raise CheckpointError(f"checkpoint {directory / str(step)} has no metadata; it is incomplete")
    got = jax.tree.map(lambda a: (np.shape(a), str(np.asarray(a).dtype)), tree)
    want = jax.tree.map(lambda a: (np.shape(a), str(np.asarray(a).dtype)), template)
    if got != want:
        raise CheckpointError(f"checkpoint {directory / str(step)} does not match the model: "
                              f"saved shapes differ from the model's")
    return tree, meta


def load(directory: str | os.PathLike, step: int | None = None) -> tuple[Any, dict]:
    """Checkpoint `step` (default: the latest) as saved, without a template: nested dicts of arrays.

    For inspection and comparison; to continue training use `restore` (or `Trainer.fit(resume=True)`).
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).expanduser().absolute()
    step = _pick_step(directory, step)
    try:
        with _manager(directory, create=False) as mngr:
            out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
    except Exception as exc:
        raise _unreadable(directory, step, exc) from exc
    return out["state"], out["meta"]
