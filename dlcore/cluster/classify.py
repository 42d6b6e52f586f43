"""The two classifiers Géron's ch. 8 pairs with clustering: k-nearest neighbours and logistic regression.

`KNeighborsClassifier` predicts the cluster of new points from DBSCAN's core samples (Géron, ch. 8, Figure 8-14);
`LogisticRegression` is the classifier of the semi-supervised digits experiments (Géron, ch. 8, Using
Clustering for Semi-Supervised Learning): the
same L2-penalised multinomial (softmax) model scikit-learn fits, minimised to convergence with optax's
L-BFGS in one jitted loop, so both land on the same (unique) optimum.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import (
    HIGHEST,
    check_array,
    check_fitted,
    precision,
    resolve_dtype,
    sq_distances,
)

__all__ = ["KNeighborsClassifier", "LogisticRegression"]


def _check_labels(y, n: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{who}: y must have shape ({n},) to match X, got {y.shape}")
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes.astype(np.int32)


# --------------------------------------------------------------------------------------------------
# k nearest neighbours
# --------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _kneighbors(Q, X, *, k: int, chunk: int):
    """Distances `(m, k)` and indices `(m, k)` of the k nearest rows of X for every row of Q."""
    m = Q.shape[0]
    shift = X.mean(axis=0)
    Xs = X - shift
    n_blocks = -(-m // chunk)
    Qp = jnp.pad(Q - shift, ((0, n_blocks * chunk - m), (0, 0)))

    def block(start):
        rows = jax.lax.dynamic_slice_in_dim(Qp, start, chunk)
        _, idx = jax.lax.top_k(-sq_distances(rows, Xs), k)  # candidates by the fast expansion
        exact = jnp.sqrt(jnp.sum((rows[:, None, :] - Xs[idx]) ** 2, axis=2))  # then exact distances
        order = jnp.argsort(exact, axis=1, stable=True)
        return jnp.take_along_axis(exact, order, axis=1), jnp.take_along_axis(idx, order, axis=1).astype(jnp.int32)

    dist, idx = jax.lax.map(block, jnp.arange(n_blocks) * chunk)
    return dist.reshape(-1, k)[:m], idx.reshape(-1, k)[:m]


class KNeighborsClassifier:
    """Vote among the k nearest training points (brute force, a block of queries at a time).

    Args:
        n_neighbors: k.
        weights: 'uniform' (one vote each) or 'distance' (votes weighted by 1 / distance; a point at
            distance 0 takes all the weight).
        dtype: float32 (default) or float64.

    Attributes:
        classes_: the sorted distinct labels; n_features_in_.

    Example (Géron, ch. 8, DBSCAN):
        >>> knn = KNeighborsClassifier(50).fit(db.components_, db.labels_[db.core_sample_indices_])
        >>> knn.predict(X_new), knn.predict_proba(X_new), knn.kneighbors(X_new, n_neighbors=1)
    """

    def __init__(self, n_neighbors: int = 5, *, weights: str = "uniform", dtype: Any = jnp.float32):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.dtype = dtype

    classes_: np.ndarray | None = None

    def fit(self, X, y) -> KNeighborsClassifier:
        """Store the training points `X (n, d)` and labels `y (n,)`; returns self."""
        who = "KNeighborsClassifier"
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        k = check_int(self.n_neighbors, "n_neighbors", low=1, who=who)
        if k > len(X):
            raise ValueError(f"{who}: n_neighbors={k} is more than the {len(X)} training points")
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"{who}: weights must be 'uniform' or 'distance', got {self.weights!r}")
        self.classes_, self._codes = _check_labels(y, len(X), who)
        self._X = X
        self.n_features_in_ = X.shape[1]
        return self

    def kneighbors(self, X, n_neighbors: int | None = None, return_distance: bool = True):
        """The nearest training points of each row of `X (m, d)`.

        Returns:
            distances `(m, k)` ascending and indices `(m, k)` into the training set (only the indices when
            `return_distance` is False).
        """
        who = "KNeighborsClassifier"
        check_fitted(self, "classes_", "kneighbors")
        X = check_array(X, self._dtype, who=who, n_features=self.n_features_in_)
        k = check_int(self.n_neighbors if n_neighbors is None else n_neighbors, "n_neighbors", low=1, who=who)
        if k > len(self._X):
            raise ValueError(f"{who}: n_neighbors={k} is more than the {len(self._X)} training points")
        chunk = int(max(1, min(len(X), (1 << 24) // len(self._X))))
        with precision(self._dtype):
            dist, idx = _kneighbors(jnp.asarray(X), jnp.asarray(self._X), k=k, chunk=chunk)
            dist, idx = np.asarray(dist), np.asarray(idx)
        return (dist, idx) if return_distance else idx

    def predict_proba(self, X) -> np.ndarray:
        """Share of the (weighted) votes for each class: `(m, n_classes)`, columns in `classes_` order."""
        dist, idx = self.kneighbors(X)
        votes = self._codes[idx]  # (m, k)
        if self.weights == "uniform":
            w = np.ones_like(dist)
        else:
            with np.errstate(divide="ignore"):
                w = 1.0 / dist
            exact = np.isinf(w)
            w = np.where(exact.any(axis=1, keepdims=True), exact.astype(dist.dtype), w)
        proba = np.zeros((len(dist), len(self.classes_)), dist.dtype)
        np.add.at(proba, (np.arange(len(dist))[:, None], votes), w)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The class with the most votes (ties: the first in `classes_`): `(m,)`."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


# --------------------------------------------------------------------------------------------------
# Logistic regression (L2-penalised, multinomial; binary with one logit for two classes)
# --------------------------------------------------------------------------------------------------


def _logits(params, X):
    return jnp.dot(X, params["coef"].T, precision=HIGHEST) + params["intercept"]


def _loss(params, X, y, w, l2, binary):
    """Mean cross-entropy over the rows with weight 1 (the others are padding) + l2 / 2 ||coef||^2."""
    z = _logits(params, X)
    if binary:
        per = optax.sigmoid_binary_cross_entropy(z[:, 0], y.astype(z.dtype))
    else:
        per = optax.softmax_cross_entropy_with_integer_labels(z, y)
    return jnp.sum(w * per) / jnp.sum(w) + 0.5 * l2 * jnp.sum(params["coef"] ** 2)


def _rows_bucket(n: int) -> int:
    """Rows to pad a training set to: one compiled solver serves every size up to 2048, then powers of 2."""
    return max(2048, 1 << (n - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("binary",))
def _lbfgs(params, X, y, w, l2, max_iter, tol, *, binary):
    """Minimise the penalised mean cross-entropy until the largest gradient entry is below `tol`."""
    fun = functools.partial(_loss, X=X, y=y, w=w, l2=l2, binary=binary)
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def cond(s):
        i, _, _, gmax = s
        return (i < max_iter) & (gmax >= tol)

    def body(s):
        i, params, state, _ = s
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        params = optax.apply_updates(params, updates)
        gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(jax.grad(fun)(params))]))
        return i + 1, params, state, gmax

    s = (jnp.int32(0), params, opt.init(params), jnp.asarray(jnp.inf, X.dtype))
    n_iter, params, _, gmax = jax.lax.while_loop(cond, body, s)
    return params, n_iter, gmax


class LogisticRegression:
    """L2-penalised logistic regression: softmax over the classes, one sigmoid logit for two.

    Minimises mean cross-entropy + ||coef||^2 / (2 C n), scikit-learn's objective (it writes
    C * sum of losses + ||coef||^2 / 2, the same minimiser; the intercepts are not penalised), with
    L-BFGS (optax) to a gradient tolerance, in one jitted call.

    Args:
        C: inverse regularisation strength.
        max_iter: most L-BFGS iterations.
        tol: stop when every gradient entry of the mean objective is below this in absolute value
            (scikit-learn's default 1e-4 stops short of the optimum on ill-conditioned data; 1e-8 in
            float64 reaches it).
        dtype: float32 (default) or float64.

    Attributes:
        classes_ `(n_classes,)`; coef_ `(n_classes, d)` (`(1, d)` for two classes); intercept_;
        n_iter_; n_features_in_.

    Example (Géron, ch. 8, Using Clustering for Semi-Supervised Learning):
        >>> clf = LogisticRegression(max_iter=10_000).fit(X_train[:50], y_train[:50])
        >>> clf.score(X_test, y_test)
    """

    def __init__(self, C: float = 1.0, *, max_iter: int = 1000, tol: float = 1e-4, dtype: Any = jnp.float32):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.dtype = dtype

    classes_: np.ndarray | None = None

    def fit(self, X, y) -> LogisticRegression:
        """Fit to `X (n, d)` and labels `y (n,)` (at least two classes); returns self."""
        who = "LogisticRegression"
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        C = check_float(self.C, "C", low=0, low_open=True, who=who)
        max_iter = check_int(self.max_iter, "max_iter", low=1, who=who)
        tol = check_float(self.tol, "tol", low=0, who=who)
        classes, codes = _check_labels(y, len(X), who)
        if len(classes) < 2:
            raise ValueError(f"{who}: y has a single class ({classes[0]!r}); at least two are needed")
        binary = len(classes) == 2
        n_out = 1 if binary else len(classes)
        n, rows = len(X), _rows_bucket(len(X))
        Xp = np.zeros((rows, X.shape[1]), dtype)
        Xp[:n] = X
        yp = np.zeros(rows, np.int32)
        yp[:n] = codes
        w = (np.arange(rows) < n).astype(dtype)
        with precision(dtype):
            params = {"coef": jnp.zeros((n_out, X.shape[1]), dtype), "intercept": jnp.zeros((n_out,), dtype)}
            params, n_iter, _ = _lbfgs(params, jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(w), 1.0 / (C * n),
                                       max_iter, tol, binary=binary)
            self.coef_ = np.asarray(params["coef"])
            self.intercept_ = np.asarray(params["intercept"])
        self.n_iter_ = int(n_iter)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits `(n, n_classes)` (`(n,)` for two classes)."""
        check_fitted(self, "classes_", "decision_function")
        X = check_array(X, self._dtype, who="LogisticRegression", n_features=self.n_features_in_)
        z = X @ self.coef_.T + self.intercept_
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities `(n, n_classes)`, columns in `classes_` order."""
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1 - p, p], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row: `(n,)`."""
        z = self.decision_function(X)
        return self.classes_[(z > 0).astype(int) if z.ndim == 1 else np.argmax(z, axis=1)]

    def score(self, X, y) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
