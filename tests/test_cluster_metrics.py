"""dlcore.cluster's DBSCAN and silhouette with scikit-learn's metric options (named metrics on the device and
on the host, callables, 'precomputed' dense and sparse, sparse X, sample weights), scikit-learn as the oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.cluster
import sklearn.metrics
from one_line import raises_one_line
from sklearn.base import clone
from sklearn.datasets import load_iris, make_moons
from sklearn.neighbors import NearestNeighbors

from dlcore import cluster


@pytest.fixture(scope="module")
def moons():
    X, _ = make_moons(300, noise=0.08, random_state=1)
    return X


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def _same_as_sklearn(ours, X, **kwargs):
    theirs = sklearn.cluster.DBSCAN(**kwargs).fit(X)
    np.testing.assert_array_equal(ours.core_sample_indices_, theirs.core_sample_indices_)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    return theirs


@pytest.mark.parametrize("metric, kwargs", [
    ("manhattan", {}), ("chebyshev", {}), ("minkowski", {"p": 3}), ("cosine", {}), ("canberra", {}),
])
def test_dbscan_named_metrics_are_scikit_learns(moons, metric, kwargs):
    eps = {"cosine": 0.001, "canberra": 0.1}.get(metric, 0.12)
    ours = cluster.DBSCAN(eps=eps, min_samples=6, metric=metric, **kwargs).fit(moons)
    theirs = _same_as_sklearn(ours, moons, eps=eps, min_samples=6, metric=metric, **kwargs)
    assert len(set(theirs.labels_)) > 2  # clusters and noise are exercised


def test_dbscan_decides_pairs_at_exactly_eps_as_scikit_learns_trees(iris):
    X, _ = iris
    # points 36 and 10 are 0.3 apart: sqrt(0.08999999999999998) <= 0.3 (squared centred data said > 0.09)
    for dtype in (np.float64, np.float32):
        for min_samples in (2, 3, 5):
            ours = cluster.DBSCAN(eps=0.3, min_samples=min_samples).fit(X.astype(dtype))
            _same_as_sklearn(ours, X.astype(dtype), eps=0.3, min_samples=min_samples)
    assert cluster.DBSCAN(eps=0.3, min_samples=2).fit(X).labels_[36] == 0
    assert cluster.dbscan([[0.0], [1.0], [1.0]], eps=1, min_samples=2)[0].tolist() == [0, 1, 2]


def test_dbscan_precomputed_sparse_and_callable(moons):
    eps, ms = 0.12, 6
    ref = cluster.DBSCAN(eps=eps, min_samples=ms).fit(moons)
    D = sklearn.metrics.pairwise_distances(moons)
    dense = cluster.DBSCAN(eps=eps, min_samples=ms, metric="precomputed").fit(D)
    graph = NearestNeighbors(radius=0.2).fit(moons).radius_neighbors_graph(moons, mode="distance")
    sparse = cluster.DBSCAN(eps=eps, min_samples=ms, metric="precomputed").fit(graph)
    sparse_x = cluster.DBSCAN(eps=eps, min_samples=ms).fit(sp.csr_matrix(moons))
    called = cluster.DBSCAN(eps=eps, min_samples=ms, metric=lambda u, v: float(np.sqrt(np.sum((u - v) ** 2)))).fit(moons)
    for other in (dense, sparse, sparse_x, called):
        np.testing.assert_array_equal(other.labels_, ref.labels_)
        np.testing.assert_array_equal(other.core_sample_indices_, ref.core_sample_indices_)
    assert sp.issparse(sparse_x.components_) and sparse_x.components_.shape == (len(ref.core_sample_indices_), 2)
    # a stored entry <= eps is a neighbour, a missing one is not (rows 0 and 1 have only their diagonal)
    ar = np.zeros((5, 5))
    ar[2, 3] = ar[3, 2] = ar[3, 4] = ar[4, 3] = 0.1
    labels = cluster.DBSCAN(eps=0.2, min_samples=2, metric="precomputed").fit(sp.csr_matrix(ar)).labels_
    assert labels.tolist() == [-1, -1, 0, 0, 0]


def test_dbscan_sample_weight_is_repetition(moons):
    w = np.random.default_rng(0).integers(0, 4, len(moons))
    ours = cluster.DBSCAN(eps=0.1, min_samples=8).fit(moons, sample_weight=w)
    theirs = sklearn.cluster.DBSCAN(eps=0.1, min_samples=8).fit(moons, sample_weight=w)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    repeated = cluster.DBSCAN(eps=0.1, min_samples=8).fit(np.repeat(moons, w, axis=0))
    core = np.zeros(len(moons), bool)
    core[ours.core_sample_indices_] = True
    rep_core = np.zeros(len(repeated.labels_), bool)
    rep_core[repeated.core_sample_indices_] = True
    np.testing.assert_array_equal(np.repeat(core, w), rep_core)


def test_dbscan_is_a_scikit_learn_estimator(moons):
    db = cluster.DBSCAN(eps=0.2, metric="minkowski", metric_params={"p": 1})
    twin = clone(db).set_params(min_samples=7)
    assert twin.get_params()["min_samples"] == 7 and twin.get_params()["metric_params"] == {"p": 1}
    labels = twin.fit_predict(moons)
    assert labels.dtype == np.intp and twin.core_sample_indices_.dtype == np.intp
    np.testing.assert_array_equal(labels, cluster.DBSCAN(eps=0.2, metric="manhattan", min_samples=7).fit(moons).labels_)
    with pytest.warns(SyntaxWarning, match="Parameter p is found in metric_params"):
        cluster.DBSCAN(eps=0.2, metric="minkowski", metric_params={"p": 1}, p=3).fit(moons)


@pytest.mark.parametrize("metric, kwargs", [
    ("euclidean", {}), ("manhattan", {}), ("chebyshev", {}), ("minkowski", {"p": 3}), ("cosine", {}),
    ("sqeuclidean", {}), ("braycurtis", {}),
])
def test_silhouette_named_metrics_are_scikit_learns(iris, metric, kwargs):
    X, y = iris
    ours = cluster.silhouette_samples(X, y, metric=metric, **kwargs)
    np.testing.assert_allclose(ours, sklearn.metrics.silhouette_samples(X, y, metric=metric, **kwargs),
                               rtol=1e-9, atol=1e-12)
    assert ours.dtype == np.float64


def test_silhouette_precomputed_sparse_callable_and_subsets(iris):
    X, y = iris
    expected = sklearn.metrics.silhouette_score(X, y)
    D = sklearn.metrics.pairwise_distances(X)
    assert cluster.silhouette_score(D, y, metric="precomputed") == pytest.approx(expected, rel=1e-12)
    assert cluster.silhouette_score(sp.csr_matrix(D), y, metric="precomputed") == pytest.approx(expected, rel=1e-12)
    assert cluster.silhouette_score(sp.csc_matrix(X), y) == pytest.approx(expected, rel=1e-12)
    # a data-dependent metric parameter (seuclidean's V) comes from all of X, not from each block of rows
    np.testing.assert_allclose(cluster.silhouette_samples(X, y, metric="seuclidean", chunk_size=40),
                               sklearn.metrics.silhouette_samples(X, y, metric="seuclidean"), rtol=1e-12)
    manhattan = cluster.silhouette_score(X, y, metric=lambda u, v: float(np.abs(u - v).sum()))
    assert manhattan == pytest.approx(sklearn.metrics.silhouette_score(X, y, metric="manhattan"), rel=1e-12)
    # the same subset for the matrix and the points (same seed, RandomState or int)
    a = cluster.silhouette_score(D, y, metric="precomputed", sample_size=70, random_state=np.random.RandomState(3))
    b = cluster.silhouette_score(X, y, sample_size=70, random_state=np.random.RandomState(3))
    assert a == pytest.approx(b, rel=1e-12) and a != pytest.approx(expected, rel=1e-6)
    f32 = cluster.silhouette_samples(X.astype(np.float32), y)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, sklearn.metrics.silhouette_samples(X, y), atol=2e-6)


@pytest.mark.parametrize("call, message", [
    (lambda: cluster.DBSCAN(metric="nope").fit(np.ones((4, 2))), "metric must be 'precomputed', a callable or one of"),
    (lambda: cluster.DBSCAN(metric="precomputed").fit(np.ones((4, 3))), "must be square"),
    (lambda: cluster.DBSCAN(metric="precomputed").fit(-np.ones((4, 4))), "must be non-negative"),
    (lambda: cluster.DBSCAN().fit(np.ones((4, 2)), sample_weight=[1, 2]), "sample_weight must have shape (4,)"),
    (lambda: cluster.DBSCAN(algorithm="octree").fit(np.ones((4, 2))), "algorithm must be one of"),
    (lambda: cluster.DBSCAN(metric="manhattan").fit(np.ones((4, 2))).predict(np.ones((1, 2))),
     "predict needs a fit with the Euclidean metric"),
    (lambda: cluster.silhouette_samples(np.eye(4) + 0.5, [0, 0, 1, 1], metric="precomputed"), "contains non-zero"),
    (lambda: cluster.silhouette_score(np.ones((6, 2)), [0, 1] * 3, metric="cosinus"), "metric must be"),
    (lambda: cluster.silhouette_score(np.ones((6, 2)), np.arange(6)), "Number of labels is 6"),
])
def test_bad_metric_input_raises_a_one_line_value_error(call, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises_one_line(call, message)
