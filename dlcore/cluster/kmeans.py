"""k-means: Lloyd iterations from random, explicit or greedy k-means++ centres, and mini-batch k-means.

Hands-On Machine Learning (PyTorch edition), ch. 8, "k-Means Clustering": the
algorithm ("The k-means algorithm"), centroid initialisation and inertia ("Centroid initialization
methods"), mini-batch k-means ("Accelerated k-means and mini-batch k-means").

Every initialisation of `n_init` runs in the same jitted call (`lax.map` with a batch size, i.e. a
`vmap` over as many runs as fit in memory at once); the run with the lowest inertia is kept.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_choice, check_float, check_int
from dlcore.cluster._common import (
    HIGHEST,
    as_key,
    batch_for,
    check_array,
    check_fitted,
    precision,
    resolve_dtype,
    sq_distances,
)

__all__ = ["KMeans", "MiniBatchKMeans", "kmeans_plusplus"]


# --------------------------------------------------------------------------------------------------
# Pure cores (X is centred, (n, d); centres (k, d))
# --------------------------------------------------------------------------------------------------


def _assign(X, x_sq, centers, valid=None):
    """Nearest (valid) centre of each row: labels `(n,)` int32 and squared distances to it `(n,)`."""
    d2 = sq_distances(X, centers, x_sq)
    if valid is not None:
        d2 = jnp.where(valid[None, :], d2, jnp.inf)
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    return labels, jnp.take_along_axis(d2, labels[:, None], axis=1)[:, 0]


def _kmeanspp(key, X, x_sq, k, k_pad: int, n_local_trials: int, trials=None):
    """Greedy k-means++ seeding (Géron, ch. 8, Centroid initialization methods; Arthur and Vassilvitskii, 2007).

    The first centre is a uniformly drawn point; each next one is the best (lowest potential, the sum of
    squared distances to the nearest centre) of `n_local_trials` points drawn with probability
    proportional to D(x)^2.

    Args:
        k: number of centres (may be traced); rows k..k_pad-1 of the result stay zero.
        k_pad: static number of rows.
        n_local_trials: static number of candidates drawn per step.
        trials: how many of them compete (may be traced; default all).

    Returns:
        centres `(k_pad, d)` and the indices `(k_pad,)` of the chosen points.
    """
    n = X.shape[0]
    # one draw for the whole seeding: each jax.random call costs compile time, more so under vmap
    u = jax.random.uniform(key, (1 + k_pad * n_local_trials,), X.dtype)
    first = jnp.minimum((u[0] * n).astype(jnp.int32), n - 1)
    uniforms = u[1:].reshape(k_pad, n_local_trials)
    closest = sq_distances(X, X[first][None], x_sq)[:, 0]
    centers = jnp.zeros((k_pad, X.shape[1]), X.dtype).at[0].set(X[first])
    index = jnp.zeros((k_pad,), jnp.int32).at[0].set(first)

    def step(c, carry):
        centers, index, closest = carry
        cum = jnp.cumsum(closest)
        u = uniforms[c] * cum[-1]
        cand = jnp.clip(jnp.searchsorted(cum, u, side="right", method="compare_all"), 0, n - 1).astype(jnp.int32)
        trial = jnp.minimum(closest[:, None], sq_distances(X, X[cand], x_sq))  # (n, trials)
        potential = trial.sum(axis=0)
        if trials is not None:
            potential = jnp.where(jnp.arange(n_local_trials) < trials, potential, jnp.inf)
        best = jnp.argmin(potential)
        return centers.at[c].set(X[cand[best]]), index.at[c].set(cand[best]), trial[:, best]

    centers, index, _ = jax.lax.fori_loop(1, k, step, (centers, index, closest))
    return centers, index


def _random_centers(key, X, k_pad: int):
    """`k_pad` distinct rows of X drawn uniformly (the top of random scores: cheap to compile)."""
    idx = jax.lax.top_k(jax.random.uniform(key, (X.shape[0],), X.dtype), k_pad)[1]
    return X[idx]


def _update_centers(X, labels, min_d2, valid):
    """Means of the points of each cluster; an empty cluster moves to a point far from its centre."""
    k_pad = valid.shape[0]
    onehot = jax.nn.one_hot(labels, k_pad, dtype=X.dtype)  # (n, k_pad)
    counts = onehot.sum(axis=0)
    sums = jnp.dot(onehot.T, X, precision=HIGHEST)
    new = sums / jnp.maximum(counts, 1)[:, None]
    empty = (counts == 0) & valid
    far = jax.lax.top_k(min_d2, min(k_pad, X.shape[0]))[1]
    rank = jnp.clip(jnp.cumsum(empty) - 1, 0, far.shape[0] - 1)
    return jnp.where(empty[:, None], X[far[rank]], new)


def _lloyd(X, x_sq, centers, valid, max_iter, tol):
    """Lloyd iterations until the labels stop changing, the centres move less than `tol` (sum of
    squared shifts), or `max_iter` (Géron, ch. 8, The k-means algorithm). Only the `valid` centres take part.

    Returns:
        centres `(k_pad, d)`, labels `(n,)` consistent with them, inertia, number of iterations.
    """
    n = X.shape[0]

    def cond(s):
        i, _, _, done = s
        return (i < max_iter) & ~done

    def body(s):
        i, c, prev, _ = s
        labels, min_d2 = _assign(X, x_sq, c, valid)
        new = _update_centers(X, labels, min_d2, valid)
        done = jnp.all(labels == prev) | (jnp.sum((new - c) ** 2) <= tol)
        return i + 1, new, labels, done

    init = (jnp.int32(0), centers, jnp.full((n,), -1, jnp.int32), jnp.bool_(False))
    n_iter, centers, _, _ = jax.lax.while_loop(cond, body, init)
    labels, _ = _assign(X, x_sq, centers, valid)
    inertia = jnp.sum((X - centers[labels]) ** 2)  # differences, not the expansion: exact to rounding
    return centers, labels, inertia, n_iter


def _init_centers(key, X, x_sq, init, init_array, k, k_pad, n_local_trials, trials=None):
    if init == "k-means++":
        return _kmeanspp(key, X, x_sq, k, k_pad, n_local_trials, trials)[0]
    if init == "random":
        return _random_centers(key, X, k_pad)
    return init_array


def _kmeans_single(key, X, x_sq, init_array, k, trials, max_iter, tol, *, k_pad, init, n_local_trials):
    """One k-means run with `k` (possibly traced) of `k_pad` centre slots in use."""
    centers = _init_centers(key, X, x_sq, init, init_array, k, k_pad, n_local_trials, trials)
    return _lloyd(X, x_sq, centers, jnp.arange(k_pad) < k, max_iter, tol)


@functools.partial(jax.jit, static_argnames=("k_pad", "init", "n_local_trials", "batch"))
def _kmeans_runs(keys, X, init_array, k, trials, max_iter, tol, *, k_pad, init, n_local_trials, batch):
    """`len(keys)` k-means runs on centred `X`, `batch` of them vmapped at a time."""
    x_sq = jnp.sum(X * X, axis=1)
    run = functools.partial(_kmeans_single, X=X, x_sq=x_sq, init_array=init_array, k=k, trials=trials,
                            max_iter=max_iter, tol=tol, k_pad=k_pad, init=init, n_local_trials=n_local_trials)
    return _map(run, keys, batch)


def _map(fn, xs, batch: int):
    """`vmap` when every run fits in one batch (cheaper to compile), else `lax.map` in batches."""
    if batch >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch)


def _padded(k: int, n: int, d: int) -> int:
    """Centre slots to compile for: on small data, k rounded up to a multiple of 8, so a sweep over k
    reuses one compiled function (compilation costs more than the extra distances there)."""
    if n * d > (1 << 17):
        return k
    return min(n, -(-k // 8) * 8)


@functools.partial(jax.jit, static_argnames=("what",))
def _centroid_outputs(X, centers, *, what: str):
    """'distances' `(n, k)`, 'labels' `(n,)` or 'inertia' of X's rows against the centres."""
    shift = centers.mean(axis=0)  # translation-invariant: centring keeps the expansion accurate
    d2 = sq_distances(X - shift, centers - shift)
    if what == "distances":
        return jnp.sqrt(d2)
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    if what == "labels":
        return labels
    return jnp.sum((X - centers[labels]) ** 2)


def _tolerance(X: np.ndarray, tol: float) -> float:
    """scikit-learn's convention: `tol` is relative to the mean per-feature variance of the data."""
    return float(np.mean(np.var(X, axis=0))) * tol


def _centred(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X minus its column means (accumulated in float64), and the means, in X's dtype (on the host)."""
    mean = X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    return X - mean, mean


def _local_trials(n_clusters: int, n_local_trials: int | None) -> int:
    return 2 + int(math.log(n_clusters)) if n_local_trials is None else n_local_trials


def _check_init(init: Any, n_clusters: int, n_features: int, dtype, who: str):
    """('k-means++' | 'random' | 'array', centres or None)."""
    if isinstance(init, str):
        return check_choice(init, "init (a str, or an (n_clusters, n_features) array)", ("k-means++", "random"),
                            who=who), None
    arr = check_array(init, dtype, who=who, name="init")
    if arr.shape != (n_clusters, n_features):
        raise ValueError(f"{who}: init has shape {arr.shape}, expected (n_clusters, n_features) = "
                         f"({n_clusters}, {n_features})")
    return "array", arr


def _check_n_init(n_init: Any, init: str, who: str, auto: int) -> int:
    if n_init == "auto":
        return auto
    n_init = check_int(n_init, "n_init", low=1, who=who)
    if init == "array" and n_init != 1:
        warnings.warn(f"{who}: explicit initial centres given, so n_init={n_init} is set to 1", RuntimeWarning,
                      stacklevel=3)
        return 1
    return n_init


class _CentroidMixin:
    """predict / transform / score shared by KMeans and MiniBatchKMeans."""

    cluster_centers_: np.ndarray | None = None

    def _check_X(self, X, method: str) -> np.ndarray:
        check_fitted(self, "cluster_centers_", method)
        return check_array(X, self._dtype, who=type(self).__name__, n_features=self.n_features_in_)

    def _outputs(self, X, method: str, what: str):
        X = self._check_X(X, method)
        with precision(self._dtype):
            return np.asarray(_centroid_outputs(jnp.asarray(X), jnp.asarray(self.cluster_centers_), what=what))

    def transform(self, X) -> np.ndarray:
        """Euclidean distance from each row of `X (n, d)` to every centre: `(n, n_clusters)` (Géron, ch. 8)."""
        return self._outputs(X, "transform", "distances")

    def predict(self, X) -> np.ndarray:
        """Index of the nearest centre of each row of `X (n, d)`: `(n,)` int32 (Géron, ch. 8, k-Means Clustering)."""
        return self._outputs(X, "predict", "labels")

    def score(self, X, y=None) -> float:
        """Minus the inertia of `X` under the fitted centres (greater is better; Géron, ch. 8)."""
        return -float(self._outputs(X, "score", "inertia"))

    def fit_predict(self, X, y=None) -> np.ndarray:
        """`fit(X)` and return `labels_`."""
        return self.fit(X).labels_

    def fit_transform(self, X, y=None) -> np.ndarray:
        """`fit(X)` and return the distances of `X` to the centres `(n, n_clusters)`."""
        return self.fit(X).transform(X)


class KMeans(_CentroidMixin):
    """k-means clustering by Lloyd's algorithm, `n_init` initialisations at once (Géron, ch. 8, k-Means Clustering).

    Args:
        n_clusters: number of clusters k.
        init: 'k-means++' (greedy k-means++, the default), 'random' (k distinct points), or an array
            `(n_clusters, n_features)` of initial centres (Géron, ch. 8, Centroid initialization methods).
        n_init: number of initialisations, the best (lowest inertia) kept; 'auto' is 10 for 'random'
            and 1 otherwise, as in scikit-learn.
        max_iter: most Lloyd iterations per run.
        tol: stop when the squared centre shift sums to at most `tol` times the mean feature variance
            (runs also stop as soon as no label changes).
        n_local_trials: candidates per k-means++ step; default 2 + int(log k).
        random_state: int seed or `jax.random` key (None: seed 0).
        dtype: float32 (default) or float64 (computed under a local x64 context; scikit-learn's figures
            to many digits).

    Attributes:
        cluster_centers_: `(n_clusters, n_features)`.
        labels_: `(n_samples,)` int32, cluster of each training point.
        inertia_: sum of squared distances of the points to their centre (Equation 8-1).
        n_iter_: Lloyd iterations of the kept run.
        n_features_in_: number of features seen in fit.

    Example:
        >>> km = KMeans(5, random_state=42).fit(X)          # X: (n, 2)
        >>> km.predict(X_new), km.transform(X_new), km.inertia_
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", n_init: int | str = "auto",
                 max_iter: int = 300, tol: float = 1e-4, n_local_trials: int | None = None,
                 random_state: Any = None, dtype: Any = jnp.float32):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_local_trials = n_local_trials
        self.random_state = random_state
        self.dtype = dtype

    def fit(self, X, y=None) -> KMeans:
        """Cluster `X (n_samples, n_features)`; returns self."""
        who = "KMeans"
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        k = check_int(self.n_clusters, "n_clusters", low=1, who=who)
        if X.shape[0] < k:
            raise ValueError(f"{who}: n_samples={X.shape[0]} should be >= n_clusters={k}; "
                             f"ask for fewer clusters or pass more points")
        init, init_array = _check_init(self.init, k, X.shape[1], dtype, who)
        n_init = _check_n_init(self.n_init, init, who, 10 if init == "random" else 1)
        max_iter = check_int(self.max_iter, "max_iter", low=1, who=who)
        tol = check_float(self.tol, "tol", low=0, who=who)
        trials = check_int(_local_trials(k, self.n_local_trials), "n_local_trials", low=1, who=who)
        key = as_key(self.random_state, who)
        k_pad = _padded(k, *X.shape)
        max_trials = trials if self.n_local_trials is not None else _local_trials(k_pad, None)
        Xc, mean = _centred(X)
        init_c = np.zeros((k_pad, X.shape[1]), dtype)
        if init_array is not None:
            init_c[:k] = init_array - mean
        batch = batch_for(n_init, 3 * X.shape[0] * (k_pad + max_trials))
        with precision(dtype):
            keys = jax.random.split(key, n_init)
            centers, labels, inertia, n_iter = jax.device_get(_kmeans_runs(
                keys, jnp.asarray(Xc), jnp.asarray(init_c), k, trials, max_iter, _tolerance(Xc, tol), k_pad=k_pad,
                init=init, n_local_trials=max_trials, batch=batch))
        best = int(np.argmin(inertia))
        self.cluster_centers_ = centers[best, :k] + mean
        self.labels_ = labels[best]
        self.inertia_ = float(inertia[best])
        self.n_iter_ = int(n_iter[best])
        self.n_features_in_ = X.shape[1]
        return self


def kmeans_plusplus(X, n_clusters: int, *, n_local_trials: int | None = None, random_state: Any = None,
                    dtype: Any = jnp.float32) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeds for `X (n, d)` (Géron, ch. 8, Centroid initialization methods).

    Returns:
        centres `(n_clusters, d)` (rows of X) and their indices `(n_clusters,)`.
    """
    who = "kmeans_plusplus"
    dtype = resolve_dtype(dtype)
    X = check_array(X, dtype, who=who)
    k = check_int(n_clusters, "n_clusters", low=1, who=who)
    if X.shape[0] < k:
        raise ValueError(f"{who}: n_samples={X.shape[0]} should be >= n_clusters={k}")
    trials = check_int(_local_trials(k, n_local_trials), "n_local_trials", low=1, who=who)
    Xc, _ = _centred(X)
    with precision(dtype):
        index = np.asarray(_kmeanspp_jit(as_key(random_state, who), jnp.asarray(Xc), k, trials))
    return X[index], index


@functools.partial(jax.jit, static_argnums=(2, 3))
def _kmeanspp_jit(key, X, k, trials):
    return _kmeanspp(key, X, jnp.sum(X * X, axis=1), k, k, trials)[1]


# --------------------------------------------------------------------------------------------------
# Mini-batch k-means (Sculley, 2010; Géron, ch. 8, Accelerated k-means and mini-batch k-means)
# --------------------------------------------------------------------------------------------------


def _minibatch_update(Xb, centers, counts):
    """One mini-batch step: each centre moves to the running mean of every point ever assigned to it."""
    k = centers.shape[0]
    labels, min_d2 = _assign(Xb, jnp.sum(Xb * Xb, axis=1), centers)
    onehot = jax.nn.one_hot(labels, k, dtype=Xb.dtype)
    b = onehot.sum(axis=0)
    sums = jnp.dot(onehot.T, Xb, precision=HIGHEST)
    new_counts = counts + b
    moved = centers + (sums - b[:, None] * centers) / jnp.maximum(new_counts, 1)[:, None]
    return jnp.where((b > 0)[:, None], moved, centers), new_counts, jnp.sum(min_d2), labels


_minibatch_step = jax.jit(_minibatch_update)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _minibatch_fit(key, X, centers, counts, n_steps, tol, alpha, max_no_improvement, *, batch_size):
    """Mini-batch steps until `n_steps`, no EWA-inertia improvement for `max_no_improvement` steps,
    or (tol > 0) a squared centre shift below `tol`."""
    n = X.shape[0]

    def cond(s):
        step, *_, done = s
        return (step < n_steps) & ~done

    def body(s):
        step, c, counts, ewa, best, stale, _ = s
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)
        new, counts, inertia, _ = _minibatch_update(X[idx], c, counts)
        inertia = inertia / batch_size
        ewa = jnp.where(step == 0, inertia, ewa * (1 - alpha) + inertia * alpha)
        improved = ewa < best
        best = jnp.where(improved, ewa, best)
        stale = jnp.where(improved, 0, stale + 1)
        done = (stale >= max_no_improvement) | ((tol > 0) & (jnp.sum((new - c) ** 2) <= tol))
        return step + 1, new, counts, ewa, best, stale, done

    inf = jnp.asarray(jnp.inf, X.dtype)
    s = (jnp.int32(0), centers, counts, inf, inf, jnp.int32(0), jnp.bool_(False))
    step, centers, counts, *_ = jax.lax.while_loop(cond, body, s)
    return centers, counts, step


@functools.partial(jax.jit, static_argnames=("n_clusters", "init", "n_local_trials"))
def _best_init(keys, X, init_array, *, n_clusters, init, n_local_trials):
    x_sq = jnp.sum(X * X, axis=1)
    cands = jax.vmap(lambda key: _init_centers(key, X, x_sq, init, init_array, n_clusters, n_clusters,
                                               n_local_trials))(keys)
    inertia = jax.vmap(lambda c: jnp.sum(_assign(X, x_sq, c)[1]))(cands)
    return cands[jnp.argmin(inertia)]


@jax.jit
def _labels_inertia(X, centers):
    labels, _ = _assign(X, jnp.sum(X * X, axis=1), centers)
    return labels, jnp.sum((X - centers[labels]) ** 2)


class MiniBatchKMeans(_CentroidMixin):
    """Mini-batch k-means (Géron, ch. 8, Accelerated k-means...; Sculley, "Web-Scale K-Means Clustering", 2010).

    Each step draws `batch_size` points, assigns them to the nearest centre and moves every centre to the
    running mean of all points ever assigned to it (per-centre learning rate 1 / count). Training stops
    after `max_iter` passes over the data, when the exponentially weighted batch inertia has not improved
    for `max_no_improvement` steps, or (with `tol > 0`) when the centres stop moving.

    Args:
        n_clusters, init, n_local_trials, random_state, dtype: as in `KMeans`.
        max_iter: most passes over the data (epochs).
        batch_size: points per step.
        tol: stop when the squared centre shift of a step is at most `tol` times the mean feature variance
            (0 disables).
        max_no_improvement: steps without improvement of the smoothed inertia before stopping (None: never).
        init_size: points the initial centres are chosen from (default 3 * batch_size, at least k).
        n_init: initialisations on that sample, the one with the lowest inertia there kept ('auto': 3 for
            'random', else 1).

    Attributes:
        cluster_centers_, labels_, inertia_, n_features_in_: as in `KMeans` (labels and inertia on the
            whole training set after `fit`, on the last batch after `partial_fit`).
        n_steps_: mini-batch steps taken; n_iter_: passes over the data.
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", max_iter: int = 100,
                 batch_size: int = 1024, tol: float = 0.0, max_no_improvement: int | None = 10,
                 init_size: int | None = None, n_init: int | str = "auto", n_local_trials: int | None = None,
                 random_state: Any = None, dtype: Any = jnp.float32):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.n_local_trials = n_local_trials
        self.random_state = random_state
        self.dtype = dtype

    def _check_params(self, who: str) -> tuple[int, int]:
        k = check_int(self.n_clusters, "n_clusters", low=1, who=who)
        batch_size = check_int(self.batch_size, "batch_size", low=1, who=who)
        return k, batch_size

    @staticmethod
    def _initial_centers(key, Xc, init, init_array, k, n_init, trials):
        """The best of `n_init` initialisations, judged by inertia on `Xc`."""
        if init_array is None:
            init_array = jnp.zeros((k, Xc.shape[1]), Xc.dtype)
        return _best_init(jax.random.split(key, n_init), Xc, init_array, n_clusters=k, init=init,
                          n_local_trials=trials)

    def fit(self, X, y=None) -> MiniBatchKMeans:
        """Cluster `X (n_samples, n_features)` by mini-batches; returns self."""
        who = "MiniBatchKMeans"
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        n, d = X.shape
        k, batch_size = self._check_params(who)
        if n < k:
            raise ValueError(f"{who}: n_samples={n} should be >= n_clusters={k}; "
                             f"ask for fewer clusters or pass more points")
        init, init_array = _check_init(self.init, k, d, dtype, who)
        n_init = _check_n_init(self.n_init, init, who, 3 if init == "random" else 1)
        max_iter = check_int(self.max_iter, "max_iter", low=1, who=who)
        tol = check_float(self.tol, "tol", low=0, who=who)
        stale = (1 << 30) if self.max_no_improvement is None else check_int(
            self.max_no_improvement, "max_no_improvement", low=1, who=who)
        init_size = max(k, min(n, 3 * batch_size if self.init_size is None
                               else check_int(self.init_size, "init_size", low=1, who=who)))
        trials = check_int(_local_trials(k, self.n_local_trials), "n_local_trials", low=1, who=who)
        key = as_key(self.random_state, who)
        Xc, mean = _centred(X)
        with precision(dtype):
            Xc = jnp.asarray(Xc)
            k_init, k_steps = jax.random.split(key)
            k_sub, k_init = jax.random.split(k_init)
            sub = Xc[jax.random.choice(k_sub, n, (init_size,), replace=False)]
            init_c = None if init_array is None else jnp.asarray(init_array - mean)
            centers = self._initial_centers(k_init, sub, init, init_c, k, n_init, trials)
            n_steps = -(-max_iter * n // batch_size)
            alpha = min(1.0, batch_size * 2.0 / (n + 1))
            centers, counts, steps = _minibatch_fit(
                k_steps, Xc, centers, jnp.zeros((k,), dtype), n_steps, _tolerance(np.asarray(Xc), tol), alpha,
                stale, batch_size=batch_size)
            labels, inertia = _labels_inertia(Xc, centers)
            self.cluster_centers_ = np.asarray(centers + mean)
            self.labels_ = np.asarray(labels)
            self.inertia_ = float(inertia)
            self._counts = np.asarray(counts)
            self.n_steps_ = int(steps)
        self.n_iter_ = -(-self.n_steps_ * batch_size // n)
        self.n_features_in_ = d
        return self

    def partial_fit(self, X, y=None) -> MiniBatchKMeans:
        """One mini-batch step on `X (batch, n_features)`, initialising on the first call; returns self."""
        who = "MiniBatchKMeans"
        first = self.cluster_centers_ is None
        if first:
            self._dtype = resolve_dtype(self.dtype)
        dtype = self._dtype
        X = check_array(X, dtype, who=who, n_features=None if first else self.n_features_in_)
        k, _ = self._check_params(who)
        if first:
            if X.shape[0] < k:
                raise ValueError(f"{who}: the first partial_fit batch has {X.shape[0]} samples, at least "
                                 f"n_clusters={k} needed to initialise the centres")
            init, init_array = _check_init(self.init, k, X.shape[1], dtype, who)
            n_init = _check_n_init(self.n_init, init, who, 3 if init == "random" else 1)
            trials = check_int(_local_trials(k, self.n_local_trials), "n_local_trials", low=1, who=who)
            Xc, self._shift = _centred(X)  # the first batch's mean centres every later batch too
            with precision(dtype):
                init_c = None if init_array is None else jnp.asarray(init_array - self._shift)
                centers = self._initial_centers(as_key(self.random_state, who), jnp.asarray(Xc), init, init_c, k,
                                                n_init, trials)
            counts = np.zeros((k,), dtype)
            self.n_steps_ = 0
            self.n_features_in_ = X.shape[1]
        else:
            Xc = X - self._shift
            centers, counts = self.cluster_centers_ - self._shift, self._counts
        with precision(dtype):
            Xc = jnp.asarray(Xc)
            centers, counts, _, _ = _minibatch_step(Xc, jnp.asarray(centers), jnp.asarray(counts))
            labels, inertia = _labels_inertia(Xc, centers)
            centers, counts, labels, inertia = jax.device_get((centers, counts, labels, inertia))
        self.cluster_centers_ = centers + self._shift
        self._counts = counts
        self.labels_ = labels
        self.inertia_ = float(inertia)
        self.n_steps_ += 1
        return self
