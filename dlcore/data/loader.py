"""A small in-memory batch loader over split dicts of NumPy arrays."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from dlcore.checks import check_int, is_int

__all__ = ["ArraySource", "Loader", "batches", "num_batches", "source_batches", "validate_split"]


def validate_split(split: Mapping[str, Any]) -> int:
    """Checks that ``split`` is a usable split and returns its length.

    Args:
        split: A mapping of names to arrays, with at least ``"x"``; every value
            has a leading example axis of the same length ``N``.

    Returns:
        ``N``, the number of examples (>= 1).

    Raises:
        ValueError: If ``split`` is not a mapping, lacks ``"x"``, holds a
            value without a leading axis, has arrays of different lengths, or
            is empty.
    """
    if not isinstance(split, Mapping):
        raise ValueError(
            f"a split must be a dict of arrays with at least an 'x' key, got "
            f"{type(split).__name__}"
        )
    if "x" not in split:
        raise ValueError(
            f"split has no 'x' key (keys: {list(split)}); put the inputs under 'x'"
        )
    lengths = {}
    for key, value in split.items():
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"split[{key!r}] must be an array with a leading example axis, got "
                f"{type(value).__name__} with shape {shape}; wrap it with np.asarray "
                "and give it one row per example"
            )
        lengths[key] = int(shape[0])
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(
            f"split arrays differ in length ({listing}); every array needs one row "
            "per example"
        )
    n = lengths["x"]
    if n == 0:
        raise ValueError("split is empty (0 examples); check how it was built or sliced")
    return n


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches `batches` yields for ``n`` examples.

    Args:
        n: Number of examples, >= 0.
        batch_size: Examples per batch, >= 1.
        drop_last: Whether a final short batch is dropped.

    Returns:
        ``n // batch_size`` with ``drop_last``, else ``ceil(n / batch_size)``.

    Raises:
        ValueError: If ``n`` < 0 or ``batch_size`` < 1.
    """
    check_int(batch_size, "batch_size", low=1)
    check_int(n, "n", low=0)
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    split: Mapping[str, Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | Any | None = None,
    drop_last: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterates over ``split`` in batches.

    The split is validated when this is called, not on the first ``next``.
    Each call makes one pass (one epoch); pass a different seed per epoch to
    reshuffle.

    Args:
        split: A split as accepted by `validate_split`, ``N`` examples.
        batch_size: Examples per batch, >= 1.
        shuffle: Visit the examples in a random order.
        seed: For ``shuffle``: an int (NumPy generator), a ``jax.random`` key
            (the order is ``jax.random.permutation(seed, N)``), or None for a
            fresh random order. Ignored without ``shuffle``.
        drop_last: Drop the final batch when it has fewer than ``batch_size``
            examples, so that every batch has the same shape (one jit trace).

    Yields:
        Dicts with the keys of ``split``; each value has ``batch_size`` rows
        (the last may have fewer unless ``drop_last``). Without ``shuffle``
        the values may be views of the split's arrays.

    Raises:
        ValueError: For an invalid split, ``batch_size`` or ``seed``.
    """
    n = validate_split(split)
    check_int(batch_size, "batch_size", low=1)
    arrays = {k: np.asarray(v) for k, v in split.items()}
    order = _permutation(n, seed) if shuffle else None
    stop = num_batches(n, batch_size, drop_last) * batch_size
    return _iterate(arrays, order, batch_size, n, stop)


def _iterate(
    arrays: dict[str, np.ndarray],
    order: np.ndarray | None,
    batch_size: int,
    n: int,
    stop: int,
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            yield {k: a[start:end] for k, a in arrays.items()}
        else:
            idx = order[start:end]
            yield {k: a[idx] for k, a in arrays.items()}


def _permutation(n: int, seed: Any) -> np.ndarray:
    if seed is None:
        return np.random.default_rng().permutation(n)
    if isinstance(seed, bool):
        raise ValueError(f"seed must be None, an int >= 0 or a jax.random key, got {seed!r}")
    if is_int(seed):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(int(seed)).permutation(n)
    import jax

    try:
        return np.asarray(jax.random.permutation(seed, n))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"seed must be None, an int >= 0 or a jax.random key, got "
            f"{type(seed).__name__} ({err})"
        ) from None


# --- device loader ---------------------------------------------------------------


def _as_key(key: Any):
    """The shuffle key as a raw PRNG key (`dlcore.keys.as_key`): an int seed >= 0 or a typed or raw key."""
    from dlcore.keys import as_key

    if key is None:
        raise ValueError("shuffle=True needs a key: pass key=jax.random.key(seed) or an int seed")
    if is_int(key):
        check_int(key, "key", low=0)
    return as_key(key, "key")


class Loader:
    """Shuffled mini-batches of an in-memory split, delivered on the device.

    The split goes to the device once (``on_device=True``); every batch is
    then gathered there by a jitted ``take`` of the epoch's permutation, so no
    example crosses the host-device link twice. With ``on_device=False`` (a
    split larger than device memory) batches are gathered on the host and
    copied over by a background thread, ``prefetch`` batches ahead.

    The order of epoch ``e`` is ``jax.random.permutation(fold_in(key, e), N)``:
    the same key gives the same batches, run after run.

    Example::

        loader = Loader(splits["train"], 32, shuffle=True, key=0, drop_last=True)
        for epoch in range(3):
            for batch in loader:          # epoch 0, 1, 2: a new order each time
                state, metrics = step(state, batch)

    Args:
        split: A split (dict of arrays with a common leading axis ``N``).
        batch_size: Examples per batch.
        shuffle: Visit the examples in a random order, new each epoch.
        key: A ``jax.random`` key or an int seed; needed with ``shuffle``.
        drop_last: Drop a final short batch (every batch has one shape: one
            compilation of the step that consumes it).
        device: A ``jax.Device`` or ``jax.sharding.Sharding`` (default: the
            first device). A sharding splits each batch's leading axis over
            devices; the batch size must then divide evenly.
        on_device: Keep the whole split on the device (default) or gather
            batches on the host.
        prefetch: Host-gathered batches to prepare ahead (``on_device=False``).

    Raises:
        ValueError: For an invalid split, batch size or key (at construction).
    """

    def __init__(self, split: Mapping[str, Any], batch_size: int, *, shuffle: bool = False,
                 key: Any = None, drop_last: bool = False, device: Any = None, on_device: bool = True,
                 prefetch: int = 2):
        import jax

        self.n = validate_split(split)
        check_int(batch_size, "batch_size", low=1)
        check_int(prefetch, "prefetch", low=1)
        for k, v in split.items():
            kind = np.asarray(v[:1]).dtype
            if kind.kind in "OUSV":  # objects, str, bytes, void: nothing the device holds
                raise ValueError(
                    f"split[{k!r}] holds Python objects or text ({kind}); encode it to numbers first "
                    "(dlcore.data.text) or leave it out of the split given to the Loader"
                )
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.key = _as_key(key) if shuffle else None
        self.device = device if device is not None else jax.devices()[0]
        self.on_device, self.prefetch = on_device, prefetch
        self.epoch = 0
        self._host = {k: np.asarray(v) for k, v in split.items()}
        if isinstance(self.device, jax.sharding.Sharding) and not isinstance(
                self.device, jax.sharding.NamedSharding):
            raise ValueError("device must be a jax.Device or a jax.sharding.NamedSharding")
        # A sharded loader keeps the split replicated and shards each batch.
        self._data = jax.device_put(self._host, _replicated(self.device)) if on_device else None

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.drop_last)

    def order(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch``: a permutation, or ``arange(N)``."""
        import jax

        if not self.shuffle:
            return np.arange(self.n)
        return np.asarray(jax.random.permutation(jax.random.fold_in(self.key, epoch), self.n))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterates over the next epoch (each ``iter`` advances the epoch)."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Iterates over the batches of ``epoch`` (deterministic in key and epoch)."""
        order = self.order(epoch)
        stop = len(self) * self.batch_size
        starts = range(0, stop, self.batch_size)
        if self.on_device:
            return self._device_batches(order, starts)
        return _prefetched(self._host_batches(order, starts), self.prefetch)

    def _device_batches(self, order: np.ndarray, starts: range) -> Iterator[dict[str, Any]]:
        import jax

        idx = jax.device_put(order.astype(np.int32), _replicated(self.device))
        sharded = isinstance(self.device, jax.sharding.Sharding)
        for start in starts:
            size = min(self.batch_size, self.n - start)
            batch = _gather(self._data, idx, start, size)
            yield jax.device_put(batch, self.device) if sharded else batch

    def _host_batches(self, order: np.ndarray, starts: range) -> Iterator[dict[str, Any]]:
        import jax

        for start in starts:
            rows = order[start:start + self.batch_size]
            if not self.shuffle:
                rows = slice(start, start + len(rows))
            yield jax.device_put({k: a[rows] for k, a in self._host.items()}, self.device)


def _replicated(device: Any) -> Any:
    import jax

    if isinstance(device, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(device.mesh, jax.sharding.PartitionSpec())
    return device


def _gather_impl(data, idx, start, size):
    import jax

    rows = jax.lax.dynamic_slice_in_dim(idx, start, size)
    return jax.tree.map(lambda a: a[rows], data)


_GATHER = None


def _gather(data, idx, start, size):
    global _GATHER
    if _GATHER is None:
        import jax

        _GATHER = jax.jit(_gather_impl, static_argnums=3)
    return _GATHER(data, idx, start, size)


def _prefetched(batches: Iterator[Any], depth: int) -> Iterator[Any]:
    """Runs ``batches`` in a background thread, ``depth`` items ahead."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the consumer
            q.put(err)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- random-access sources (larger than memory) through grain --------------------


class ArraySource:
    """A split as a random-access source of records, for grain.

    Works on memory-mapped arrays (`load` returns prepared image datasets
    memory-mapped), so that only the rows read are in memory.

    Args:
        split: A split (dict of arrays or memmaps with a common leading axis).
    """

    def __init__(self, split: Mapping[str, Any]):
        self.n = validate_split(split)
        self.split = dict(split)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[i]) for k, v in self.split.items()}


def source_batches(
    source: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    transform: Any = None,
    num_threads: int = 4,
    workers: int = 0,
    device: Any = None,
) -> Iterator[dict[str, Any]]:
    """Batches of a random-access source read through grain, on the device.

    For data larger than memory: ``source`` is anything with ``len`` and
    ``__getitem__`` returning a record (a ``tfds.data_source``, an
    `ArraySource` over memory-mapped arrays, grain's own sources). grain reads
    records with ``num_threads`` threads and, with ``workers > 0``, in that
    many processes.

    Args:
        source: The random-access source.
        batch_size: Records per batch.
        shuffle: Read in a random order, given by ``seed`` and ``epoch``.
        seed: An int seed.
        epoch: The epoch number (a new order per epoch for the same seed).
        drop_last: Drop a final short batch.
        transform: ``record -> record`` run on each record (NumPy, on the host).
        num_threads: Reading threads per process.
        workers: grain worker processes (0: read in this process).
        device: Where batches go (default: the first device); False keeps
            them as NumPy arrays.

    Yields:
        Batches: the records' structure with a leading batch axis.
    """
    import grain
    import jax

    check_int(batch_size, "batch_size", low=1)
    n = len(source)
    if n == 0:
        raise ValueError("source is empty (0 records); check how it was built")
    ds = grain.MapDataset.source(source)
    if shuffle:
        check_int(seed, "seed", low=0)
        check_int(epoch, "epoch", low=0)
        ds = ds.shuffle(seed=int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    if transform is not None:
        ds = ds.map(transform)
    ds = ds.batch(batch_size, drop_remainder=drop_last)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * batch_size))
    if workers:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    target = jax.devices()[0] if device is None else device
    for batch in it:
        yield batch if target is False else jax.device_put(batch, target)
