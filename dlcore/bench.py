"""Benchmarks: dlcore beside a peer library (PyTorch, scikit-learn) on the same machine, in one run.

A benchmark is a module in `benchmarks/` (importable as `dlcore.benchmarks.NAME`) with a
`BENCHMARK` (`Benchmark`) and `run(ctx: BenchContext) -> list[Result]`. Timings are medians of
repeated, warmed-up calls whose JAX outputs are blocked on; what matters is the ratio measured in
one run, not the absolute figure.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import jax

from dlcore import cpu
from dlcore.registry import Registry


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark's name, what it measures and its peer library ("torch", "scikit-learn", ...)."""

    name: str
    title: str
    peer: str


# This CPU's nominal float32 peak, the denominator of "share of peak" (`dlcore.cpu.peak_flops`: cores x FMA
# pipes x float32 lanes x 2 x clock; 332 GFLOP/s on the 2-core Zen 5 EPYC of the README's table).
CPU_PEAK_FLOPS = cpu.peak_flops()


@dataclasses.dataclass
class Result:
    """One measured case: dlcore's and the peer's figure in `unit` (lower is better).

    `ratio` is peer / dlcore: above 1 means dlcore is faster. `peer` is None when the peer library
    is not installed (the case then reports dlcore alone). The optional fields, None when a case does
    not measure them, are printed under the case's line and carried by the JSON:

    * `peer2`, `peer2_name`: a second peer figure in `unit` (PyTorch with `torch.compile`), `ratio2`.
    * `compile_s`, `peer_compile_s`, `peer2_compile_s`: first call less a steady one, seconds.
    * `cached_compile_s`: dlcore's compile time again with a warm persistent compilation cache.
    * `examples_per_s`, `peer_examples_per_s`, `peer2_examples_per_s`: training examples a second.
    * `flops`: floating-point operations of one training step, XLA's count of dlcore's compiled step
      (`step_flops`), used for every side: the same network, batch and optimizer.
    * `flops_per_s`, `peer_flops_per_s`, `peer2_flops_per_s`: `flops` times the steps a side ran over
      its time.
    * `peak_share`, `peer_peak_share`, `peer2_peak_share`: those over `CPU_PEAK_FLOPS` (0 to 1).
    * `bfloat16`: dlcore's figure under the mixed-precision policy (`dlcore.precision`).
    """

    case: str
    unit: str
    dlcore: float
    peer: float | None = None
    note: str = ""
    peer2: float | None = None
    peer2_name: str | None = None
    compile_s: float | None = None
    peer_compile_s: float | None = None
    peer2_compile_s: float | None = None
    cached_compile_s: float | None = None
    examples_per_s: float | None = None
    peer_examples_per_s: float | None = None
    peer2_examples_per_s: float | None = None
    flops: float | None = None
    flops_per_s: float | None = None
    peer_flops_per_s: float | None = None
    peer2_flops_per_s: float | None = None
    peak_share: float | None = None
    peer_peak_share: float | None = None
    peer2_peak_share: float | None = None
    bfloat16: float | None = None  # dlcore's figure again under Trainer(precision="bfloat16")

    @property
    def ratio(self) -> float | None:
        return None if self.peer is None or self.dlcore <= 0 else self.peer / self.dlcore

    @property
    def ratio2(self) -> float | None:
        return None if self.peer2 is None or self.dlcore <= 0 else self.peer2 / self.dlcore

    def extras(self) -> dict[str, Any]:
        """The optional fields that are set, by name, with `ratio2` when `peer2` is."""
        skip = {"case", "unit", "dlcore", "peer", "note"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in skip and getattr(self, f.name) is not None}
        if self.peer2 is not None:
            out["ratio2"] = self.ratio2
        return out


@dataclasses.dataclass
class BenchContext:
    """Options of one benchmark run: `quick` for small sizes (smoke tests)."""

    quick: bool = False
    out: Any = None

    def print(self, *args) -> None:
        print(*args, file=self.out or sys.stdout, flush=True)


def timeit(fn: Callable[[], Any], *, warmup: int = 1, repeat: int = 5) -> float:
    """Median wall time of `fn()` in seconds, after `warmup` calls (compilation), blocking on JAX outputs."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_steps(ours: Callable[[], Any], theirs: Callable[[], Any] | None, *, warmup: int = 3, repeats: int = 5,
                  steps: int = 10) -> tuple[float, float | None, float]:
    """Time a training step of dlcore's beside the peer's, alternated: `(ours, theirs or None, compile)`.

    `ours()` is called once first (it compiles; `compile` is that call's time less a steady step), then both
    take `warmup` untimed steps; then the two alternate `repeats` times, each timing `steps` steps (blocked
    on), a repeat's figure being its median step and each side's figure its best repeat. Seconds.
    """
    t0 = time.perf_counter()
    jax.block_until_ready(ours())
    first = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(ours())
        if theirs is not None:
            theirs()
    best = peer = None
    for _ in range(repeats):
        t = timeit(ours, warmup=0, repeat=steps)
        best = t if best is None else min(best, t)
        if theirs is not None:
            p = timeit(theirs, warmup=0, repeat=steps)
            peer = p if peer is None else min(peer, p)
    return best, peer, max(first - best, 0.0)


def step_flops(trainer, data) -> float:
    """XLA's count of the floating-point operations of one training step of `trainer` on `data`'s batches.

    The function counted is the Trainer's own jitted step (`dlcore.train.step.one_step`, the body of its
    scanned epoch as well), lowered with the trainer's state and the first batch of `data` as `fit` would
    pass them, compiled, and read from `cost_analysis()["flops"]`: what XLA will run after its rewrites,
    multiply-adds counted as 2. Call it after one `trainer.fit(data, ...)` (the carry and the data
    placement exist then). Convolutions are counted in XLA's own lowering (`conv_tuning` off for this
    trace): XLA counts nothing inside an FFI call such as oneDNN's kernels, and the work is the same.

    Raises:
        ValueError: XLA gave no positive count (a backend without cost analysis).
    """
    from dlcore.nn import conv_tuning
    from dlcore.train import step as S

    src = trainer._source(data, "train", train=True)
    args = next(iter(trainer._step_args(src, 1)))
    # the step traced afresh (the Trainer's jitted one keeps its trace, with the tuned lowering)
    fn = jax.jit(trainer._bind("step_flops", S.one_step, task=trainer.task, policy=trainer.on_nonfinite))
    mode, conv_tuning.MODE = conv_tuning.MODE, "off"
    try:
        lowered = fn.lower(trainer.state, trainer.carry, S.new_guard(trainer.count), trainer.task.init_acc(),
                           trainer.key, *args)
    finally:
        conv_tuning.MODE = mode
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0))
    if not flops > 0:
        raise ValueError(f"XLA reported no floating-point operations for the step ({cost!r:.80}); "
                         f"this backend may not support cost analysis")
    return flops


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def matmul_flops(n: int = 2048, repeat: int = 5) -> float:
    """What XLA reaches here on a large float32 matrix product (n x n by n x n, best of `repeat`), FLOP/s: the
    practical peak beside the nominal `CPU_PEAK_FLOPS` (on the README's Zen 5 machine it is higher, about 480
    GFLOP/s: the cores run above the clock the VM reports)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jax.numpy.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = min(_elapsed(lambda: jax.block_until_ready(f(a))) for _ in range(repeat))
    return 2 * n ** 3 / best


def _elapsed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran: host, CPU model and cores, the peak used for shares, UTC date, the
    persistent compilation cache folder (None: off; when on, a second run's compile times are cache reads),
    the versions of Python, jax, jaxlib, flax, optax, torch and scikit-learn (None: not installed), and
    oneDNN's (dlcore's CPU convolution kernels; None: not available, with why), and whether glibc put large
    blocks in huge pages (`dlcore.memory`)."""
    from dlcore import memory
    from dlcore.nn import onednn

    return {"host": platform.node(), "platform": platform.platform(), "cpu": cpu.identity(), "cores": os.cpu_count(),
            "cpu_peak_flops": CPU_PEAK_FLOPS, "matmul_flops": matmul_flops(), "compilation_cache": jax.config.jax_compilation_cache_dir,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in (
                "dlcore", "jax", "jaxlib", "flax", "optax", "numpy", "torch", "scikit-learn")},
                "onednn": onednn.version() or None},
            "onednn_unavailable": onednn.why_unavailable() or None,
            "huge_page_blocks": memory.huge_pages()}


def _fmt(value: float | None, spec: str = ".4g", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _extras_line(r: Result, peer_name: str) -> str:
    """The optional figures of `r`, one group a side: compile, examples/s, GFLOP/s and share of peak."""
    def side(name, compile_s, eps, fps, share, value=None, ratio=None, eager=False):
        parts = []
        if value is not None:
            parts.append(f"{value:.4g} {r.unit} ({_fmt(ratio, '.2f', 'x')})")
        if compile_s is not None:  # an eager peer compiles nothing: its first call's extra time is said as such
            parts.append(f"{'first call +' if eager else 'compile '}{compile_s:.2f} s")
        if eps is not None:
            parts.append(f"{eps:,.0f} ex/s")
        if fps is not None:
            parts.append(f"{fps / 1e9:.3g} GFLOP/s" + ("" if share is None else f" ({100 * share:.1f}% of peak)"))
        return f"{name}: " + ", ".join(parts) if parts else ""

    groups = [side("dlcore", r.compile_s, r.examples_per_s, r.flops_per_s, r.peak_share),
              side(peer_name, r.peer_compile_s, r.peer_examples_per_s, r.peer_flops_per_s, r.peer_peak_share,
                   eager=r.peer2_name == "torch.compile" or peer_name == "torch")]
    if r.peer2 is not None:
        groups.append(side(r.peer2_name or "peer2", r.peer2_compile_s, r.peer2_examples_per_s, r.peer2_flops_per_s,
                           r.peer2_peak_share, r.peer2, r.ratio2))
    if r.cached_compile_s is not None:
        groups.append(f"compile with a warm cache {r.cached_compile_s:.2f} s")
    if r.flops is not None:
        groups.append(f"{r.flops / 1e9:.4g} GFLOP a step")
    return " | ".join(g for g in groups if g)


def _load_benchmarks() -> None:
    from dlcore.runner import discover

    for name, module in discover("dlcore.benchmarks", "BENCHMARK").items():
        BENCHMARKS.register(name, module)


# name -> the benchmark's module (BENCHMARK and run), filled on first use
BENCHMARKS: Registry[Any] = Registry("benchmark", loader=_load_benchmarks)


def benchmarks() -> list[Benchmark]:
    """Every registered benchmark, sorted by name."""
    return [BENCHMARKS.get(name).BENCHMARK for name in BENCHMARKS.names()]


def run(names: list[str] | None = None, *, vs: str | None = None, quick: bool = False,
        json_path: str | None = None, out=None) -> list[dict[str, Any]]:
    """Run benchmarks (all, or `names`; only those whose peer is `vs` when given) and print a table.

    The JSON file holds `device`, `machine` (see `machine()`: CPU, cores, peak, date, versions) and
    `results`, the rows returned.

    Returns:
        One dict per case: benchmark, case, unit, dlcore, peer, peer_name, ratio, note, and the optional
        fields of `Result` that the case measured (peer2, compile_s, examples_per_s, flops, peak_share, ...).
    """
    if json_path:  # a file that cannot be written fails now, not after minutes of benchmarks
        target = Path(json_path).expanduser()
        if target.is_dir():
            raise ValueError(f"--json {json_path}: is a directory; give a file name")
        if any(p.exists() and not p.is_dir() for p in target.parents):
            raise ValueError(f"--json {json_path}: a folder on its path is a file")
    chosen = [BENCHMARKS.get(n) for n in (names or BENCHMARKS.names())]  # unknown names fail here, first
    mods = {name: BENCHMARKS.get(name) for name in BENCHMARKS.names()}
    if vs is not None:
        chosen = [m for m in chosen if m.BENCHMARK.peer == vs]
        if not chosen:
            raise ValueError(f"no benchmark compares with {vs!r}; peers: "
                             f"{', '.join(sorted({m.BENCHMARK.peer for m in mods.values()}))}")
    ctx = BenchContext(quick=quick, out=out)
    rows = []
    for mod in chosen:
        b = mod.BENCHMARK
        ctx.print(f"== {b.name}: {b.title} (vs {b.peer})")
        for r in mod.run(ctx):
            row = {"benchmark": b.name, "case": r.case, "unit": r.unit, "dlcore": r.dlcore, "peer": r.peer,
                   "peer_name": b.peer, "ratio": r.ratio, "note": r.note, **r.extras()}
            rows.append(row)
            peer = "-" if r.peer is None else f"{r.peer:.4g} {r.unit}"
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
            ctx.print(f"  {r.case:<32} dlcore {r.dlcore:.4g} {r.unit}  {b.peer} {peer}  "
                      f"ratio {ratio} {r.note}".rstrip())
            extras = _extras_line(r, b.peer)
            if extras:
                ctx.print(f"      {extras}")
    if json_path:
        path = Path(json_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"device": str(jax.devices()[0]), "machine": machine(), "results": rows},
                                  indent=2) + "\n")
        os.replace(tmp, path)
    return rows
