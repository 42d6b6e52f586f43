"""Data parallelism and parameter sharding over a device mesh, for `Trainer(..., mesh=...)`.

Design. dlcore's steps are pure functions of ``(states, batch, key, carry)``, so data parallelism needs
no new step: the Trainer places the arrays and ``jax.jit`` (GSPMD) partitions the same program.

- The **batch** is sharded over the mesh's data axis along its leading (example) axis: each of the N
  devices holds B / N rows. Host batches (a `Loader`, a generator, a grain source) are turned into
  one global array per leaf with `jax.make_array_from_process_local_data`; a batch gathered inside a
  step from device-resident data (in-memory splits, ``epoch_mode`` "scan" and "step") is constrained
  to the data sharding with `jax.lax.with_sharding_constraint` right after the gather.
- The **parameters and optimizer state** are replicated (plain data parallelism: XLA all-reduces the
  gradients), or, with ``fsdp=True``, sharded over the data axis along their largest dimension divisible
  by N (arrays smaller than ``min_size`` elements, scalars, keys and arrays with no divisible dimension
  stay replicated); XLA gathers them where a layer needs them whole (ZeRO-3 / FSDP: Rajbhandari et al.,
  2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"). The new states a step
  returns are constrained back to those shardings, so they stay put from step to step.
- Every global figure is what one device computes on the whole batch: the loss and gradient means run
  over the global batch (partial sums all-reduced), batch norm's statistics are those of the global
  batch, and the dropout masks are the single-device ones (keys are drawn per step inside the jitted
  step, and ``jax_threefry_partitionable`` makes random bits independent of the sharding). Losses,
  gradients and weights agree with a one-device run up to the order of float32 sums.
- The training batch must split evenly: a batch whose rows are not divisible by the number of
  devices on the data axis is refused with one line before anything compiles (nothing is padded
  silently: padding rows would change batch-norm statistics). Evaluation batches that do not divide
  run replicated (same figures, no split).
- JAX runs no ordered host callback on several devices, so under a mesh an epoch run as one
  `lax.scan` moves the progress bar at its end only, and a callback that logs every step
  (``every_n_steps``) makes the epoch run one jitted step per batch instead.

A user's mesh may have other axes (a model axis): the batch and the FSDP shards use the data axis
(``"data"``, or the mesh's only axis) and are replicated over the rest. The Trainer uses the mesh's
devices and axis names with ``AxisType.Auto`` axes (GSPMD), whatever axis types the mesh was built with
(`jax.make_mesh` builds Explicit axes by default).

Multi-host start-up (one process per host, each seeing its local devices; untested here, where only one
host with simulated CPU devices exists). The script calls `jax.distributed.initialize` before anything
else touches JAX, then builds the mesh over every device of every host::

    # train.py
    import sys
    import jax
    import numpy as np
    jax.distributed.initialize(coordinator_address="host0:1234", num_processes=2,
                               process_id=int(sys.argv[1]))
    from dlcore import Trainer
    from dlcore.train import parallel
    mesh = parallel.data_mesh()                       # every device of both hosts, axis "data"
    x, y = load_my_data()                             # the same arrays on every host
    me, hosts = jax.process_index(), jax.process_count()
    def batches(epoch):                               # this host's rows of each global batch of 256
        order = np.random.default_rng(epoch).permutation(len(x))  # the same order on every host
        for start in range(0, len(x) - 255, 256):
            rows = order[start:start + 256][me::hosts]            # 128 rows here, 128 on the other host
            yield x[rows], y[rows]
    Trainer(model, optimizer, loss, mesh=mesh).fit(batches, epochs=10)

and the user types, on host 0 and on host 1::

    host0$ python train.py 0
    host1$ python train.py 1

Each host feeds its own shard of the data: a host batch source yields that host's rows of each global
batch (B / num_processes rows, divisible by its local device count), and the Trainer assembles the
global batch with ``jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)``. An
in-memory split is instead held whole by every host (same arrays, same seed, so the same shuffle plan)
and placed replicated with `jax.make_array_from_callback`; each device then computes its rows of every
batch. Parameters are initialised identically on every host (same seed) and placed the same way.
Limits: `dlcore.checkpoint.save` reads every array into NumPy, so a multi-host run with shards on other
hosts (``fsdp=True``) cannot checkpoint yet; `predict` gathers its outputs to every host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from dlcore.checks import check_int, is_int
from dlcore.nn.conv_tuning import whole_batches

__all__ = ["DataParallel", "batch_sharding", "data_mesh", "fsdp_shardings", "fsdp_spec", "replicated"]

DATA = "data"


def data_mesh(n: int | None = None, *, axis: str = DATA) -> Mesh:
    """A one-dimensional mesh named ``axis`` over ``jax.devices()[:n]`` (all devices when None).

    Args:
        n: how many devices (the first ``n`` of `jax.devices()`, every host's under multi-host).
        axis: the axis name.

    Returns:
        A `jax.sharding.Mesh` of shape ``{axis: n}`` with an ``Auto`` (GSPMD) axis.

    Raises:
        ValueError: ``n`` is not an int in [1, number of devices].
    """
    devices = jax.devices()
    if n is not None:
        check_int(n, "n", low=1, high=len(devices), who=f"data_mesh ({len(devices)} devices here)")
    if not isinstance(axis, str) or not axis:
        raise ValueError(f"data_mesh: axis must be a non-empty string, got {axis!r}")
    return Mesh(np.array(devices[:n]), (axis,), axis_types=(AxisType.Auto,))


def _data_axis(mesh: Mesh, axis: str | None) -> str:
    names = tuple(mesh.axis_names)
    if axis is None:
        if DATA in names:
            return DATA
        if len(names) == 1:
            return names[0]
        raise ValueError(f"the mesh has axes {names} and none is named 'data': pass axis= (the data-parallel axis)")
    if axis not in names:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh {names}")
    return axis


def _check_mesh(mesh: Any, who: str) -> Mesh:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"{who}: mesh must be a jax.sharding.Mesh (e.g. dlcore.train.parallel.data_mesh()), got "
                         f"{type(mesh).__name__}")
    return mesh


def batch_sharding(mesh: Mesh, axis: str | None = None) -> NamedSharding:
    """Arrays (B, ...) split along their leading axis over the mesh's data axis (replicated over any other axis).

    Args:
        mesh: the mesh.
        axis: the data axis (default: ``"data"``, or the mesh's only axis).
    """
    mesh = _check_mesh(mesh, "batch_sharding")
    return NamedSharding(mesh, PartitionSpec(_data_axis(mesh, axis)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy of the array on every device of ``mesh``."""
    return NamedSharding(_check_mesh(mesh, "replicated"), PartitionSpec())


def _is_key(a: Any) -> bool:
    dtype = getattr(a, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def fsdp_spec(shape: tuple, n: int, axis: str = DATA, min_size: int = 1024) -> PartitionSpec:
    """The FSDP placement of one array of ``shape`` over ``n`` devices: its largest dimension divisible by
    ``n`` split over ``axis`` (the first of equal ones), or replicated (``PartitionSpec()``) when the array
    has fewer than ``min_size`` elements, is a scalar, or has no such dimension.

    Example: ``fsdp_spec((784, 128), 4)`` splits the 784 rows (196 a device); ``fsdp_spec((10,), 4)`` replicates.
    """
    shape = tuple(shape)
    if not shape or int(np.prod(shape)) < max(min_size, 1) or n <= 1:
        return PartitionSpec()
    best = max((d for d in range(len(shape)) if shape[d] % n == 0), key=lambda d: (shape[d], -d), default=None)
    if best is None:
        return PartitionSpec()
    return PartitionSpec(*([None] * best + [axis]))


def fsdp_shardings(tree: Any, mesh: Mesh, *, axis: str | None = None, min_size: int = 1024) -> Any:
    """A `NamedSharding` for every leaf of ``tree`` (arrays or `jax.ShapeDtypeStruct`s): each array split
    along its largest dimension divisible by the size of the data axis (see `fsdp_spec`), PRNG keys and small
    or indivisible arrays replicated.

    Args:
        tree: a pytree of arrays, e.g. a model's parameters or an optimizer state (any shapes).
        mesh: the mesh.
        axis: the data axis (default: ``"data"``, or the mesh's only axis).
        min_size: arrays with fewer elements stay replicated (sharding them saves less memory than the
            gathers cost).

    Returns:
        A pytree of the structure of ``tree`` with a `NamedSharding` at every leaf.
    """
    mesh = _check_mesh(mesh, "fsdp_shardings")
    axis = _data_axis(mesh, axis)
    n = int(mesh.shape[axis])
    check_int(min_size, "min_size", low=0, who="fsdp_shardings")

    def one(a):
        spec = PartitionSpec() if _is_key(a) else fsdp_spec(np.shape(a), n, axis, min_size)
        return NamedSharding(mesh, spec)

    return jax.tree.map(one, tree)


def _put(a: Any, sharding: NamedSharding) -> jax.Array:
    """``a`` (the same value on every host) as a global array with ``sharding``."""
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    if _is_key(a):
        return jax.random.wrap_key_data(_put(jax.random.key_data(a), sharding), impl=jax.random.key_impl(a))
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


@dataclass(frozen=True)
class DataParallel:
    """How the Trainer spreads training over a mesh: the batch split over the data axis, the states
    replicated or (``fsdp=True``) sharded. Pass it as ``Trainer(..., mesh=DataParallel(mesh, fsdp=True))``;
    a plain mesh, ``Trainer(..., mesh=mesh)``, means ``DataParallel(mesh)``.

    Args:
        mesh: the device mesh (e.g. `data_mesh`); used with ``Auto`` axes whatever its axis types.
        fsdp: shard the parameters, the other model variables and the optimizer state over the data axis
            (see `fsdp_shardings`) instead of replicating them.
        axis: the data axis (default: ``"data"``, or the mesh's only axis).
        min_size: under ``fsdp``, arrays with fewer elements stay replicated.

    Example:
        >>> mesh = parallel.data_mesh()                     # every device, axis "data"
        >>> Trainer(model, optim.adam(1e-3), losses.cross_entropy, batch_size=256, mesh=mesh)
        >>> Trainer(model, optim.adam(1e-3), losses.cross_entropy, batch_size=256,
        ...         mesh=parallel.DataParallel(mesh, fsdp=True))
    """

    mesh: Mesh
    fsdp: bool = False
    axis: str | None = None
    min_size: int = 1024

    def __post_init__(self):
        mesh = _check_mesh(self.mesh, "DataParallel")
        if not isinstance(self.fsdp, bool):
            raise ValueError(f"DataParallel: fsdp must be True or False, got {self.fsdp!r}")
        axis = _data_axis(mesh, self.axis)
        if not is_int(self.min_size) or self.min_size < 0:
            raise ValueError(f"DataParallel: min_size must be an int >= 0, got {self.min_size!r}")
        if any(t != AxisType.Auto for t in mesh.axis_types):
            mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
        object.__setattr__(self, "mesh", mesh)
        object.__setattr__(self, "axis", axis)

    @classmethod
    def of(cls, mesh: Any) -> "DataParallel | None":
        """``mesh`` as a `DataParallel`: None stays None, a `Mesh` becomes ``DataParallel(mesh)``."""
        if mesh is None or isinstance(mesh, DataParallel):
            return mesh
        if isinstance(mesh, Mesh):
            return cls(mesh)
        raise ValueError(f"Trainer: mesh must be a jax.sharding.Mesh (e.g. dlcore.train.parallel.data_mesh()) or a "
                         f"dlcore.train.parallel.DataParallel, got {type(mesh).__name__}")

    @property
    def size(self) -> int:
        """Devices along the data axis: the number of pieces a batch is split into."""
        return int(self.mesh.shape[self.axis])

    @property
    def local_size(self) -> int:
        """Devices of the data axis on this host: the pieces this host's part of a batch is split into."""
        return max(1, self.size * len(self.mesh.local_devices) // self.mesh.devices.size)

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    # -- the states ----------------------------------------------------------------------------------

    def state_shardings(self, tree: Any) -> Any:
        """A sharding for every array leaf of ``tree`` (`TrainState`s or any pytree): replicated, or the
        FSDP placement of `fsdp_shardings`. Depends on shapes only, so it works on traced arrays too."""
        if not self.fsdp:
            return jax.tree.map(lambda _: self.replicated, tree)
        return fsdp_shardings(tree, self.mesh, axis=self.axis, min_size=self.min_size)

    def place(self, tree: Any) -> Any:
        """The arrays of ``tree`` (states, weights) put on the mesh with their `state_shardings`."""
        return jax.tree.map(_put, tree, self.state_shardings(tree))

    def constrain(self, tree: Any) -> Any:
        """Inside a traced step: ``tree`` (new states) constrained to its `state_shardings`."""
        return jax.tree.map(jax.lax.with_sharding_constraint, tree, self.state_shardings(tree))

    # -- the batches ---------------------------------------------------------------------------------

    def divides(self, rows: int) -> bool:
        return rows % self.size == 0

    def check_batch(self, rows: int, where: str, *, local: bool = False) -> None:
        """One line when a training batch of ``rows`` rows (this host's, when ``local``) does not split evenly
        over the data axis."""
        n = self.local_size if local else self.size
        if rows % n:
            lower, upper = rows - rows % n, rows - rows % n + n
            hint = f"{lower} or {upper}" if lower else f"{upper}"
            raise ValueError(f"{where}: a batch of {rows} rows does not split over the {n} devices of the mesh's "
                             f"{self.axis!r} axis; use a batch size divisible by {n} (e.g. {hint})")

    def constrain_batch(self, batch: Any) -> Any:
        """Inside a traced step: a gathered batch (every leaf (B, ...)) split over the data axis; left as it
        is when B does not divide (evaluation batches)."""
        leaves = jax.tree.leaves(batch)
        if not leaves or any(np.ndim(a) == 0 or not self.divides(np.shape(a)[0]) for a in leaves):
            return batch
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, self.batch), batch)

    def put_batch(self, batch: Any, local: bool = True) -> Any:
        """A host batch as global arrays split over the data axis: with ``local``, this host's rows of the global
        batch (`jax.make_array_from_process_local_data`), else the whole batch, the same on every host. A batch
        whose rows do not divide is replicated instead (evaluation; single host)."""
        rows = int(np.shape(jax.tree.leaves(batch)[0])[0])
        if rows % (self.local_size if local else self.size):
            if jax.process_count() > 1:
                self.check_batch(rows, "a host batch", local=local)
            return jax.tree.map(lambda a: jax.device_put(a, self.replicated), batch)
        if jax.process_count() == 1 or not local:
            return jax.tree.map(lambda a: _put(a, self.batch), batch)
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(self.batch, np.asarray(a)), batch)

    def replicate(self, tree: Any) -> Any:
        """The arrays of ``tree`` (the same on every host) replicated over the mesh: a whole in-memory split,
        for batches gathered on the devices, or a step's accumulators (placed as the step returns them, so
        its second call does not compile again)."""
        return jax.tree.map(lambda a: _put(a, self.replicated), tree)

    def to_host(self, a: Any) -> np.ndarray:
        """``a`` as one NumPy array on this host, gathered from the other hosts when it is spread over them."""
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)


@dataclass(frozen=True)
class ShardedTask:
    """A step shape (`dlcore.train.step.Supervised` / `Custom`) whose gathered batches are split over the
    data axis and whose new states keep their shardings; everything else is the wrapped task's. Internal:
    the Trainer wraps its task with it when it compiles a step under a mesh."""

    task: Any
    plan: DataParallel

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("task", "plan"):
            raise AttributeError(name)
        return getattr(self.task, name)

    def train(self, states, batch, key, carry, acc):
        with whole_batches():  # a split batch is not cut into convolution calls (see dlcore.nn.conv_tuning)
            states, carry, acc, finite = self.task.train(states, self.plan.constrain_batch(batch), key, carry, acc)
        return self.plan.constrain(states), carry, acc, finite

    def eval(self, states, batch, carry, acc):
        with whole_batches():
            return self.task.eval(states, self.plan.constrain_batch(batch), carry, acc)
