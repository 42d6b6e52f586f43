"""dlcore.cluster: k-means, silhouette, DBSCAN and the classifiers against scikit-learn (the oracle) and
the book's figures (Géron, ch. 8); bad input; the benchmark smoke run. Mixtures: test_cluster_mixture.py."""

from __future__ import annotations

import builtins

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import sklearn.cluster
import sklearn.exceptions
import sklearn.linear_model
import sklearn.metrics
import sklearn.neighbors
import sklearn.utils.validation
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs, make_moons

from dlcore import bench, cluster
from dlcore.cluster import kmeans as kmeans_module

F64 = jnp.float64
GOOD_INIT = np.array([[-3, 3], [-3, 2], [-3, 1], [-1, 2], [0, 2]], float)
X_NEW = np.array([[0, 2], [3, 2], [-3, 3], [-3, 2.5]], float)


@pytest.fixture(scope="module")
def blobs():
    """The book's five blobs (Géron, ch. 8, Figure 8-2; notebook arguments)."""
    X, _ = make_blobs(n_samples=2000, centers=[[0.2, 2.3], [-1.5, 2.3], [-2.8, 1.8], [-2.8, 2.8], [-2.8, 1.3]],
                      cluster_std=[0.4, 0.3, 0.1, 0.1, 0.1], random_state=7)
    return X


@pytest.fixture(scope="module")
def moons():
    return make_moons(n_samples=1000, noise=0.05, random_state=42)[0]


@pytest.fixture(scope="module")
def good(blobs):
    return cluster.KMeans(5, init=GOOD_INIT, dtype=F64).fit(blobs), \
        sklearn.cluster.KMeans(5, init=GOOD_INIT, n_init=1).fit(blobs)


# --------------------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------------------


def test_kmeans_from_good_init_equals_scikit_learn_and_the_book(blobs, good):
    ours, theirs = good
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-12)
    assert ours.inertia_ == pytest.approx(211.59853725816828, rel=1e-12)  # Géron, ch. 8, Centroid initialization methods
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)  # same init: same numbering
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X_NEW), theirs.transform(X_NEW), rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(X_NEW), theirs.predict(X_NEW))
    assert ours.score(blobs) == pytest.approx(theirs.score(blobs), rel=1e-12)
    assert ours.labels_.shape == (2000,) and ours.cluster_centers_.shape == (5, 2)
    # the book's transform (Géron, ch. 8, k-Means Clustering), up to the cluster numbering
    book = np.array([[2.81, 0.33, 2.9, 1.49, 2.89], [5.81, 2.8, 5.85, 4.48, 5.84],
                     [1.21, 3.29, 0.29, 1.69, 1.71], [0.73, 3.22, 0.36, 1.55, 1.22]])
    np.testing.assert_allclose(np.sort(ours.transform(X_NEW).round(2), axis=1), np.sort(book, axis=1), atol=1e-9)


def test_kmeans_plusplus_and_random_with_n_init_reach_the_same_optimum(blobs, good):
    target = good[1].inertia_
    for init in ("k-means++", "random"):
        km = cluster.KMeans(5, init=init, n_init=10, random_state=42, dtype=F64).fit(blobs)
        assert km.inertia_ == pytest.approx(target, rel=1e-9), init
    f32 = cluster.KMeans(5, n_init=10, random_state=42).fit(blobs.astype(np.float32))  # float32 in, float32 out
    assert f32.cluster_centers_.dtype == np.float32 and f32.inertia_ == pytest.approx(target, rel=1e-5)
    # the elbow's figures (Géron, ch. 8, Finding the optimal number of clusters): scikit-learn's best of 10 k-means++ runs, the same optimum
    for k in (3, 4):
        ref = sklearn.cluster.KMeans(k, n_init=10, random_state=0).fit(blobs).inertia_
        ours = cluster.KMeans(k, n_init=10, random_state=0, dtype=F64).fit(blobs).inertia_
        assert ours == pytest.approx(ref, rel=1e-9)


def test_a_sweep_over_k_compiles_once_on_small_data(blobs):
    cluster.KMeans(2, n_init=10, random_state=0).fit(blobs)
    before = kmeans_module._runs._cache_size()
    for k in range(3, 8):
        km = cluster.KMeans(k, n_init=10, random_state=0).fit(blobs)
        assert km.cluster_centers_.shape == (k, 2) and set(np.unique(km.labels_)) == set(range(k))
    assert kmeans_module._runs._cache_size() == before


def test_kmeans_plusplus_function_picks_distinct_points(blobs):
    centers, idx = cluster.kmeans_plusplus(blobs, 5, random_state=3)
    assert centers.shape == (5, 2) and len(set(idx.tolist())) == 5
    np.testing.assert_array_equal(centers, blobs[idx])


def test_seeds_draw_alike_in_float32_and_float64_and_out_of_range_seeds_are_refused(blobs):
    """kmeans_plusplus made its key inside the float64 context: seed 2**32 then drew another key in float64 than
    in float32 (where it equalled seed 0). Keys are made outside it now, and seeds outside scikit-learn's
    [0, 2**32 - 1] are refused, by every estimator."""
    for seed in (0, 7, 2 ** 32 - 1):
        a = cluster.kmeans_plusplus(blobs.astype(np.float32), 4, random_state=seed)[1]
        b = cluster.kmeans_plusplus(blobs.astype(np.float64), 4, random_state=seed)[1]
        np.testing.assert_array_equal(a, b)
    for seed in (2 ** 32, -1):
        for run in (lambda: cluster.kmeans_plusplus(blobs, 4, random_state=seed),
                    lambda: cluster.KMeans(3, random_state=seed).fit(blobs),
                    lambda: cluster.GaussianMixture(2, random_state=seed).fit(blobs)):
            with pytest.raises(ValueError, match=r"random_state must be an int in the range \[0, 4294967295\]"):
                run()


def test_an_empty_cluster_is_moved_to_a_far_point():
    X, _ = make_blobs(300, centers=3, random_state=0)
    init = np.array([X[0], X[1], [1e3, 1e3]])  # nothing is ever nearest to the third centre
    km = cluster.KMeans(3, init=init, dtype=F64).fit(X)
    assert np.bincount(km.labels_, minlength=3).min() > 0
    assert km.inertia_ <= sklearn.cluster.KMeans(2, init=init[:2], n_init=1).fit(X).inertia_


def test_minibatch_kmeans_fit_and_partial_fit(blobs, good):
    full = good[0].inertia_  # the optimum
    mb = cluster.MiniBatchKMeans(5, batch_size=256, n_init=3, random_state=0).fit(blobs)
    assert mb.inertia_ < 1.15 * full and mb.labels_.shape == (2000,) and mb.n_steps_ > 0
    np.testing.assert_array_equal(mb.predict(blobs), mb.labels_)
    inc = cluster.MiniBatchKMeans(5, n_init=3, random_state=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        for batch in np.array_split(blobs[rng.permutation(2000)], 8):
            inc.partial_fit(batch)
    assert -inc.score(blobs) < 1.3 * full and inc.n_steps_ == 24
    with pytest.raises(ValueError, match="3 features, but the estimator was fitted with 2"):
        inc.partial_fit(np.ones((10, 3)))


# scikit-learn's estimator behaviour: weights, dtypes, sparse input, the estimator API, seeds

@pytest.fixture(scope="module")
def small():
    """60 points of 2 features in 3 blobs, an initial set of centres, and integer weights."""
    X, _ = make_blobs(60, centers=3, cluster_std=1.0, random_state=1)
    w = np.random.default_rng(0).integers(1, 4, size=60)
    return X, X[[0, 1, 2]].copy(), w


def test_sample_weight_equals_repeated_rows_and_scikit_learn(small):
    X, init, w = small
    weighted = cluster.KMeans(3, init=init).fit(X, sample_weight=w)
    repeated = cluster.KMeans(3, init=init).fit(np.repeat(X, w, axis=0))
    np.testing.assert_array_equal(np.repeat(weighted.labels_, w), repeated.labels_)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-12)
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-12)
    ref = sklearn.cluster.KMeans(3, init=init, n_init=1).fit(X, sample_weight=w)
    np.testing.assert_allclose(weighted.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    assert weighted.n_iter_ == ref.n_iter_ and weighted.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    assert weighted.score(X, sample_weight=w) == pytest.approx(ref.score(X, sample_weight=w), rel=1e-12)
    with pytest.raises(ValueError, match="sample_weight must have shape .60,.") as info:
        cluster.KMeans(3).fit(X, sample_weight=w[:5])
    assert "\n" not in str(info.value)


def test_dtype_follows_the_input_as_in_scikit_learn(small):
    X, _, _ = small
    for given, expected in ((X, np.float64), (X.astype(np.float32), np.float32), ((10 * X).astype(int), np.float64),
                            (X.tolist(), np.float64)):
        km = cluster.KMeans(3, random_state=0).fit(given)
        assert km.cluster_centers_.dtype == expected and km.transform(given).dtype == expected
        assert km.labels_.dtype == np.int32 and km.predict(given).dtype == np.int32
        assert km.cluster_centers_.dtype == sklearn.cluster.KMeans(3, n_init=1).fit(given).cluster_centers_.dtype
    assert cluster.KMeans(3, random_state=0, dtype="float32").fit(X).cluster_centers_.dtype == np.float32  # overrides


def test_the_same_seed_gives_the_same_result_in_float32_and_float64(small):
    X, _, _ = small
    for est in (cluster.KMeans(3, random_state=5), cluster.MiniBatchKMeans(3, batch_size=20, random_state=5)):
        f64, f32 = clone(est).fit(X), clone(est).fit(X.astype(np.float32))
        np.testing.assert_array_equal(f64.labels_, f32.labels_)
        np.testing.assert_allclose(f64.cluster_centers_, f32.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_estimator_api_clone_pipeline_and_grid_search(small):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _, _ = small
    km = cluster.KMeans(3, random_state=0)
    assert clone(km).get_params() == km.get_params() and clone(km).set_params(n_clusters=4).n_clusters == 4
    pipe = make_pipeline(StandardScaler(), km).fit(X)
    assert pipe.predict(X).shape == (60,)
    assert list(pipe[-1].get_feature_names_out()) == ["kmeans0", "kmeans1", "kmeans2"]
    search = GridSearchCV(cluster.KMeans(random_state=0), {"n_clusters": [1, 3]}, cv=2).fit(X)
    assert search.best_params_ == {"n_clusters": 3}  # the score is minus the inertia: more clusters score higher


def test_sparse_input_gives_the_dense_result(small):
    X, _, w = small
    X = np.where(X > 0, X, 0)  # some zeros, as sparse data has
    for est in (cluster.KMeans(3, random_state=2), cluster.MiniBatchKMeans(3, batch_size=20, random_state=2)):
        dense = clone(est).fit(X, sample_weight=w)
        sparse = clone(est).fit(scipy.sparse.csr_matrix(X), sample_weight=w)
        np.testing.assert_array_equal(sparse.labels_, dense.labels_)
        np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_, rtol=1e-10, atol=1e-12)
    Xcsc = scipy.sparse.csc_array(X)
    np.testing.assert_array_equal(dense.predict(Xcsc), dense.labels_)
    np.testing.assert_allclose(dense.transform(Xcsc), dense.transform(X), rtol=1e-10, atol=1e-12)
    centers, idx = cluster.kmeans_plusplus(Xcsc, 3, random_state=4)
    np.testing.assert_array_equal(idx, cluster.kmeans_plusplus(X, 3, random_state=4)[1])
    np.testing.assert_array_equal(centers, X[idx])


def test_random_state_takes_a_numpy_random_state_and_keys(small):
    X, _, _ = small
    a = cluster.KMeans(3, random_state=np.random.RandomState(0)).fit(X)
    b = cluster.KMeans(3, random_state=np.random.RandomState(0)).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    rs = np.random.RandomState(0)
    cluster.KMeans(3, random_state=rs).fit(X)
    assert rs.randint(100) != np.random.RandomState(0).randint(100)  # consumed, as scikit-learn's estimators do
    import jax
    cluster.KMeans(3, random_state=jax.random.key(1)).fit(X)
    with pytest.raises(ValueError, match="random_state must be None, an int seed, a np.random.RandomState") as info:
        cluster.KMeans(3, random_state=1.5).fit(X)
    assert "\n" not in str(info.value)


def test_empty_cluster_relocation_and_minibatch_steps_as_scikit_learn():
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    init = np.array([[0.5, 0.5], [3, 3]])  # the second centre is empty at the first iteration
    ours, ref = cluster.KMeans(2, init=init).fit(X), sklearn.cluster.KMeans(2, init=init, n_init=1).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 3 and ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    Xb, _ = make_blobs(100, centers=3, random_state=0)
    mb = cluster.MiniBatchKMeans(3, batch_size=30, tol=0, max_no_improvement=None, max_iter=10, random_state=0).fit(Xb)
    assert mb.n_steps_ == (10 * 100) // 30 and mb.n_iter_ == 10  # scikit-learn's step count, rounded down
    assert cluster.MiniBatchKMeans(3, batch_size=500, random_state=0).fit(Xb)._batch_size == 100  # capped at n


# --------------------------------------------------------------------------------------------------
# silhouette
# --------------------------------------------------------------------------------------------------


def test_silhouette_equals_scikit_learn_and_the_book(blobs, good):
    labels = good[0].labels_
    assert cluster.silhouette_score(blobs, labels, dtype=F64) == pytest.approx(0.655517642572828, rel=1e-12)
    # blocks of 300 rows (the last one padded), a singleton cluster, string labels
    odd = labels.astype(str)
    odd[7] = "alone"
    ours = cluster.silhouette_samples(blobs, odd, chunk_size=300, dtype=F64)
    np.testing.assert_allclose(ours, sklearn.metrics.silhouette_samples(blobs, odd), rtol=1e-9, atol=1e-12)
    assert ours[7] == 0
    f32 = cluster.silhouette_score(blobs, labels)
    assert f32 == pytest.approx(0.655517642572828, rel=1e-5)
    sub = cluster.silhouette_score(blobs, labels, sample_size=500, random_state=0, dtype=F64)
    assert sub == pytest.approx(0.6555, abs=0.03)


# --------------------------------------------------------------------------------------------------
# DBSCAN and nearest neighbours
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_dbscan_labels_are_scikit_learns(moons, eps):
    ours = cluster.DBSCAN(eps=eps, min_samples=5).fit(moons)
    theirs = sklearn.cluster.DBSCAN(eps=eps, min_samples=5).fit(moons)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)  # numbering included
    np.testing.assert_array_equal(ours.core_sample_indices_, theirs.core_sample_indices_)
    np.testing.assert_array_equal(ours.components_, theirs.components_)  # float64 in, float64 out
    assert ours.labels_.dtype == theirs.labels_.dtype and ours.components_.dtype == theirs.components_.dtype
    if eps == 0.05:  # Géron, ch. 8, DBSCAN, Figure 8-13: seven clusters, the labels the book prints
        assert ours.labels_.max() + 1 == 7
        assert ours.labels_[:10].tolist() == [0, 2, -1, -1, 1, 0, 0, 0, 2, 5]


def test_dbscan_in_blocks_with_border_points_and_noise():
    X, _ = make_blobs(1500, centers=6, cluster_std=1.2, random_state=3)
    ours = cluster.DBSCAN(eps=0.35, min_samples=12, chunk_size=128).fit(X)
    theirs = sklearn.cluster.DBSCAN(eps=0.35, min_samples=12).fit(X)
    assert (theirs.labels_ == -1).sum() > 50  # noise and border points are exercised
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_dbscan_predict_and_knn_reproduce_the_book(moons):
    db = cluster.DBSCAN(eps=0.2).fit(moons)
    X_new = np.array([[-0.5, 0], [0, 0.5], [1, -0.1], [2, 1]])
    knn = cluster.KNeighborsClassifier(50).fit(db.components_, db.labels_[db.core_sample_indices_])
    assert knn.predict(X_new).tolist() == [1, 0, 1, 0]  # Géron, ch. 8, DBSCAN
    np.testing.assert_allclose(knn.predict_proba(X_new), [[0.18, 0.82], [1, 0], [0.12, 0.88], [1, 0]], atol=1e-6)
    assert db.predict(X_new, max_distance=0.2).tolist() == [-1, 0, 1, -1]  # Géron, ch. 8, DBSCAN, Figure 8-14
    ref = sklearn.neighbors.KNeighborsClassifier(50).fit(db.components_, db.labels_[db.core_sample_indices_])
    dist, idx = knn.kneighbors(X_new, n_neighbors=5)
    rdist, ridx = ref.kneighbors(X_new, n_neighbors=5)
    np.testing.assert_allclose(dist, rdist, rtol=1e-5)
    np.testing.assert_array_equal(idx, ridx)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_classifier_matches_scikit_learn(weights):
    X, y = load_digits(return_X_y=True)
    ours = cluster.KNeighborsClassifier(7, weights=weights, dtype=F64).fit(X[:1000], y[:1000])
    theirs = sklearn.neighbors.KNeighborsClassifier(7, weights=weights).fit(X[:1000], y[:1000])
    np.testing.assert_allclose(ours.predict_proba(X[1000:]), theirs.predict_proba(X[1000:]), atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X[1000:]), theirs.predict(X[1000:]))


# --------------------------------------------------------------------------------------------------
# Logistic regression (the semi-supervised experiments' classifier)
# --------------------------------------------------------------------------------------------------


def test_logistic_regression_reaches_scikit_learns_optimum():
    X, y = load_digits(return_X_y=True)
    X = X / 16
    ours = cluster.LogisticRegression(C=1.0, tol=1e-9, max_iter=5000, dtype=F64).fit(X[:400], y[:400])
    theirs = sklearn.linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X[:400], y[:400])
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X[400:]), theirs.predict_proba(X[400:]), atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X[400:]), theirs.predict(X[400:]))
    # two classes: one logit, as scikit-learn
    yb = y[:400] == 3
    ours = cluster.LogisticRegression(tol=1e-9, max_iter=5000, dtype=F64).fit(X[:400], yb)
    theirs = sklearn.linear_model.LogisticRegression(tol=1e-10, max_iter=10_000).fit(X[:400], yb)
    assert ours.coef_.shape == (1, 64)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-5)
    assert ours.score(X[400:], y[400:] == 3) == theirs.score(X[400:], y[400:] == 3)


# --------------------------------------------------------------------------------------------------
# Bad input: one-line ValueErrors before any long computation
# --------------------------------------------------------------------------------------------------


def _fitted_kmeans():
    return cluster.KMeans(2, random_state=0).fit(np.random.default_rng(0).normal(size=(20, 2)))


NAN = np.ones((10, 2))
NAN[3, 1] = np.nan
INF = np.ones((10, 2))
INF[4, 0] = np.inf


@pytest.mark.parametrize("call, message", [
    (lambda: cluster.KMeans(5).fit(np.ones((3, 2))), "n_samples=3 should be >= n_clusters=5"),
    (lambda: cluster.MiniBatchKMeans(5).fit(np.ones((3, 2))), "n_samples=3 should be >= n_clusters=5"),
    (lambda: cluster.GaussianMixture(4).fit(np.ones((3, 2))), "Expected n_samples >= n_components but got n_components = 4, n_samples = 3"),
    (lambda: cluster.KMeans(2).fit(NAN), "contains NaN or infinity .first at row 3"),
    (lambda: cluster.GaussianMixture(2).fit(INF), "contains NaN or infinity .first at row 4"),
    (lambda: cluster.DBSCAN().fit(NAN), "contains NaN or infinity"),
    (lambda: cluster.silhouette_score(INF, np.arange(10) % 2), "contains NaN or infinity"),
    (lambda: _fitted_kmeans().predict(np.ones((4, 3))), "X has 3 features, but the estimator was fitted with 2"),
    (lambda: cluster.KMeans(2).predict(np.ones((4, 2))), "not fitted yet; call fit.X. before predict"),
    (lambda: cluster.GaussianMixture(2).score_samples(np.ones((4, 2))), "not fitted yet"),
    (lambda: cluster.DBSCAN().predict(np.ones((4, 2))), "not fitted yet"),
    (lambda: cluster.KMeans(2).fit(np.ones(10)), "must be 2-D .* got shape .10,."),
    (lambda: cluster.KMeans(2, init=np.ones((3, 2))).fit(np.ones((10, 2))), "The shape of the initial centers .3, 2. does not match the number of clusters 2"),
    (lambda: cluster.KMeans(2, init="kmeans").fit(np.ones((10, 2))), r"init \(a str, or an \(n_clusters, n_features\) array, or a callable\) must be one of 'k-means..', 'random'"),
    (lambda: cluster.KMeans(0).fit(np.ones((10, 2))), "n_clusters must be an int >= 1"),
    (lambda: cluster.KMeans(2, dtype="float16").fit(np.ones((10, 2))), "dtype must be float32 or float64"),
    (lambda: cluster.KMeans(2).fit([["a", "b"]]), "must be a numeric array"),
    (lambda: cluster.DBSCAN(eps=0).fit(np.ones((10, 2))), "eps must be a finite number > 0"),
    (lambda: cluster.GaussianMixture(2, covariance_type="round").fit(np.ones((10, 2))), "covariance_type must be"),
    (lambda: cluster.GaussianMixture(2, weights_init=[0.5, 0.6]).fit(np.ones((10, 2))), "The parameter 'weights' should be normalized"),
    (lambda: cluster.GaussianMixture(2, precisions_init=np.ones((2, 2))).fit(np.ones((10, 2))),
     "The parameter 'full precision' should have the shape of .2, 2, 2."),
    (lambda: cluster.silhouette_score(np.ones((10, 2)), np.zeros(10)), "Number of labels is 1. Valid values are 2"),
    (lambda: cluster.silhouette_score(np.ones((10, 2)), np.zeros(9)), "labels must have shape .10,."),
    (lambda: cluster.KNeighborsClassifier(50).fit(np.ones((10, 2)), np.zeros(10)), "n_neighbors=50 is more than"),
    (lambda: cluster.LogisticRegression().fit(np.ones((10, 2)), np.zeros(10)), "a single class"),
])
def test_bad_input_raises_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_not_fitted_error_is_scikit_learns():
    with pytest.raises(sklearn.exceptions.NotFittedError):
        cluster.KMeans(2).transform(np.ones((2, 2)))
    with pytest.raises(sklearn.exceptions.NotFittedError):
        sklearn.utils.validation.check_is_fitted(cluster.MiniBatchKMeans(2))
    assert issubclass(cluster.NotFittedError, sklearn.exceptions.NotFittedError)
    assert issubclass(cluster.NotFittedError, ValueError) and issubclass(cluster.NotFittedError, AttributeError)


# --------------------------------------------------------------------------------------------------
# Plots and the benchmark
# --------------------------------------------------------------------------------------------------


def test_plots_draw_the_curves_and_the_knives(blobs, good):
    pytest.importorskip("matplotlib")
    ax = cluster.plot_elbow([1, 2, 3, 4, 5], [3534.8, 1149.6, 653.2, 261.8, 211.6], elbow=4)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [3534.8, 1149.6, 653.2, 261.8, 211.6])
    ax = cluster.plot_silhouette_scores([2, 3], [0.59, 0.57])
    assert list(ax.lines[0].get_xdata()) == [2, 3]
    labels = good[0].labels_
    s = cluster.silhouette_samples(blobs, labels)
    ax = cluster.plot_silhouette_diagram(s, labels, title="k = 5")
    assert len(ax.collections) == 5 and ax.get_title() == "k = 5"
    assert ax.lines[0].get_xdata()[0] == pytest.approx(s.mean())  # the dashed mean


def test_plots_without_matplotlib_say_how_to_install_it(monkeypatch):
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'dlcore\[plot\]'"):
        cluster.plot_elbow([1, 2], [2.0, 1.0])


def test_cluster_benchmark_quick_reports_both_libraries():
    rows = bench.run(["cluster"], quick=True)
    assert [r["case"].split(" n=")[0] for r in rows] == ["kmeans same init", "kmeans++ x4", "gmm full k=4 20 EM"]
    for r in rows:
        assert r["benchmark"] == "cluster" and r["unit"] == "s" and r["peer_name"] == "scikit-learn"
        assert r["dlcore"] > 0 and r["peer"] > 0 and r["ratio"] == pytest.approx(r["peer"] / r["dlcore"])
