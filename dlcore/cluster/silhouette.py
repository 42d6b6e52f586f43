"""Silhouette coefficients, computed a block of rows at a time so 100k points fit in memory.

Hands-On Machine Learning (PyTorch edition), ch. 8, "Finding the optimal number of clusters"
(Géron, ch. 8, Figures 8-8 and 8-9): an instance's coefficient is (b - a) / max(a, b), with a the mean
distance to the other members of its cluster and b the mean distance to the members of the nearest
other cluster (Rousseeuw, 1987).

`metric=` is scikit-learn's: 'euclidean' (the default), 'sqeuclidean', 'manhattan' ('cityblock', 'l1'),
'chebyshev', 'minkowski' (with `p`) and 'cosine' are computed on the device; 'precomputed' reads a
square distance matrix (dense or SciPy sparse, whose missing entries are distance 0); every other
named metric of scikit-learn and any callable `metric(u, v) -> float` are computed on the host by
`sklearn.metrics.pairwise_distances`, a block of rows at a time. SciPy sparse `X` goes the host way too
(the distances of a block of rows, never the dense matrix).

This module also holds the distance blocks that `DBSCAN` shares with the silhouette.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from dlcore.checks import check_int
from dlcore.cluster._common import HIGHEST, as_key, check_array, compute_dtype, is_sparse, precision

__all__ = ["silhouette_samples", "silhouette_score"]

# metrics computed on the device (aliases mapped to one name)
DEVICE_METRICS = {"euclidean": "euclidean", "l2": "euclidean", "sqeuclidean": "sqeuclidean",
                  "manhattan": "manhattan", "cityblock": "manhattan", "l1": "manhattan",
                  "chebyshev": "chebyshev", "infinity": "chebyshev", "minkowski": "minkowski",
                  "cosine": "cosine"}

EXACT_FEATURES = 16  # up to this many features, Euclidean silhouettes use differences, not the matmul expansion


def _host_metrics() -> set[str]:
    """scikit-learn's named metrics (its brute-force neighbour search takes them all)."""
    from sklearn.neighbors import VALID_METRICS

    return set(VALID_METRICS["brute"]) | set(DEVICE_METRICS)


class Metric:
    """A resolved `metric=` choice: the device kernel's name (with `p`), 'precomputed', or a host metric.

    Attributes:
        kind: 'device', 'precomputed' or 'host'.
        name: the device kernel ('euclidean', 'manhattan', ...), else the metric as given.
        p: the Minkowski power (device 'minkowski' only).
        params: keyword arguments for the host metric.
    """

    def __init__(self, metric: str | Callable, params: dict, who: str, *, p: float | None = None,
                 sparse: bool = False):
        params = dict(params or {})
        if callable(metric):
            self.kind, self.name, self.params, self.p = "host", metric, params, None
            return
        if not isinstance(metric, str) or metric not in _host_metrics() | {"precomputed"}:
            raise ValueError(f"{who}: metric must be 'precomputed', a callable or one of scikit-learn's named "
                             f"metrics ({', '.join(sorted(_host_metrics()))}), got {metric!r}")
        if metric == "precomputed":
            self.kind, self.name, self.params, self.p = "precomputed", metric, {}, None
            return
        if metric == "minkowski":
            p = params.pop("p", p)
            p = 2.0 if p is None else float(p)
            if not p >= 1:
                raise ValueError(f"{who}: the Minkowski power p must be >= 1, got {p}")
            metric = {1.0: "manhattan", 2.0: "euclidean", float("inf"): "chebyshev"}.get(p, "minkowski")
            if metric == "minkowski":
                params["p"] = p
        name = DEVICE_METRICS.get(metric)
        if name is not None and not sparse and set(params) <= {"p"}:
            self.kind, self.name, self.p = "device", name, params.pop("p", None)
            self.params = {}
        else:
            self.kind, self.name, self.params, self.p = "host", metric, params, None

    def prepare(self, X) -> Metric:
        """Fix the data-dependent parameters of 'seuclidean' (V) and 'mahalanobis' (VI) from all of dense X
        once, as scikit-learn's chunked distances do, so every block uses the same ones."""
        if self.kind == "host" and not is_sparse(X):
            if self.name == "seuclidean" and "V" not in self.params:
                self.params["V"] = np.var(X, axis=0, ddof=1)
            elif self.name == "mahalanobis" and "VI" not in self.params:
                self.params["VI"] = np.linalg.inv(np.cov(X.T)).T
        return self

    def host_block(self, rows, X) -> np.ndarray:
        """Distances `(len(rows), n)` from `rows` to every row of `X`, on the host."""
        from sklearn.metrics import pairwise_distances

        return np.asarray(pairwise_distances(rows, X, metric=self.name, **self.params))


def device_distances(rows: jax.Array, X: jax.Array, metric: str, p: float | None, *, exact: bool) -> jax.Array:
    """Distances `(r, n)` from `rows (r, d)` to `X (n, d)` for a device metric (traceable).

    Args:
        rows, X: points.
        metric: a `DEVICE_METRICS` value.
        p: the Minkowski power for 'minkowski'.
        exact: Euclidean distances from the differences, sqrt(sum((x - y)^2)), as scikit-learn's
            trees compute them (DBSCAN's neighbourhood test at exactly eps); otherwise from one matmul,
            |x|^2 - 2 x.y + |y|^2 (fast; callers centre the data).
    """
    if metric in ("euclidean", "sqeuclidean"):
        if exact:
            d2 = jnp.sum((rows[:, None, :] - X[None, :, :]) ** 2, axis=2)
        else:
            d2 = jnp.sum(rows * rows, axis=1)[:, None] - 2 * jnp.dot(rows, X.T, precision=HIGHEST) \
                + jnp.sum(X * X, axis=1)[None, :]
            d2 = jnp.maximum(d2, 0)
        return d2 if metric == "sqeuclidean" else jnp.sqrt(d2)
    if metric == "cosine":  # 1 - cosine similarity; a zero vector is at distance 1 from everything
        def unit(a):
            norm = jnp.sqrt(jnp.sum(a * a, axis=1, keepdims=True))
            return a / jnp.where(norm == 0, 1, norm)

        return jnp.clip(1 - jnp.dot(unit(rows), unit(X).T, precision=HIGHEST), 0, 2)
    diff = jnp.abs(rows[:, None, :] - X[None, :, :])
    if metric == "manhattan":
        return jnp.sum(diff, axis=2)
    if metric == "chebyshev":
        return jnp.max(diff, axis=2)
    return jnp.sum(diff ** p, axis=2) ** (1 / p)


def check_precomputed(D: Any, dtype: np.dtype, who: str) -> np.ndarray | sp.csr_matrix:
    """A square precomputed distance matrix (dense array or CSR), non-negative, finite."""
    D = check_array(D, dtype, who=who, accept_sparse=True)
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"{who}: a precomputed distance matrix must be square (n_samples, n_samples), "
                         f"got shape {D.shape}")
    values = D.data if is_sparse(D) else D
    if (values < 0).any():
        raise ValueError(f"{who}: a precomputed distance matrix must be non-negative (it holds distances)")
    return D


# --------------------------------------------------------------------------------------------------
# the silhouette
# --------------------------------------------------------------------------------------------------


def _block_silhouette(dist, own, onehot, sizes, n_labels):
    """Coefficients of a block of rows from their distances to every point `dist (r, n)`."""
    sums = jnp.dot(dist, onehot, precision=HIGHEST)  # (r, K): summed distances per cluster
    own_size = sizes[own]
    a = jnp.take_along_axis(sums, own[:, None], axis=1)[:, 0] / jnp.maximum(own_size - 1, 1)
    means = sums / jnp.maximum(sizes, 1)[None, :]
    other = (jnp.arange(n_labels)[None, :] != own[:, None]) & (sizes > 0)[None, :]  # padded slots: size 0
    b = jnp.min(jnp.where(other, means, jnp.inf), axis=1)
    s = (b - a) / jnp.maximum(a, b)
    s = jnp.where(jnp.isfinite(s), s, 0)  # a == b == 0: coincident clusters
    return jnp.where(own_size > 1, s, 0)  # a point alone in its cluster scores 0 (Rousseeuw's convention)


@functools.partial(jax.jit, static_argnames=("n_labels", "chunk", "metric", "p", "exact"))
def _silhouette(X, codes, *, n_labels: int, chunk: int, metric: str, p: float | None, exact: bool):
    """Per-sample silhouette of `X (n, d)` (centred) with labels `codes (n,)` in [0, n_labels), a device metric.

    Rows go `chunk` at a time: each block's distances to all points `(chunk, n)` are summed per
    cluster with one matmul against the one-hot labels, then dropped.
    """
    n = X.shape[0]
    onehot = jax.nn.one_hot(codes, n_labels, dtype=X.dtype)  # (n, K)
    sizes = onehot.sum(axis=0)
    n_blocks = -(-n // chunk)
    pad = n_blocks * chunk - n
    Xp = jnp.pad(X, ((0, pad), (0, 0)))
    codes_p = jnp.pad(codes, (0, pad))

    def block(start):
        rows = jax.lax.dynamic_slice_in_dim(Xp, start, chunk)
        dist = device_distances(rows, X, metric, p, exact=exact)
        idx = start + jnp.arange(chunk)
        dist = jnp.where(idx[:, None] == jnp.arange(n)[None, :], 0, dist)  # a point is at 0 from itself
        own = jax.lax.dynamic_slice_in_dim(codes_p, start, chunk)
        return _block_silhouette(dist, own, onehot, sizes, n_labels)

    out = jax.lax.map(block, jnp.arange(n_blocks) * chunk)
    return out.reshape(-1)[:n]


@functools.partial(jax.jit, static_argnames=("n_labels",))
def _silhouette_rows(dist, own, codes, *, n_labels: int):
    """The coefficients of a block of rows whose distances `(r, n)` were computed elsewhere."""
    onehot = jax.nn.one_hot(codes, n_labels, dtype=dist.dtype)
    return _block_silhouette(dist, own, onehot, onehot.sum(axis=0), n_labels)


def _chunk_for(n: int, d: int, chunk_size: int | None, broadcast: bool) -> int:
    if chunk_size is not None:
        return min(check_int(chunk_size, "chunk_size", low=1, who="silhouette"), n)
    per_row = n * (d if broadcast else 1)  # metrics with a (chunk, n, d) difference tensor take fewer rows
    return int(max(1, min(n, (1 << 24) // per_row)))  # about 16M numbers (64 MB in float32) per block


def _check_labels(labels: Any, n: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{who}: labels must have shape ({n},) to match X, got {labels.shape}")
    uniq, codes = np.unique(labels, return_inverse=True)
    if not 2 <= len(uniq) <= n - 1:
        raise ValueError(f"{who}: Number of labels is {len(uniq)}. Valid values are 2 to n_samples - 1 "
                         f"(inclusive) (got {n} samples)")
    return uniq, codes.reshape(-1).astype(np.int32)


def _check_input(X, metric, dtype, kwds, who):
    """(X checked, dtype, Metric) with scikit-learn's checks of a precomputed matrix's diagonal."""
    dtype = compute_dtype(X, dtype)
    m = Metric(metric, kwds, who, sparse=is_sparse(X))
    if m.kind == "precomputed":
        X = check_precomputed(X, dtype, who)
        diag = X.diagonal()
        if np.any(np.abs(diag) > np.finfo(dtype).eps * 100):
            raise ValueError(f"{who}: The precomputed distance matrix contains non-zero elements on the "
                             f"diagonal. Use np.fill_diagonal(X, 0).")
    else:
        X = check_array(X, dtype, who=who, accept_sparse=True)
        m.prepare(X)
    return X, dtype, m


def silhouette_samples(X, labels, *, metric: str | Callable = "euclidean", chunk_size: int | None = None,
                       dtype: Any = None, **kwds) -> np.ndarray:
    """Silhouette coefficient of every sample (Géron, ch. 8, Finding the optimal number of clusters, Figure 8-9).

    Args:
        X: `(n_samples, n_features)` points (dense or SciPy sparse), or with `metric='precomputed'` a
            square `(n_samples, n_samples)` distance matrix (dense or sparse; its diagonal must be 0).
        labels: `(n_samples,)` cluster labels (any values; at least 2 and at most n_samples - 1 distinct).
        metric: scikit-learn's named metrics (the module docstring says which run on the device),
            'precomputed', or a callable of two rows (run on the host).
        chunk_size: rows per block (default: about 16M distances per block).
        dtype: float32 or float64; default: the input's (float32 stays float32, anything else float64).
        **kwds: the metric's parameters (`p` for 'minkowski', `V` for 'seuclidean', ...).

    Returns:
        `(n_samples,)` coefficients in [-1, 1] of the computing dtype; 0 for a point alone in its cluster.
    """
    who = "silhouette"
    X, dtype, m = _check_input(X, metric, dtype, kwds, who)
    n = X.shape[0]
    uniq, codes = _check_labels(labels, n, who)
    slots = -(-len(uniq) // 8) * 8  # label slots in multiples of 8: one compilation serves many k
    if m.kind == "device":
        # few features: Euclidean distances from the differences (accurate in float32 too, as scikit-learn's
        # float64 upcast); many: from one matmul (fast), on centred data so the expansion stays accurate
        exact = X.shape[1] <= EXACT_FEATURES
        chunk = _chunk_for(n, X.shape[1], chunk_size,
                           m.name not in ("euclidean", "sqeuclidean", "cosine") or exact)
        # centred: the matmul expansion of Euclidean distances stays accurate (the others do not care)
        Xc = X - X.mean(axis=0, dtype=np.float64).astype(dtype) if m.name != "cosine" else X
        with precision(dtype):
            s = _silhouette(jnp.asarray(Xc), jnp.asarray(codes), n_labels=slots, chunk=chunk, metric=m.name, p=m.p,
                            exact=exact)
            return np.asarray(s)
    chunk = _chunk_for(n, 1, chunk_size, False)
    out = []
    with precision(dtype):
        codes_j = jnp.asarray(codes)
        for start in range(0, n, chunk):
            rows = X[start:start + chunk]
            if m.kind == "precomputed":
                dist = rows.toarray() if is_sparse(rows) else rows
            else:
                dist = m.host_block(rows, X)
            dist = np.asarray(dist, dtype)
            dist[np.arange(len(dist)), start + np.arange(len(dist))] = 0
            out.append(np.asarray(_silhouette_rows(jnp.asarray(dist), codes_j[start:start + chunk], codes_j,
                                                   n_labels=slots)))
    return np.concatenate(out)


def silhouette_score(X, labels, *, metric: str | Callable = "euclidean", sample_size: int | None = None,
                     random_state: Any = None, chunk_size: int | None = None, dtype: Any = None, **kwds) -> float:
    """Mean silhouette coefficient over all samples, or over `sample_size` drawn at random (Géron, Figure 8-8).

    Args:
        X, labels, metric, chunk_size, dtype, **kwds: as in `silhouette_samples`.
        sample_size: score a random subset of this many points (without replacement; with
            'precomputed', the matching rows and columns of the matrix).
        random_state: None (seed 0), an int seed, a `np.random.RandomState` or a `jax.random` key for the
            subset (dlcore's draws are JAX's: the same seed picks another subset than scikit-learn's).

    Returns:
        The score, a float in [-1, 1].
    """
    if sample_size is not None:
        who = "silhouette"
        X, _, m = _check_input(X, metric, dtype, kwds, who)
        labels = np.asarray(labels)
        if labels.shape != (X.shape[0],):
            raise ValueError(f"{who}: labels must have shape ({X.shape[0]},) to match X, got {labels.shape}")
        sample_size = check_int(sample_size, "sample_size", low=2, high=X.shape[0], who=who)
        idx = np.asarray(jax.random.choice(as_key(random_state, who), X.shape[0], (sample_size,), replace=False))
        X = X[idx][:, idx] if m.kind == "precomputed" else X[idx]
        labels = labels[idx]
    return float(np.mean(silhouette_samples(X, labels, metric=metric, chunk_size=chunk_size, dtype=dtype, **kwds),
                         dtype=np.float64))
