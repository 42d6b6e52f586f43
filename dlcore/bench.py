"""Benchmarks: dlcore beside a peer library (PyTorch, scikit-learn) on the same machine, in one run.

A benchmark is a module in `benchmarks/` (importable as `dlcore.benchmarks.NAME`) with a
`BENCHMARK` (`Benchmark`) and `run(ctx: BenchContext) -> list[Result]`. Timings are medians of
repeated, warmed-up calls whose JAX outputs are blocked on; what matters is the ratio measured in
one run, not the absolute figure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax

from dlcore.registry import Registry


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark's name, what it measures and its peer library ("torch", "scikit-learn", ...)."""

    name: str
    title: str
    peer: str


@dataclasses.dataclass
class Result:
    """One measured case: dlcore's and the peer's figure in `unit` (lower is better).

    `ratio` is peer / dlcore: above 1 means dlcore is faster. `peer` is None when the peer library
    is not installed (the case then reports dlcore alone).
    """

    case: str
    unit: str
    dlcore: float
    peer: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.peer is None or self.dlcore <= 0 else self.peer / self.dlcore


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

    Returns:
        One dict per case: benchmark, case, unit, dlcore, peer, peer_name, ratio.
    """
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
                   "peer_name": b.peer, "ratio": r.ratio, "note": r.note}
            rows.append(row)
            peer = "-" if r.peer is None else f"{r.peer:.4g}"
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
            ctx.print(f"  {r.case:<32} dlcore {r.dlcore:.4g} {r.unit}  {b.peer} {peer} {r.unit}  "
                      f"ratio {ratio} {r.note}".rstrip())
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"device": str(jax.devices()[0]), "results": rows}, indent=2) + "\n")
        os.replace(tmp, path)
    return rows
