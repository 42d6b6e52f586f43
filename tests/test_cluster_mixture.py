"""dlcore.cluster mixtures: EM against scikit-learn from the same start (all covariance types), the book's
figures (Géron, ch. 8, Gaussian Mixtures), sampling and density anomalies, and the variational Bayesian mixture."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.mixture
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from dlcore import cluster

F64 = jnp.float64
BOOK_WEIGHTS = [0.40005972, 0.20961444, 0.39032584]  # Géron, ch. 8, Gaussian Mixtures
BOOK_MEANS = np.array([[-1.40764129, 1.42712848], [3.39947665, 1.05931088], [0.05145113, 0.07534576]])


@pytest.fixture(scope="module")
def X():
    """The book's mixture data (notebook arguments): two stretched blobs and a round one, (1250, 2)."""
    X1, _ = make_blobs(n_samples=1000, centers=((4, -4), (0, 0)), random_state=42)
    X1 = X1.dot(np.array([[0.374, 0.95], [0.732, 0.598]]))
    X2, _ = make_blobs(n_samples=250, centers=1, random_state=42)
    return np.r_[X1, X2 + [6, -8]]


@pytest.fixture(scope="module")
def book_gm(X):
    return cluster.GaussianMixture(3, n_init=10, random_state=42, dtype=F64).fit(X)


def _book_order(means):
    return [int(np.argmin(np.linalg.norm(means - m, axis=1))) for m in BOOK_MEANS]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_em_from_the_same_start_equals_scikit_learn(X, covariance_type):
    # a common start: the parameters scikit-learn reaches after two EM iterations from its own init
    start = sklearn.mixture.GaussianMixture(3, covariance_type=covariance_type, max_iter=2, tol=0,
                                            random_state=1)
    with pytest.warns(Warning):
        start.fit(X)
    init = {"weights_init": start.weights_, "means_init": start.means_, "precisions_init": start.precisions_}
    theirs = sklearn.mixture.GaussianMixture(3, covariance_type=covariance_type, **init).fit(X)
    ours = cluster.GaussianMixture(3, covariance_type=covariance_type, dtype=F64, **init).fit(X)
    assert ours.n_iter_ == theirs.n_iter_ and ours.converged_ == theirs.converged_
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-10)
    assert ours.bic(X) == pytest.approx(theirs.bic(X), rel=1e-10)
    assert ours.aic(X) == pytest.approx(theirs.aic(X), rel=1e-10)
    assert ours.score(X) == pytest.approx(theirs.score(X), rel=1e-10)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-8, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_the_books_mixture(X, book_gm):
    gm = book_gm
    order = _book_order(gm.means_)
    assert sorted(order) == [0, 1, 2] and gm.converged_
    np.testing.assert_allclose(gm.weights_[order], BOOK_WEIGHTS, atol=2e-4)
    np.testing.assert_allclose(gm.means_[order], BOOK_MEANS, atol=2e-3)
    # EM stops at tol 1e-3: the last digits depend on the starting k-means partition (the book's own
    # start gives its figures exactly, see the test above); here they agree to about 3e-6
    assert gm.bic(X) == pytest.approx(8189.733705221636, rel=1e-5)  # Géron, ch. 8, Selecting the Number of Clusters
    assert gm.aic(X) == pytest.approx(8102.508425106598, rel=1e-5)
    assert gm.weights_.sum() == pytest.approx(1.0)
    f32 = cluster.GaussianMixture(3, n_init=2, random_state=42).fit(X.astype(np.float32))  # dtype follows X
    assert f32.means_.dtype == np.float32 and f32.bic(X) == pytest.approx(8189.73, rel=1e-4)


def test_sample_and_density_anomalies(X, book_gm):
    gm = book_gm
    Xs, ys = gm.sample(20_000, random_state=0)
    assert Xs.shape == (20_000, 2) and np.all(np.diff(ys) >= 0)  # ordered by component
    np.testing.assert_allclose(np.bincount(ys, minlength=3) / 20_000, gm.weights_, atol=0.01)
    for k in range(3):
        np.testing.assert_allclose(Xs[ys == k].mean(axis=0), gm.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(Xs[ys == k].T), gm.covariances_[k], atol=0.06)
    mask, threshold = cluster.density_anomalies(gm, X, percentile=2)  # Géron, ch. 8, Using Gaussian Mixtures for Anomaly Detection
    densities = gm.score_samples(X)
    assert mask.sum() == 25 and threshold == pytest.approx(np.percentile(densities, 2))
    assert densities[mask].max() < densities[~mask].min()
    far, _ = cluster.density_anomalies(gm, np.array([[0.0, 0.0], [30.0, 30.0]]), threshold=threshold)
    assert far.tolist() == [False, True]


def test_other_initialisations(X, book_gm):
    for init_params in ("k-means++", "random_from_data"):
        gm = cluster.GaussianMixture(3, init_params=init_params, n_init=4, random_state=0, dtype=F64).fit(X)
        assert gm.bic(X) == pytest.approx(book_gm.bic(X), rel=1e-3), init_params
    # near-uniform random responsibilities start every component at the data mean: EM moves by less
    # than tol at once and stops there, in scikit-learn too
    gm = cluster.GaussianMixture(3, init_params="random", n_init=4, random_state=0, dtype=F64).fit(X)
    theirs = sklearn.mixture.GaussianMixture(3, init_params="random", n_init=4, random_state=0).fit(X)
    assert gm.n_iter_ == theirs.n_iter_ == 2 and gm.bic(X) == pytest.approx(theirs.bic(X), rel=2e-3)


def test_bic_and_aic_pick_three_components(X):
    bics, aics = [], []
    for k in range(1, 7):
        gm = cluster.GaussianMixture(k, n_init=10, random_state=42, dtype=F64).fit(X)  # compiled for book_gm
        bics.append(gm.bic(X))
        aics.append(gm.aic(X))
    assert int(np.argmin(bics)) + 1 == 3 and int(np.argmin(aics)) + 1 == 3  # Figure 8-19


def test_bayesian_mixture_keeps_three_of_ten_components(X, book_gm):
    bgm = cluster.BayesianGaussianMixture(10, n_init=3, max_iter=500, random_state=42, dtype=F64).fit(X)
    assert bgm.converged_ and (bgm.weights_ > 0.01).sum() == 3  # Géron, ch. 8, Bayesian Gaussian Mixture Models
    kept = np.flatnonzero(bgm.weights_ > 0.01)
    np.testing.assert_allclose(np.sort(bgm.weights_[kept]), np.sort(BOOK_WEIGHTS), atol=0.01)
    order = _book_order(bgm.means_[kept])
    np.testing.assert_allclose(bgm.means_[kept][order], BOOK_MEANS, atol=0.05)
    assert bgm.predict_proba(X[:5]).shape == (5, 10) and bgm.weight_concentration_[0].shape == (10,)


@pytest.mark.parametrize("covariance_type, prior", [("full", "dirichlet_process"), ("full", "dirichlet_distribution"),
                                                    ("tied", "dirichlet_process"), ("diag", "dirichlet_process"),
                                                    ("spherical", "dirichlet_distribution")])
def test_bayesian_lower_bound_never_decreases(X, covariance_type, prior):
    """The updates and the bound are consistent: each iteration raises the evidence lower bound."""
    bounds = []
    for it in range(1, 25, 3):
        bgm = cluster.BayesianGaussianMixture(6, covariance_type=covariance_type, weight_concentration_prior_type=prior,
                                              max_iter=it, tol=0.0, reg_covar=0.0, random_state=0, dtype=F64)
        with pytest.warns(ConvergenceWarning, match="did not converge"):
            bgm.fit(X)
        bounds.append(bgm.lower_bound_)
    assert np.all(np.diff(bounds) >= -1e-9 * abs(bounds[0])), bounds
