"""DBSCAN: clusters as connected regions of high density, and its nearest-core-sample predict.

Hands-On Machine Learning (PyTorch edition), ch. 8, "DBSCAN" (Figures 8-13 and 8-14): core instances have at
least `min_samples` points (themselves included) within `eps`; neighbouring core instances form a
cluster, the other points within `eps` of a core instance join it, and the rest is noise (-1).

The eps-neighbourhoods are computed on the device a block of rows at a time (exact differences, not
the |x|^2 - 2 x.y + |y|^2 expansion, so borderline pairs are decided as a tree search decides them);
connected components of the core samples are found by min-label propagation with pointer jumping in a
jitted loop. Clusters are numbered in the order of their first core sample and a border point joins the
lowest-numbered cluster among its core neighbours, which is the order a breadth-first scan over the
samples in index order gives (scikit-learn's numbering).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import check_array, check_fitted, precision, resolve_dtype

__all__ = ["DBSCAN"]


@functools.partial(jax.jit, static_argnames=("chunk",))
def _adjacency_block(Xp, X, start, eps2, *, chunk):
    """Rows `start:start+chunk` of the eps-neighbourhood matrix: bool `(chunk, n)`."""
    rows = jax.lax.dynamic_slice_in_dim(Xp, start, chunk)
    d2 = jnp.sum((rows[:, None, :] - X[None, :, :]) ** 2, axis=2)
    return d2 <= eps2


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


class DBSCAN:
    """Density-based clustering with noise (Géron, ch. 8, DBSCAN).

    Args:
        eps: neighbourhood radius (Euclidean; points at distance <= eps are neighbours).
        min_samples: points within eps, the point itself included, that make a core sample.
        chunk_size: rows of the neighbourhood matrix per block (default: about 16M distances).
        dtype: float32 (default) or float64.

    Attributes:
        labels_: `(n_samples,)` int32 cluster of each point, -1 for noise.
        core_sample_indices_: `(n_core,)` indices of the core samples, ascending.
        components_: `(n_core, n_features)` the core samples.
        n_features_in_: number of features seen in fit.

    Example:
        >>> db = DBSCAN(eps=0.2, min_samples=5).fit(X)
        >>> db.labels_, db.predict(X_new)     # -1: farther than eps from every core sample
    """

    def __init__(self, eps: float = 0.5, *, min_samples: int = 5, chunk_size: int | None = None,
                 dtype: Any = jnp.float32):
        self.eps = eps
        self.min_samples = min_samples
        self.chunk_size = chunk_size
        self.dtype = dtype

    labels_: np.ndarray | None = None

    def fit(self, X, y=None) -> DBSCAN:
        """Cluster `X (n_samples, n_features)`; returns self."""
        who = "DBSCAN"
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        eps = check_float(self.eps, "eps", low=0, low_open=True, who=who)
        min_samples = check_int(self.min_samples, "min_samples", low=1, who=who)
        n, d = X.shape
        if self.chunk_size is None:
            chunk = max(1, min(n, (1 << 24) // (n * d)))
        else:
            chunk = min(n, check_int(self.chunk_size, "chunk_size", low=1, who=who))
        Xc = X - X.mean(axis=0, dtype=np.float64).astype(dtype)
        n_blocks = -(-n // chunk)
        with precision(dtype):
            Xj = jnp.asarray(Xc)
            Xp = jnp.asarray(np.pad(Xc, ((0, n_blocks * chunk - n), (0, 0))))
            eps2 = jnp.asarray(np.asarray(eps, dtype) ** 2)
            rows, cols, counts = [], [], np.zeros(n, np.int64)
            for b in range(n_blocks):
                block = np.asarray(_adjacency_block(Xp, Xj, b * chunk, eps2, chunk=chunk))[: n - b * chunk]
                counts[b * chunk: b * chunk + len(block)] = block.sum(axis=1)
                r, c = np.nonzero(block)
                rows.append(r + b * chunk)
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
        self.labels_ = np.where(reps >= 0, np.searchsorted(clusters, reps), -1).astype(np.int32)
        self.core_sample_indices_ = np.flatnonzero(core)
        self.components_ = X[self.core_sample_indices_]
        self.n_features_in_ = d
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """`fit(X)` and return `labels_`."""
        return self.fit(X).labels_

    def predict(self, X, *, n_neighbors: int = 1, max_distance: float | None = None) -> np.ndarray:
        """Cluster of new points by their nearest core samples, -1 when too far (Géron, ch. 8, Figure 8-14).

        DBSCAN itself has no predict; the book votes among the `n_neighbors` nearest core samples
        (`KNeighborsClassifier` on `components_`) and calls a point an anomaly when its nearest core
        sample is farther than a cutoff.

        Args:
            X: `(n, n_features)` new points.
            n_neighbors: core samples that vote (majority; ties go to the lower label).
            max_distance: the cutoff (default `eps`: a new point joins a cluster as a border point would).

        Returns:
            `(n,)` int32 labels, -1 for anomalies.
        """
        from dlcore.cluster.classify import KNeighborsClassifier

        check_fitted(self, "labels_", "predict")
        who = "DBSCAN"
        X = check_array(X, self._dtype, who=who, n_features=self.n_features_in_)
        cutoff = self.eps if max_distance is None else check_float(max_distance, "max_distance", low=0, who=who)
        if len(self.core_sample_indices_) == 0:
            return np.full(len(X), -1, np.int32)
        k = min(check_int(n_neighbors, "n_neighbors", low=1, who=who), len(self.core_sample_indices_))
        knn = KNeighborsClassifier(k, dtype=self._dtype).fit(self.components_,
                                                              self.labels_[self.core_sample_indices_])
        dist, _ = knn.kneighbors(X, n_neighbors=1)
        return np.where(dist[:, 0] > cutoff, -1, knn.predict(X)).astype(np.int32)
