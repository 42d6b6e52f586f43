"""Gaussian mixtures by expectation-maximisation, the variational Bayesian mixture, density anomalies.

Hands-On Machine Learning (PyTorch edition), ch. 8, "Gaussian Mixtures": the model and EM
(Figure 8-15), covariance types (Figure 8-16), anomaly detection with a density threshold ("Using Gaussian
Mixtures for Anomaly Detection", Figure 8-17), BIC and AIC ("Selecting the Number of Clusters", Equation
8-2, Figure 8-19), Bayesian Gaussian mixtures ("Bayesian Gaussian Mixture Models").

`GaussianMixture` and `BayesianGaussianMixture` are scikit-learn estimators (`get_params`, `clone`,
`Pipeline`, `GridSearchCV`) with scikit-learn's parameters, fitted attributes and messages, and the same
models: from the same start they reach the same parameters and lower bounds. All `n_init`
initialisations run in one jitted call (`lax.map` with a batch size: a `vmap` over as many runs as fit
in memory); EM stops when the lower bound (the mean log-likelihood for `GaussianMixture`, the total
evidence lower bound for the Bayesian mixture) changes by less than `tol`, and the run with the best
bound is kept. The computation follows the input's dtype (float32 stays float32, float64 and the rest
compute in float64); in float32 `tol` is raised to the bound's rounding error where that is larger, so
that a converged fit stops.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.scipy.special import digamma, gammaln, logsumexp
from sklearn.base import BaseEstimator, DensityMixin

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import (
    HIGHEST,
    ConvergenceWarning,
    NotFittedError,
    as_key,
    batch_for,
    check_array,
    compute_dtype,
    precision,
)
from dlcore.cluster.kmeans import _centred, _kmeans_runs, _kmeanspp, _local_trials, _map, _padded, _tolerance

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "density_anomalies"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
LOG_2PI = math.log(2 * math.pi)
TOL32 = 4 * float(np.finfo(np.float32).eps)  # float32: a tol > 0 is at least this fraction of the bound (its rounding)


# --------------------------------------------------------------------------------------------------
# Gaussian pieces, by covariance type. Shapes: means (K, d); covariances full (K, d, d), tied (d, d),
# diag (K, d), spherical (K,); precision Cholesky factors P the same shapes, with precision = P P^T.
# --------------------------------------------------------------------------------------------------


def _covariances(X, resp, nk, means, reg, cov_type, valid):
    """Responsibility-weighted covariances around `means`, plus `reg` on the diagonal."""
    d = X.shape[1]
    diff = X[None, :, :] - means[:, None, :]  # (K, n, d)
    if cov_type in ("full", "tied"):
        weighted = resp.T[:, :, None] * diff
        scatter = jnp.einsum("knd,kne->kde", weighted, diff, precision=HIGHEST)  # (K, d, d)
        if cov_type == "tied":
            return scatter.sum(axis=0) / jnp.sum(jnp.where(valid, nk, 0)) + reg * jnp.eye(d, dtype=X.dtype)
        return scatter / nk[:, None, None] + reg * jnp.eye(d, dtype=X.dtype)
    var = jnp.einsum("nk,knd->kd", resp, diff * diff, precision=HIGHEST) / nk[:, None] + reg
    return var if cov_type == "diag" else var.mean(axis=1)


def _precision_cholesky(cov, cov_type):
    """P with P P^T = inverse(cov): the transposed inverse of cov's Cholesky factor (NaN if not PD)."""
    if cov_type in ("full", "tied"):
        chol = jnp.linalg.cholesky(cov)
        eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
        inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
        return jnp.swapaxes(inv, -1, -2)
    return jax.lax.rsqrt(cov)


def _mahalanobis(X, means, P, cov_type):
    """Squared Mahalanobis distances `(n, K)` of the rows of X to each mean."""
    if cov_type == "full":
        y = jnp.einsum("nd,kde->nke", X, P, precision=HIGHEST) - jnp.einsum("kd,kde->ke", means, P,
                                                                             precision=HIGHEST)[None]
        return jnp.sum(y * y, axis=2)
    if cov_type == "tied":
        y = jnp.dot(X, P, precision=HIGHEST)[:, None, :] - jnp.dot(means, P, precision=HIGHEST)[None]
        return jnp.sum(y * y, axis=2)
    diff = X[:, None, :] - means[None, :, :]  # (n, K, d)
    if cov_type == "diag":
        return jnp.sum((diff * P[None]) ** 2, axis=2)
    return jnp.sum(diff * diff, axis=2) * (P * P)[None]


def _half_log_det_precision(P, cov_type, d):
    """log |P| = half the log-determinant of the precision, per component `(K,)` (or scalar for tied)."""
    if cov_type in ("full", "tied"):
        return jnp.sum(jnp.log(jnp.diagonal(P, axis1=-2, axis2=-1)), axis=-1)
    if cov_type == "diag":
        return jnp.sum(jnp.log(P), axis=1)
    return d * jnp.log(P)


def _log_gaussian(X, means, P, cov_type):
    """log N(x | mean_k, cov_k) for every row and component: `(n, K)`."""
    d = X.shape[1]
    return -0.5 * (d * LOG_2PI + _mahalanobis(X, means, P, cov_type)) + _half_log_det_precision(P, cov_type, d)


def _n_covariance_parameters(cov_type, K, d):
    return {"full": K * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": K * d, "spherical": K}[cov_type]


def _sufficient_statistics(X, resp, reg, cov_type, valid):
    nk = resp.sum(axis=0) + 10 * jnp.finfo(X.dtype).eps  # keeps empty components finite
    means = jnp.dot(resp.T, X, precision=HIGHEST) / nk[:, None]
    return nk, means, _covariances(X, resp, nk, means, reg, cov_type, valid)


def _mask(w, valid):
    """Weighted log-probabilities `(n, K)` with the padding slots (if any) at -inf."""
    return w if valid is None else jnp.where(valid[None, :], w, -jnp.inf)


# --------------------------------------------------------------------------------------------------
# EM for the maximum-likelihood mixture. Component slots beyond `valid` are padding (one compiled
# function serves a sweep over n_components); they keep zero weight.
# --------------------------------------------------------------------------------------------------


def _gmm_mstep(X, resp, hyper, cov_type):
    valid = hyper["valid"]
    nk, means, cov = _sufficient_statistics(X, resp, hyper["reg"], cov_type, valid)
    nk = jnp.where(valid, nk, 0)
    return {"weights": nk / nk.sum(), "means": means, "cov": cov}


def _gmm_weighted_log_prob(X, p, cov_type, valid=None):
    P = _precision_cholesky(p["cov"], cov_type)
    return _mask(_log_gaussian(X, p["means"], P, cov_type) + jnp.log(p["weights"])[None], valid)


def _gmm_lower_bound(log_prob_norm, log_resp, p, hyper, cov_type):
    return log_prob_norm  # the mean log-likelihood under the parameters before the M-step

# --------------------------------------------------------------------------------------------------
# Variational Bayesian mixture (Bishop, PRML sect. 10.2; Géron, ch. 8, Bayesian Gaussian Mixture Models),
# scikit-learn's model. Posterior q(weights) Dirichlet or stick-breaking Beta; q(mean_k, precision_k)
# Normal-Wishart with parameters beta (mean precision), nu (degrees of freedom) and Winv (inverse scale);
# `cov` = Winv / nu is the covariance estimate scikit-learn reports. 'diag' and 'spherical' keep a
# diagonal or scalar Winv but take the Wishart's expectations with n_features degrees (as scikit-learn
# does); 'tied' has one Wishart whose statistics are the components' averages: nu = nu0 + N / K and
# Winv = W0inv + (1 / K) sum_k (N_k S_k + beta0 N_k / beta_k dm_k dm_k^T).
# --------------------------------------------------------------------------------------------------


def _bgm_mstep(X, resp, hyper, cov_type, process):
    valid = hyper["valid"]
    nk, xk, Sk = _sufficient_statistics(X, resp, hyper["reg"], cov_type, valid)
    nk = jnp.where(valid, nk, 0)  # padding slots keep their priors exactly
    alpha0, beta0, m0, nu0, W0inv = (hyper[k] for k in ("alpha0", "beta0", "m0", "nu0", "W0inv"))
    if process:  # stick lengths v_k ~ Beta(1 + N_k, alpha0 + sum_{j>k} N_j)
        tail = jnp.cumsum(nk[::-1])[::-1] - nk
        conc = jnp.stack([1.0 + nk, alpha0 + tail])
    else:
        conc = alpha0 + nk
    beta = beta0 + nk
    means = (beta0 * m0[None] + nk[:, None] * xk) / beta[:, None]
    dm = xk - m0[None]
    shrink = beta0 * nk / beta
    if cov_type == "full":
        Winv = W0inv[None] + nk[:, None, None] * Sk + shrink[:, None, None] * dm[:, :, None] * dm[:, None, :]
        nu = nu0 + nk
        cov = Winv / nu[:, None, None]
    elif cov_type == "tied":
        K = jnp.sum(valid)
        Winv = W0inv + (nk.sum() * Sk + jnp.einsum("k,kd,ke->de", shrink, dm, dm, precision=HIGHEST)) / K
        nu = nu0 + nk.sum() / K
        cov = Winv / nu
    elif cov_type == "diag":
        Winv = W0inv[None] + nk[:, None] * Sk + shrink[:, None] * dm * dm
        nu = nu0 + nk
        cov = Winv / nu[:, None]
    else:
        Winv = W0inv + nk * Sk + shrink * jnp.mean(dm * dm, axis=1)
        nu = nu0 + nk
        cov = Winv / nu
    return {"conc": conc, "beta": beta, "means": means, "nu": nu, "Winv": Winv, "cov": cov}


def _expected_log_weights(conc, process, valid):
    if process:
        a, b = conc
        total = digamma(a + b)
        return digamma(a) - total + jnp.concatenate([jnp.zeros((1,), a.dtype), jnp.cumsum(digamma(b) - total)[:-1]])
    return digamma(conc) - digamma(jnp.sum(conc if valid is None else jnp.where(valid, conc, 0)))


def _log_det_scale(P, nu, cov_type, d):
    """Half the log-determinant of the Wishart scale W = inverse(Winv), from P (precision of Winv / nu)."""
    return _half_log_det_precision(P, cov_type, d) - 0.5 * d * jnp.log(nu)


def _sum_over_dims(f, nu, d):
    """sum_{i < d} f((nu - i) / 2), for scalar or `(K,)` nu."""
    i = jnp.arange(d, dtype=jnp.result_type(nu))
    return jnp.sum(f(0.5 * (jnp.expand_dims(nu, -1) - i)), axis=-1)


def _bgm_weighted_log_prob(X, p, cov_type, process, valid=None):
    d = X.shape[1]
    nu = p["nu"]
    P = _precision_cholesky(p["cov"], cov_type)
    # E[log |precision_k|] = sum_i digamma((nu - i) / 2) + d log 2 + log |W_k| (every covariance type)
    log_det = _sum_over_dims(digamma, nu, d) + d * math.log(2) + 2 * _log_det_scale(P, nu, cov_type, d)
    quad = d / p["beta"][None] + _mahalanobis(X, p["means"], P, cov_type)  # E[(x - m)^T precision (x - m)]
    w = _expected_log_weights(p["conc"], process, valid)[None] + 0.5 * log_det - 0.5 * d * LOG_2PI - 0.5 * quad
    return _mask(w, valid)


def _bgm_lower_bound(log_prob_norm, log_resp, p, hyper, cov_type, process):
    """scikit-learn's evidence lower bound (its constant terms dropped), right after the M-step.

    entropy of q(z) - sum_k log B(W_k, nu_k) - log C(q(weights)) - (d / 2) sum_k log beta_k, with
    log B the Wishart's log normaliser (without its pi term) and log C the Dirichlet's (or the Betas').
    A total over the samples, as scikit-learn's `tol` expects.
    """
    valid = hyper["valid"]
    d = p["means"].shape[1]
    resp = jnp.exp(log_resp)
    entropy = -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0))
    nu = p["nu"]
    P = _precision_cholesky(p["cov"], cov_type)
    log_norm = -(nu * _log_det_scale(P, nu, cov_type, d) + 0.5 * nu * d * math.log(2)
                 + _sum_over_dims(gammaln, nu, d))
    wishart = jnp.sum(valid) * log_norm if cov_type == "tied" else jnp.sum(jnp.where(valid, log_norm, 0))
    conc = p["conc"]
    if process:
        a, b = conc
        weights = -jnp.sum(jnp.where(valid, gammaln(a) + gammaln(b) - gammaln(a + b), 0))
    else:
        weights = gammaln(jnp.sum(jnp.where(valid, conc, 0))) - jnp.sum(jnp.where(valid, gammaln(conc), 0))
    means = 0.5 * d * jnp.sum(jnp.where(valid, jnp.log(p["beta"]), 0))
    return entropy - wishart - weights - means


def _bgm_weights(conc: np.ndarray, process: bool) -> np.ndarray:
    """Expected weights under q (NumPy): stick-breaking means for the process, Dirichlet means otherwise."""
    if process:
        a, b = conc
        v = a / (a + b)
        w = v * np.concatenate([np.ones((1,), v.dtype), np.cumprod(b / (a + b))[:-1]])
    else:
        w = conc
    return w / w.sum()


# --------------------------------------------------------------------------------------------------
# Initialisation and the EM loop (one run; `n_init` runs are mapped over keys)
# --------------------------------------------------------------------------------------------------


def _initial_labels(keys, X, K, K_pad, init_params, batch):
    """Per run, the initial component of each point `(n_init, n)` (-1: none), or None for 'random'.

    'kmeans' (scikit-learn's default): the labels of one k-means++ run; 'k-means++' and
    'random_from_data': one point per component (its seeds, or points drawn uniformly).
    These run as their own jitted calls, shared by every covariance type and n_components.
    """
    n = X.shape[0]
    trials, max_trials = _local_trials(K, None), _local_trials(K_pad, None)
    if init_params == "random":
        return None
    if init_params == "kmeans":
        labels = _kmeans_runs(keys, X, jnp.zeros((K_pad, X.shape[1]), X.dtype), K, trials, 300,
                              _tolerance(np.asarray(X), 1e-4), k_pad=K_pad, init="k-means++", n_local_trials=max_trials,
                              batch=batch)[1]
        return labels
    if init_params == "k-means++":
        idx = _kmeanspp_runs(keys, X, K, trials, k_pad=K_pad, n_local_trials=max_trials)
    else:
        idx = _draw_points(keys, X, k_pad=K_pad)
    idx = np.asarray(idx)[:, :K]
    labels = np.full((len(idx), n), -1, np.int32)
    labels[np.arange(len(idx))[:, None], idx] = np.arange(K)
    return jnp.asarray(labels)


@functools.partial(jax.jit, static_argnames=("k_pad", "n_local_trials"))
def _kmeanspp_runs(keys, X, k, trials, *, k_pad, n_local_trials):
    x_sq = jnp.sum(X * X, axis=1)
    return jax.vmap(lambda key: _kmeanspp(key, X, x_sq, k, k_pad, n_local_trials, trials)[1])(keys)


@functools.partial(jax.jit, static_argnames=("k_pad",))
def _draw_points(keys, X, *, k_pad):
    return jax.vmap(lambda key: jax.lax.top_k(jax.random.uniform(key, (X.shape[0],), X.dtype), k_pad)[1])(keys)


@functools.partial(jax.jit, static_argnames=("kind", "cov_type", "process", "batch", "random_init", "history"))
def _em_runs(keys, labels, X, hyper, overrides, max_iter, tol, tol_scale, lb0, *, kind, cov_type, process, batch,
             random_init, history):
    """EM from `len(keys)` initialisations on centred X.

    Returns, per run: the parameters, the lower bound, the iterations, whether it converged, and the
    bound after each iteration `(history,)` (NaN past the last).
    """
    valid = hyper["valid"]
    K_pad = valid.shape[0]
    if kind == "gmm":
        mstep = functools.partial(_gmm_mstep, hyper=hyper, cov_type=cov_type)
        wlp = functools.partial(_gmm_weighted_log_prob, cov_type=cov_type, valid=valid)
        bound = functools.partial(_gmm_lower_bound, hyper=hyper, cov_type=cov_type)
    else:
        mstep = functools.partial(_bgm_mstep, hyper=hyper, cov_type=cov_type, process=process)
        wlp = functools.partial(_bgm_weighted_log_prob, cov_type=cov_type, process=process, valid=valid)
        bound = functools.partial(_bgm_lower_bound, hyper=hyper, cov_type=cov_type, process=process)

    def estep(p):
        w = wlp(X, p)
        norm = logsumexp(w, axis=1)
        return jnp.mean(norm), w - norm[:, None]

    def run(args):
        key, lab = args
        if random_init:
            u = jax.random.uniform(key, (X.shape[0], K_pad), X.dtype) * valid
            resp = u / u.sum(axis=1, keepdims=True)
        else:
            resp = jax.nn.one_hot(lab, K_pad, dtype=X.dtype)  # label -1: a zero row
        p = mstep(X, resp)
        p = {k: overrides.get(k, v) for k, v in p.items()}

        def cond(s):
            i, _, _, converged, _ = s
            return (i < max_iter) & ~converged

        def body(s):
            i, p, lb, _, hist = s
            norm, log_resp = estep(p)
            p = mstep(X, jnp.exp(log_resp))
            new = bound(norm, log_resp, p)
            hist = hist.at[i].set(new)
            return i + 1, p, new, jnp.abs(new - lb) < jnp.maximum(tol, tol_scale * jnp.abs(new)), hist

        hist = jnp.full((history,), jnp.nan, X.dtype)
        n_iter, p, lb, converged, hist = jax.lax.while_loop(
            cond, body, (jnp.int32(0), p, jnp.asarray(lb0, X.dtype), jnp.bool_(False), hist))
        return p, lb, n_iter, converged, hist

    if labels is None:
        labels = jnp.zeros((keys.shape[0], 1), jnp.int32)
    return _map(run, (keys, labels), batch)


@functools.partial(jax.jit, static_argnames=("kind", "cov_type", "process", "what"))
def _mixture_outputs(X, p, *, kind, cov_type, process, what):
    """'log_density' `(n,)`, 'proba' `(n, K)` or 'labels' `(n,)` of X's rows under fitted parameters."""
    if kind == "gmm":
        w = _gmm_weighted_log_prob(X, p, cov_type)
    else:
        w = _bgm_weighted_log_prob(X, p, cov_type, process)
    if what == "labels":
        return jnp.argmax(w, axis=1)
    norm = logsumexp(w, axis=1)
    return norm if what == "log_density" else jnp.exp(w - norm[:, None])


@functools.partial(jax.jit, static_argnames=("n", "cov_type"))
def _sample(key, weights, means, chol, *, n, cov_type):
    """n points from the mixture, sorted by component; `chol` is the covariances' Cholesky factor
    (full, tied) or standard deviations (diag, spherical)."""
    k1, k2 = jax.random.split(key)
    y = jnp.sort(jax.random.categorical(k1, jnp.log(weights), shape=(n,))).astype(jnp.int32)
    z = jax.random.normal(k2, (n, means.shape[1]), means.dtype)
    if cov_type == "full":
        return means[y] + jnp.einsum("nde,ne->nd", chol[y], z, precision=HIGHEST), y
    if cov_type == "tied":
        return means[y] + jnp.dot(z, chol.T, precision=HIGHEST), y
    if cov_type == "diag":
        return means[y] + z * chol[y], y
    return means[y] + z * chol[y][:, None], y


def _slice(p: dict, K: int, cov_type: str) -> dict:
    """Drop the padding slots from fitted parameters (the component axis is the last for `conc`)."""
    out = {}
    for name, v in p.items():
        if name == "conc":
            out[name] = v[..., :K]
        elif (cov_type == "tied" and name in ("cov", "Winv", "nu")) or v.ndim == 0:
            out[name] = v
        else:
            out[name] = v[:K]
    return out


def _precisions_from_cov(cov: np.ndarray, cov_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(precisions, precision Cholesky factors P, with precision = P P^T), on the host, in cov's dtype."""
    if cov_type in ("full", "tied"):
        chol = np.linalg.cholesky(cov.astype(np.float64)).reshape((-1,) + cov.shape[-2:])
        eye = np.eye(cov.shape[-1])
        # the transposed inverse of each Cholesky factor: exactly upper triangular, as scikit-learn's
        P = np.stack([scipy.linalg.solve_triangular(c, eye, lower=True).T for c in chol]).reshape(cov.shape)
        return (P @ np.swapaxes(P, -1, -2)).astype(cov.dtype), P.astype(cov.dtype)
    return (1 / cov).astype(cov.dtype), (1 / np.sqrt(cov)).astype(cov.dtype)


# --------------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------------

_ILL_DEFINED = ("Fitting the mixture model failed because some components have ill-defined empirical covariance "
                "(for instance caused by singleton or collapsed samples). Try to decrease the number of components, "
                "increase reg_covar, or scale the input data.")


class _BaseMixture(DensityMixin, BaseEstimator):
    """What both mixtures share: checks, the EM runs, the fitted attributes, prediction and sampling."""

    _kind = "gmm"
    _process = False

    # -- checks --------------------------------------------------------------------------------------

    def _check_fitted(self):
        if getattr(self, "means_", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 f"appropriate arguments before using this estimator.")

    def _check_common(self, X, who):
        """X checked and converted (float32 stays float32, the rest float64), and n_components."""
        self._dtype = dtype = compute_dtype(X, self.dtype)
        X = check_array(X, dtype, who=who, min_samples=2)
        K = check_int(self.n_components, "n_components", low=1, who=who)
        if X.shape[0] < K:
            raise ValueError(f"{who}: Expected n_samples >= n_components but got n_components = {K}, "
                             f"n_samples = {X.shape[0]}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"{who}: covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, "
                             f"got {self.covariance_type!r}")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"{who}: init_params must be one of {', '.join(INIT_PARAMS)}, got {self.init_params!r}")
        check_float(self.tol, "tol", low=0, who=who)
        check_float(self.reg_covar, "reg_covar", low=0, who=who)
        check_int(self.max_iter, "max_iter", low=0, who=who)
        check_int(self.n_init, "n_init", low=1, who=who)
        check_int(self.verbose, "verbose", low=0, who=who)
        check_int(self.verbose_interval, "verbose_interval", low=1, who=who)
        return X, K

    # -- fitting -------------------------------------------------------------------------------------

    def _hyper(self, X, K, who) -> dict:
        return {}

    def _overrides(self, K, d, shift, who) -> dict:
        return {}

    def fit(self, X, y=None):
        """Fit the mixture to `X (n_samples, n_features)`; returns self.

        With `warm_start=True` and a fitted model, one run continues from the fitted parameters (its
        lower bound starts at `lower_bound_`), as scikit-learn's.
        """
        self._fit(X, self.random_state, self.max_iter, warn=True)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """`fit(X)` and return the most probable component of each row, `(n_samples,)` int64."""
        return self.fit(X).predict(X)

    def _fit(self, X, random_state, max_iter, *, warn):
        who = type(self).__name__
        X, K = self._check_common(X, who)
        n, d = X.shape
        signature = (K, d, self.covariance_type, self._process)
        # warm start: only where the fitted parameters fit this call (else a fresh fit, as a first one)
        warm = bool(self.warm_start) and getattr(self, "converged_", None) is not None \
            and getattr(self, "_signature", None) == signature
        Xc, shift = _centred(X)
        dtype = self._dtype
        t0 = time.perf_counter()
        key = as_key(random_state, who)  # outside the float64 context: the same key for float32 and float64 data
        with precision(dtype):
            hyper = self._hyper(X, K, who)
            overrides = self._overrides(K, d, shift, who)
            n_init = 1 if warm else self.n_init
            keys = jax.random.split(key, n_init)
            if warm:  # continue from the fitted parameters, in this call's centred coordinates
                K_pad = K
                overrides = {k: jnp.asarray(v, dtype) for k, v in self._params.items()}
                overrides["means"] = jnp.asarray(self._params["means"] - shift, dtype)
                labels, lb0 = None, self.lower_bound_
            else:
                K_pad = _padded(K, n, d)
                batch = batch_for(n_init, 4 * n * K_pad * d)
                # every initial parameter given: the initial responsibilities are not needed, skip k-means
                init_params = "random" if self._kind == "gmm" and len(overrides) == 3 else self.init_params
                labels = _initial_labels(keys, Xc, K, K_pad, init_params, batch)
                lb0 = -np.inf
                overrides = {k: _pad_component_axis(v, K_pad, k, self.covariance_type) for k, v in overrides.items()}
            batch = batch_for(n_init, 4 * n * K_pad * d)
            hyper = {"reg": jnp.asarray(self.reg_covar, dtype), "valid": jnp.arange(K_pad) < K, **hyper}
            history = max(128, 1 << max(int(max_iter) - 1, 0).bit_length())  # one shape for max_iter <= 128
            tol_scale = TOL32 if dtype == np.float32 and self.tol > 0 else 0.0
            params, lb, n_iter, converged, hist = _em_runs(
                keys, labels, jnp.asarray(Xc), hyper, overrides, int(max_iter), float(self.tol), tol_scale, lb0,
                kind=self._kind, cov_type=self.covariance_type, process=self._process, batch=batch,
                random_init=labels is None, history=history)
            params, lb, n_iter, converged, hist = jax.device_get((params, lb, n_iter, converged, hist))
        finite = np.array([all(np.isfinite(v[i]).all() for v in jax.tree.leaves(params)) for i in range(n_init)])
        if max_iter > 0:
            finite &= ~np.isnan(lb)
        if not finite.all():
            raise ValueError(f"{who}: {_ILL_DEFINED}")
        best = int(np.argmax(lb)) if max_iter > 0 else n_init - 1  # max_iter=0: the last initialisation
        p = _slice({k: v[best] for k, v in params.items()}, K, self.covariance_type)
        if self.verbose:
            self._report(n_iter, converged, lb, hist, time.perf_counter() - t0)
        self.converged_ = bool(converged[best])
        self.n_iter_ = int(n_iter[best])
        self.lower_bound_ = float(lb[best])
        self.lower_bounds_ = [float(v) for v in hist[best][: self.n_iter_]]
        self.n_features_in_ = d
        self._signature = signature
        self._set_fitted(p, shift)
        if warn and max_iter > 0 and not self.converged_:
            warnings.warn(f"{who}: Best performing initialization did not converge. Try different init parameters, "
                          f"or increase max_iter, tol, or check for degenerate data.", ConvergenceWarning, stacklevel=3)
        return p

    def _report(self, n_iter, converged, lb, hist, seconds):
        """scikit-learn's verbose messages, printed after the jitted runs (times are per-run averages)."""
        per_run = seconds / len(n_iter)
        for i in range(len(n_iter)):
            print(f"Initialization {i}")
            prev = -np.inf
            for it in range(1, int(n_iter[i]) + 1):
                change, prev = hist[i][it - 1] - prev, hist[i][it - 1]
                if it % self.verbose_interval == 0:
                    if self.verbose == 1:
                        print(f"  Iteration {it}")
                    else:
                        print(f"  Iteration {it}\t time lapse {per_run / max(int(n_iter[i]), 1):.5f}s\t "
                              f"ll change {change:.5f}")
            status = "converged" if converged[i] else "did not converge"
            if self.verbose == 1:
                print(f"Initialization {status}.")
            else:
                print(f"Initialization {status}. time lapse {per_run:.5f}s\t lower bound {lb[i]:.5f}.")
        sys.stdout.flush()

    def _set_gaussians(self, p, shift):
        """Means, covariances and precisions from the best run's parameters (NumPy, on the host)."""
        cov = p["cov"]
        self._params = dict(p, means=p["means"] + shift)
        self.means_ = self._params["means"]
        self.covariances_ = cov
        self.precisions_, self.precisions_cholesky_ = _precisions_from_cov(cov, self.covariance_type)

    # -- outputs -------------------------------------------------------------------------------------

    def _outputs(self, X, what):
        self._check_fitted()
        X = check_array(X, self._dtype, who=type(self).__name__, n_features=self.n_features_in_)
        with precision(self._dtype):
            p = {k: jnp.asarray(v) for k, v in self._params.items()}
            return np.asarray(_mixture_outputs(jnp.asarray(X), p, kind=self._kind, cov_type=self.covariance_type,
                                               process=self._process, what=what))

    def score_samples(self, X) -> np.ndarray:
        """Log of the mixture's density at each row of `X (n, d)`: `(n,)` (Géron, ch. 8, Gaussian Mixtures)."""
        return self._outputs(X, "log_density")

    def score(self, X, y=None) -> float:
        """Mean log-likelihood of `X (n, d)` per sample."""
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component for each row: `(n, n_components)` (Géron, ch. 8)."""
        return self._outputs(X, "proba")

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row of `X (n, d)`: `(n,)` int64."""
        return self._outputs(X, "labels").astype(np.intp)

    def sample(self, n_samples: int = 1, *, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the fitted mixture, ordered by component (Géron, ch. 8, Gaussian Mixtures: `sample`).

        Args:
            n_samples: number of points.
            random_state: None (the estimator's `random_state`), an int seed, a `np.random.RandomState`
                or a `jax.random` key (dlcore's draws are JAX's, not scikit-learn's).

        Returns:
            `X (n_samples, n_features)` and the component of each point `y (n_samples,)` int64.
        """
        self._check_fitted()
        who = type(self).__name__
        if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"{who}: Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least "
                             f"one sample.")
        key = as_key(self.random_state if random_state is None else random_state, who)
        cov = self.covariances_
        if self.covariance_type in ("full", "tied"):
            chol = np.linalg.cholesky(cov.astype(np.float64)).astype(cov.dtype)
        else:
            chol = np.sqrt(cov)
        with precision(self._dtype):
            x, y = _sample(key, jnp.asarray(self.weights_), jnp.asarray(self.means_), jnp.asarray(chol),
                           n=int(n_samples), cov_type=self.covariance_type)
            return np.asarray(x), np.asarray(y).astype(np.intp)


def _check_shape(value, shape, name, who):
    if value.shape != shape:
        raise ValueError(f"{who}: The parameter '{name}' should have the shape of {shape}, but got {value.shape}")


class GaussianMixture(_BaseMixture):
    """Gaussian mixture fitted by expectation-maximisation (Géron, ch. 8, Gaussian Mixtures), as scikit-learn's.

    Args:
        n_components: number of Gaussians k.
        covariance_type: 'full' (each its own covariance), 'tied' (one shared), 'diag' (axis-aligned) or
            'spherical' (one variance per component) (Géron, ch. 8, Gaussian Mixtures, Figure 8-16).
        tol: stop when the mean log-likelihood changes by less than this.
        reg_covar: added to the covariances' diagonals (keeps them positive definite).
        max_iter: most EM iterations per initialisation (0: the initial parameters, unfitted).
        n_init: initialisations; the one with the best final log-likelihood is kept.
        init_params: initial responsibilities from 'kmeans' (one k-means++ run's labels, the default),
            'k-means++' (its seeds), 'random' or 'random_from_data'.
        weights_init, means_init, precisions_init: optional initial parameters, overriding the ones
            `init_params` gives (precisions: shaped like `covariances_`).
        random_state: None (seed 0), an int seed, a `np.random.RandomState` or a `jax.random` key. dlcore's
            random stream is JAX's: the same seed starts elsewhere than scikit-learn's (and the same
            in float32 and float64).
        warm_start: a second `fit` continues from the fitted parameters (one run).
        verbose, verbose_interval: scikit-learn's progress messages (printed after the jitted runs).
        dtype: None (the input's: float32 stays float32, the rest float64), float32 or float64.

    Attributes:
        weights_: `(k,)`; means_: `(k, d)`; covariances_: full `(k, d, d)`, tied `(d, d)`, diag `(k, d)`,
        spherical `(k,)`; precisions_ and precisions_cholesky_ (P with precision = P P^T) the same;
        converged_, n_iter_, lower_bound_ (mean log-likelihood of the kept run), lower_bounds_ (after
        each iteration), n_features_in_.

    Example:
        >>> gm = GaussianMixture(3, n_init=10, random_state=42).fit(X)
        >>> gm.weights_, gm.bic(X), gm.predict_proba(X), gm.sample(6)
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1, init_params: str = "kmeans",
                 weights_init=None, means_init=None, precisions_init=None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10, dtype: Any = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype

    def _overrides(self, K, d, shift, who):
        """The user's initial parameters, checked with scikit-learn's messages (means centred)."""
        out = {}
        dtype = self._dtype
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            _check_shape(w, (K,), "weights", who)
            if (w < 0).any() or (w > 1).any():
                raise ValueError(f"{who}: The parameter 'weights' should be in the range [0, 1], but got max value "
                                 f"{np.min(w):.5f}, min value {np.max(w):.5f}")
            if not np.allclose(np.abs(1.0 - np.sum(w)), 0.0):
                raise ValueError(f"{who}: The parameter 'weights' should be normalized, but got sum(weights) = "
                                 f"{np.sum(w):.5f}")
            out["weights"] = jnp.asarray(w, dtype)
        if self.means_init is not None:
            m = check_array(self.means_init, dtype, who=who, name="means_init")
            _check_shape(m, (K, d), "means", who)
            out["means"] = jnp.asarray(m - shift)
        if self.precisions_init is not None:
            ct = self.covariance_type
            shape = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[ct]
            prec = np.asarray(self.precisions_init, dtype=np.float64)
            _check_shape(prec, shape, f"{ct} precision", who)
            if ct in ("full", "tied"):
                for m in prec.reshape((-1, d, d)):
                    if not (np.allclose(m, m.T) and np.all(np.linalg.eigvalsh(m) > 0)):
                        raise ValueError(f"{who}: '{ct} precision' should be symmetric, positive-definite")
                out["cov"] = jnp.asarray(np.linalg.inv(prec).astype(dtype))
            else:
                if (prec <= 0).any():
                    raise ValueError(f"{who}: '{ct} precision' should be positive")
                out["cov"] = jnp.asarray((1.0 / prec).astype(dtype))
        return out

    def _set_fitted(self, p, shift):
        self.weights_ = p["weights"]
        self._set_gaussians(p, shift)

    def _n_parameters(self) -> int:
        """Free parameters of the fitted model: covariances, means and k - 1 weights."""
        K, d = self.n_components, self.n_features_in_
        return _n_covariance_parameters(self.covariance_type, K, d) + K * d + K - 1

    def bic(self, X) -> float:
        """Bayesian information criterion on `X`: log(m) p - 2 log L (Géron, ch. 8, Equation 8-2)."""
        log_density = self.score_samples(X)
        n = len(log_density)
        return float(-2 * np.sum(log_density, dtype=np.float64) + self._n_parameters() * math.log(n))

    def aic(self, X) -> float:
        """Akaike information criterion on `X`: 2 p - 2 log L (Equation 8-2)."""
        return float(-2 * np.sum(self.score_samples(X), dtype=np.float64) + 2 * self._n_parameters())

    # scikit-learn's private hooks that its own tests call on an estimator
    def _set_parameters(self, params, xp=None):
        """Set (weights, means, covariances, precisions_cholesky) as scikit-learn's `_set_parameters`."""
        weights, means, covariances, prec_chol = (np.asarray(v) for v in params)
        self.weights_, self.means_, self.covariances_ = weights, means, covariances
        self.precisions_cholesky_ = prec_chol
        if self.covariance_type in ("full", "tied"):
            self.precisions_ = prec_chol @ np.swapaxes(prec_chol, -1, -2)
        else:
            self.precisions_ = prec_chol ** 2
        self._dtype = weights.dtype
        self._params = {"weights": weights, "means": means, "cov": covariances}

    def _initialize(self, X, resp):
        """Initial parameters from given responsibilities `resp (n, k)` and the `*_init` overrides."""
        X = np.asarray(X)
        resp = np.asarray(resp, X.dtype)
        dtype = compute_dtype(X, self.dtype)
        # one M-step (max_iter=0) from these responsibilities, on the host: the initial parameters
        Xc, shift = _centred(np.asarray(X, dtype))
        with precision(dtype):
            self._dtype = dtype
            hyper = {"reg": jnp.asarray(self.reg_covar, dtype), "valid": jnp.ones(resp.shape[1], bool)}
            p = _gmm_mstep(jnp.asarray(Xc), jnp.asarray(resp, dtype), hyper, self.covariance_type)
            p.update(self._overrides(resp.shape[1], X.shape[1], shift, type(self).__name__))
            p = jax.device_get(p)
        self._set_fitted(p, shift)


class BayesianGaussianMixture(_BaseMixture):
    """Variational Bayesian Gaussian mixture that gives unneeded components (near-)zero weight (Géron, ch. 8).

    Mean-field variational inference (Bishop, Pattern Recognition and Machine Learning, sect. 10.2) with a
    Dirichlet-process (stick-breaking, the default) or Dirichlet-distribution prior on the weights and
    Normal-Wishart priors on the components: scikit-learn's model for every covariance type (see the
    comment above `_bgm_mstep` for 'tied', 'diag' and 'spherical').

    Args:
        n_components: an upper bound on the number of components.
        covariance_type, tol, reg_covar, max_iter, n_init, init_params, random_state, warm_start, verbose,
            verbose_interval, dtype: as in `GaussianMixture`, except that `tol` applies to the total lower
            bound (as in scikit-learn).
        weight_concentration_prior_type: 'dirichlet_process' or 'dirichlet_distribution'.
        weight_concentration_prior: the weights' concentration (default 1 / n_components); smaller
            values leave more components empty.
        mean_precision_prior: beta_0, how strongly the means are pulled to `mean_prior` (default 1).
        mean_prior: `(d,)` prior mean (default: the data mean).
        degrees_of_freedom_prior: nu_0 (default: n_features; must be > n_features - 1).
        covariance_prior: the Wishart's inverse scale W_0^{-1} (default: the data's covariance; its
            diagonal for 'diag', mean variance for 'spherical').

    Attributes:
        weights_, means_, covariances_ (posterior covariance estimates W^{-1} / nu), precisions_,
        precisions_cholesky_, weight_concentration_, mean_precision_, degrees_of_freedom_, the priors
        used (weight_concentration_prior_, mean_precision_prior_, mean_prior_, degrees_of_freedom_prior_,
        covariance_prior_), converged_, n_iter_, lower_bound_ (scikit-learn's evidence lower bound of the
        training set, a total without its constant terms), lower_bounds_, n_features_in_.

    Example:
        >>> bgm = BayesianGaussianMixture(10, n_init=10, max_iter=500, random_state=42).fit(X)
        >>> bgm.weights_.round(2)    # three components keep the weight, seven are emptied
    """

    _kind = "bgm"

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1, init_params: str = "kmeans",
                 weight_concentration_prior_type: str = "dirichlet_process",
                 weight_concentration_prior: float | None = None, mean_precision_prior: float | None = None,
                 mean_prior=None, degrees_of_freedom_prior: float | None = None, covariance_prior=None,
                 random_state: Any = None, warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 dtype: Any = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype

    @property
    def _process(self) -> bool:
        return self.weight_concentration_prior_type == "dirichlet_process"

    def _priors(self, X, K, who):
        """The priors (scikit-learn's defaults), set as the fitted `*_prior_` attributes; returns them."""
        n, d = X.shape
        if self.weight_concentration_prior_type not in ("dirichlet_process", "dirichlet_distribution"):
            raise ValueError(f"{who}: weight_concentration_prior_type must be 'dirichlet_process' or "
                             f"'dirichlet_distribution', got {self.weight_concentration_prior_type!r}")
        alpha0 = 1.0 / K if self.weight_concentration_prior is None else check_float(
            self.weight_concentration_prior, "weight_concentration_prior", low=0, low_open=True, who=who)
        beta0 = 1.0 if self.mean_precision_prior is None else check_float(
            self.mean_precision_prior, "mean_precision_prior", low=0, low_open=True, who=who)
        if self.mean_prior is None:
            m0 = X.mean(axis=0, dtype=np.float64)
        else:
            m0 = np.asarray(self.mean_prior, dtype=np.float64).reshape(-1)
            _check_shape(m0, (d,), "means", who)
            if not np.isfinite(m0).all():
                raise ValueError(f"{who}: mean_prior must be {d} finite numbers")
        if self.degrees_of_freedom_prior is None:
            nu0 = float(d)
        else:
            nu0 = check_float(self.degrees_of_freedom_prior, "degrees_of_freedom_prior", who=who)
            if not nu0 > d - 1.0:
                raise ValueError(f"{who}: The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, "
                                 f"but got {nu0:.3f}.")
        ct = self.covariance_type
        if self.covariance_prior is None:
            cov = np.atleast_2d(np.cov(X.T.astype(np.float64)))
            W0inv = {"full": cov, "tied": cov, "diag": np.diag(cov).copy(), "spherical": np.diag(cov).mean()}[ct]
        else:
            W0inv = np.asarray(self.covariance_prior, dtype=np.float64)
            shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[ct]
            _check_shape(W0inv, shape, f"{ct} covariance_prior", who)
            if ct in ("full", "tied"):
                if not (np.allclose(W0inv, W0inv.T) and np.all(np.linalg.eigvalsh(W0inv) > 0)):
                    raise ValueError(f"{who}: '{ct} covariance_prior' should be symmetric, positive-definite")
            elif (W0inv <= 0).any():
                raise ValueError(f"{who}: '{ct} covariance_prior' should be positive")
        dt = X.dtype
        self.weight_concentration_prior_ = alpha0
        self.mean_precision_prior_ = beta0
        self.mean_prior_ = m0.astype(dt)
        self.degrees_of_freedom_prior_ = nu0
        self.covariance_prior_ = np.asarray(W0inv, dt) if ct != "spherical" else float(W0inv)
        return alpha0, beta0, m0, nu0, W0inv

    def _hyper(self, X, K, who):
        alpha0, beta0, m0, nu0, W0inv = self._priors(X, K, who)
        dt = X.dtype
        m0c = m0 - X.mean(axis=0, dtype=np.float64)  # in the centred coordinates used inside
        return {"alpha0": jnp.asarray(alpha0, dt), "beta0": jnp.asarray(beta0, dt), "m0": jnp.asarray(m0c, dt),
                "nu0": jnp.asarray(nu0, dt), "W0inv": jnp.asarray(W0inv, dt)}

    def _set_fitted(self, p, shift):
        conc = p["conc"]
        self.weights_ = _bgm_weights(conc, self._process)
        self.weight_concentration_ = (conc[0], conc[1]) if self._process else conc
        self.mean_precision_ = p["beta"]
        self.degrees_of_freedom_ = p["nu"]
        self._set_gaussians(p, shift)

    # scikit-learn's private hooks that its own tests call on an estimator
    def _check_parameters(self, X, xp=None):
        """Check the hyperparameters and set the priors (`*_prior_`) for `X`, as scikit-learn's."""
        who = type(self).__name__
        X, K = self._check_common(X, who)
        self._priors(X, K, who)

    def _initialize_parameters(self, X, random_state, xp=None):
        """The initial parameters (one M-step from `init_params`' responsibilities), fitted attributes set."""
        self._fit(X, random_state, 0, warn=False)


def _pad_component_axis(v, K_pad: int, name: str, cov_type: str):
    """Pad a user-given initial parameter to `K_pad` component slots (weights 0, unit covariances)."""
    if name == "cov" and cov_type == "tied":
        return v
    extra = K_pad - v.shape[0]
    if extra == 0:
        return v
    if name == "cov" and cov_type == "full":
        fill = jnp.broadcast_to(jnp.eye(v.shape[-1], dtype=v.dtype), (extra,) + v.shape[1:])
    elif name == "cov":
        fill = jnp.ones((extra,) + v.shape[1:], v.dtype)
    else:
        fill = jnp.zeros((extra,) + v.shape[1:], v.dtype)
    return jnp.concatenate([v, fill])


def density_anomalies(model, X, *, percentile: float = 2.0, threshold: float | None = None):
    """Points of `X` whose log density under `model` is below a threshold (Géron, ch. 8, Figure 8-17).

    Args:
        model: a fitted mixture (anything with `score_samples`).
        X: `(n, d)` points.
        percentile: with no `threshold`, use this percentile of the densities of X (2: about 2% flagged).
        threshold: a log-density threshold, e.g. one found on training data, to flag new points.

    Returns:
        `(mask, threshold)`: a boolean `(n,)` array, True for anomalies, and the threshold used.
    """
    densities = model.score_samples(X)
    if threshold is None:
        if not 0 <= percentile <= 100:
            raise ValueError(f"density_anomalies: percentile must be in [0, 100], got {percentile!r}")
        threshold = float(np.percentile(densities, percentile))
    return densities < threshold, float(threshold)
