"""k-means on the book's five blobs: inertia, k-means++, the elbow and the silhouette (Géron, ch. 8).

The book (ch. 8, k-Means Clustering, Figures 8-2 to 8-9) clusters 2,000 points from five Gaussian blobs.
Started from `good_init` its k-means reaches inertia 211.59853725816828 and silhouette score
0.655517642572828; k-means++ with several initialisations finds the same optimum. Inertia against k has
an elbow at k = 4 (653.2 at k = 3, 127.1 at k = 8), and the silhouette score is highest at k = 4. The
data is scikit-learn's `make_blobs` with the book notebook's arguments, so it is the same array; dlcore
computes in float64 here to compare to the book's digits.

Run: `dlcore run kmeans_blobs` or `python examples/kmeans_blobs.py`.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import make_blobs

from dlcore import cluster
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="kmeans_blobs",
    title="k-means on five blobs: good_init, k-means++, elbow and silhouette",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 8, Unsupervised Learning Techniques, "
             "k-Means Clustering (to Finding the optimal number of clusters)"),
    source="Figures 8-2 to 8-9",
    data="",
    standin="inline",
    book_figures={"inertia": 211.59853725816828, "silhouette": 0.655517642572828,
                  "inertia_kmeanspp": 211.59853725816828, "inertia_k3": 653.2, "inertia_k8": 127.1, "elbow_k": 4,
                  "best_silhouette_k": 4},
)

CENTERS = [[0.2, 2.3], [-1.5, 2.3], [-2.8, 1.8], [-2.8, 2.8], [-2.8, 1.3]]
GOOD_INIT = np.array([[-3, 3], [-3, 2], [-3, 1], [-1, 2], [0, 2]])
X_NEW = np.array([[0, 2], [3, 2], [-3, 3], [-3, 2.5]])


def blobs() -> np.ndarray:
    """The book's data (Figure 8-2; arguments from its notebook): `(2000, 2)` float64."""
    X, _ = make_blobs(n_samples=2000, centers=CENTERS, cluster_std=[0.4, 0.3, 0.1, 0.1, 0.1], random_state=7)
    return X


def elbow(ks: list[int], inertias: list[float]) -> int:
    """The k whose drop in inertia most exceeds the next drop (the sharpest bend of the curve)."""
    drops = -np.diff(inertias)  # drops[i]: from ks[i] to ks[i + 1]
    ratios = drops[:-1] / np.maximum(drops[1:], 1e-12)  # at ks[i + 1]
    return int(ks[1 + int(np.argmax(ratios))])


def _save(ax, folder: Path, name: str) -> str:
    path = folder / name
    ax.figure.savefig(path, dpi=100)
    return str(path)


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: make_blobs(2000, five centres, cluster_std [0.4, 0.3, 0.1, 0.1, 0.1], random_state=7)")
    X = blobs()
    f64 = jnp.float64  # scikit-learn computes in float64; so do we, to compare digits

    km = cluster.KMeans(5, init=GOOD_INIT, dtype=f64).fit(X)
    silhouette = cluster.silhouette_score(X, km.labels_, dtype=f64)
    ctx.print(f"good_init: inertia {km.inertia_!r} after {km.n_iter_} iterations, silhouette {silhouette!r}")
    ctx.print(f"  centres {np.round(km.cluster_centers_, 3).tolist()}")
    ctx.print(f"  predict(X_new) {km.predict(X_NEW).tolist()}, distances {np.round(km.transform(X_NEW), 2).tolist()}")

    n_init = 3 if ctx.quick else 10
    pp = cluster.KMeans(5, n_init=n_init, random_state=42, dtype=f64).fit(X)
    ctx.print(f"k-means++, n_init={n_init} (run together): inertia {pp.inertia_!r}")

    ks = list(range(1, 7 if ctx.quick else 10))
    models = [cluster.KMeans(k, n_init=n_init, random_state=42, dtype=f64).fit(X) for k in ks]
    inertias = [m.inertia_ for m in models]
    scores = {k: cluster.silhouette_score(X, m.labels_, dtype=f64) for k, m in zip(ks, models) if k >= 2}
    for k, m in zip(ks, models):
        ctx.print(f"  k={k}: inertia {m.inertia_:9.3f}" + (f"  silhouette {scores[k]:.4f}" if k in scores else ""))
    elbow_k = elbow(ks, inertias)
    best_k = max(scores, key=scores.get)
    ctx.print(f"elbow at k={elbow_k}; best silhouette at k={best_k}")

    if not ctx.quick:
        try:
            folder = ctx.plot_dir()
            saved = [_save(cluster.plot_elbow(ks, inertias, elbow=elbow_k), folder, "kmeans_blobs_elbow.png"),
                     _save(cluster.plot_silhouette_scores(list(scores), list(scores.values())), folder,
                           "kmeans_blobs_silhouette.png")]
            for k in (3, 4, 5, 6):
                m = models[ks.index(k)]
                s = cluster.silhouette_samples(X, m.labels_, dtype=f64)
                saved.append(_save(cluster.plot_silhouette_diagram(s, m.labels_, title=f"$k={k}$"), folder,
                                   f"kmeans_blobs_silhouette_k{k}.png"))
            ctx.print(f"plots: {', '.join(saved)}")
        except ImportError:
            ctx.print("plots: skipped (matplotlib is not installed: pip install 'dlcore[plot]')")

    out = {"inertia": km.inertia_, "silhouette": silhouette, "inertia_kmeanspp": pp.inertia_,
           "inertia_k3": inertias[ks.index(3)], "elbow_k": elbow_k, "best_silhouette_k": best_k}
    if 8 in ks:
        out["inertia_k8"] = inertias[ks.index(8)]
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
