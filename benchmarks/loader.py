"""Data loading: an epoch of MNIST-shaped arrays through dlcore's Loader, beside
torch.utils.data.DataLoader over the same arrays, and against an epoch of training the MNIST ConvNet.

Both loaders deliver shuffled batches of 32 (N, 28, 28, 1) float32 images with int32 labels: dlcore's
`Loader` as device arrays (the split on the device once, each batch gathered there by a jitted
`take`; or gathered on the host and copied by a prefetching thread), torch's `DataLoader` over a
`TensorDataset` (no workers, as the books). The acceptance figure is the loader's cost as a share of
one epoch of training `dlcore.models.create("mnist_convnet")` with `dlcore.Trainer` on the same number
of random MNIST-shaped images: it must stay under 5%. Ratio = torch / dlcore (above 1: dlcore faster).

Run: `dlcore bench loader [--quick] [--json FILE]`.
"""

from __future__ import annotations

import time

import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.bench import BenchContext, Benchmark, Result, timeit
from dlcore.data import Loader

BENCHMARK = Benchmark(name="loader", title="an epoch of MNIST-shaped batches: Loader vs DataLoader, share of "
                                           "a ConvNet epoch", peer="torch")

BATCH = 32


def _data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 28, 28, 1), np.float32), "y": rng.integers(0, 10, n).astype(np.int32)}


def _dlcore_epoch(loader: Loader):
    def epoch():
        last = None
        for batch in loader:
            last = batch
        return last

    return timeit(epoch, warmup=1, repeat=3)


def _torch_epoch(data: dict) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)

    def epoch():
        for _ in loader:
            pass

    return timeit(epoch, warmup=1, repeat=3)


def _convnet_epoch(data: dict) -> float:
    model = dlcore.models.create("mnist_convnet")
    trainer = dlcore.Trainer(model, optim.adadelta(lr=0.5), losses.nll, batch_size=BATCH, progress=False)
    trainer.fit(data, epochs=1)  # compiles
    t0 = time.perf_counter()
    trainer.fit(data, epochs=2)  # one more epoch with the compiled step
    return time.perf_counter() - t0


def run(ctx: BenchContext) -> list[Result]:
    n = 1024 if ctx.quick else 10_000
    data = _data(n)
    device = _dlcore_epoch(Loader(data, BATCH, shuffle=True, key=0))
    host = _dlcore_epoch(Loader(data, BATCH, shuffle=True, key=0, on_device=False))
    torch_t = _torch_epoch(data)
    convnet = _convnet_epoch(data)
    results = [
        Result(f"epoch of {n} images, on device", "s", device, torch_t),
        Result(f"epoch of {n} images, host+prefetch", "s", host, torch_t),
        Result("Loader share of ConvNet epoch", "%", 100 * device / convnet, None,
               f"(ConvNet epoch {convnet:.3g} s; host path {100 * host / convnet:.2g}%"
               + (f"; DataLoader {100 * torch_t / convnet:.2g}%)" if torch_t is not None else ")")),
    ]
    if not ctx.quick:
        full = _data(60_000, seed=1)
        results.append(Result("epoch of 60000 images, on device", "s",
                              _dlcore_epoch(Loader(full, BATCH, shuffle=True, key=0)), _torch_epoch(full)))
    return results
