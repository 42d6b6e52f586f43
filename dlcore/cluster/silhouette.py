"""Silhouette coefficients, computed a block of rows at a time so 100k points fit in memory.

Hands-On Machine Learning (PyTorch edition), ch. 8, "Finding the optimal number of clusters"
(Géron, ch. 8, Figures 8-8 and 8-9): an instance's coefficient is (b - a) / max(a, b), with a the mean
distance to the
other members of its cluster and b the mean distance to the members of the nearest other cluster.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_int
from dlcore.cluster._common import HIGHEST, as_key, check_array, precision, resolve_dtype

__all__ = ["silhouette_samples", "silhouette_score"]


@functools.partial(jax.jit, static_argnames=("n_labels", "chunk"))
def _silhouette(X, codes, *, n_labels: int, chunk: int):
    """Per-sample silhouette of centred `X (n, d)` with labels `codes (n,)` in [0, n_labels).

    Rows go `chunk` at a time: each block's distances to all points `(chunk, n)` are summed per
    cluster with one matmul against the one-hot labels, then dropped.
    """
    n = X.shape[0]
    onehot = jax.nn.one_hot(codes, n_labels, dtype=X.dtype)  # (n, K)
    sizes = onehot.sum(axis=0)
    x_sq = jnp.sum(X * X, axis=1)
    n_blocks = -(-n // chunk)
    pad = n_blocks * chunk - n
    Xp = jnp.pad(X, ((0, pad), (0, 0)))
    codes_p = jnp.pad(codes, (0, pad))

    def block(start):
        rows = jax.lax.dynamic_slice_in_dim(Xp, start, chunk)
        r_sq = jnp.sum(rows * rows, axis=1)
        d2 = r_sq[:, None] - 2 * jnp.dot(rows, X.T, precision=HIGHEST) + x_sq[None, :]
        idx = start + jnp.arange(chunk)
        dist = jnp.where(idx[:, None] == jnp.arange(n)[None, :], 0, jnp.sqrt(jnp.maximum(d2, 0)))
        sums = jnp.dot(dist, onehot, precision=HIGHEST)  # (chunk, K): summed distances per cluster
        own = jax.lax.dynamic_slice_in_dim(codes_p, start, chunk)
        own_size = sizes[own]
        a = jnp.take_along_axis(sums, own[:, None], axis=1)[:, 0] / jnp.maximum(own_size - 1, 1)
        means = sums / jnp.maximum(sizes, 1)[None, :]
        other = (jnp.arange(n_labels)[None, :] != own[:, None]) & (sizes > 0)[None, :]  # padded slots: size 0
        b = jnp.min(jnp.where(other, means, jnp.inf), axis=1)
        s = (b - a) / jnp.maximum(a, b)
        s = jnp.where(jnp.isfinite(s), s, 0)  # a == b == 0: coincident clusters
        return jnp.where(own_size > 1, s, 0)  # a point alone in its cluster scores 0

    out = jax.lax.map(block, jnp.arange(n_blocks) * chunk)
    return out.reshape(-1)[:n]


def _chunk_for(n: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return min(check_int(chunk_size, "chunk_size", low=1, who="silhouette"), n)
    return int(max(1, min(n, (1 << 24) // n)))  # about 16M distances (64 MB in float32) per block


def silhouette_samples(X, labels, *, chunk_size: int | None = None, dtype: Any = jnp.float32) -> np.ndarray:
    """Silhouette coefficient of every sample (Géron, ch. 8, Finding the optimal number of clusters, Figure 8-9).

    Args:
        X: `(n_samples, n_features)` points.
        labels: `(n_samples,)` cluster labels (any integers; at least 2 and at most n_samples - 1 distinct).
        chunk_size: rows per block (default: about 16M distances per block).
        dtype: float32 or float64 (scikit-learn's figures to many digits).

    Returns:
        `(n_samples,)` coefficients in [-1, 1]; 0 for a point alone in its cluster.
    """
    who = "silhouette"
    dtype = resolve_dtype(dtype)
    X = check_array(X, dtype, who=who)
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"{who}: labels must have shape ({X.shape[0]},) to match X, got {labels.shape}")
    uniq, codes = np.unique(labels, return_inverse=True)
    if not 2 <= len(uniq) <= X.shape[0] - 1:
        raise ValueError(f"{who}: needs 2 <= number of labels <= n_samples - 1, got {len(uniq)} labels "
                         f"for {X.shape[0]} samples")
    chunk = _chunk_for(X.shape[0], chunk_size)
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(dtype)  # centred: the distance expansion stays accurate
    slots = -(-len(uniq) // 8) * 8  # label slots in multiples of 8: one compilation serves many k
    with precision(dtype):
        s = _silhouette(jnp.asarray(Xc), jnp.asarray(codes, jnp.int32), n_labels=slots, chunk=chunk)
        return np.asarray(s)


def silhouette_score(X, labels, *, sample_size: int | None = None, random_state: Any = None,
                     chunk_size: int | None = None, dtype: Any = jnp.float32) -> float:
    """Mean silhouette coefficient over all samples, or over `sample_size` drawn at random (Géron, Figure 8-8).

    Args:
        X, labels, chunk_size, dtype: as in `silhouette_samples`.
        sample_size: score a random subset of this many points (without replacement).
        random_state: int seed or `jax.random` key for the subset.

    Returns:
        The score, a float in [-1, 1].
    """
    if sample_size is not None:
        X = check_array(X, resolve_dtype(dtype), who="silhouette")
        labels = np.asarray(labels)
        if labels.shape != (len(X),):
            raise ValueError(f"silhouette: labels must have shape ({len(X)},) to match X, got {labels.shape}")
        sample_size = check_int(sample_size, "sample_size", low=2, high=len(X), who="silhouette")
        idx = np.asarray(jax.random.choice(as_key(random_state, "silhouette"), len(X), (sample_size,),
                                           replace=False))
        X, labels = X[idx], labels[idx]
    return float(np.mean(silhouette_samples(X, labels, chunk_size=chunk_size, dtype=dtype)))
