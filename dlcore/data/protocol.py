"""The one batch protocol, and the batch sources that produce it.

A **batch** is a dict:

- ``"x"``: the inputs: an array ``(B, ...)``, a tuple of arrays (the model is called as
  ``model(*x)``) or a dict of arrays (``model(**x)``);
- ``"y"``: the targets, a pytree of ``(B, ...)`` arrays; absent for self-supervised data or GANs;
- ``"w"``: per-example weights ``(B,)``, 1 for a real example and 0 for a padding row; absent means
  every row counts.

A **source** of batches is any of:

- an in-memory split: a dict with ``"x"`` (array, tuple or dict of arrays), optional ``"y"`` and
  ``"w"``, or a tuple ``(x, y)``. It goes to the device once; batches are gathered there;
- a `dlcore.data.Loader` (its own batch size, order and device);
- a random-access source (``len`` and ``__getitem__`` returning a record dict: ``tfds.data_source``,
  `ArraySource`, a grain ``MapDataset``), read through grain in batches;
- any Python iterable of batches (a list, a generator, a ``grain`` iterator), or a function
  ``epoch -> iterable`` that gives each epoch's batches (what makes a generator re-playable, and
  resume exact).

`source(data, ...)` turns each into a `BatchSource` whose ``epoch(e)`` yields batches padded to one
shape (weight-0 rows), so a step compiles once. The Trainer consumes sources only through
this module.
"""

from __future__ import annotations

import collections.abc as cabc
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_int
from dlcore.data.loader import Loader, source_batches

__all__ = ["ArraySplit", "BatchSource", "Stream", "as_batch", "as_split", "call_model", "check_structure",
           "num_rows", "pad_batch", "signature", "source", "take_rows"]


# -- one batch ---------------------------------------------------------------------------------------


def call_model(model: Callable, x: Any, **kwargs):
    """Call ``model`` on a batch's inputs: ``model(x)``, ``model(*x)`` for a tuple, ``model(**x)`` for a dict."""
    if isinstance(x, tuple):
        return model(*x, **kwargs)
    if isinstance(x, cabc.Mapping):
        return model(**x, **kwargs)
    return model(x, **kwargs)


def num_rows(tree: Any) -> int:
    """The leading (batch) dimension shared by the arrays of ``tree``."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("a batch needs at least one array under 'x'")
    return int(np.shape(leaves[0])[0]) if np.ndim(leaves[0]) else 0


def take_rows(tree: Any, rows) -> Any:
    """``tree`` with every array indexed by ``rows`` along its first axis."""
    return jax.tree.map(lambda a: a[rows], tree)


def as_batch(batch: Any, where: str = "batch") -> dict:
    """A user's batch in the protocol: a dict with "x", optional "y", and "w" (ones when absent).

    Accepts a dict, or a tuple ``(x, y)`` / ``(x,)``. Checks that every array has the same number of
    rows.
    """
    if isinstance(batch, tuple) and len(batch) in (1, 2):
        batch = {"x": batch[0]} if len(batch) == 1 else {"x": batch[0], "y": batch[1]}
    if not isinstance(batch, cabc.Mapping):
        raise ValueError(f"{where} must be a dict with 'x' (and optional 'y', 'w') or a tuple (x, y), "
                         f"got {type(batch).__name__}")
    extra = set(batch) - {"x", "y", "w"}
    if "x" not in batch or extra:
        raise ValueError(f"{where} must have the keys 'x' and optionally 'y', 'w'; got {sorted(batch)}"
                         + (f" (put extra inputs in a dict under 'x': {sorted(extra)})" if extra else ""))
    out = {k: batch[k] for k in ("x", "y", "w") if k in batch}
    for k, v in out.items():
        for leaf in jax.tree.leaves(v):
            if not hasattr(leaf, "shape") or np.ndim(leaf) == 0:
                raise ValueError(f"{where}[{k!r}] must hold arrays with a leading example axis, "
                                 f"got {type(leaf).__name__}")
            check_numeric(leaf, f"{where}[{k!r}]")
    n = {k: {int(np.shape(a)[0]) for a in jax.tree.leaves(v)} for k, v in out.items()}
    sizes = set().union(*n.values())
    if len(sizes) != 1:
        listing = ", ".join(f"{k}: {sorted(s)}" for k, s in n.items())
        raise ValueError(f"{where}: every array needs the same number of rows, got {listing}")
    if "w" not in out:
        out["w"] = np.ones((sizes.pop(),), np.float32)
    elif np.ndim(out["w"]) != 1:
        raise ValueError(f"{where}['w'] must have shape (B,), got {np.shape(out['w'])}")
    return out


def signature(batch: dict) -> tuple:
    """What must not change from batch to batch: the tree structure, and each array's per-example shape
    and dtype (the batch dimension may change; short batches are padded)."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple((tuple(np.shape(a)[1:]), np.dtype(getattr(a, "dtype", np.float32)).name) for a in leaves)


def describe(sig: tuple) -> str:
    treedef, shapes = sig
    return f"{treedef} with per-example shapes/dtypes {list(shapes)}"


def check_structure(batch: dict, expected: tuple | None, where: str) -> tuple:
    """The batch's `signature`, after checking it equals ``expected`` (when given) with one clear line."""
    sig = signature(batch)
    if expected is not None and sig != expected:
        raise ValueError(f"{where} has another structure than the first batch: got {describe(sig)}, "
                         f"expected {describe(expected)}. Every batch of a source needs the same keys, "
                         f"per-example shapes and dtypes")
    return sig


def pad_batch(batch: dict, size: int) -> dict:
    """``batch`` grown to ``size`` rows by repeating its first rows with weight 0 (one shape, one compile).

    Works on host (NumPy) and device (JAX) batches alike, without moving them.
    """
    n = num_rows(batch)
    if n == size:
        return batch
    if n > size:
        raise ValueError(f"a batch of {n} rows is larger than the source's first batch ({size} rows); "
                         f"batches after the first may only be smaller")
    rows = np.arange(size) % n
    out = jax.tree.map(lambda a: a[rows], {k: v for k, v in batch.items() if k != "w"})
    xp = jnp if isinstance(batch["w"], jax.Array) else np
    out["w"] = xp.concatenate([xp.asarray(batch["w"], np.float32), xp.zeros(size - n, np.float32)])
    return out


# -- in-memory splits --------------------------------------------------------------------------------


def as_split(data: Any, name: str = "data") -> dict:
    """An in-memory split in the protocol: {"x": inputs, "y": targets (optional), "w": (N,)}, NumPy arrays.

    Args:
        data: a dict with "x" (an array, tuple or dict of arrays), optional "y" and "w"; or a tuple (x, y).
        name: how error messages call it.

    Raises:
        ValueError: not a split, arrays of different lengths, or no rows.
    """
    if isinstance(data, tuple) and len(data) == 2:
        data = {"x": data[0], "y": data[1]}
    if not isinstance(data, cabc.Mapping) or "x" not in data:
        raise ValueError(f"{name} must be a dict with 'x' (and 'y') arrays, a tuple (x, y), a Loader, a "
                         f"random-access source or an iterable of batches; got {type(data).__name__}")
    split = {k: jax.tree.map(np.asarray, data[k]) for k in ("x", "y", "w") if k in data}
    extra = set(data) - {"x", "y", "w"}
    if extra:
        raise ValueError(f"{name} has keys {sorted(extra)} besides 'x', 'y', 'w'; put several inputs in a "
                         f"dict or tuple under 'x'")
    lengths = {}
    for k, v in split.items():
        leaves = jax.tree.leaves(v)
        if not leaves or any(a.ndim == 0 for a in leaves):
            raise ValueError(f"{name}[{k!r}] must hold arrays with a leading example axis")
        for a in leaves:
            check_numeric(a, f"{name}[{k!r}]")
        lengths[k] = {a.shape[0] for a in leaves}
    if len(set().union(*lengths.values())) != 1:
        shapes = {k: [a.shape for a in jax.tree.leaves(v)] for k, v in split.items()}
        raise ValueError(f"{name}: 'x' and 'y' must have the same first dimension, got {shapes}")
    n = lengths["x"].pop()
    if n == 0:
        raise ValueError(f"{name} is empty")
    if "w" not in split:
        split["w"] = np.ones((n,), np.float32)
    elif np.ndim(split["w"]) != 1 or np.any(~np.isfinite(split["w"])) or np.any(split["w"] < 0):
        raise ValueError(f"{name}['w'] must be finite sample weights >= 0 of shape (N,), got shape "
                         f"{np.shape(split['w'])}")
    return split


def check_numeric(a, where: str) -> None:
    """One line when an array holds strings, Python objects or other non-numbers."""
    kind = np.dtype(getattr(a, "dtype", np.asarray(a).dtype)).kind
    if kind not in "biuf":
        what = {"U": "strings", "S": "bytes", "O": "Python objects (e.g. strings)"}.get(kind, f"dtype {a.dtype}")
        raise ValueError(f"{where} holds {what}; a model trains on numbers: encode them first "
                         f"(dlcore.data.text for text, dlcore.data.tabular for categories)")


def nonfinite_rows(batch: dict) -> np.ndarray:
    """(N,) bool: the rows of a host batch or split whose inputs or targets hold NaN or inf."""
    n = num_rows(batch["x"])
    bad = np.zeros(n, bool)
    for leaf in jax.tree.leaves({k: v for k, v in batch.items() if k != "w"}):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
            bad |= ~np.isfinite(leaf.reshape(n, -1)).all(axis=1)
    return bad


def handle_nonfinite(batch: dict, policy: str, where: str) -> tuple[dict, int]:
    """``batch`` without its non-finite rows (policy "drop", with their count), or a one-line error
    (policy "raise"). Only host (NumPy) arrays are looked at: device arrays are left to the training
    step's non-finite guard."""
    bad = nonfinite_rows(batch)
    count = int(bad.sum())
    if not count:
        return batch, 0
    if policy == "raise":
        keys = [k for k in ("x", "y") if k in batch and nonfinite_rows({"x": batch[k]}).any()]
        raise ValueError(f"{where}: {count} rows hold NaN or inf in {' and '.join(repr(k) for k in keys)} "
                         f"(first at row {int(np.argmax(bad))}); clean them, or pass nonfinite_rows='drop' to the "
                         f"Trainer to leave them out (counted)")
    if count == len(bad):
        raise ValueError(f"{where}: every row holds NaN or inf; nothing is left to train on")
    return take_rows(batch, ~bad), count


def batch_plan(key: jax.Array | None, n: int, batch_size: int, drop_last: bool = False,
               steps: int | None = None):
    """Row indices and weights of every batch of one epoch.

    Args:
        key: shuffle key, or None for the data's order.
        n: number of rows.
        batch_size: rows per batch.
        drop_last: drop a short last batch instead of padding it.
        steps: batches in the epoch when not one pass (Keras's ``steps_per_epoch``): fewer cuts the pass
            short; more continues, in order with the next pass as one pass is (``key=None``: every row is
            seen), or shuffled with fresh permutations (``fold_in(key, pass)``), the whole batches of each.

    Returns:
        idx (num_batches, batch_size) int32 and w (num_batches, batch_size) float32, where padded slots
        repeat real rows with weight 0.
    """
    def perm(k):
        return jnp.arange(n) if k is None else jax.random.permutation(k, n)

    if steps is None:
        order = perm(key)
        nb = n // batch_size if drop_last else -(-n // batch_size)
        total = nb * batch_size
        if total > n:
            order = jnp.concatenate([order, order[: total - n]])
        idx = order[:total].reshape(nb, batch_size)
        w = (jnp.arange(total) < n).astype(jnp.float32).reshape(nb, batch_size)
        return idx.astype(jnp.int32), w
    total = steps * batch_size
    if key is None:  # in order: pass after pass, each as one pass is (its short last batch padded unless drop_last)
        idx, w = batch_plan(None, n, batch_size, drop_last)
        reps = -(-steps // idx.shape[0])
        return jnp.tile(idx, (reps, 1))[:steps], jnp.tile(w, (reps, 1))[:steps]
    per_pass = (n // batch_size) * batch_size or n  # whole batches of each pass; each permutation leaves out others
    passes = -(-total // per_pass)
    order = jnp.concatenate([perm(key if p == 0 else jax.random.fold_in(key, p))[:per_pass]
                             for p in range(passes)])[:total]
    return order.reshape(steps, batch_size).astype(jnp.int32), jnp.ones((steps, batch_size), jnp.float32)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _epoch_plan(key, epoch, n, batch_size, drop_last, steps):
    """`batch_plan` of epoch ``epoch`` (shuffled by ``fold_in(key, epoch)``, or in order for ``key=None``) as one
    compiled call: built op by op it costs a dozen dispatches, which a short epoch notices."""
    return batch_plan(None if key is None else jax.random.fold_in(key, epoch), n, batch_size, drop_last, steps)


class BatchSource:
    """What the Trainer iterates: ``epoch(e)`` yields the batches of epoch ``e`` (1-based), each padded
    to one shape; ``batches_per_epoch`` and ``examples_per_epoch`` (None when unknown beforehand),
    ``batch_size``, and ``example()`` (one batch, for shape checks before anything compiles)."""

    batch_size: int
    batches_per_epoch: int | None
    examples_per_epoch: int | None

    def example(self, first_epoch: int = 1) -> dict:
        """One batch (of the first epoch the fit will run), for checks before anything compiles."""
        raise NotImplementedError

    def epoch(self, epoch: int) -> Iterator[dict]:
        raise NotImplementedError


@dataclass
class ArraySplit(BatchSource):
    """An in-memory split kept on the device; batches are gathered there by row index.

    The Trainer runs an epoch over it as one ``lax.scan`` (`plan` gives every batch's rows at once)
    or one jitted step per batch.
    """

    split: dict
    batch_size: int
    shuffle: bool = False
    key: jax.Array | None = None
    drop_last: bool = False
    steps: int | None = None
    dropped: int = 0  # rows left out for NaN or inf (nonfinite_rows="drop")

    def __post_init__(self):
        self.n = num_rows(self.split["x"])
        self.batch_size = min(self.batch_size, self.n)
        if self.steps is not None:
            self.batches_per_epoch = self.steps
            self.examples_per_epoch = self.steps * self.batch_size
        else:
            self.batches_per_epoch = (self.n // self.batch_size if self.drop_last
                                      else math.ceil(self.n / self.batch_size))
            self.examples_per_epoch = self.batches_per_epoch * self.batch_size if self.drop_last else self.n
        self.device = None
        self._put = None

    def nbytes(self) -> int:
        return sum(a.nbytes for a in jax.tree.leaves(self.split))

    def example(self, first_epoch: int = 1) -> dict:
        rows = np.arange(self.batch_size) % self.n
        return take_rows(self.split, rows)

    def plan(self, epoch: int):
        return _epoch_plan(self.key if self.shuffle else None, epoch, self.n, self.batch_size, self.drop_last,
                           self.steps)

    def on_device(self, put: Callable[[dict], dict] | None = None) -> dict:
        """The split on the device, placed once: by ``put(split)`` when given (the Trainer's mesh replicates it),
        else on the default device."""
        if self.device is None or self._put is not put:
            self.device, self._put = (put or jax.device_put)(self.split), put
        return self.device

    def epoch(self, epoch: int) -> Iterator[dict]:
        """Host-gathered batches (for data kept off the device)."""
        idx, w = (np.asarray(a) for a in self.plan(epoch))
        for i in range(len(idx)):
            yield gather(self.split, idx[i], w[i])


def gather(split: dict, idx, w) -> dict:
    """The batch of ``split`` at rows ``idx`` (B,), its weights times the plan's ``w`` (B,) (0 for padding)."""
    batch = take_rows(split, idx)
    batch["w"] = batch["w"] * w if "w" in batch else w
    return batch


class Stream(BatchSource):
    """Batches from a Loader, a random-access source or an iterable, checked and padded to one shape.

    Args:
        make: ``epoch -> iterable of batches``.
        batches_per_epoch: known length of an epoch, or None.
        steps: take at most this many batches an epoch (Keras's ``steps_per_epoch``); with a one-shot
            iterator the same iterator continues from epoch to epoch.
        name: how errors call the source.
        host_split: every row of the source on the host, where it has them (a Loader), or None.
    """

    def __init__(self, make: Callable[[int], Iterable], batches_per_epoch: int | None = None,
                 steps: int | None = None, name: str = "data", nonfinite: str = "raise",
                 host_split: dict | None = None):
        self._make = make
        self.steps = steps
        self.name = name
        self.nonfinite = nonfinite
        self.dropped = 0  # rows left out for NaN or inf in the last epoch (nonfinite="drop")
        self.batches_per_epoch = steps if steps is not None else batches_per_epoch
        self._sig = None
        self._first = None
        self._open = None
        self.batch_size = 0
        self.examples_per_epoch = None
        self.host_split = host_split  # a Loader's whole split on the host, where the Trainer checks every label

    def _checked(self, batch, where: str) -> dict:
        batch = as_batch(batch, where)
        self._sig = check_structure(batch, self._sig, where)
        return batch

    def example(self, first_epoch: int = 1) -> dict:
        if self._first is None:
            it = iter(self._make(first_epoch))
            try:
                first = next(it)
            except StopIteration:
                raise ValueError(f"{self.name} yields no batch") from None
            self._first = self._checked(first, f"{self.name}: batch 1 of epoch {first_epoch}")
            self.batch_size = num_rows(self._first)
            self._open = (first_epoch, first, it)  # the epoch's iterator, its first batch already read
        return self._first

    def _batches(self, epoch: int) -> Iterator:
        if self._open is not None and self._open[0] == epoch:
            _, first, it = self._open
            self._open = None
            yield first
            yield from it
        else:
            yield from self._make(epoch)

    def raw(self, epoch: int) -> Iterator[dict]:
        """The batches of ``epoch`` as the source gives them, checked but not padded."""
        self.example(epoch)
        count, self.dropped = 0, 0
        for i, batch in enumerate(self._batches(epoch)):
            if self.steps is not None and i >= self.steps:
                break
            count += 1
            where = f"{self.name}: batch {i + 1} of epoch {epoch}"
            batch = self._checked(batch, where)
            if self.nonfinite == "drop" and nonfinite_rows(batch).all():
                self.dropped += num_rows(batch["x"])
                continue
            batch, dropped = handle_nonfinite(batch, self.nonfinite, where)
            self.dropped += dropped
            yield batch
        if count == 0:
            raise ValueError(f"{self.name} yielded no batch in epoch {epoch}; a generator can be consumed "
                             f"once: pass a function epoch -> batches, or steps_per_epoch")

    def epoch(self, epoch: int) -> Iterator[dict]:
        for batch in self.raw(epoch):
            yield pad_batch(batch, self.batch_size)


def _is_random_access(data: Any) -> bool:
    return (hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, bytes))
            and not isinstance(data, (cabc.Mapping, tuple, list, np.ndarray, jax.Array)))


def source(data: Any, *, batch_size: int | None, shuffle: bool = False, key: jax.Array | None = None,
           drop_last: bool = False, steps_per_epoch: int | None = None, name: str = "data",
           nonfinite: str = "raise") -> BatchSource:
    """The `BatchSource` for ``data`` (any of the kinds in the module docstring).

    Args:
        data: the data.
        batch_size: rows per batch for in-memory splits and random-access sources (None: all rows,
            full-batch); Loaders and iterables bring their own.
        shuffle: reshuffle in-memory splits and random-access sources every epoch.
        key: the shuffle key (epoch ``e`` uses ``fold_in(key, e)``).
        drop_last: drop a short last batch instead of padding it.
        steps_per_epoch: batches an epoch (None: one pass).
        name: how errors call it.
        nonfinite: rows whose inputs or targets hold NaN or inf (host arrays): "raise" a one-line error
            before anything trains, or "drop" them (the source's ``dropped`` counts them).
    """
    if steps_per_epoch is not None:
        check_int(steps_per_epoch, "steps_per_epoch", low=1)
    if batch_size is not None:
        check_int(batch_size, "batch_size", low=1)
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, (str, bytes, os.PathLike)):
        raise ValueError(f"{name} is a path ({data!r}); load it into arrays first (dlcore.data.load, "
                         f"dlcore.data.tabular) and pass the split")
    if isinstance(data, cabc.Mapping) or (isinstance(data, tuple) and len(data) == 2):
        split, dropped = handle_nonfinite(as_split(data, name), nonfinite, name)
        n = num_rows(split["x"])
        return ArraySplit(split, batch_size or n, shuffle, key if shuffle else None, drop_last, steps_per_epoch,
                          dropped)
    if isinstance(data, Loader):
        if nonfinite_rows(data._host).any():  # its split is on the device already: clean it first
            handle_nonfinite(data._host, "raise", f"{name} (a Loader)")
        return Stream(lambda e: data.iter_epoch(e - 1), len(data), steps_per_epoch, name, host_split=data._host)
    if _is_random_access(data):
        if len(data) == 0:
            raise ValueError(f"{name} is empty (0 records)")
        bs = batch_size or len(data)
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1)) if (shuffle and key is not None) else 0
        nb = len(data) // bs if drop_last else math.ceil(len(data) / bs)
        return Stream(lambda e: source_batches(data, bs, shuffle=shuffle, seed=seed, epoch=e,
                                               drop_last=drop_last, device=False), nb, steps_per_epoch, name,
                      nonfinite)
    if callable(data) and not isinstance(data, cabc.Iterable):
        return Stream(data, None, steps_per_epoch, name, nonfinite)
    if isinstance(data, cabc.Iterator):  # one-shot: epochs continue the same iterator
        if steps_per_epoch is None:
            return Stream(_once(data, name), None, None, name, nonfinite)
        return Stream(lambda e: data, None, steps_per_epoch, name, nonfinite)
    if isinstance(data, cabc.Iterable):
        size = len(data) if isinstance(data, cabc.Sized) else None
        return Stream(lambda e: data, size, steps_per_epoch, name, nonfinite)
    raise ValueError(f"{name} must be a dict with 'x' (and 'y') arrays, a tuple (x, y), a Loader, a random-"
                     f"access source, an iterable of batches or a function epoch -> batches; "
                     f"got {type(data).__name__}")


def _once(iterator: Iterator, name: str) -> Callable[[int], Iterable]:
    """A one-shot iterator as an epoch function that refuses a second epoch with a clear line."""
    used = []

    def make(epoch: int):
        if used and used[0] != epoch:
            raise ValueError(f"{name} is a generator, which can be consumed once, and the fit asks for "
                             f"epoch {epoch}: pass a function epoch -> batches, or steps_per_epoch=N")
        used[:] = [epoch]
        return iterator

    return make
