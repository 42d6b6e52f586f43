"""Populations: K seeds of Géron's MLP trained as one vmapped, jitted call against K sequential Trainer fits.

The model is the 784-300-100-10 classifier of Géron, Hands-On Machine Learning with Scikit-Learn and
PyTorch, ch. 10 (Building an Image Classifier with PyTorch), trained with SGD (lr 0.1, batch 32) on
random MNIST-shaped arrays. dlcore's side builds the K models (`TrainState.population`) and trains them
with `population_fit`, one ``jit(vmap(epoch-as-scan))`` call per epoch over all K members; the peer
side is what a user writes without it: K fresh `Trainer`s, each `fit` for the same epochs (each
compiles its own epoch). Both sides' figures INCLUDE building the models and compiling, and train the
same K models for the same epochs to the same weights (`tests/test_population.py`). A second case
reports the compile time alone: the first epoch's time less a later epoch's (the population compiles
once; the sequential side K times). The last case is a learning-rate search (issue 16): K = 16 learning
rates as one population (the rates injected into one stacked optimizer state) against 16 Trainer fits
with ``optim.sgd(lr)`` each, same model, seed and epochs; the target is a ratio of at least 4 on a 2-core
CPU. Ratio = sequential / population (above 1: the population is faster).

Run: `dlcore bench population [--quick] [--json FILE]`.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.bench import BenchContext, Benchmark, Result
from dlcore.train import TrainState, Trainer, population_epoch, population_keys
from dlcore.train import population as pop

BENCHMARK = Benchmark(name="population",
                      title="K seeds or K learning rates of Géron's MLP: one vmapped jitted call vs K Trainer fits",
                      peer="sequential Trainer")

BATCH = 32
SIZES = (784, 300, 100, 10)


def _data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 28, 28, 1), np.float32), "y": rng.integers(0, 10, n).astype(np.int32)}


def _make(rngs):
    return dlcore.models.create("mlp", sizes=SIZES, rngs=rngs)


def _population(tx, data, seeds, epochs, hyperparams=None) -> list[float]:
    """Seconds of each epoch of the population (the first includes building the models and compiling)."""
    pop._epoch_jit.clear_cache()  # compile afresh on every repeat: the figure includes compilation
    t0 = time.perf_counter()
    states = TrainState.population(_make, tx, seeds, hyperparams=hyperparams)
    split = jax.device_put({**data, "w": np.ones(len(data["y"]), np.float32)})
    keys = population_keys(seeds)[1]
    times = []
    for epoch in range(1, epochs + 1):
        states, acc = population_epoch(states, split, keys, epoch, batch_size=BATCH, loss_fn=losses.cross_entropy)
        jax.block_until_ready((states, acc))
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
    return times


def _sequential(txs, data, seeds, epochs) -> list[float]:
    """Seconds of each epoch summed over K fresh Trainers (each builds its model and compiles); member i
    trains with ``txs[i]`` (or ``txs`` itself for all)."""
    times = [0.0] * epochs
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        tx = txs[i] if isinstance(txs, list) else txs
        trainer = Trainer(_make(nnx.Rngs(seed)), tx, losses.cross_entropy, seed=seed, batch_size=BATCH,
                          progress=False)
        for epoch in range(1, epochs + 1):
            trainer.fit(data, epochs=epoch)
            jax.block_until_ready(trainer.state)
            times[epoch - 1] += time.perf_counter() - t0
            t0 = time.perf_counter()
    return times


def _learning_rates(ctx: BenchContext, data: dict, epochs: int, repeats: int) -> Result:
    """K learning rates (the trials of a learning-rate search) as one population, injected into one stacked
    optimizer state (`optim.injectable`), against K Trainer fits with ``optim.sgd(lr)`` each: the same
    models (one seed), the same epochs, building and compiling included on both sides."""
    k = 4 if ctx.quick else 16
    lrs = [float(v) for v in np.geomspace(1e-3, 0.3, k)]
    seeds = [0] * k
    tx = optim.injectable("sgd", lr=0.1)
    best_pop = best_seq = math.inf
    for _ in range(repeats):  # alternated, best total of each
        best_pop = min(best_pop, sum(_population(tx, data, seeds, epochs, hyperparams={"lr": lrs})))
        best_seq = min(best_seq, sum(_sequential([optim.sgd(lr=lr) for lr in lrs], data, seeds, epochs)))
    return Result(f"{k} learning rates, {epochs} epochs of {len(data['y'])} images", "s", best_pop, best_seq,
                  note=f"lr {lrs[0]:g}..{lrs[-1]:g} log-spaced, one seed; incl. building and compiling; best of "
                       f"{repeats}" + (" alternated" if repeats > 1 else "") + "; target ratio >= 4")


def run(ctx: BenchContext) -> list[Result]:
    k = 8
    n, epochs, repeats = (256, 2, 1) if ctx.quick else (4096, 3, 2)
    data, tx, seeds = _data(n), optim.sgd(lr=0.1), list(range(k))
    # One-time costs of the process (the backend starting, the eager initialisers compiling) stay out of
    # both timings: whichever side ran first would pay them.
    jax.block_until_ready(nnx.state(_make(nnx.Rngs(0))))
    best_pop = best_seq = None
    for _ in range(repeats):  # alternated, best total of each
        p, s = _population(tx, data, seeds, epochs), _sequential(tx, data, seeds, epochs)
        best_pop = p if best_pop is None or sum(p) < sum(best_pop) else best_pop
        best_seq = s if best_seq is None or sum(s) < sum(best_seq) else best_seq
    steps = -(-n // BATCH)
    note = (f"{k} members x {epochs} epochs x {steps} steps, incl. building and compiling; best of {repeats}"
            + (" alternated" if repeats > 1 else ""))
    results = [Result(f"{k} MLPs, {epochs} epochs of {n} images", "s", sum(best_pop), sum(best_seq), note=note)]

    def compile_estimate(times):  # the first epoch (build + compile + train) less a later epoch (train)
        return max(times[0] - min(times[1:]), 0.0)

    results.append(Result("compile (first epoch - later epoch)", "s", compile_estimate(best_pop),
                          compile_estimate(best_seq), note=f"population compiles once, sequential {k} times"))
    results.append(Result("one epoch, compiled", "s", min(best_pop[1:]), min(best_seq[1:]),
                          note=f"all {k} members"))
    results.append(_learning_rates(ctx, data, epochs, repeats))
    return results
