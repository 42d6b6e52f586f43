"""k-means: Lloyd iterations from random, explicit, callable or greedy k-means++ centres, and mini-batch k-means.

Hands-On Machine Learning (PyTorch edition), ch. 8, "k-Means Clustering": the
algorithm ("The k-means algorithm"), centroid initialisation and inertia ("Centroid initialization
methods"), mini-batch k-means ("Accelerated k-means and mini-batch k-means").

The estimators are scikit-learn estimators (`get_params`, `clone`, `Pipeline`, `GridSearchCV`,
`check_is_fitted` work) with scikit-learn's parameters and behaviour: sample weights, SciPy sparse input,
the dtype of the input kept (float32 stays float32, anything else is float64), empty clusters relocated
to the farthest points, `n_init` runs of which the best is kept. The numbers come from jitted JAX
functions: every initialisation of `n_init` runs in the same call (a `vmap` on small data, one after the
other on large data), the whole Lloyd loop is one `lax.while_loop`, and on few centres and features the
distances are computed as direct differences fused in one pass over the data (no distance matrix).

dlcore's random stream is JAX's, not NumPy's: the same `random_state` gives other seeds than
scikit-learn's, but the same seeds in float32 and float64.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils.validation import validate_data

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import (
    HIGHEST,
    ConvergenceWarning,
    as_key,
    batch_for,
    check_array,
    check_fitted,
    compute_dtype,
    precision,
    to_device,
)

__all__ = ["KMeans", "MiniBatchKMeans", "k_means", "kmeans_plusplus"]

# direct differences (one fused pass, no matmul) when k * d is at most this: faster on CPU for few
# centres and features, and exact to rounding
_DIRECT_MAX = 256


# --------------------------------------------------------------------------------------------------
# Data access: a dense (n, d) array, or a BCOO sparse matrix (only its stored entries are touched)
# --------------------------------------------------------------------------------------------------


def _is_sparse(X) -> bool:
    return isinstance(X, jsparse.BCOO)


def _device(X: np.ndarray | sp.csr_matrix, nse: int | None = None):
    """X on the device: a dense array, or a BCOO matrix from a SciPy one (no dense copy). Call under
    `precision(dtype)`.

    Args:
        nse: sparse X's stored entries are padded with zeros at (0, 0) (they add nothing to any sum) to
            this many, by default the next power of two, so data of other sizes reuses a compiled function.
    """
    if sp.issparse(X):
        coo = X.tocoo()
        nse = max(nse or 1, 1 << max(coo.nnz - 1, 0).bit_length())
        data = np.zeros((nse,), X.dtype)
        indices = np.zeros((nse, 2), np.int32)
        data[:coo.nnz], indices[:coo.nnz, 0], indices[:coo.nnz, 1] = coo.data, coo.row, coo.col
        return jsparse.BCOO((jnp.asarray(data), jnp.asarray(indices)), shape=X.shape)
    return to_device(X)


def _row_sq(X) -> jax.Array:
    """|x|^2 of every row `(n,)`."""
    if _is_sparse(X):
        return jax.ops.segment_sum(X.data * X.data, X.indices[:, 0], X.shape[0])
    return jnp.sum(X * X, axis=1)


def _xdot(X, M) -> jax.Array:
    """`X (n, d) @ M (d, m)` -> `(n, m)`."""
    if _is_sparse(X):
        row, col = X.indices[:, 0], X.indices[:, 1]
        return jax.ops.segment_sum(X.data[:, None] * M[col], row, X.shape[0])
    return jnp.dot(X, M, precision=_precision())


def _rows(X, idx) -> jax.Array:
    """Rows `idx (m,)` of X as a dense `(m, d)` array."""
    if _is_sparse(X):
        row, col = X.indices[:, 0], X.indices[:, 1]
        hit = (row[:, None] == idx[None, :]).astype(X.dtype)  # (nnz, m)
        return jnp.zeros((idx.shape[0], X.shape[1]), X.dtype).at[:, col].add((hit * X.data[:, None]).T)
    return X[idx]


def _cluster_sums(X, labels, w, k: int):
    """Per-cluster weighted sums of the rows `(k, d)` and weights `(k,)` (w None: unit weights)."""
    n, d = X.shape
    ones = jnp.ones((n,), X.dtype) if w is None else w
    counts = jax.ops.segment_sum(ones, labels, k)
    if _is_sparse(X):
        row, col = X.indices[:, 0], X.indices[:, 1]
        vals = X.data if w is None else X.data * w[row]
        sums = jax.ops.segment_sum(vals, labels[row] * d + col, k * d).reshape(k, d)
    else:
        sums = jax.ops.segment_sum(X if w is None else X * w[:, None], labels, k)
    return sums, counts


def _precision():
    """Full float32 products: HIGHEST on accelerators (no TF32 or bf16 passes); XLA:CPU's default is
    already exact float32 products and 3x faster than its HIGHEST path on skinny matrices."""
    return None if jax.default_backend() == "cpu" else HIGHEST


def _sq_distances_t(X, x_sq, C) -> jax.Array:
    """Squared distances `(m, n)` (transposed: each centre's distances contiguous, so reductions over the
    points are row reductions) by |x|^2 - 2 c.x + |c|^2, clamped at 0; by direct differences when
    dense with m * d <= 16 (a matmul with so few products per point is slower on CPU)."""
    if not _is_sparse(X) and C.shape[0] * X.shape[1] <= 16:
        return jnp.stack([sum((X[:, f] - C[j, f]) ** 2 for f in range(X.shape[1])) for j in range(C.shape[0])])
    cross = _xdot(X, C.T).T if _is_sparse(X) else jnp.dot(C, X.T, precision=_precision())
    return jnp.maximum(x_sq[None, :] - 2 * cross + jnp.sum(C * C, axis=1)[:, None], 0)


def _sq_distances(X, x_sq, C) -> jax.Array:
    """Squared distances `(n, m)` by |x|^2 - 2 x.c + |c|^2 (one matmul), clamped at 0."""
    c_sq = jnp.sum(C * C, axis=1)
    return jnp.maximum(x_sq[:, None] - 2 * _xdot(X, C.T) + c_sq[None, :], 0)


def _first_min(d2_columns):
    """Index of the first smallest of the columns (a chain of compares: fuses, unlike argmin on CPU)."""
    best, labels = d2_columns[0], jnp.zeros(d2_columns[0].shape, jnp.int32)
    for j, dj in enumerate(d2_columns[1:], start=1):
        closer = dj < best
        best = jnp.where(closer, dj, best)
        labels = jnp.where(closer, jnp.int32(j), labels)
    return labels, best


def _direct(X, C) -> bool:
    """Whether `_assign` computes direct differences (dense X, k * d <= _DIRECT_MAX)."""
    return not _is_sparse(X) and C.shape[0] * C.shape[1] <= _DIRECT_MAX


def _assign(X, x_sq, C, valid=None):
    """Nearest (valid) centre of each row: labels `(n,)` int32 and the squared distance to it `(n,)`.

    On dense data with k * d <= _DIRECT_MAX the distances are direct sums of squared differences, one
    fused pass over X; otherwise the matmul expansion.
    """
    k, d = C.shape
    if _direct(X, C):
        cols = []
        for j in range(k):
            dj = sum((X[:, f] - C[j, f]) ** 2 for f in range(d))
            cols.append(dj if valid is None else jnp.where(valid[j], dj, jnp.inf))
        return _first_min(cols)
    d2 = _sq_distances_t(X, x_sq, C)  # (k, n)
    if valid is not None:
        d2 = jnp.where(valid[:, None], d2, jnp.inf)
    if k <= 32:
        return _first_min([d2[j] for j in range(k)])
    labels = jnp.argmin(d2, axis=0).astype(jnp.int32)
    return labels, jnp.min(d2, axis=0)


def _inertia(X, x_sq, C, labels, w):
    """Sum of the (weighted) squared distances of the rows to their centre, by differences on dense data."""
    if _is_sparse(X):
        cross = jnp.take_along_axis(_xdot(X, C.T), labels[:, None], axis=1)[:, 0]
        d2 = jnp.maximum(x_sq - 2 * cross + jnp.sum(C * C, axis=1)[labels], 0)
    else:
        d2 = jnp.sum((X - C[labels]) ** 2, axis=1)
    return jnp.sum(d2 if w is None else w * d2)


# --------------------------------------------------------------------------------------------------
# Initialisation (Géron, ch. 8, Centroid initialization methods)
# --------------------------------------------------------------------------------------------------


def _pick(p, u, block: int = 1024):
    """Indices `(m,)` drawn with probability proportional to `p (n,)` >= 0, one per uniform `u (m,)` in
    [0, 1): the first i with p_0 + ... + p_i > u * sum(p) (inverse CDF). Two levels: the cumulative sums
    of blocks of `block` points, then of the one block each draw falls in; XLA's cumsum over all n
    points costs several times more on CPU. Up to 32 blocks, one level (cheaper to compile)."""
    n = p.shape[0]
    if n <= 32 * block:
        cum = jnp.cumsum(p)
        return jnp.clip(jnp.searchsorted(cum, u * cum[-1], side="right", method="compare_all"), 0,
                        n - 1).astype(jnp.int32)
    block = min(block, n)
    nb = -(-n // block)
    blocks = jnp.pad(p, (0, nb * block - n)).reshape(nb, block)
    cum = jnp.cumsum(blocks.sum(axis=1))
    target = u * cum[-1]
    b = jnp.clip(jnp.searchsorted(cum, target, side="right"), 0, nb - 1)
    rest = target - jnp.where(b > 0, cum[jnp.maximum(b - 1, 0)], 0)
    within = jax.vmap(lambda row, t: jnp.searchsorted(jnp.cumsum(row), t, side="right"))(blocks[b], rest)
    return jnp.clip(b * block + jnp.minimum(within, block - 1), 0, n - 1).astype(jnp.int32)


def _kmeanspp(key, X, x_sq, k, k_pad: int, n_local_trials: int, trials=None):
    """Unweighted `_kmeanspp_weighted` (the signature `dlcore.cluster.mixture` uses)."""
    return _kmeanspp_weighted(key, X, x_sq, None, k, k_pad, n_local_trials, trials)


def _kmeanspp_weighted(key, X, x_sq, w, k, k_pad: int, n_local_trials: int, trials=None):
    """Greedy k-means++ seeding (Arthur and Vassilvitskii, 2007), weighted by `w`.

    The first centre is a point drawn with probability proportional to its weight; each next one is the
    best (lowest potential, the weighted sum of squared distances to the nearest centre) of
    `n_local_trials` points drawn with probability proportional to w D(x)^2. The uniforms are drawn in
    float32 whatever the data's dtype, so float32 and float64 data get the same draws.

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
    u = jax.random.uniform(key, (1 + k_pad * n_local_trials,), jnp.float32).astype(X.dtype)
    first = jnp.minimum((u[0] * n).astype(jnp.int32), n - 1) if w is None else _pick(w, u[:1])[0]
    uniforms = u[1:].reshape(k_pad, n_local_trials)
    row = _rows(X, first[None])
    closest = _sq_distances_t(X, x_sq, row)[0]
    centers = jnp.zeros((k_pad, X.shape[1]), X.dtype).at[0].set(row[0])
    index = jnp.zeros((k_pad,), jnp.int32).at[0].set(first)

    def step(c, carry):
        centers, index, closest = carry
        cand = _pick(closest if w is None else w * closest, uniforms[c])
        rows = _rows(X, cand)
        trial = jnp.minimum(closest[None, :], _sq_distances_t(X, x_sq, rows))  # (trials, n)
        potential = (trial if w is None else trial * w[None, :]).sum(axis=1)
        if trials is not None:
            potential = jnp.where(jnp.arange(n_local_trials) < trials, potential, jnp.inf)
        best = jnp.argmin(potential)
        return centers.at[c].set(rows[best]), index.at[c].set(cand[best]), trial[best]

    centers, index, _ = jax.lax.fori_loop(1, k, step, (centers, index, closest))
    return centers, index


def _random_centers(key, X, w, k_pad: int):
    """`k_pad` distinct rows drawn with probability proportional to `w` (Gumbel top-k; uniform scores
    when unweighted), the scores drawn in float32 whatever the data's dtype."""
    u = jax.random.uniform(key, (X.shape[0],), jnp.float32, minval=1e-38)
    score = u if w is None else jnp.log(w.astype(jnp.float32)) - jnp.log(-jnp.log(u))
    return _rows(X, jax.lax.top_k(score, k_pad)[1])


def _init_centers(key, X, x_sq, w, init, init_array, k, k_pad, n_local_trials, trials=None):
    if init == "k-means++":
        return _kmeanspp_weighted(key, X, x_sq, w, k, k_pad, n_local_trials, trials)[0]
    if init == "random":
        return _random_centers(key, X, w, k_pad)
    return init_array


# --------------------------------------------------------------------------------------------------
# Lloyd's algorithm (Géron, ch. 8, The k-means algorithm)
# --------------------------------------------------------------------------------------------------


def _relocate_empty(X, w, labels, min_d2, sums, counts, valid):
    """scikit-learn's relocation of empty clusters: the i-th empty cluster takes the i-th farthest point
    from its centre, and that point leaves its old cluster (its weighted row is taken out of the old sums).
    Nothing moves when every point sits on its centre (more clusters than distinct points)."""
    k, n = counts.shape[0], X.shape[0]
    empty = (counts == 0) & valid
    m = min(k, n)
    far = jax.lax.top_k(min_d2, m)[1]  # the farthest first
    rank = jnp.cumsum(empty) - 1
    point = far[jnp.clip(rank, 0, m - 1)]  # (k,)
    take = empty & (rank < m) & (jnp.max(min_d2) > 0)
    wp = jnp.where(take, 1 if w is None else w[point], 0).astype(sums.dtype)
    moved = _rows(X, point) * wp[:, None]
    old = labels[point]
    sums = sums - jax.ops.segment_sum(moved, old, k)
    counts = counts - jax.ops.segment_sum(wp, old, k)
    return jnp.where(take[:, None], moved, sums), jnp.where(take, wp, counts)


def _lloyd_step(X, x_sq, w, c, valid, *, relocate_cond: bool):
    """One E step and M step: the labels from `c`, the new centres (empty clusters relocated) and the
    squared centre shift."""
    k = c.shape[0]
    labels, min_d2 = _assign(X, x_sq, c, valid)
    sums, counts = _cluster_sums(X, labels, w, k)
    if relocate_cond:
        # a real branch outside vmap: the distances are recomputed, and the top-k run, only when a cluster
        # is empty, so the common step stays one pass that keeps no (n,) buffer but the labels
        def relocate(sums, counts):
            labels, min_d2 = _assign(X, x_sq, c, valid)
            return _relocate_empty(X, w, labels, min_d2, sums, counts, valid)

        sums, counts = jax.lax.cond(jnp.any((counts == 0) & valid), relocate, lambda s, n: (s, n), sums, counts)
    else:
        sums, counts = _relocate_empty(X, w, labels, min_d2, sums, counts, valid)
    filled = counts > 0
    means = sums / jnp.where(filled, counts, 1)[:, None]
    # as scikit-learn: an empty cluster (more clusters than distinct points) sits on the biggest one
    new = jnp.where(filled[:, None], means, means[jnp.argmax(counts)])
    new = jnp.where(valid[:, None], new, c)
    return new, labels, jnp.sum((new - c) ** 2)


def _lloyd(X, x_sq, w, centers, valid, max_iter, tol, *, relocate_cond: bool):
    """Lloyd iterations until the centres move at most `tol` (sum of squared shifts), or `max_iter`, as
    scikit-learn's `lloyd`. Only the `valid` centres take part.

    scikit-learn also stops when the labels stop changing ("strict convergence"); then the new centres
    are the old ones to the bit (the same sums of the same points), a shift of 0 <= tol: the same stop,
    at the same iteration, without keeping the previous labels.

    Returns:
        centres `(k_pad, d)`, labels `(n,)` consistent with them, inertia, number of iterations.
    """
    def cond(s):
        i, _, done = s
        return (i < max_iter) & ~done

    def body(s):
        i, c, _ = s
        new, _, shift = _lloyd_step(X, x_sq, w, c, valid, relocate_cond=relocate_cond)
        return i + 1, new, shift <= tol

    n_iter, centers, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), centers, jnp.bool_(False)))
    labels, min_d2 = _assign(X, x_sq, centers, valid)
    if _direct(X, centers):  # the distances are already differences: no second pass for the inertia
        inertia = jnp.sum(min_d2 if w is None else w * min_d2)
    else:
        inertia = _inertia(X, x_sq, centers, labels, w)
    return centers, labels, inertia, n_iter


@functools.partial(jax.jit, static_argnames=("k_pad", "init", "n_local_trials", "batch", "relative", "centre"))
def _runs(keys, X, w, init_arrays, k, trials, max_iter, tol, *, k_pad, init, n_local_trials, batch,
          relative=True, centre=False):
    """`len(keys)` k-means runs on X, `batch` of them vmapped at a time (1: one after the other, with the
    empty-cluster relocation as a real branch).

    Args:
        keys: `(n_init, 2)` keys; init_arrays: `(n_init, k_pad, d)` initial centres for init='array'.
        tol: relative (times the mean per-feature variance of X, scikit-learn's convention) when
            `relative`, else absolute.
        centre: subtract the column means first (and add them back to the centres): keeps the matmul
            expansion |x|^2 - 2 x.c + |c|^2 accurate; the direct differences do not need it.

    Returns:
        per run: centres `(n_init, k_pad, d)`, labels `(n_init, n)`, inertia `(n_init,)`, iterations.
    """
    if centre:
        mean = jnp.mean(X, axis=0)
        X, init_arrays = X - mean, init_arrays - mean
    x_sq = _row_sq(X)
    if relative:
        tol = tol * _mean_variance(X, x_sq)
    valid = jnp.arange(k_pad) < k

    def run(args):
        key, init_array = args
        centers = _init_centers(key, X, x_sq, w, init, init_array, k, k_pad, n_local_trials, trials)
        return _lloyd(X, x_sq, w, centers, valid, max_iter, tol, relocate_cond=batch == 1)

    out = jax.lax.map(run, (keys, init_arrays)) if batch == 1 else _map(run, (keys, init_arrays), batch)
    if centre:
        out = (out[0] + mean, *out[1:])
    return out


def _kmeans_runs(keys, X, init_array, k, trials, max_iter, tol, *, k_pad, init, n_local_trials, batch):
    """Unweighted runs from one shared `init_array (k_pad, d)` with an absolute `tol` (the signature
    `dlcore.cluster.mixture` uses)."""
    init_arrays = jnp.broadcast_to(init_array, (keys.shape[0], *init_array.shape))
    return _runs(keys, X, None, init_arrays, k, trials, max_iter, tol, k_pad=k_pad, init=init,
                 n_local_trials=n_local_trials, batch=batch, relative=False)


def _map(fn, xs, batch: int):
    """`vmap` when every run fits in one batch (cheaper to compile), else `lax.map` in batches."""
    if batch >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch)


def _tolerance(X: np.ndarray, tol: float) -> float:
    """scikit-learn's convention: `tol` is relative to the mean per-feature variance of the data."""
    return float(np.mean(np.var(X, axis=0))) * tol


def _centred(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X minus its column means (accumulated in float64), and the means, in X's dtype (on the host)."""
    mean = X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    return X - mean, mean


@jax.jit
def _mb_prep(X, w, tol):
    """MiniBatchKMeans' absolute tolerance and the cumulative weights (None: unweighted) the batches
    are drawn with."""
    tol = jnp.where(tol > 0, tol * _mean_variance(X, _row_sq(X)), 0.0)
    return tol, None if w is None else jnp.cumsum(w)


def _mean_variance(X, x_sq):
    """Mean over features of the per-feature variance (unweighted, as scikit-learn's `_tolerance`)."""
    n, d = X.shape
    if _is_sparse(X):
        mean = jax.ops.segment_sum(X.data, X.indices[:, 1], d) / n
        return jnp.maximum(jnp.sum(x_sq) / n - jnp.sum(mean * mean), 0) / d
    return jnp.mean(jnp.var(X, axis=0))


@jax.jit
def _lloyd_step_jit(X, x_sq, w, c, labels_old, valid):
    new, labels, shift = _lloyd_step(X, x_sq, w, c, valid, relocate_cond=True)
    return new, labels, jnp.all(labels == labels_old), shift, _inertia(X, x_sq, c, labels, w)


@jax.jit
def _final_assign(X, w, c):
    """Labels `(n,)` of X under the centres `c` and the (weighted) inertia."""
    x_sq = _row_sq(X)
    labels, _ = _assign(X, x_sq, c)
    return labels, _inertia(X, x_sq, c, labels, w)


@functools.partial(jax.jit, static_argnames=("k_pad", "init", "n_local_trials"))
def _init_jit(key, X, w, init_array, k, trials, *, k_pad, init, n_local_trials):
    return _init_centers(key, X, _row_sq(X), w, init, init_array, k, k_pad, n_local_trials, trials)


def _lloyd_verbose(X, w, centers, max_iter, tol):
    """Lloyd's iterations one jitted step at a time, printing as scikit-learn's `verbose` does."""
    x_sq = _row_sq(X)
    tol = float(tol * _mean_variance(X, x_sq))
    valid = jnp.ones((centers.shape[0],), bool)
    labels = jnp.full((X.shape[0],), -1, jnp.int32)
    strict = False
    for i in range(max_iter):
        centers, labels, strict, shift, inertia = _lloyd_step_jit(X, x_sq, w, centers, labels, valid)
        print(f"Iteration {i}, inertia {float(inertia)}.")
        if bool(strict):
            print(f"Converged at iteration {i}: strict convergence.")
            break
        if float(shift) <= tol:
            print(f"Converged at iteration {i}: center shift {float(shift)} within tolerance {tol}.")
            break
    labels, inertia = _final_assign(X, w, centers)
    return centers, labels, inertia, i + 1


# --------------------------------------------------------------------------------------------------
# Predict, transform, score
# --------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("what",))
def _centroid_outputs(X, w, centers, *, what: str):
    """'distances' `(n, k)`, 'labels' `(n,)` or 'inertia' of X's rows against the centres."""
    if what == "distances":
        if _is_sparse(X):
            return jnp.sqrt(_sq_distances(X, _row_sq(X), centers))
        # direct differences, in row blocks: exact zeros for points on a centre
        k, d = centers.shape
        n = X.shape[0]
        block = batch_for(n, k * d, 1 << 22)
        pad = -n % block
        Xb = jnp.pad(X, ((0, pad), (0, 0))).reshape(-1, block, d)
        out = jax.lax.map(lambda xb: jnp.sqrt(jnp.sum((xb[:, None, :] - centers[None]) ** 2, axis=-1)), Xb)
        return out.reshape(-1, k)[:n]
    if not _is_sparse(X):
        shift = centers.mean(axis=0)  # translation-invariant: centring keeps the expansion accurate
        X, centers = X - shift, centers - shift
    x_sq = _row_sq(X)
    labels, _ = _assign(X, x_sq, centers)
    if what == "labels":
        return labels
    return _inertia(X, x_sq, centers, labels, w)


# --------------------------------------------------------------------------------------------------
# Argument checks shared by the estimators and functions
# --------------------------------------------------------------------------------------------------


def _local_trials(n_clusters: int, n_local_trials: int | None) -> int:
    return 2 + int(math.log(n_clusters)) if n_local_trials is None else n_local_trials


def _check_weight(sample_weight: Any, n: int, dtype, who: str) -> np.ndarray | None:
    """Sample weights `(n,)` >= 0 of `dtype`, or None for unit weights (None, or all ones)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        w = np.full((n,), sample_weight, dtype)
    else:
        try:
            w = np.asarray(sample_weight)
            if w.dtype.kind not in "biuf":
                raise TypeError
            w = w.astype(dtype)
        except (TypeError, ValueError):
            raise ValueError(f"{who}: sample_weight must be numbers, got {type(sample_weight).__name__}") from None
    if w.shape != (n,):
        raise ValueError(f"{who}: sample_weight must have shape ({n},) (one weight per sample), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{who}: sample_weight must be finite and >= 0")
    if not w.sum() > 0:
        raise ValueError(f"{who}: sample_weight sums to 0; give some samples a positive weight")
    return None if (w == 1).all() else w


def _is_arraylike(init: Any) -> bool:
    return not isinstance(init, (str, np.str_)) and not callable(init) and \
        (hasattr(init, "__array__") or hasattr(init, "__len__") or sp.issparse(init))


def _init_kind(init: Any, who: str) -> str:
    """'k-means++', 'random', 'array' or 'callable'."""
    if isinstance(init, (str, np.str_)):
        if str(init) in ("k-means++", "random"):
            return str(init)
        raise ValueError(f"{who}: init (a str, or an (n_clusters, n_features) array, or a callable) must be "
                         f"one of 'k-means++', 'random', got {init!r}")
    if callable(init):
        return "callable"
    if _is_arraylike(init):
        return "array"
    raise ValueError(f"{who}: init must be 'k-means++', 'random', an (n_clusters, n_features) array or a "
                     f"callable, got {type(init).__name__}")


def _check_centers(centers: Any, k: int, d: int, dtype, who: str, name: str = "init") -> np.ndarray:
    """Initial centres `(k, d)` of `dtype` (a fresh copy), with scikit-learn's messages for a wrong shape."""
    if sp.issparse(centers):
        centers = centers.toarray()
    arr = np.array(check_array(centers, dtype, who=who, name=name), dtype=dtype, copy=True)
    if arr.shape[0] != k:
        raise ValueError(f"{who}: The shape of the initial centers {arr.shape} does not match the number of "
                         f"clusters {k} ({name} must be an (n_clusters, n_features) = ({k}, {d}) array)")
    if arr.shape[1] != d:
        raise ValueError(f"{who}: The shape of the initial centers {arr.shape} does not match the number of "
                         f"features of the data {d} ({name} must be an (n_clusters, n_features) = ({k}, {d}) "
                         f"array)")
    return arr


def _n_init(n_init: Any, kind: str, who: str, auto: int, stacklevel: int = 4) -> int:
    """scikit-learn's rule: 'auto' is `auto` runs for 'random' and callables, 1 otherwise; an explicit
    array forces one run (with a RuntimeWarning when more were asked)."""
    if isinstance(n_init, str) and n_init == "auto":
        n = auto if kind in ("random", "callable") else 1
    else:
        n = check_int(n_init, "n_init ('auto' or an int)", low=1, who=who)
    if kind == "array" and n != 1:
        warnings.warn(f"Explicit initial center position passed: performing only one init in {who} instead of "
                      f"n_init={n}.", RuntimeWarning, stacklevel=stacklevel)
        n = 1
    return n


def _same_clustering(labels: np.ndarray, best: np.ndarray, k: int) -> bool:
    """scikit-learn's `_is_same_clustering`: whether every cluster of `labels` maps to one cluster of `best`
    (the same partition up to a renaming), counted in O(n)."""
    pairs = np.count_nonzero(np.bincount(labels.astype(np.int64) * k + best, minlength=k * k))
    return pairs == np.count_nonzero(np.bincount(labels, minlength=k))


def _padded(k: int, n: int, d: int) -> int:
    """Centre slots to compile for: on small data, k rounded up to a multiple of 8, so a sweep over k
    reuses one compiled function (compilation costs more than the extra distances there)."""
    if n * d > (1 << 17):
        return k
    return min(n, -(-k // 8) * 8)


def _seed_from_key(key) -> np.random.RandomState:
    """A NumPy RandomState seeded from a JAX key (for a user's callable `init`, which expects one)."""
    return np.random.RandomState(int(np.asarray(jax.random.randint(key, (), 0, np.iinfo(np.int32).max, jnp.int32))))


# --------------------------------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------------------------------


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """predict / transform / score / input checks shared by KMeans and MiniBatchKMeans."""

    def _validate(self, X, *, reset: bool, method: str):
        """X checked (dense C-contiguous array or CSR matrix of the compute dtype), with scikit-learn's
        `n_features_in_` / `feature_names_in_` bookkeeping."""
        who = type(self).__name__
        if reset:
            dtype = compute_dtype(X, self.dtype)
            arr = check_array(X, dtype, who=who, accept_sparse=True)
        else:
            check_fitted(self, "cluster_centers_", method)
            arr = check_array(X, self._dtype, who=who, n_features=self.n_features_in_, accept_sparse=True)
        validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    def _outputs(self, X, method: str, what: str, sample_weight=None):
        X = self._validate(X, reset=False, method=method)
        w = _check_weight(sample_weight, X.shape[0], self._dtype, type(self).__name__)
        with precision(self._dtype):
            return np.array(_centroid_outputs(_device(X), None if w is None else jnp.asarray(w),
                                                jnp.asarray(self.cluster_centers_), what=what))

    def transform(self, X) -> np.ndarray:
        """Euclidean distance from each row of `X (n, d)` to every centre: `(n, n_clusters)` (Géron, ch. 8)."""
        return self._outputs(X, "transform", "distances")

    def predict(self, X) -> np.ndarray:
        """Index of the nearest centre of each row of `X (n, d)`: `(n,)` int32 (Géron, ch. 8, k-Means Clustering)."""
        return self._outputs(X, "predict", "labels")

    def score(self, X, y=None, sample_weight=None) -> float:
        """Minus the (weighted) inertia of `X` under the fitted centres (greater is better; Géron, ch. 8)."""
        return -float(self._outputs(X, "score", "inertia", sample_weight))

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """`fit(X)` and return `labels_`."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None) -> np.ndarray:
        """`fit(X)` and return the distances of `X` to the centres `(n, n_clusters)`."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _common_params(self, X, who: str, n_init_auto: int):
        """n_clusters, init kind and array, n_init (scikit-learn's checks and messages)."""
        k = check_int(self.n_clusters, "n_clusters", low=1, who=who)
        if X.shape[0] < k:
            raise ValueError(f"{who}: n_samples={X.shape[0]} should be >= n_clusters={k}; "
                             f"ask for fewer clusters or pass more points")
        kind = _init_kind(self.init, who)
        init_array = _check_centers(self.init, k, X.shape[1], X.dtype, who) if kind == "array" else None
        self._n_init = _n_init(self.n_init, kind, who, n_init_auto, stacklevel=5)
        return k, kind, init_array

    def _init_centroids(self, X, x_squared_norms=None, init=None, random_state=None, sample_weight=None,
                        init_size=None, n_centroids=None):
        """Initial centres as scikit-learn's private `_init_centroids` computes them (its tests call it).

        Args:
            X: data `(n, d)`, dense or sparse.
            x_squared_norms: ignored (computed on the device).
            init: 'k-means++', 'random', an array or a callable.
            random_state: None, int, RandomState or key (dlcore's stream).
            sample_weight: `(n,)` weights, used by 'k-means++' and 'random'.
            init_size: draw this many rows (with replacement) first, as scikit-learn does.
            n_centroids: number of centres (default `n_clusters`).

        Returns:
            centres `(n_centroids, d)`.
        """
        who = type(self).__name__
        dtype = compute_dtype(X, getattr(self, "dtype", None))
        X = check_array(X, dtype, who=who, accept_sparse=True)
        k = self.n_clusters if n_centroids is None else n_centroids
        w = _check_weight(sample_weight, X.shape[0], dtype, who)
        key = as_key(random_state, who)
        if init_size is not None and init_size < X.shape[0]:
            key, sub = jax.random.split(key)
            idx = np.asarray(jax.random.randint(sub, (init_size,), 0, X.shape[0], jnp.int32))
            X, w = X[idx], None if w is None else w[idx]
        kind = _init_kind(self.init if init is None else init, who)
        init = self.init if init is None else init
        if kind == "callable":
            return _check_centers(init(X, k, random_state=_seed_from_key(key)), k, X.shape[1], dtype, who)
        if kind == "array":
            return _check_centers(init, k, X.shape[1], dtype, who)
        with precision(dtype):
            trials = _local_trials(k, self.n_local_trials)
            return np.array(_init_jit(key, _device(X), None if w is None else jnp.asarray(w),
                                        jnp.zeros((k, X.shape[1]), dtype), k, trials, k_pad=k, init=kind,
                                        n_local_trials=trials))


class KMeans(_BaseKMeans):
    """k-means clustering by Lloyd's algorithm, `n_init` initialisations at once (Géron, ch. 8, k-Means Clustering).

    scikit-learn's `KMeans` (the same parameters, attributes and behaviour), computed by jitted JAX
    functions in the dtype of the input (float32 stays float32; float64, ints and lists are float64).

    Args:
        n_clusters: number of clusters k.
        init: 'k-means++' (greedy k-means++, the default), 'random' (k distinct points drawn with
            probability proportional to their weight), an array `(n_clusters, n_features)` of initial
            centres, or a callable `init(X, n_clusters, random_state=RandomState) -> centres`
            (Géron, ch. 8, Centroid initialization methods).
        n_init: number of initialisations, the best (lowest inertia) kept; 'auto' is 10 for 'random' and
            callables, 1 otherwise, as in scikit-learn.
        max_iter: most Lloyd iterations per run.
        tol: stop when the squared centre shift sums to at most `tol` times the mean feature variance
            (runs also stop as soon as no label changes).
        verbose: print the inertia of every iteration and why the run stopped (runs one at a time).
        random_state: None (seed 0: repeatable), an int seed, a `np.random.RandomState` (one seed drawn
            from it) or a `jax.random` key. dlcore's stream is JAX's: other seeds than scikit-learn's.
        copy_x: accepted for scikit-learn compatibility; dlcore never modifies X (centring happens on the
            device, on a copy), so False and True behave the same.
        algorithm: 'lloyd' or 'elkan', accepted for compatibility: both run dlcore's Lloyd iterations (the
            same results; Elkan's bounds do not pay off in a fused JAX pass).
        n_local_trials: candidates per k-means++ step; default 2 + int(log k) (dlcore's addition).
        dtype: None (the input's, as scikit-learn) or float32 / float64 to override it (dlcore's addition;
            float64 runs under a local x64 context).

    Attributes:
        cluster_centers_: `(n_clusters, n_features)` in the compute dtype.
        labels_: `(n_samples,)` int32, cluster of each training point.
        inertia_: sum of (weighted) squared distances of the points to their centre (Equation 8-1).
        n_iter_: Lloyd iterations of the kept run.
        n_features_in_, feature_names_in_: as scikit-learn.

    Example:
        >>> km = KMeans(5, random_state=42).fit(X)          # X: (n, 2)
        >>> km.predict(X_new), km.transform(X_new), km.inertia_
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", n_init: int | str = "auto",
                 max_iter: int = 300, tol: float = 1e-4, verbose: int = 0, random_state: Any = None,
                 copy_x: bool = True, algorithm: str = "lloyd", n_local_trials: int | None = None,
                 dtype: Any = None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.n_local_trials = n_local_trials
        self.dtype = dtype

    def fit(self, X, y=None, sample_weight=None) -> KMeans:
        """Cluster `X (n_samples, n_features)` (dense or SciPy sparse), rows weighted by `sample_weight (n,)`;
        returns self."""
        who = "KMeans"
        X = self._validate(X, reset=True, method="fit")
        self._dtype = dtype = X.dtype
        n, d = X.shape
        k, kind, init_array = self._common_params(X, who, 10)
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"{who}: algorithm must be 'lloyd' or 'elkan', got {self.algorithm!r}")
        if self.algorithm == "elkan" and k == 1:
            warnings.warn("algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                          RuntimeWarning, stacklevel=2)
        max_iter = check_int(self.max_iter, "max_iter", low=1, who=who)
        tol = check_float(self.tol, "tol", low=0, who=who)
        trials = check_int(_local_trials(k, self.n_local_trials), "n_local_trials", low=1, who=who)
        w = _check_weight(sample_weight, n, dtype, who)
        key = as_key(self.random_state, who)
        n_init = self._n_init
        sparse = sp.issparse(X)
        k_pad = k if self.verbose else _padded(k, n, d)
        # dense data is centred for the matmul expansion (inside the jitted call; on the host when verbose)
        centre = not sparse and k_pad * d > _DIRECT_MAX
        mean = X.mean(axis=0, dtype=np.float64).astype(dtype) if centre and self.verbose else np.zeros((d,), dtype)
        keys = jax.random.split(key, n_init)
        init_c = np.zeros((n_init, k_pad, d), dtype)
        if kind == "array":
            init_c[:, :k] = init_array - mean
        elif kind == "callable":
            for i in range(n_init):
                init_c[i, :k] = _check_centers(self.init(X, k, random_state=_seed_from_key(keys[i])), k, d, dtype,
                                               who) - mean
        run_kind = "array" if kind == "callable" else kind
        max_trials = trials if self.n_local_trials is not None else _local_trials(k_pad, None)
        with precision(dtype):
            Xd = _device(X - mean if mean.any() else X)
            wd = None if w is None else jnp.asarray(w)
            if self.verbose:
                results = []
                for i in range(n_init):
                    c0 = _init_jit(keys[i], Xd, wd, jnp.asarray(init_c[i]), k, trials, k_pad=k_pad, init=run_kind,
                                   n_local_trials=max_trials)
                    print("Initialization complete")
                    results.append(jax.device_get(_lloyd_verbose(Xd, wd, c0, max_iter, tol)))
                centers, labels, inertia, n_iter = (np.stack(r) for r in zip(*results))
            else:
                # on all but small data the runs go one after the other: each stops at its own
                # convergence, and the empty-cluster relocation is a real branch (under vmap both sides run)
                big = n * d * max(k_pad, 8) > (1 << 20)
                batch = 1 if big else batch_for(n_init, 3 * n * (k_pad + max_trials))
                centers, labels, inertia, n_iter = jax.device_get(_runs(
                    keys, Xd, wd, jnp.asarray(init_c), k, trials, max_iter, tol, k_pad=k_pad, init=run_kind,
                    n_local_trials=max_trials, batch=batch, centre=centre))
        best = 0
        for i in range(1, n_init):  # scikit-learn's rule: a lower inertia wins unless it is the same partition
            if inertia[i] < inertia[best] and not _same_clustering(labels[i], labels[best], k):
                best = i
        self.cluster_centers_ = (centers[best, :k] + mean).astype(dtype)
        self.labels_ = np.array(labels[best], np.int32)  # a writable copy, as scikit-learn's
        self.inertia_ = float(inertia[best])
        self.n_iter_ = int(n_iter[best])
        self._n_features_out = k
        distinct = np.count_nonzero(np.bincount(self.labels_, minlength=k))
        if distinct < k:
            warnings.warn(f"Number of distinct clusters ({distinct}) found smaller than n_clusters ({k}). "
                          f"Possibly due to duplicate points in X.", ConvergenceWarning, stacklevel=2)
        return self


def k_means(X, n_clusters: int, *, sample_weight=None, init: Any = "k-means++", n_init: int | str = "auto",
            max_iter: int = 300, verbose: bool = False, tol: float = 1e-4, random_state: Any = None,
            copy_x: bool = True, algorithm: str = "lloyd", return_n_iter: bool = False):
    """k-means as a function, as scikit-learn's `k_means` (Géron, ch. 8, k-Means Clustering).

    Returns:
        centres `(n_clusters, n_features)`, labels `(n_samples,)` int32, inertia, and the number of
        iterations when `return_n_iter`.
    """
    est = KMeans(n_clusters, init=init, n_init=n_init, max_iter=max_iter, verbose=verbose, tol=tol,
                 random_state=random_state, copy_x=copy_x, algorithm=algorithm).fit(X, sample_weight=sample_weight)
    if return_n_iter:
        return est.cluster_centers_, est.labels_, est.inertia_, est.n_iter_
    return est.cluster_centers_, est.labels_, est.inertia_


def kmeans_plusplus(X, n_clusters: int, *, sample_weight=None, x_squared_norms=None, random_state: Any = None,
                    n_local_trials: int | None = None, dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeds for `X (n, d)`, dense or sparse (Géron, ch. 8, Centroid initialization methods).

    Args:
        X: data `(n, d)`.
        n_clusters: number of seeds.
        sample_weight: `(n,)` weights (a point is drawn with probability proportional to w D(x)^2).
        x_squared_norms: accepted as scikit-learn's (its length is checked); dlcore computes the norms on
            the device.
        random_state: None, int, RandomState or JAX key (dlcore's stream, not NumPy's).
        n_local_trials: candidates per step; default 2 + int(log k).
        dtype: None (the input's) or float32 / float64.

    Returns:
        centres `(n_clusters, d)` (rows of X, in the compute dtype) and their indices `(n_clusters,)`.
    """
    who = "kmeans_plusplus"
    X = check_array(X, compute_dtype(X, dtype), who=who, accept_sparse=True)
    k = check_int(n_clusters, "n_clusters", low=1, who=who)
    if X.shape[0] < k:
        raise ValueError(f"{who}: n_samples={X.shape[0]} should be >= n_clusters={k}.")
    if x_squared_norms is not None and np.shape(x_squared_norms)[0] != X.shape[0]:
        raise ValueError(f"{who}: The length of x_squared_norms {np.shape(x_squared_norms)[0]} should be equal "
                         f"to the length of n_samples {X.shape[0]}.")
    trials = check_int(_local_trials(k, n_local_trials), "n_local_trials", low=1, who=who)
    w = _check_weight(sample_weight, X.shape[0], X.dtype, who)
    sparse = sp.issparse(X)
    Xc = X if sparse else X - X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    key = as_key(random_state, who)  # outside the float64 context: the same key for float32 and float64 data
    with precision(X.dtype):
        index = np.asarray(_kmeanspp_jit(key, _device(Xc),
                                         None if w is None else jnp.asarray(w), k, trials))
    centers = X[index].toarray() if sparse else X[index]
    return centers, index


@functools.partial(jax.jit, static_argnums=(3, 4))
def _kmeanspp_jit(key, X, w, k, trials):
    return _kmeanspp_weighted(key, X, _row_sq(X), w, k, k, trials)[1]


# --------------------------------------------------------------------------------------------------
# Mini-batch k-means (Sculley, 2010; Géron, ch. 8, Accelerated k-means and mini-batch k-means)
# --------------------------------------------------------------------------------------------------


def _minibatch_step(Xb, wb, centers, counts, key, reassign, ratio):
    """scikit-learn's `_mini_batch_step`: each centre moves to the weighted running mean of every point
    ever assigned to it; with `reassign`, centres whose count is below `ratio` times the largest move to
    random points of the batch (at most half the batch).

    Returns:
        new centres, new counts, the batch's (weighted) inertia before the update.
    """
    k = centers.shape[0]
    b = Xb.shape[0]
    labels, min_d2 = _assign(Xb, _row_sq(Xb), centers)
    inertia = jnp.sum(min_d2 if wb is None else wb * min_d2)
    sums, wsum = _cluster_sums(Xb, labels, wb, k)
    new_counts = counts + wsum
    moved = (centers * counts[:, None] + sums) / jnp.where(wsum > 0, new_counts, 1)[:, None]
    new = jnp.where((wsum > 0)[:, None], moved, centers)
    # random reassignment of the centres with very low counts
    low = new_counts < ratio * jnp.max(new_counts)
    order_rank = jnp.argsort(jnp.argsort(new_counts, stable=True), stable=True)
    to = low & (order_rank < int(0.5 * b)) & reassign & (ratio > 0)
    m = min(k, b)
    picks = jax.lax.top_k(jax.random.uniform(key, (b,), jnp.float32), m)[1]
    rank = jnp.clip(jnp.cumsum(to) - 1, 0, m - 1)
    new = jnp.where(to[:, None], _rows(Xb, picks[rank]), new)
    floor = jnp.min(jnp.where(to, jnp.inf, new_counts))
    new_counts = jnp.where(to, floor, new_counts)
    return new, new_counts, inertia


_minibatch_step_jit = jax.jit(_minibatch_step)


def _batch_indices(key, n: int, b: int, cw):
    """`b` row indices drawn with replacement, uniformly or with probability proportional to the weights
    (`cw` their cumulative sum); uniforms in float32 whatever the dtype."""
    if cw is None:
        return jax.random.randint(key, (b,), 0, n, jnp.int32)
    u = jax.random.uniform(key, (b,), jnp.float32).astype(cw.dtype)
    return jnp.clip(jnp.searchsorted(cw, u * cw[-1], side="right"), 0, n - 1)


def _mb_convergence(i, batch_inertia, ewa, ewa_min, no_improvement, shift, tol, alpha, max_no_improvement):
    """scikit-learn's early stopping after step `i` (0-based): no decision at the first step; then the EWA
    of the mean batch inertia, the centre-shift test (tol > 0) and the count of steps without improvement.

    Returns:
        ewa, ewa_min, no_improvement, stop, why (0: go on, 1: small centre change, 2: no improvement).
    """
    active = i > 0
    ewa = jnp.where(active, jnp.where(i == 1, batch_inertia, ewa * (1 - alpha) + batch_inertia * alpha), ewa)
    small = active & (tol > 0) & (shift <= tol)
    counted = active & ~small
    improved = ewa < ewa_min
    ewa_min = jnp.where(counted & improved, ewa, ewa_min)
    no_improvement = jnp.where(counted, jnp.where(improved, 0, no_improvement + 1), no_improvement)
    stale = counted & (no_improvement >= max_no_improvement)
    why = jnp.where(small, 1, jnp.where(stale, 2, 0))
    return ewa, ewa_min, no_improvement, why > 0, why


def _mb_update(Xb, kr, s, tol, alpha, max_no_improvement, ratio, reassign_every, batch_size: int):
    """One step of `MiniBatchKMeans.fit` on the batch `Xb`: scikit-learn's reassignment schedule (when a
    centre is empty, or every `reassign_every` points), the step, and the early-stopping bookkeeping.

    Args:
        s: the loop state (step, centres, counts, ewa, ewa_min, steps without improvement, points since
            the last reassignment, stop).

    Returns:
        the next state, the batch inertia, and why it stops (0: it does not).
    """
    step, c, counts, ewa, ewa_min, stale, since, _ = s
    since = since + batch_size
    reassign = jnp.any(counts == 0) | (since >= reassign_every)
    since = jnp.where(reassign, 0, since)
    new, counts, inertia = _minibatch_step(Xb, None, c, counts, kr, reassign, ratio)
    shift = jnp.sum((new - c) ** 2)
    ewa, ewa_min, stale, stop, why = _mb_convergence(step, inertia / batch_size, ewa, ewa_min, stale, shift, tol,
                                                     alpha, max_no_improvement)
    return (step + 1, new, counts, ewa, ewa_min, stale, since, stop), inertia, why


_mb_update_jit = jax.jit(_mb_update, static_argnames=("batch_size",))


def _mb_state(centers):
    k, dtype = centers.shape[0], centers.dtype
    inf = jnp.asarray(jnp.inf, dtype)
    return (jnp.int32(0), centers, jnp.zeros((k,), dtype), inf, inf, jnp.int32(0), jnp.int32(0), jnp.bool_(False))


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _minibatch_fit(key, X, cw, centers, n_steps, tol, alpha, max_no_improvement, ratio, reassign_every, *,
                   batch_size):
    """The mini-batch steps of `MiniBatchKMeans.fit` on dense X, in one `lax.while_loop`."""
    n = X.shape[0]

    def body(s):
        kb, kr = jax.random.split(jax.random.fold_in(key, s[0]))
        Xb = X[_batch_indices(kb, n, batch_size, cw)]
        return _mb_update(Xb, kr, s, tol, alpha, max_no_improvement, ratio, reassign_every, batch_size)[0]

    step, centers, counts, ewa, *_ = jax.lax.while_loop(lambda s: (s[0] < n_steps) & ~s[-1], body,
                                                        _mb_state(centers))
    return centers, counts, step, ewa


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _draw_batch(key, step, n, cw, *, batch_size):
    kb, kr = jax.random.split(jax.random.fold_in(key, step))
    return _batch_indices(kb, n, batch_size, cw), kr


@functools.partial(jax.jit, static_argnames=("n", "size", "n_init", "subsample"))
def _init_samples(key, *, n, size, n_init, subsample):
    """Keys `(n_init, 2)` for the initialisations, the validation rows `(size,)` and each initialisation's
    rows `(n_init, size)` (drawn with replacement when `subsample` and size < n, else all rows)."""
    k_val, k_init = jax.random.split(key)
    keys = jax.random.split(k_init, 2 * n_init)
    every = jnp.arange(n, dtype=jnp.int32)
    val = _subsample(k_val, n=n, size=size) if subsample else every
    subs = jnp.stack([_subsample(keys[n_init + i], n=n, size=size) if subsample and size < n else every
                      for i in range(n_init)])
    return keys[:n_init], val, subs


@functools.partial(jax.jit, static_argnames=("n", "size"))
def _subsample(key, *, n, size):
    return jax.random.randint(key, (size,), 0, n, jnp.int32)


@functools.partial(jax.jit, static_argnames=("init", "k", "n_local_trials"))
def _best_init(keys, X, w, val_idx, subs, init_arrays, *, init, k, n_local_trials):
    """The best of the initialisations (each on its own subsample `subs[i]`), judged by the weighted
    inertia on the validation rows `val_idx`, as scikit-learn's MiniBatchKMeans."""
    Xv = X[val_idx]
    wv = None if w is None else w[val_idx]
    xv_sq = _row_sq(Xv)

    def one(args):
        key, sub, init_array = args
        Xs = X[sub]
        ws = None if w is None else w[sub]
        c = _init_centers(key, Xs, _row_sq(Xs), ws, init, init_array, k, k, n_local_trials)
        labels, d2 = _assign(Xv, xv_sq, c)
        return c, jnp.sum(d2 if wv is None else wv * d2)

    cands, inertia = jax.lax.map(one, (keys, subs, init_arrays))
    return cands[jnp.argmin(inertia)]


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means (Géron, ch. 8, Accelerated k-means...; Sculley, "Web-Scale K-Means Clustering", 2010).

    scikit-learn's `MiniBatchKMeans` (the same parameters, attributes and behaviour), computed by jitted
    JAX functions. Each step draws `batch_size` points (with replacement, with probability proportional
    to their weight), assigns them to the nearest centre and moves every centre to the running mean of
    all points ever assigned to it (per-centre learning rate 1 / count); centres with very low counts
    are moved to random points of the batch (`reassignment_ratio`). Training stops after
    `(max_iter * n_samples) // batch_size` steps, when the exponentially weighted batch inertia has not
    improved for `max_no_improvement` steps, or (with `tol > 0`) when the centres stop moving.

    Args:
        n_clusters, init, random_state, n_local_trials, dtype: as in `KMeans`.
        max_iter: most passes over the data (epochs).
        batch_size: points per step (capped at n_samples).
        verbose: print the batch inertia of every step and why training stopped (steps run one jitted
            call at a time then).
        compute_labels: compute `labels_` and `inertia_` on the whole training set after `fit`.
        tol: stop when the squared centre shift of a step is at most `tol` times the mean feature variance
            (0 disables).
        max_no_improvement: steps without improvement of the smoothed inertia before stopping (None: never).
        init_size: points the initial centres are chosen from (default 3 * batch_size, at least 3 * k).
        n_init: initialisations, the one with the lowest inertia on a validation sample kept ('auto': 3
            for 'random' and callables, else 1).
        reassignment_ratio: count fraction (of the largest) below which a centre is reassigned.

    Attributes:
        cluster_centers_, labels_, inertia_, n_features_in_: as in `KMeans` (labels and inertia on the
            whole training set after `fit`, on the last batch after `partial_fit`).
        n_steps_: mini-batch steps taken; n_iter_: passes over the data started.
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", max_iter: int = 100,
                 batch_size: int = 1024, verbose: int = 0, compute_labels: bool = True, random_state: Any = None,
                 tol: float = 0.0, max_no_improvement: int | None = 10, init_size: int | None = None,
                 n_init: int | str = "auto", reassignment_ratio: float = 0.01, n_local_trials: int | None = None,
                 dtype: Any = None):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.n_local_trials = n_local_trials
        self.dtype = dtype

    def _check_params_vs_input(self, X, who: str):
        k, kind, init_array = self._common_params(X, who, 3)
        n = X.shape[0]
        self._batch_size = min(check_int(self.batch_size, "batch_size", low=1, who=who), n)
        if self.init_size is None:
            init_size = 3 * self._batch_size
            if init_size < k:
                init_size = 3 * k
        else:
            init_size = check_int(self.init_size, "init_size", low=1, who=who)
            if init_size < k:
                warnings.warn(f"init_size={init_size} should be larger than n_clusters={k}. Setting it to "
                              f"min(3*n_clusters, n_samples)", RuntimeWarning, stacklevel=3)
                init_size = 3 * k
        self._init_size = min(init_size, n)
        self._ratio = check_float(self.reassignment_ratio, "reassignment_ratio", low=0, who=who)
        return k, kind, init_array

    def _initial_centers(self, key, X, Xd, wd, kind, init_array, k, n_init, subsample: bool, who: str):
        """The best of `n_init` initialisations, each on its own sample of `init_size` rows, judged on a
        validation sample (one initialisation on all of X when `subsample` is False, as partial_fit)."""
        n, d = X.shape
        trials = check_int(_local_trials(k, self.n_local_trials), "n_local_trials", low=1, who=who)
        size = self._init_size if subsample else n
        keys, val, subs = jax.device_get(_init_samples(key, n=n, size=size, n_init=n_init,
                                                       subsample=subsample))
        init_arrays = np.zeros((n_init, k, d), X.dtype)
        if kind == "array":
            init_arrays[:] = init_array - self._shift
        elif kind == "callable":
            for i in range(n_init):
                Xs = X[np.asarray(subs[i])]
                init_arrays[i] = _check_centers(self.init(Xs, k, random_state=_seed_from_key(keys[i])), k, d,
                                                X.dtype, who) - self._shift
        run_kind = "array" if kind == "callable" else kind
        if self.verbose:
            print(f"Init 1/{n_init} with method {self.init if isinstance(self.init, str) else run_kind}")
        if sp.issparse(X):  # initialise on dense copies of the samples (init_size rows each, not all of X)
            rows = np.concatenate([val, subs.reshape(-1)])
            Xd = jnp.asarray(X[rows].toarray())
            wd = None if wd is None else wd[rows]
            val, subs = np.arange(size), size + np.arange(n_init * size).reshape(n_init, size)
        return _best_init(keys, Xd, wd, val, subs, init_arrays, init=run_kind, k=k, n_local_trials=trials)

    def fit(self, X, y=None, sample_weight=None) -> MiniBatchKMeans:
        """Cluster `X (n_samples, n_features)` (dense or SciPy sparse) by mini-batches; returns self."""
        who = "MiniBatchKMeans"
        X = self._validate(X, reset=True, method="fit")
        self._dtype = dtype = X.dtype
        n, d = X.shape
        k, kind, init_array = self._check_params_vs_input(X, who)
        max_iter = check_int(self.max_iter, "max_iter", low=1, who=who)
        tol = check_float(self.tol, "tol", low=0, who=who)
        stale = (1 << 30) if self.max_no_improvement is None else check_int(
            self.max_no_improvement, "max_no_improvement", low=0, who=who)
        w = _check_weight(sample_weight, n, dtype, who)
        key = as_key(self.random_state, who)
        sparse = sp.issparse(X)
        # dense data is centred for the matmul expansion only (the direct differences do not need it)
        centre = not sparse and k * d > _DIRECT_MAX
        self._shift = X.mean(axis=0, dtype=np.float64).astype(dtype) if centre else np.zeros((d,), dtype)
        b = self._batch_size
        n_steps = (max_iter * n) // b
        alpha = min(1.0, b * 2.0 / (n + 1))
        with precision(dtype):
            Xd = _device(X - self._shift if centre else X)
            wd = None if w is None else jnp.asarray(w)
            k_init, k_steps = jax.random.split(key)
            centers = self._initial_centers(k_init, X, None if sparse else Xd, wd, kind, init_array, k,
                                            self._n_init, True, who)
            tol, cw = _mb_prep(Xd, wd, tol)
            if sparse or self.verbose:
                centers, counts, steps, ewa = self._host_steps(X, Xd, k_steps, cw, centers, n_steps, tol, alpha,
                                                               stale, k)
            else:
                centers, counts, steps, ewa = _minibatch_fit(k_steps, Xd, cw, centers, n_steps, tol, alpha, stale,
                                                             self._ratio, 10 * k, batch_size=b)
            centers, counts, steps, ewa = jax.device_get((centers, counts, steps, ewa))
            if self.compute_labels:
                labels, inertia = jax.device_get(_final_assign(Xd, wd, jnp.asarray(centers)))
                self.labels_ = np.array(labels, np.int32)
                self.inertia_ = float(inertia)
            else:
                self.inertia_ = float(ewa) * float(n if w is None else w.sum())
        self.cluster_centers_ = (centers + self._shift).astype(dtype)
        self._counts = counts
        self._since, self._key = 0, None
        self.n_steps_ = int(steps)
        self.n_iter_ = int(math.ceil(self.n_steps_ * b / n))
        self._n_features_out = k
        return self

    def _host_steps(self, X, Xd, key, cw, centers, n_steps, tol, alpha, max_no_improvement, k):
        """The same steps as `_minibatch_fit`, one jitted step per batch from the host: for sparse X (a
        batch of rows is gathered from the CSR matrix) and for `verbose` (prints as scikit-learn)."""
        n, b = X.shape[0], self._batch_size
        state = _mb_state(centers)
        if sp.issparse(X):  # one entry count for every batch (the most a batch can hold): one compilation
            nse = b * min(int(np.diff(X.indptr).max()), X.shape[1])
        for step in range(n_steps):
            idx, kr = _draw_batch(key, step, n, cw, batch_size=b)
            Xb = _device(X[np.asarray(idx)], nse) if sp.issparse(X) else Xd[idx]
            state, inertia, why = _mb_update_jit(Xb, kr, state, tol, alpha, max_no_improvement, self._ratio,
                                                 10 * k, batch_size=b)
            if self.verbose:
                msg = f"Minibatch step {step + 1}/{n_steps}: mean batch inertia: {float(inertia) / b}"
                print(msg if step == 0 else f"{msg}, ewa inertia: {float(state[3])}")
                if int(why) == 1:
                    print(f"Converged (small centers change) at step {step + 1}/{n_steps}")
                elif int(why) == 2:
                    print(f"Converged (lack of improvement in inertia) at step {step + 1}/{n_steps}")
            if bool(state[-1]):
                break
        return state[1], state[2], state[0], state[3]

    def partial_fit(self, X, y=None, sample_weight=None) -> MiniBatchKMeans:
        """One mini-batch step on `X (batch, n_features)` weighted by `sample_weight`, initialising the
        centres on the first call; returns self."""
        who = "MiniBatchKMeans"
        first = getattr(self, "cluster_centers_", None) is None
        X = self._validate(X, reset=first, method="partial_fit")
        dtype = X.dtype if first else self._dtype
        w = _check_weight(sample_weight, X.shape[0], dtype, who)
        if first:
            self._dtype = dtype
            k, kind, init_array = self._check_params_vs_input(X, who)
            self._shift = np.zeros((X.shape[1],), dtype) if sp.issparse(X) else \
                X.mean(axis=0, dtype=np.float64).astype(dtype)  # the first batch's mean shifts every later batch
            self._since = 0
            self.n_steps_ = 0
        k = self.cluster_centers_.shape[0] if not first else k
        if getattr(self, "_key", None) is None:  # first call, or the first partial_fit after fit
            self._key = as_key(self.random_state, who)
        self._key, k_init, k_step = jax.random.split(self._key, 3)
        with precision(dtype):
            Xd = _device(X) if sp.issparse(X) else jnp.asarray(X - self._shift)
            wd = None if w is None else jnp.asarray(w)
            if first:
                n = X.shape[0]
                if self._init_size < n:
                    idx = np.asarray(_subsample(k_init, n=n, size=self._init_size))
                    Xs, ws = X[idx], None if w is None else w[idx]
                else:
                    Xs, ws = X, w
                Xsd = jnp.asarray(Xs.toarray() if sp.issparse(Xs) else Xs - self._shift)
                centers = self._initial_centers(k_init, Xs, Xsd, None if ws is None else jnp.asarray(ws), kind,
                                                init_array, k, 1, False, who)
                counts = jnp.zeros((k,), dtype)
            else:
                centers, counts = jnp.asarray(self.cluster_centers_ - self._shift), jnp.asarray(self._counts)
            self._since += self._batch_size
            reassign = bool(np.any(np.asarray(counts) == 0)) or self._since >= 10 * k
            if reassign:
                self._since = 0
            centers, counts, _ = _minibatch_step_jit(Xd, wd, centers, counts, k_step, reassign, self._ratio)
            if self.compute_labels:
                labels, inertia = jax.device_get(_final_assign(Xd, wd, centers))
                self.labels_ = np.array(labels, np.int32)
                self.inertia_ = float(inertia)
            centers, counts = jax.device_get((centers, counts))
        self.cluster_centers_ = (centers + self._shift).astype(dtype)
        self._counts = counts
        self.n_steps_ += 1
        self._n_features_out = k
        return self
