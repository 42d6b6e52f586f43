"""DBSCAN on the moons, then the cluster of new points from the core samples (Géron, Hands-On ML, ch. 8).

The book (ch. 8, DBSCAN, Figures 8-13 and 8-14) runs DBSCAN(eps=0.05, min_samples=5) on 1,000 noisy
moons: seven clusters and many anomalies; with eps = 0.2 the two moons come out clean. A
50-nearest-neighbours classifier on the core samples then labels new points [1, 0, 1, 0] with
probabilities 0.82 / 1 / 0.88 / 1 for their class, and a 1-nearest-neighbour cutoff at distance 0.2
calls the two far points anomalies: [-1, 0, 1, -1]. The moons are scikit-learn's `make_moons` with the
book's arguments (the same array); dlcore numbers the clusters the way scikit-learn does, so the labels
compare one to one.

Run: `dlcore run dbscan_moons` or `python examples/dbscan_moons.py`.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_moons

from dlcore import cluster
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="dbscan_moons",
    title="DBSCAN on moons (eps 0.05 and 0.2), k-NN predict with a distance cutoff",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 8, Unsupervised Learning Techniques, DBSCAN",
    source="Figures 8-13 and 8-14",
    data="",
    standin="inline",
    book_figures={"clusters_eps005": 7, "clusters_eps02": 2, "noise_eps02": 0,
                  "knn_pred_0": 1, "knn_pred_1": 0, "knn_pred_2": 1, "knn_pred_3": 0,
                  "knn_proba_0": 0.82, "knn_proba_2": 0.88,
                  "cutoff_pred_0": -1, "cutoff_pred_1": 0, "cutoff_pred_2": 1, "cutoff_pred_3": -1},
)

X_NEW = np.array([[-0.5, 0], [0, 0.5], [1, -0.1], [2, 1]])


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: make_moons(1000, noise=0.05, random_state=42)")
    X, _ = make_moons(n_samples=1000, noise=0.05, random_state=42)
    out: dict[str, float] = {}
    for eps, tag in ((0.05, "eps005"), (0.2, "eps02")):
        db = cluster.DBSCAN(eps=eps, min_samples=5).fit(X)
        n_clusters = int(db.labels_.max()) + 1
        noise = int(np.sum(db.labels_ == -1))
        ctx.print(f"eps={eps}: {n_clusters} clusters, {noise} noise points, {len(db.core_sample_indices_)} core "
                  f"samples; labels {db.labels_[:10].tolist()} ...")
        out[f"clusters_{tag}"], out[f"noise_{tag}"] = n_clusters, noise
        out[f"core_{tag}"] = len(db.core_sample_indices_)

    knn = cluster.KNeighborsClassifier(50).fit(db.components_, db.labels_[db.core_sample_indices_])
    pred, proba = knn.predict(X_NEW), knn.predict_proba(X_NEW)
    rounded = [[round(float(v), 2) for v in row] for row in proba]
    ctx.print(f"50-NN on the core samples: predict {pred.tolist()}, predict_proba {rounded}")
    cutoff = db.predict(X_NEW, n_neighbors=1, max_distance=0.2)
    ctx.print(f"nearest core sample within 0.2, else -1: {cutoff.tolist()}")
    for i in range(len(X_NEW)):
        out[f"knn_pred_{i}"] = int(pred[i])
        out[f"cutoff_pred_{i}"] = int(cutoff[i])
    out["knn_proba_0"] = float(proba[0, pred[0]])
    out["knn_proba_2"] = float(proba[2, pred[2]])
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
