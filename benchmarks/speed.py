"""Training-step speed of the books' MLP and CNNs and of ResNet-18: dlcore beside PyTorch eager and torch.compile.

Cases, each at its book's batch size and at 256 (ResNet-18 at 64), with the book's optimizer and loss:
Géron's MLP 784-300-100-10 (Hands-On ML, ch. 10; SGD lr 0.1), Jha's `mnist_convnet` (Mastering PyTorch,
ch. 1; Adadelta lr 0.5, NLL, batch 32), Ketkar & Moolayil's `mnist_bn_cnn` (Deep Learning with Python, ch. 6,
Listing 6-4; Adam 1e-3, NLL, batch 64), Subramanian's `mnist_cnn_001` (Deep Learning with PyTorch, ch. 5; SGD
0.01 momentum 0.5, NLL, batch 32), Géron's `fashion_cnn` (ch. 12; NAdam 1e-3 as dlcore's example, batch 32),
and dlcore's `resnet18` (ImageNet stem, 10 classes) on 32 x 32 images with SGD 0.1 momentum 0.9.

Each side trains epochs of the same random arrays: dlcore's is one more epoch of `Trainer.fit` per call (the
Trainer's own compiled step, what a user runs), PyTorch's the books' eager loop, and again with the network
in `torch.compile` (forward and backward compiled by Inductor, which needs a C++ compiler; the optimizer step
eager). After a first call (it compiles; compile time = first call less the best) and a warm-up call, the
sides alternate `repeats` timed epochs; a figure is the best epoch over its steps, in milliseconds a step.
FLOPs are XLA's count of dlcore's compiled step (`dlcore.bench.step_flops`), the same number for every side
(the same network, batch and optimizer), so FLOP/s and its share of this CPU's peak
(`dlcore.bench.CPU_PEAK_FLOPS`) compare time alone. Ratio = torch / dlcore (above 1: dlcore is faster); the
torch.compile ratio is printed under it.

The last row is the persistent compilation cache of the `dlcore` command: a fresh Python process trains the
ConvNet's first epoch with an empty cache folder, a second one with the folder the first filled; their compile
times (first epoch less a later one) and the second's cache hits.

Run (on a quiet machine: the figures are the ratios): `dlcore bench speed --json FILE` (minutes: torch.compile
compiles each case); `--quick` for a smoke run (the MLP and `mnist_cnn_001` at batch 4, 2 steps, no
torch.compile; the cache row with the MLP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from dlcore.bench import BenchContext, Benchmark, Result

from dlcore.benchmarks._steps import SPECS, compare

BENCHMARK = Benchmark(name="speed", title="a training step of the books' MLP and CNNs and ResNet-18, vs PyTorch "
                                          "eager and torch.compile, with FLOP/s and compile times", peer="torch")

# (spec, batch, steps an epoch in the full run): enough steps that an epoch takes about half a second or more, so
# that `Trainer.fit`'s fixed cost per call (its checks, milliseconds) weighs little in the step time
CASES = (("mlp", 32, 1000), ("mlp", 256, 200),
         ("mnist_convnet", 32, 60), ("mnist_convnet", 256, 8),
         ("mnist_bn_cnn", 64, 60), ("mnist_bn_cnn", 256, 16),
         ("mnist_cnn_001", 32, 200), ("mnist_cnn_001", 256, 30),
         ("fashion_cnn", 32, 10), ("fashion_cnn", 256, 3),
         ("resnet18", 64, 5))
BFLOAT16 = {("mlp", 32), ("mlp", 256), ("mnist_convnet", 32), ("resnet18", 64)}  # also timed under bfloat16
QUICK = ("mlp", "mnist_cnn_001")  # --quick: the two cheapest to compile, batch 4, 2 steps (a smoke run)

_CACHE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import jax
    from dlcore.cli import compilation_cache
    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
    folder = compilation_cache()
    import numpy as np
    import dlcore
    from dlcore import losses, optim
    model, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    data = {"x": rng.random((batch * steps, 28, 28, 1), np.float32),
            "y": rng.integers(0, 10, batch * steps).astype(np.int32)}
    kw = {"sizes": (784, 300, 100, 10)} if model == "mlp" else {}
    loss = losses.cross_entropy if model == "mlp" else losses.nll
    trainer = dlcore.Trainer(dlcore.models.create(model, **kw), optim.adadelta(lr=0.5), loss, batch_size=batch,
                             progress=False)
    t0 = time.perf_counter(); trainer.fit(data, epochs=1); first = time.perf_counter() - t0
    t0 = time.perf_counter(); trainer.fit(data, epochs=2); later = time.perf_counter() - t0
    print(json.dumps({"compile_s": max(first - later, 0.0), "hits": len(hits), "folder": str(folder)}))
""")


def _cache_run(folder: str, model: str, batch: int, steps: int) -> dict:
    env = {**os.environ, "DLCORE_COMPILATION_CACHE": folder}
    proc = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, model, str(batch), str(steps)], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the compilation-cache run failed ({proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cache_row(quick: bool) -> Result:
    """The compile time of a first `Trainer.fit` epoch in a fresh process, with an empty and then a warm
    persistent cache folder (`dlcore.cli.compilation_cache`, as the `dlcore` command turns it on)."""
    model, batch, steps = ("mlp", 4, 2) if quick else ("mnist_convnet", 32, 30)
    with tempfile.TemporaryDirectory(prefix="dlcore-jax-cache-") as folder:
        t0 = time.perf_counter()
        cold = _cache_run(folder, model, batch, steps)
        warm = _cache_run(folder, model, batch, steps)
        wall = time.perf_counter() - t0
        entries = sum(1 for name in os.listdir(folder) if name.endswith("-cache"))
    note = (f"{model}, batch {batch}: first Trainer.fit epoch less a later one, each in a fresh process "
            f"({wall:.1f} s in all); the second found {warm['hits']} of its compiled programs in the cache "
            f"({entries} entries written by the first); no peer")
    return Result(f"{model} first-epoch compile, empty vs warm cache", "s", cold["compile_s"], None, note=note,
                  compile_s=cold["compile_s"], cached_compile_s=warm["compile_s"])


def run(ctx: BenchContext) -> list[Result]:
    results = []
    for name, batch, steps in CASES:
        spec = SPECS[name]
        if ctx.quick:
            if name not in QUICK or batch != spec.batch:
                continue
            batch, steps = 4, 2
        case = f"{name} step, batch {batch}" + (" (32x32)" if name == "resnet18" else "")
        r = compare(spec, batch=batch, n=batch * steps, repeats=1 if ctx.quick else 5, torch_compile=not ctx.quick,
                    case=case, unit="ms", why_not="--quick" if ctx.quick else "", warmup=0 if ctx.quick else 1,
                    bfloat16=(name, batch) in BFLOAT16 or (ctx.quick and name == "mlp"))
        ctx.print(f"  ... {case}: {r.dlcore:.4g} ms" + ("" if r.peer is None else f", torch {r.peer:.4g} ms"))
        results.append(r)
    results.append(cache_row(ctx.quick))
    return results
