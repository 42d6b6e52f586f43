"""Clustering: fit time of dlcore's KMeans and GaussianMixture beside scikit-learn's, on the same data.

The data is `make_blobs` (8 centres, float32) with 1e5 and 1e6 points of 2 and 16 features. Three
cases per size:

* k-means, k = 8, from the same 8 initial centres (one run, max 300 iterations, tol 1e-4): both do the
  same Lloyd iterations (the note says how many), so the ratio is the cost of an iteration and of the
  fit's fixed work (input checks, the device copy, the tolerance);
* k-means, k = 8, k-means++ with n_init = 4: end to end, seeding included; dlcore runs the four
  initialisations in one jitted call (vmapped on small data, one after the other on large data),
  scikit-learn one after the other (the seeds differ: each library has its own random stream);
* Gaussian mixture, 4 full-covariance components, 20 EM iterations (tol 0) from the same initial
  weights, means and precisions: the same work on both sides.

Times are medians of 3 fits (dlcore's after one warm-up call that compiles). Ratio = scikit-learn /
dlcore (above 1: dlcore faster). `--quick` uses 2,000 points of 2 features and one timed fit.

Run: `dlcore bench cluster [--quick] [--json FILE]`.
"""

from __future__ import annotations

import warnings

import numpy as np

from dlcore import cluster
from dlcore.bench import BenchContext, Benchmark, Result, timeit

BENCHMARK = Benchmark(name="cluster", title="KMeans and GaussianMixture fit time vs scikit-learn", peer="scikit-learn")

K_MEANS = 8
K_MIXTURE = 4
EM_ITERATIONS = 20


def _data(n: int, d: int) -> np.ndarray:
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=K_MEANS, cluster_std=1.5, random_state=0)
    return X.astype(np.float32)


def _mixture_init(X: np.ndarray) -> dict:
    """Initial weights, means and precisions from K_MIXTURE points of X (the same for both libraries)."""
    rng = np.random.default_rng(0)
    means = X[rng.choice(len(X), K_MIXTURE, replace=False)]
    precision = np.linalg.inv(np.cov(X.T.astype(np.float64)))
    return {"weights_init": np.full(K_MIXTURE, 1 / K_MIXTURE), "means_init": means,
            "precisions_init": np.repeat(precision[None], K_MIXTURE, axis=0)}


def _cases(n: int, d: int, repeat: int) -> list[Result]:
    X = _data(n, d)
    size = f"n={n:.0e} d={d}".replace("e+0", "e")
    init = X[np.random.default_rng(1).choice(n, K_MEANS, replace=False)]
    try:
        import sklearn.cluster
        import sklearn.mixture
    except ImportError:  # scikit-learn is a dependency, but the benchmark still reports dlcore alone
        sklearn = None

    def peer(fn):
        return None if sklearn is None else timeit(fn, warmup=0, repeat=repeat)

    results = []
    ours = timeit(lambda: cluster.KMeans(K_MEANS, init=init, n_init=1).fit(X).cluster_centers_, repeat=repeat)
    theirs = peer(lambda: sklearn.cluster.KMeans(K_MEANS, init=init, n_init=1).fit(X))
    it = cluster.KMeans(K_MEANS, init=init, n_init=1).fit(X).n_iter_
    results.append(Result(f"kmeans same init {size}", "s", ours, theirs, f"{it} iterations"))

    ours = timeit(lambda: cluster.KMeans(K_MEANS, n_init=4, random_state=0).fit(X).cluster_centers_, repeat=repeat)
    theirs = peer(lambda: sklearn.cluster.KMeans(K_MEANS, n_init=4, random_state=0).fit(X))
    results.append(Result(f"kmeans++ x4 {size}", "s", ours, theirs))

    init = _mixture_init(X)
    kw = {"covariance_type": "full", "max_iter": EM_ITERATIONS, "tol": 0.0, "init_params": "random_from_data", **init}
    with warnings.catch_warnings():  # tol 0: neither converges, both warn
        warnings.simplefilter("ignore")
        ours = timeit(lambda: cluster.GaussianMixture(K_MIXTURE, **kw).fit(X).means_, repeat=repeat)
        theirs = peer(lambda: sklearn.mixture.GaussianMixture(K_MIXTURE, **kw).fit(X))
    results.append(Result(f"gmm full k={K_MIXTURE} {EM_ITERATIONS} EM {size}", "s", ours, theirs))
    return results


def run(ctx: BenchContext) -> list[Result]:
    sizes = [(2000, 2)] if ctx.quick else [(100_000, 2), (100_000, 16), (1_000_000, 2), (1_000_000, 16)]
    results = []
    for n, d in sizes:
        results.extend(_cases(n, d, repeat=1 if ctx.quick else 3))
    return results
