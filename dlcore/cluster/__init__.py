"""Clustering, density estimation and anomaly detection in JAX (Hands-On ML, PyTorch ed., ch. 8).

scikit-learn's estimators and names, with jitted cores and every initialisation of `n_init` run in
the same call:

* `KMeans`, `MiniBatchKMeans`, `kmeans_plusplus`: k-means (Géron, ch. 8, k-Means Clustering);
* `silhouette_score`, `silhouette_samples`: the silhouette, in blocks (Géron, ch. 8, Figures 8-7 to 8-9);
* `DBSCAN` (with a nearest-core-sample `predict`) and `KNeighborsClassifier` (Géron, ch. 8, DBSCAN);
* `GaussianMixture` (EM, four covariance types, BIC/AIC, sampling), `BayesianGaussianMixture`
  (variational, Dirichlet priors) and `density_anomalies` (Géron, ch. 8, Gaussian Mixtures);
* `LogisticRegression`, the classifier of the semi-supervised experiments (Géron, ch. 8, semi-supervised learning);
* `plot_elbow`, `plot_silhouette_scores`, `plot_silhouette_diagram` (matplotlib, optional).

Estimators compute in float32 by default; `dtype=jnp.float64` computes in float64 under a local
x64 context (scikit-learn's figures to many digits). Fitted attributes are NumPy arrays.
"""

from dlcore.cluster._common import NotFittedError
from dlcore.cluster.classify import KNeighborsClassifier, LogisticRegression
from dlcore.cluster.dbscan import DBSCAN, dbscan
from dlcore.cluster.kmeans import KMeans, MiniBatchKMeans, kmeans_plusplus
from dlcore.cluster.mixture import BayesianGaussianMixture, GaussianMixture, density_anomalies
from dlcore.cluster.plot import plot_elbow, plot_silhouette_diagram, plot_silhouette_scores
from dlcore.cluster.silhouette import silhouette_samples, silhouette_score

__all__ = ["DBSCAN", "BayesianGaussianMixture", "GaussianMixture", "KMeans", "KNeighborsClassifier",
           "LogisticRegression", "MiniBatchKMeans", "NotFittedError", "density_anomalies", "kmeans_plusplus",
           "plot_elbow", "plot_silhouette_diagram", "plot_silhouette_scores", "silhouette_samples",
           "silhouette_score"]
