"""Clustering, density estimation and anomaly detection in JAX (Hands-On ML, PyTorch ed., ch. 8).

scikit-learn's estimators and names, with jitted cores and every initialisation of `n_init` run in
the same call:

* `KMeans`, `MiniBatchKMeans`, `k_means`, `kmeans_plusplus`: k-means as scikit-learn's estimators
  (sample weights, sparse input, `clone`/`Pipeline`/`GridSearchCV`) (Géron, ch. 8, k-Means Clustering);
* `silhouette_score`, `silhouette_samples`: the silhouette, in blocks (Géron, ch. 8, Figures 8-7 to 8-9);
* `DBSCAN` (with a nearest-core-sample `predict`) and `KNeighborsClassifier` (Géron, ch. 8, DBSCAN);
* `GaussianMixture` (EM, four covariance types, BIC/AIC, sampling), `BayesianGaussianMixture`
  (variational, Dirichlet priors) and `density_anomalies` (Géron, ch. 8, Gaussian Mixtures);
* `LogisticRegression`, the classifier of the semi-supervised experiments (Géron, ch. 8, semi-supervised learning);
* `plot_elbow`, `plot_silhouette_scores`, `plot_silhouette_diagram` (matplotlib, optional).

k-means computes in the input's dtype as scikit-learn does (float32 stays float32; float64, ints and
lists in float64 under a local x64 context); the other estimators compute in float32 by default. A
`dtype=` argument overrides either. Fitted attributes are NumPy arrays. `NotFittedError` and
`ConvergenceWarning` are scikit-learn's.
"""

from dlcore.cluster._common import NotFittedError
from dlcore.cluster.classify import KNeighborsClassifier, LogisticRegression
from dlcore.cluster.dbscan import DBSCAN, dbscan
from dlcore.cluster.kmeans import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus
from dlcore.cluster.mixture import BayesianGaussianMixture, GaussianMixture, density_anomalies
from dlcore.cluster.plot import plot_elbow, plot_silhouette_diagram, plot_silhouette_scores
from dlcore.cluster.silhouette import silhouette_samples, silhouette_score

__all__ = ["DBSCAN", "BayesianGaussianMixture", "GaussianMixture", "KMeans", "KNeighborsClassifier",
           "LogisticRegression", "MiniBatchKMeans", "NotFittedError", "dbscan", "density_anomalies", "k_means",
           "kmeans_plusplus", "plot_elbow", "plot_silhouette_diagram", "plot_silhouette_scores", "silhouette_samples",
           "silhouette_score"]
