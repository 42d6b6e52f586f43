"""Colour segmentation: k-means on the pixels of a photograph (Géron, Hands-On ML, ch. 8).

The book (ch. 8, Using Clustering for Image Segmentation) clusters the RGB colours of its ladybug photo
with KMeans(8) and paints each pixel with its cluster's mean colour (Figure 8-11, also with 10, 6, 4 and
2 colours); it reports no figure, only the images. The ladybug is not shipped with any dependency, so
this runs on scikit-learn's sample photo `china.jpg` (427 x 640 pixels, 273,280 colours; reading it
needs Pillow). The figures are the inertia of each fit, the share of the image the smallest colour
segment covers, and the mean pixel error of the 8-colour image. The segmented images are saved as PNG
files when Pillow is installed.

Run: `dlcore run colour_segmentation` or `python examples/colour_segmentation.py`.
"""

from __future__ import annotations


import numpy as np

from dlcore import cluster
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="colour_segmentation",
    title="k-means colour segmentation of a photograph (8, then 10, 6, 4, 2 colours)",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 8, Unsupervised Learning Techniques, Using Clustering for Image Segmentation",
    source="Figure 8-11",
    data="",
    standin="inline",
    book_figures={},
)


def photo() -> np.ndarray:
    """scikit-learn's sample photograph china.jpg: uint8 `(427, 640, 3)`."""
    try:
        from sklearn.datasets import load_sample_image

        return load_sample_image("china.jpg")
    except ImportError as e:  # scikit-learn reads JPEGs with Pillow
        raise ImportError("colour_segmentation reads scikit-learn's sample photo with Pillow: "
                          "pip install pillow") from e


def run(ctx: Context) -> dict[str, float]:
    image = photo()
    if ctx.quick:
        image = image[::8, ::8]  # 54 x 80 pixels: seconds, not minutes
    ctx.inline(f"inline: scikit-learn's sample photo china.jpg, {image.shape[0]} x {image.shape[1]} RGB pixels")
    X = image.reshape(-1, 3).astype(np.float32)  # the book clusters the raw 0..255 levels

    out: dict[str, float] = {}
    segmented = {}
    for k in (8,) if ctx.quick else (10, 8, 6, 4, 2):
        km = cluster.KMeans(k, random_state=ctx.seed).fit(X)
        segmented[k] = km.cluster_centers_[km.labels_].reshape(image.shape)
        smallest = np.bincount(km.labels_, minlength=k).min() / len(X)
        ctx.print(f"k={k:2d}: inertia {km.inertia_:.4g} after {km.n_iter_} iterations; smallest segment "
                  f"{100 * smallest:.2f}% of the image")
        out[f"inertia_k{k}"] = km.inertia_
        if k == 8:
            out["smallest_segment_k8"] = smallest
            out["mean_abs_error_k8"] = float(np.mean(np.abs(segmented[k] - image)))

    if not ctx.quick:
        try:
            from PIL import Image

            folder = ctx.plot_dir()
            paths = []
            for k, img in segmented.items():
                path = folder / f"colour_segmentation_k{k}.png"
                Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(path)
                paths.append(str(path))
            ctx.print(f"images: {', '.join(paths)}")
        except ImportError:
            ctx.print("images: not saved (Pillow is not installed)")
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
