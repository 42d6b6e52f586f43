"""DBSCAN: clusters as connected regions of high density, and its nearest-core-sample predict.

Hands-On Machine Learning (PyTorch edition), ch. 8, "DBSCAN" (Figures 8-13 and 8-14): core instances have at
least `min_samples` points (themselves included; with `sample_weight`, that much weight) within `eps`;
neighbouring core instances form a cluster, the other points within `eps` of a core instance join it,
and the rest is noise (-1).

The eps-neighbourhoods are computed a block of rows at a time: on the device for the metrics the
silhouette computes there (Euclidean distances from the differences in float64, sqrt(sum((x - y)^2))
<= eps, as scikit-learn's KD and ball trees decide a pair at exactly eps), on the host for scikit-learn's
other named metrics, callables and SciPy sparse `X` (`sklearn.metrics.pairwise_distances`), and read
from the matrix with `metric='precomputed'` (dense, or sparse: a stored entry <= eps is a neighbour, a
missing one is not, the diagonal always is unless stored > eps). Connected components of the core
samples are found by min-label propagation with pointer jumping in a jitted loop. Clusters are numbered
in the order of their first core sample and a border point joins the lowest-numbered cluster among its
core neighbours, which is the order a breadth-first scan over the samples in index order gives
(scikit-learn's numbering).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import check_array, check_fitted, compute_dtype, is_sparse, precision
from dlcore.cluster.silhouette import Metric, check_precomputed, device_distances

__all__ = ["DBSCAN", "dbscan"]

ALGORITHMS = ("auto", "ball_tree", "kd_tree", "brute")


@functools.partial(jax.jit, static_argnames=("chunk", "metric", "p"))
def _adjacency_block(Xp, X, start, eps, *, chunk, metric, p):
    """Rows `start:start+chunk` of the eps-neighbourhood matrix: bool `(chunk, n)`."""
    rows = jax.lax.dynamic_slice_in_dim(Xp, start, chunk)
    return device_distances(rows, X, metric, p, exact=True) <= eps


@functools.partial(jax.jit, static_argnames=("n",))
def _components(src, dst, core, *, n):
    """Cluster representative (lowest core index of its cluster) of every point, -1 for noise.

    Args:
        src, dst: edges `(E,)`, every pair (i, j) within eps with `src` a core sample.
        core: bool `(n,)`.
    """
    big = jnp.iinfo(jnp.int32).max
    both = core[dst]  # core-core edges build the components

    def body(s):
        labels, _ = s
        m = jax.ops.segment_min(jnp.where(both, labels[src], big), dst, num_segments=n)
        new = jnp.minimum(labels, m)
        new = new[new]  # pointer jumping: labels always point at a core sample of the same component
        new = new[new]
        return new, jnp.any(new != labels)

    labels, _ = jax.lax.while_loop(lambda s: s[1], body, (jnp.arange(n, dtype=jnp.int32), jnp.bool_(True)))
    # a border point joins the lowest-numbered cluster among its core neighbours
    border = jax.ops.segment_min(labels[src], dst, num_segments=n)
    return jnp.where(core, labels, jnp.where(border < big, border, -1))


def _neighbour_blocks(X, m: Metric, eps: float, chunk_size: int | None, who: str):
    """Yield `(start, rows, cols)`: the eps-neighbour pairs of each block of rows (host int arrays)."""
    n, d = X.shape
    if m.kind == "precomputed" and is_sparse(X):
        D = X.tocsr()
        keep = D.data <= eps
        r = np.repeat(np.arange(n), np.diff(D.indptr))
        rows, cols = r[keep], D.indices[keep]
        off = rows != cols  # the diagonal is a neighbour unless stored > eps (scikit-learn makes it explicit)
        self_ok = np.asarray(D.diagonal()) <= eps
        yield 0, np.concatenate([rows[off], np.flatnonzero(self_ok)]), \
            np.concatenate([cols[off], np.flatnonzero(self_ok)])
        return
    if m.kind == "device":
        per_row = n * d
        chunk = max(1, min(n, (1 << 24) // per_row)) if chunk_size is None else min(n, chunk_size)
        n_blocks = -(-n // chunk)
        # float64 whatever the input: scikit-learn's trees decide a pair at exactly eps in float64
        X64 = np.asarray(X, np.float64)
        with precision(np.float64):
            Xj = jnp.asarray(X64)
            Xp = jnp.asarray(np.pad(X64, ((0, n_blocks * chunk - n), (0, 0))))
            eps_j = jnp.asarray(eps, jnp.float64)
            for b in range(n_blocks):
                block = np.asarray(_adjacency_block(Xp, Xj, b * chunk, eps_j, chunk=chunk, metric=m.name,
                                                    p=m.p))[: n - b * chunk]
                r, c = np.nonzero(block)
                yield b * chunk, r + b * chunk, c
        return
    chunk = max(1, min(n, (1 << 24) // n)) if chunk_size is None else min(n, chunk_size)
    for start in range(0, n, chunk):
        rows = X[start:start + chunk]
        if m.kind == "precomputed":
            dist = rows
        else:
            dist = m.host_block(rows, X)
            if not np.isfinite(dist).all():
                raise ValueError(f"{who}: the metric {m.name!r} gave NaN or infinite distances (rows "
                                 f"{start} to {start + len(dist) - 1}); check the metric and X")
        r, c = np.nonzero(np.asarray(dist) <= eps)
        yield start, r + start, c


def _check_sample_weight(sample_weight, n: int, who: str) -> np.ndarray | None:
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: sample_weight must be numbers, got {type(sample_weight).__name__}") from None
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{who}: sample_weight must have shape ({n},) to match X, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{who}: sample_weight contains NaN or infinity")
    if not w.any():
        raise ValueError(f"{who}: Sample weights must contain at least one non-zero number")
    return w


class DBSCAN(ClusterMixin, BaseEstimator):
    """Density-based clustering with noise (Géron, ch. 8, DBSCAN), as scikit-learn's `DBSCAN`.

    Args:
        eps: neighbourhood radius (points at distance <= eps are neighbours).
        min_samples: points (or weight, with `sample_weight`) within eps, the point itself included,
            that make a core sample.
        metric: a scikit-learn named metric, 'precomputed' (X is a square distance matrix, dense or
            sparse) or a callable `metric(u, v) -> float` (called on the host for every pair: slow).
        metric_params: the metric's keyword arguments (`p` here overrides `p`, with scikit-learn's
            SyntaxWarning).
        algorithm, leaf_size: accepted for scikit-learn's signature and ignored: dlcore compares every
            pair in blocks (no tree), deciding each pair as scikit-learn's trees do.
        p: the Minkowski power for `metric='minkowski'` (None: 2).
        n_jobs: accepted and ignored (the work runs on the JAX device).
        chunk_size: rows of the neighbourhood matrix per block (default: about 16M distances).
        dtype: float32 or float64 of `components_`; default: the input's.

    Attributes:
        labels_: `(n_samples,)` int64 cluster of each point, -1 for noise.
        core_sample_indices_: `(n_core,)` int64 indices of the core samples, ascending.
        components_: `(n_core, n_features)` the core samples (sparse for sparse X).
        n_features_in_: number of features seen in fit.

    Example:
        >>> db = DBSCAN(eps=0.2, min_samples=5).fit(X)
        >>> db.labels_, db.predict(X_new)     # -1: farther than eps from every core sample
    """

    def __init__(self, eps: float = 0.5, *, min_samples: int = 5, metric: str | Callable = "euclidean",
                 metric_params: dict | None = None, algorithm: str = "auto", leaf_size: int = 30,
                 p: float | None = None, n_jobs: int | None = None, chunk_size: int | None = None,
                 dtype: Any = None):
        self.eps = eps
        self.min_samples = min_samples
        self.metric = metric
        self.metric_params = metric_params
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.pairwise = self.metric == "precomputed"
        return tags

    def _metric(self, sparse: bool, who: str) -> Metric:
        params = dict(self.metric_params or {})
        if "p" in params and self.p is not None:
            warnings.warn("Parameter p is found in metric_params. The corresponding parameter from __init__ "
                          "is ignored.", SyntaxWarning, stacklevel=3)
        if self.metric == "minkowski" and self.p is not None:
            check_float(self.p, "p", low=1, who=who)
        return Metric(self.metric, params, who, p=self.p if self.metric == "minkowski" else None, sparse=sparse)

    def fit(self, X, y=None, sample_weight=None) -> DBSCAN:
        """Cluster `X (n_samples, n_features)` (or a distance matrix); returns self.

        Args:
            X: points, dense or SciPy sparse, or with `metric='precomputed'` distances `(n, n)`.
            y: ignored.
            sample_weight: `(n_samples,)` weight of each point in its neighbours' counts (may be
                zero or negative, as in scikit-learn).
        """
        who = "DBSCAN"
        eps = check_float(self.eps, "eps", low=0, low_open=True, who=who)
        min_samples = check_int(self.min_samples, "min_samples", low=1, who=who)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"{who}: algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        check_int(self.leaf_size, "leaf_size", low=1, who=who)
        chunk = None if self.chunk_size is None else check_int(self.chunk_size, "chunk_size", low=1, who=who)
        dtype = compute_dtype(X, self.dtype)
        m = self._metric(is_sparse(X), who)
        X = check_precomputed(X, dtype, who) if m.kind == "precomputed" else \
            check_array(X, dtype, who=who, accept_sparse=True)
        m.prepare(X)
        n, d = X.shape
        w = _check_sample_weight(sample_weight, n, who)
        rows, cols, counts = [], [], np.zeros(n, np.float64)
        for _, r, c in _neighbour_blocks(X, m, eps, chunk, who):
            counts += np.bincount(r, weights=None if w is None else w[c], minlength=n)
            rows.append(r)
            cols.append(c)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        core = counts >= min_samples
        keep = core[cols]  # edges from a core sample (cols) to any point (rows)
        src, dst = cols[keep].astype(np.int32), rows[keep].astype(np.int32)
        size = 1 << max(int(len(src) - 1).bit_length(), 4)  # few distinct shapes, few recompilations
        src = np.pad(src, (0, size - len(src)))
        dst = np.pad(dst, (0, size - len(dst)), constant_values=n)  # segment n: dropped by segment_min
        reps = np.asarray(_components(jnp.asarray(src), jnp.asarray(dst), jnp.asarray(core), n=n))
        clusters = np.unique(reps[reps >= 0])
        self.labels_ = np.where(reps >= 0, np.searchsorted(clusters, reps), -1).astype(np.intp)
        self.core_sample_indices_ = np.flatnonzero(core).astype(np.intp)
        self.components_ = X[self.core_sample_indices_].copy() if len(self.core_sample_indices_) \
            else (sp.csr_matrix((0, d), dtype=dtype) if is_sparse(X) else np.empty((0, d), dtype))
        self.n_features_in_ = d
        self._dtype = dtype
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """`fit(X, sample_weight=...)` and return `labels_`."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def predict(self, X, *, n_neighbors: int = 1, max_distance: float | None = None) -> np.ndarray:
        """Cluster of new points by their nearest core samples, -1 when too far (Géron, ch. 8, Figure 8-14).

        DBSCAN itself has no predict (scikit-learn's has none); the book votes among the `n_neighbors`
        nearest core samples (`KNeighborsClassifier` on `components_`) and calls a point an anomaly when
        its nearest core sample is farther than a cutoff. Euclidean distances on dense data only.

        Args:
            X: `(n, n_features)` new points.
            n_neighbors: core samples that vote (majority; ties go to the lower label).
            max_distance: the cutoff (default `eps`: a new point joins a cluster as a border point would).

        Returns:
            `(n,)` int64 labels, -1 for anomalies.
        """
        from dlcore.cluster.classify import KNeighborsClassifier

        check_fitted(self, "labels_", "predict")
        who = "DBSCAN"
        if (self.metric not in ("euclidean", "l2") and not (self.metric == "minkowski" and self.p in (None, 2))) \
                or is_sparse(self.components_):
            raise ValueError(f"{who}: predict needs a fit with the Euclidean metric on dense X, this one used "
                             f"metric={self.metric!r}{' on sparse X' if is_sparse(self.components_) else ''}")
        X = check_array(X, self._dtype, who=who, n_features=self.n_features_in_)
        cutoff = self.eps if max_distance is None else check_float(max_distance, "max_distance", low=0, who=who)
        if len(self.core_sample_indices_) == 0:
            return np.full(len(X), -1, np.intp)
        k = min(check_int(n_neighbors, "n_neighbors", low=1, who=who), len(self.core_sample_indices_))
        knn = KNeighborsClassifier(k, dtype=self._dtype).fit(self.components_,
                                                              self.labels_[self.core_sample_indices_])
        dist, _ = knn.kneighbors(X, n_neighbors=1)
        return np.where(dist[:, 0] > cutoff, -1, knn.predict(X)).astype(np.intp)


def dbscan(X, eps: float = 0.5, *, min_samples: int = 5, metric: str | Callable = "minkowski",
           metric_params: dict | None = None, algorithm: str = "auto", leaf_size: int = 30, p: float = 2,
           sample_weight=None, n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DBSCAN as a function, scikit-learn's `sklearn.cluster.dbscan` (Géron, ch. 8, DBSCAN).

    Args:
        X, eps, min_samples, metric, metric_params, algorithm, leaf_size, p, n_jobs: as in `DBSCAN`
            (here `metric='minkowski'` with `p=2` by default, as scikit-learn's function).
        sample_weight: `(n_samples,)` weights, as in `DBSCAN.fit`.

    Returns:
        `(core_sample_indices, labels)`: `(n_core,)` and `(n_samples,)` int64 arrays.
    """
    est = DBSCAN(eps, min_samples=min_samples, metric=metric, metric_params=metric_params, algorithm=algorithm,
                 leaf_size=leaf_size, p=p, n_jobs=n_jobs).fit(X, sample_weight=sample_weight)
    return est.core_sample_indices_, est.labels_
