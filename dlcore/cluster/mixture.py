"""Gaussian mixtures by expectation-maximisation, the variational Bayesian mixture, density anomalies.

Hands-On Machine Learning (PyTorch edition), ch. 8, "Gaussian Mixtures": the model and EM
(Figure 8-15), covariance types (Figure 8-16), anomaly detection with a density threshold ("Using Gaussian
Mixtures for Anomaly Detection", Figure 8-17), BIC and AIC ("Selecting the Number of Clusters", Equation
8-2, Figure 8-19), Bayesian Gaussian mixtures ("Bayesian Gaussian Mixture Models").

All `n_init` initialisations run in one jitted call (`lax.map` with a batch size: a `vmap` over as
many runs as fit in memory); EM stops when the mean log-likelihood (the lower bound for the Bayesian
model) changes by less than `tol`, and the run with the best bound is kept.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, logsumexp, multigammaln

from dlcore.checks import check_float, check_int
from dlcore.cluster._common import (
    HIGHEST,
    as_key,
    batch_for,
    check_array,
    check_fitted,
    precision,
    resolve_dtype,
)
from dlcore.cluster.kmeans import _centred, _kmeans_runs, _kmeanspp, _local_trials, _map, _padded, _tolerance

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "density_anomalies"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
LOG_2PI = math.log(2 * math.pi)


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
# Variational Bayesian mixture (Bishop, PRML sect. 10.2; Géron, ch. 8, Bayesian Gaussian Mixture Models)
# Posterior q(weights) Dirichlet or stick-breaking Beta; q(mean_k, precision_k) Normal-Wishart
# (Normal-Gamma per feature for diag, one Gamma per component for spherical, one shared Wishart for
# tied), with parameters beta (mean precision), nu (degrees of freedom) and Winv (inverse scale);
# `cov` = Winv / nu is the posterior's covariance estimate, as scikit-learn reports it.
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
        Winv = W0inv + nk.sum() * Sk + jnp.einsum("k,kd,ke->de", shrink, dm, dm, precision=HIGHEST)
        nu = nu0 + nk.sum()
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


def _expected_log_det_precision(p, P, cov_type, d):
    """E[log |precision_k|] under q, `(K,)` or scalar for tied."""
    nu = p["nu"]
    half = _half_log_det_precision(P, cov_type, d)  # 0.5 log |nu W| (feature-wise for diag)
    if cov_type in ("full", "tied"):
        i = jnp.arange(d, dtype=nu.dtype)
        psi = jnp.sum(digamma(0.5 * (jnp.expand_dims(nu, -1) - i)), axis=-1)
        return psi + d * math.log(2) + 2 * half - d * jnp.log(nu)
    if cov_type == "diag":
        return d * (digamma(0.5 * nu) + math.log(2) - jnp.log(nu)) + 2 * half
    return d * (digamma(0.5 * d * nu) - jnp.log(0.5 * d * nu)) + 2 * half


def _bgm_weighted_log_prob(X, p, cov_type, process, valid=None):
    d = X.shape[1]
    P = _precision_cholesky(p["cov"], cov_type)
    quad = d / p["beta"][None] + _mahalanobis(X, p["means"], P, cov_type)
    log_det = _expected_log_det_precision(p, P, cov_type, d)
    w = _expected_log_weights(p["conc"], process, valid)[None] + 0.5 * log_det - 0.5 * d * LOG_2PI - 0.5 * quad
    return _mask(w, valid)


def _log_normaliser(beta, nu, Winv, cov_type, d):
    """log of the Normal-Wishart (-Gamma) normaliser for given posterior parameters, summed over components."""
    if cov_type in ("full", "tied"):
        _, logdet = jnp.linalg.slogdet(Winv)
        wishart = 0.5 * nu * d * math.log(2) - 0.5 * nu * logdet + multigammaln(0.5 * nu, d)
        gauss = 0.5 * d * (LOG_2PI - jnp.log(beta))
        return jnp.sum(gauss) + jnp.sum(wishart)
    if cov_type == "diag":
        return jnp.sum(0.5 * d * (LOG_2PI - jnp.log(beta)) + d * gammaln(0.5 * nu)
                       - 0.5 * nu * jnp.sum(jnp.log(0.5 * Winv), axis=-1))
    return jnp.sum(0.5 * d * (LOG_2PI - jnp.log(beta)) + gammaln(0.5 * d * nu) - 0.5 * d * nu * jnp.log(0.5 * d * Winv))


def _bgm_lower_bound(log_prob_norm, log_resp, p, hyper, cov_type, process):
    """ELBO right after the M-step: entropy of q(z) + log(Z_posterior / Z_prior) - (n d / 2) log 2 pi.

    For a conjugate model whose global factors are the exact updates given the responsibilities, the
    expected log joint minus the entropy of q(weights, means, precisions) collapses to the log ratio of
    the posterior and prior normalisers. Padding slots hold their priors, so their terms cancel.
    """
    n = log_resp.shape[0]
    valid = hyper["valid"]
    K_pad = valid.shape[0]
    d = p["means"].shape[1]
    resp = jnp.exp(log_resp)
    entropy = -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0))
    alpha0, conc = hyper["alpha0"], p["conc"]
    if process:
        a, b = conc
        weights = (jnp.sum(gammaln(a) + gammaln(b) - gammaln(a + b))
                   - K_pad * (gammaln(1.0) + gammaln(alpha0) - gammaln(1.0 + alpha0)))
    else:
        K = valid.sum()
        weights = (jnp.sum(jnp.where(valid, gammaln(conc), 0)) - gammaln(jnp.sum(jnp.where(valid, conc, 0)))
                   - K * gammaln(alpha0) + gammaln(K * alpha0))
    post = _log_normaliser(p["beta"], p["nu"], p["Winv"], cov_type, d)
    beta0 = jnp.full((K_pad,), hyper["beta0"], log_resp.dtype)
    nu0 = hyper["nu0"] if cov_type == "tied" else jnp.full((K_pad,), hyper["nu0"], log_resp.dtype)
    W0inv = hyper["W0inv"] if cov_type == "tied" else jnp.broadcast_to(hyper["W0inv"], (K_pad,) + hyper["W0inv"].shape)
    prior = _log_normaliser(beta0, nu0, W0inv, cov_type, d)
    return entropy + weights + post - prior - 0.5 * n * d * LOG_2PI  # a total, as scikit-learn's `tol` expects


def _bgm_weights(conc: np.ndarray, process: bool) -> np.ndarray:
    """Expected weights under q (NumPy): stick-breaking means for the process, Dirichlet means otherwise."""
    if process:
        a, b = conc
        v = a / (a + b)
        w = v * np.concatenate([np.ones((1,), v.dtype), np.cumprod(1 - v)[:-1]])
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


@functools.partial(jax.jit, static_argnames=("kind", "cov_type", "process", "batch", "random_init"))
def _em_runs(keys, labels, X, hyper, overrides, max_iter, tol, *, kind, cov_type, process, batch, random_init):
    """EM from `len(keys)` initialisations on centred X; per run: params, lower bound, iterations, converged."""
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
            i, _, _, converged = s
            return (i < max_iter) & ~converged

        def body(s):
            i, p, lb, _ = s
            norm, log_resp = estep(p)
            p = mstep(X, jnp.exp(log_resp))
            new = bound(norm, log_resp, p)
            return i + 1, p, new, jnp.abs(new - lb) < tol

        inf = jnp.asarray(-jnp.inf, X.dtype)
        n_iter, p, lb, converged = jax.lax.while_loop(cond, body, (jnp.int32(0), p, inf, jnp.bool_(False)))
        return p, lb, n_iter, converged

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
        return jnp.argmax(w, axis=1).astype(jnp.int32)
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


# --------------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------------


class _BaseMixture:
    _kind = "gmm"
    _process = False
    means_: np.ndarray | None = None

    def _common_checks(self, X, who):
        self._dtype = dtype = resolve_dtype(self.dtype)
        X = check_array(X, dtype, who=who)
        K = check_int(self.n_components, "n_components", low=1, who=who)
        if X.shape[0] < K:
            raise ValueError(f"{who}: n_samples={X.shape[0]} should be >= n_components={K}; "
                             f"ask for fewer components or pass more points")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"{who}: covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, "
                             f"got {self.covariance_type!r}")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"{who}: init_params must be one of {', '.join(INIT_PARAMS)}, got {self.init_params!r}")
        check_float(self.tol, "tol", low=0, who=who)
        check_float(self.reg_covar, "reg_covar", low=0, who=who)
        check_int(self.max_iter, "max_iter", low=1, who=who)
        check_int(self.n_init, "n_init", low=1, who=who)
        return X, K

    def _run(self, X, K, hyper, overrides, who):
        """EM on centred X (a NumPy array) from `n_init` initialisations; returns the best run's parameters."""
        n, d = X.shape
        K_pad = _padded(K, n, d)
        key = as_key(self.random_state, who)
        Xj = jnp.asarray(X)
        keys = jax.random.split(key, self.n_init)
        batch = batch_for(self.n_init, 4 * n * K_pad * d)
        # every initial parameter given: the initial responsibilities would be overridden, skip k-means
        init_params = "random" if len(overrides) == 3 else self.init_params
        labels = _initial_labels(keys, X, K, K_pad, init_params, batch)
        hyper = {"reg": jnp.asarray(self.reg_covar, X.dtype), "valid": jnp.arange(K_pad) < K, **hyper}
        overrides = {k: _pad_component_axis(v, K_pad, k, self.covariance_type) for k, v in overrides.items()}
        params, lb, n_iter, converged = _em_runs(
            keys, labels, Xj, hyper, overrides, self.max_iter, self.tol, kind=self._kind,
            cov_type=self.covariance_type, process=self._process, batch=batch, random_init=labels is None)
        params, lb, n_iter, converged = jax.device_get((params, lb, n_iter, converged))
        if not np.isfinite(lb).any() or not all(np.isfinite(v).all() for v in jax.tree.leaves(params)):
            raise ValueError(f"{who}: fitting failed because some components have ill-defined empirical covariance "
                             f"(for instance caused by singleton or collapsed samples); use fewer components, "
                             f"increase reg_covar, or scale the input data")
        best = int(np.argmax(lb))
        p = _slice({k: v[best] for k, v in params.items()}, K, self.covariance_type)
        if not bool(converged[best]):
            warnings.warn(f"{who}: the best initialisation did not converge within max_iter={self.max_iter} "
                          f"iterations; increase max_iter or tol, or try other initialisations", RuntimeWarning,
                          stacklevel=3)
        self.converged_ = bool(converged[best])
        self.n_iter_ = int(n_iter[best])
        self.lower_bound_ = float(lb[best])
        self.n_features_in_ = d
        return p

    def _set_gaussians(self, p, shift):
        """Fitted attributes from the best run's parameters (NumPy, on the host)."""
        cov = p["cov"]
        self._params = dict(p, means=p["means"] + shift)
        self.means_ = self._params["means"]
        self.covariances_ = cov
        if self.covariance_type in ("full", "tied"):
            chol = np.linalg.cholesky(cov.astype(np.float64))
            P = np.swapaxes(np.linalg.inv(chol), -1, -2)
            self.precisions_cholesky_ = P.astype(cov.dtype)
            self.precisions_ = (P @ np.swapaxes(P, -1, -2)).astype(cov.dtype)
        else:
            self.precisions_cholesky_ = (1 / np.sqrt(cov)).astype(cov.dtype)
            self.precisions_ = (1 / cov).astype(cov.dtype)

    def _outputs(self, X, method, what):
        check_fitted(self, "means_", method)
        X = check_array(X, self._dtype, who=type(self).__name__, n_features=self.n_features_in_)
        with precision(self._dtype):
            p = {k: jnp.asarray(v) for k, v in self._params.items()}
            return np.asarray(_mixture_outputs(jnp.asarray(X), p, kind=self._kind, cov_type=self.covariance_type,
                                               process=self._process, what=what))

    def score_samples(self, X) -> np.ndarray:
        """Log of the mixture's density at each row of `X (n, d)`: `(n,)` (Géron, ch. 8, Gaussian Mixtures)."""
        return self._outputs(X, "score_samples", "log_density")

    def score(self, X, y=None) -> float:
        """Mean log-likelihood of `X (n, d)` per sample."""
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component for each row: `(n, n_components)` (Géron, ch. 8)."""
        return self._outputs(X, "predict_proba", "proba")

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row of `X (n, d)`: `(n,)` int32."""
        return self._outputs(X, "predict", "labels")

    def fit_predict(self, X, y=None) -> np.ndarray:
        """`fit(X)` and return `predict(X)`."""
        return self.fit(X).predict(X)

    def sample(self, n_samples: int = 1, *, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the fitted mixture, ordered by component (Géron, ch. 8, Gaussian Mixtures: `sample`).

        Args:
            n_samples: number of points.
            random_state: int seed or key (default: the estimator's random_state).

        Returns:
            `X (n_samples, n_features)` and the component of each point `y (n_samples,)`.
        """
        check_fitted(self, "means_", "sample")
        who = type(self).__name__
        n = check_int(n_samples, "n_samples", low=1, who=who)
        key = as_key(self.random_state if random_state is None else random_state, who)
        cov = self.covariances_
        if self.covariance_type in ("full", "tied"):
            chol = np.linalg.cholesky(cov.astype(np.float64)).astype(cov.dtype)
        else:
            chol = np.sqrt(cov)
        with precision(self._dtype):
            x, y = _sample(key, jnp.asarray(self.weights_), jnp.asarray(self.means_), jnp.asarray(chol), n=n,
                           cov_type=self.covariance_type)
            return np.asarray(x), np.asarray(y)


class GaussianMixture(_BaseMixture):
    """Gaussian mixture fitted by expectation-maximisation (Géron, ch. 8, Gaussian Mixtures).

    Args:
        n_components: number of Gaussians k.
        covariance_type: 'full' (each its own covariance), 'tied' (one shared), 'diag' (axis-aligned) or
            'spherical' (one variance per component) (Géron, ch. 8, Gaussian Mixtures, Figure 8-16).
        tol: stop when the mean log-likelihood changes by less than this.
        reg_covar: added to the covariances' diagonals (keeps them positive definite).
        max_iter: most EM iterations per initialisation.
        n_init: initialisations; the one with the best final log-likelihood is kept.
        init_params: initial responsibilities from 'kmeans' (one k-means++ run's labels, the default),
            'k-means++' (its seeds), 'random' or 'random_from_data'.
        weights_init, means_init, precisions_init: optional initial parameters, overriding the ones
            `init_params` gives (precisions: shaped like `covariances_`).
        random_state: int seed or `jax.random` key (None: seed 0).
        dtype: float32 (default) or float64 (scikit-learn's figures to many digits).

    Attributes:
        weights_: `(k,)`; means_: `(k, d)`; covariances_: full `(k, d, d)`, tied `(d, d)`, diag `(k, d)`,
        spherical `(k,)`; precisions_ and precisions_cholesky_ (P with precision = P P^T) the same;
        converged_, n_iter_, lower_bound_ (mean log-likelihood of the kept run), n_features_in_.

    Example:
        >>> gm = GaussianMixture(3, n_init=10, random_state=42).fit(X)
        >>> gm.weights_, gm.bic(X), gm.predict_proba(X), gm.sample(6)
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1, init_params: str = "kmeans",
                 weights_init=None, means_init=None, precisions_init=None, random_state: Any = None,
                 dtype: Any = jnp.float32):
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
        self.dtype = dtype

    def _overrides(self, K, d, shift, who):
        out = {}
        dtype = self._dtype
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=dtype)
            if w.shape != (K,) or (w < 0).any() or not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError(f"{who}: weights_init must be {K} non-negative weights summing to 1, got shape "
                                 f"{w.shape} summing to {w.sum():.6g}")
            out["weights"] = jnp.asarray(w)
        if self.means_init is not None:
            m = check_array(self.means_init, dtype, who=who, name="means_init")
            if m.shape != (K, d):
                raise ValueError(f"{who}: means_init must have shape ({K}, {d}), got {m.shape}")
            out["means"] = jnp.asarray(m - shift)
        if self.precisions_init is not None:
            shape = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[self.covariance_type]
            prec = np.asarray(self.precisions_init, dtype=dtype)
            if prec.shape != shape:
                raise ValueError(f"{who}: precisions_init for covariance_type={self.covariance_type!r} must have "
                                 f"shape {shape}, got {prec.shape}")
            if self.covariance_type in ("full", "tied"):
                try:
                    np.linalg.cholesky(prec)
                except np.linalg.LinAlgError:
                    raise ValueError(f"{who}: precisions_init must be symmetric positive definite") from None
                out["cov"] = jnp.asarray(np.linalg.inv(prec.astype(np.float64)).astype(dtype))
            else:
                if (prec <= 0).any():
                    raise ValueError(f"{who}: precisions_init must be positive")
                out["cov"] = jnp.asarray(1.0 / prec)
        return out

    def fit(self, X, y=None) -> GaussianMixture:
        """Fit the mixture to `X (n_samples, n_features)` by EM; returns self."""
        who = "GaussianMixture"
        X, K = self._common_checks(X, who)
        Xc, shift = _centred(X)
        with precision(self._dtype):
            overrides = self._overrides(K, X.shape[1], shift, who)
            p = self._run(Xc, K, {}, overrides, who)
        self.weights_ = p["weights"]
        self._set_gaussians(p, shift)
        return self

    def _n_parameters(self) -> int:
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


class BayesianGaussianMixture(_BaseMixture):
    """Variational Bayesian Gaussian mixture that gives unneeded components (near-)zero weight (Géron, ch. 8).

    Mean-field variational inference (Bishop, Pattern Recognition and Machine Learning, sect. 10.2) with a
    Dirichlet-process (stick-breaking, the default) or Dirichlet-distribution prior on the weights and
    Normal-Wishart priors on the components (Normal-Gamma for 'diag' and 'spherical').

    Args:
        n_components: an upper bound on the number of components.
        covariance_type, tol, reg_covar, max_iter, n_init, init_params, random_state, dtype: as in
            `GaussianMixture`, except that `tol` applies to the total lower bound (as in scikit-learn).
        weight_concentration_prior_type: 'dirichlet_process' or 'dirichlet_distribution'.
        weight_concentration_prior: the weights' concentration (default 1 / n_components); smaller
            values leave more components empty.
        mean_precision_prior: beta_0, how strongly the means are pulled to `mean_prior` (default 1).
        mean_prior: `(d,)` prior mean (default: the data mean).
        degrees_of_freedom_prior: nu_0 (default: n_features).
        covariance_prior: the Wishart's inverse scale W_0^{-1} (default: the data's covariance; its
            diagonal for 'diag', mean variance for 'spherical').

    Attributes:
        weights_, means_, covariances_ (posterior covariance estimates W^{-1} / nu), precisions_,
        precisions_cholesky_, weight_concentration_, mean_precision_, degrees_of_freedom_, converged_,
        n_iter_, lower_bound_ (the evidence lower bound of the training set, a total), n_features_in_.

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
                 random_state: Any = None, dtype: Any = jnp.float32):
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
        self.dtype = dtype

    def _priors(self, X, K, who):
        n, d = X.shape
        if self.weight_concentration_prior_type not in ("dirichlet_process", "dirichlet_distribution"):
            raise ValueError(f"{who}: weight_concentration_prior_type must be 'dirichlet_process' or "
                             f"'dirichlet_distribution', got {self.weight_concentration_prior_type!r}")
        alpha0 = 1.0 / K if self.weight_concentration_prior is None else check_float(
            self.weight_concentration_prior, "weight_concentration_prior", low=0, low_open=True, who=who)
        beta0 = 1.0 if self.mean_precision_prior is None else check_float(
            self.mean_precision_prior, "mean_precision_prior", low=0, low_open=True, who=who)
        if self.degrees_of_freedom_prior is None:
            nu0 = float(d)
        else:
            nu0 = check_float(self.degrees_of_freedom_prior, "degrees_of_freedom_prior", low=0, who=who)
            if nu0 <= d - 1:
                raise ValueError(f"{who}: degrees_of_freedom_prior must be > n_features - 1 = {d - 1}, got {nu0}")
        mean = X.mean(axis=0)
        if self.mean_prior is None:
            m0 = np.zeros(d, X.dtype)  # the data mean, in the centred coordinates used inside
        else:
            m0 = np.asarray(self.mean_prior, dtype=X.dtype).reshape(-1)
            if m0.shape != (d,) or not np.isfinite(m0).all():
                raise ValueError(f"{who}: mean_prior must be {d} finite numbers, got shape {m0.shape}")
            m0 = m0 - mean
        ct = self.covariance_type
        if self.covariance_prior is None:
            cov = np.atleast_2d(np.cov(X.T.astype(np.float64))) if n > 1 else np.eye(d)
            W0inv = {"full": cov, "tied": cov, "diag": np.diag(cov).copy(), "spherical": np.diag(cov).mean()}[ct]
        else:
            W0inv = np.asarray(self.covariance_prior, dtype=np.float64)
            shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[ct]
            if W0inv.shape != shape:
                raise ValueError(f"{who}: covariance_prior for covariance_type={ct!r} must have shape {shape}, "
                                 f"got {W0inv.shape}")
            if ct in ("full", "tied"):
                try:
                    np.linalg.cholesky(W0inv)
                except np.linalg.LinAlgError:
                    raise ValueError(f"{who}: covariance_prior must be symmetric positive definite") from None
            elif (W0inv <= 0).any():
                raise ValueError(f"{who}: covariance_prior must be positive")
        dt = X.dtype
        return {"alpha0": jnp.asarray(alpha0, dt), "beta0": jnp.asarray(beta0, dt), "m0": jnp.asarray(m0, dt),
                "nu0": jnp.asarray(nu0, dt), "W0inv": jnp.asarray(W0inv, dt)}

    def fit(self, X, y=None) -> BayesianGaussianMixture:
        """Fit the variational posterior to `X (n_samples, n_features)`; returns self."""
        who = "BayesianGaussianMixture"
        X, K = self._common_checks(X, who)
        self._process = self.weight_concentration_prior_type == "dirichlet_process"
        Xc, shift = _centred(X)
        with precision(self._dtype):
            hyper = self._priors(X, K, who)
            p = self._run(Xc, K, hyper, {}, who)
        conc = p["conc"]
        self.weights_ = _bgm_weights(conc, self._process)
        self.weight_concentration_ = (conc[0], conc[1]) if self._process else conc
        self.mean_precision_ = p["beta"]
        self.degrees_of_freedom_ = p["nu"]
        self._set_gaussians(p, shift)
        return self


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
