"""Datasets that need no files: built in, shipped with a dependency, or generated.

Each builder returns every split as ``{split: {"x": ..., "y": ...}}`` with
fresh arrays, so callers may modify what they get.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlcore.checks import check_int, is_int

__all__ = ["blobs", "breast_cancer", "diabetes", "digits", "photo_patches", "python_docs", "sample_photos",
           "thermometer"]

# Deep Learning with PyTorch, 2nd ed., ch. 5: readings of a thermometer in
# unknown units (t_u) next to the same temperatures in Celsius (t_c).
_T_C = (0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0)
_T_U = (35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4)

DIGITS_TEST_SIZE = 360  # 20% of 1797, rounded up
DIGITS_SEED = 0


def thermometer() -> dict[str, dict[str, np.ndarray]]:
    """The book's 11 thermometer readings.

    Returns:
        ``{"train": {"x": t_u float32 (11, 1), "y": t_c float32 (11, 1)}}``.
    """
    return {
        "train": {
            "x": np.asarray(_T_U, dtype=np.float32).reshape(-1, 1),
            "y": np.asarray(_T_C, dtype=np.float32).reshape(-1, 1),
        }
    }


def _sklearn_file(*parts: str) -> Path | None:
    """A data file shipped inside scikit-learn, found without importing it (its import takes seconds, which
    every `dlcore run` on the digits would pay), or None where this scikit-learn keeps it elsewhere."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_file("datasets", "data", "digits.csv.gz")
    if path is not None:  # what `load_digits` reads: 64 pixels and the label on each row
        rows = np.loadtxt(path, delimiter=",")
        images, labels = rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images, bunch.target
    # Read-only so the cached copy cannot be changed through a caller's view.
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows interpolate ``n_in`` samples to ``n_out`` (half-pixel centres).

    Returns:
        ``(n_out, n_in)`` float64 weights; each row sums to 1. Applying it on
        both axes matches ``jax.image.resize(..., "linear")`` when upsampling.
    """
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def digits(*, image_size: int = 8, flatten: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's 8x8 handwritten digits (1797 images, ten classes).

    The split is a fixed random permutation (seed 0): 1437 train, 360 test.

    Args:
        image_size: 8 for the native images, or 28 for MNIST's layout: each
            digit resized (bilinear) to 20x20 and padded with 4 zero pixels on
            every side, as MNIST centres 20x20 digits in 28x28 frames.
        flatten: Return ``x`` as ``(N, image_size**2)`` instead of images.

    Returns:
        ``{"train": ..., "test": ...}`` with ``x`` float32 in [0, 1] of shape
        ``(N, S, S, 1)`` (or ``(N, S*S)``) and ``y`` int32 ``(N,)``.

    Raises:
        ValueError: If ``image_size`` is not 8 or 28.
    """
    if isinstance(image_size, bool) or image_size not in (8, 28):
        raise ValueError(
            f"digits: image_size must be 8 (native) or 28 (MNIST layout), got {image_size!r}"
        )
    images, labels = _digits_raw()
    x = images.astype(np.float32) / np.float32(16.0)
    if image_size == 28:
        weights = _bilinear_matrix(8, 20)
        x = np.einsum("oh,nhw,pw->nop", weights, x, weights).astype(np.float32)
        # Bilinear weights are convex, so this only trims float round-off.
        x = np.clip(x, 0.0, 1.0)
        # MNIST centres by centre of mass; the geometric centre is close enough
        # for 8x8 sources whose digits already fill the frame.
        x = np.pad(x, ((0, 0), (4, 4), (4, 4)))
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    y = labels.astype(np.int32)

    perm = np.random.default_rng(DIGITS_SEED).permutation(len(x))
    train_idx, test_idx = perm[:-DIGITS_TEST_SIZE], perm[-DIGITS_TEST_SIZE:]
    return {
        "train": {"x": x[train_idx], "y": y[train_idx]},
        "test": {"x": x[test_idx], "y": y[test_idx]},
    }


SKLEARN_SPLIT_SEED = 0


def diabetes() -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's diabetes regression data (Efron et al., 2004), unscaled.

    442 patients, 10 baseline variables (age, sex, BMI, mean blood pressure
    and six blood serum measurements, in their original units) and a
    quantitative measure of disease progression one year later. A fixed 80/20
    split (NumPy seed 0): 354 train, 88 test. The stand-in for California
    housing: a small real regression table to standardise and fit.

    Returns:
        ``{"train": ..., "test": ...}`` with ``x`` float32 ``(N, 10)`` and
        ``y`` float32 ``(N, 1)``.
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    return _split_80_20(bunch.data.astype(np.float32), bunch.target.astype(np.float32).reshape(-1, 1))


def breast_cancer() -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's Wisconsin diagnostic breast cancer data (Street et al., 1993).

    569 tumours, 30 real features computed from a digitised image of a fine
    needle aspirate; label 1 = benign, 0 = malignant (212 malignant, 357
    benign). A fixed 80/20 split (NumPy seed 0): 455 train, 114 test. The
    stand-in for bank marketing: a small real binary table.

    Returns:
        ``{"train": ..., "test": ...}`` with ``x`` float32 ``(N, 30)`` and
        ``y`` int32 ``(N,)`` in {0, 1}.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _split_80_20(bunch.data.astype(np.float32), bunch.target.astype(np.int32))


def _split_80_20(x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    perm = np.random.default_rng(SKLEARN_SPLIT_SEED).permutation(len(x))
    n_train = int(round(0.8 * len(x)))
    train, test = perm[:n_train], perm[n_train:]
    return {"train": {"x": x[train], "y": y[train]}, "test": {"x": x[test], "y": y[test]}}


def python_docs() -> dict[str, dict[str, np.ndarray]]:
    """A real English corpus every Python ships: the standard library's help topics.

    The texts of ``pydoc_data.topics`` (what ``help("if")`` prints), joined in
    topic order: about 465,000 characters of technical English and code. Cut
    by characters into 90% train, 5% valid and 5% test, as the books cut
    Shakespeare and WikiText.

    Returns:
        ``{"train", "valid", "test"}``, each ``{"x": object array (1,)}``
        holding one ``str``; ``text = split["x"][0]``.
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"
    a, b = int(0.9 * len(text)), int(0.95 * len(text))
    parts = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    out = {}
    for name, part in parts.items():
        x = np.empty(1, dtype=object)
        x[0] = part
        out[name] = {"x": x}
    return out


@functools.lru_cache(maxsize=1)
def _sample_images() -> tuple[np.ndarray, ...]:
    files = [_sklearn_file("datasets", "images", name) for name in ("china.jpg", "flower.jpg")]
    if all(files):  # what `load_sample_images` reads, in its (sorted) order, decoded by the same Pillow
        from PIL import Image

        decoded = []
        for path in files:
            with Image.open(path) as im:
                decoded.append(np.asarray(im))
    else:
        from sklearn.datasets import load_sample_images

        decoded = load_sample_images().images
    images = tuple(np.asarray(im, np.uint8) for im in decoded)
    for im in images:
        im.flags.writeable = False
    return images


def sample_photos() -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's two sample photos: a Chinese temple and a flower.

    Returns:
        ``{"train": {"x": float32 (2, 427, 640, 3) in [0, 1], "y": int32
        [0, 1]}}`` (0 = china.jpg, 1 = flower.jpg), for colour segmentation
        with k-means (Géron, ch. 8).
    """
    x = np.stack(_sample_images()).astype(np.float32) / np.float32(255.0)
    return {"train": {"x": x, "y": np.array([0, 1], np.int32)}}


def photo_patches(*, image_size: int = 64, n_samples: int = 600, seed: int = 0
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Random square crops of the two sample photos, labelled by photo.

    A small real-photo binary classification task (temple 0 vs flower 1):
    the stand-in for cats vs dogs and Flowers102. Each crop has a random side
    in [96, 320] pixels and position, and is resized (bilinear) to
    ``image_size``. Split 70/15/15 into train, valid and test.

    Returns:
        ``{"train", "valid", "test"}`` with ``x`` float32 ``(N, S, S, 3)`` in
        [0, 1] and ``y`` int32 ``(N,)``; classes alternate, so balanced.
    """
    check_int(image_size, "image_size", low=8, high=320, who="photo_patches")
    check_int(n_samples, "n_samples", low=3, who="photo_patches")
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _sample_images()
    xs, ys = [], []
    for i in range(n_samples):
        label = i % 2
        photo = photos[label]
        h, w, _ = photo.shape
        side = int(rng.integers(96, 321))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        xs.append(np.asarray(crop.resize((image_size, image_size), Image.Resampling.BILINEAR)))
        ys.append(label)
    x = np.stack(xs).astype(np.float32) / np.float32(255.0)
    y = np.array(ys, np.int32)
    perm = rng.permutation(n_samples)
    a, b = int(round(0.7 * n_samples)), int(round(0.85 * n_samples))
    parts = {"train": perm[:a], "valid": perm[a:b], "test": perm[b:]}
    return {k: {"x": x[idx], "y": y[idx]} for k, idx in parts.items()}


def blobs(
    *,
    n_samples: int = 1000,
    centers: int | Sequence[Sequence[float]] | np.ndarray = 3,
    n_features: int | None = None,
    cluster_std: float | Sequence[float] = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Isotropic Gaussian blobs for clustering and classification.

    Samples are spread over the centres as evenly as possible (the first
    ``n_samples % k`` centres get one extra), shuffled, then split 80/20.

    Args:
        n_samples: Total number of points, at least 2.
        centers: Number of centres ``k`` (drawn uniformly in ``center_box``) or
            the centres themselves, shape ``(k, n_features)``.
        n_features: Dimension of each point; default 2, or that of ``centers``
            when it is an array.
        cluster_std: Standard deviation of every blob, or one per centre.
        center_box: ``(low, high)`` bounds for random centres.
        seed: Seed of the generator; the same seed gives the same arrays.

    Returns:
        ``{"train": ..., "test": ...}`` with ``x`` float32
        ``(N, n_features)`` and ``y`` int32 ``(N,)`` holding the centre index;
        train has ``(4 * n_samples) // 5`` points.

    Raises:
        ValueError: If an option is out of range or the shapes disagree.
    """
    check_int(n_samples, "n_samples", low=2, who="blobs")
    check_int(seed, "seed", who="blobs")
    rng = np.random.default_rng(seed)

    if is_int(centers):
        check_int(centers, "centers", low=1, who="blobs")
        n_features = check_int(2 if n_features is None else n_features, "n_features", low=1, who="blobs")
        low, high = _check_box(center_box)
        center_points = rng.uniform(low, high, size=(centers, n_features))
    else:
        center_points = np.asarray(centers, dtype=np.float64)
        if center_points.ndim != 2 or len(center_points) == 0:
            raise ValueError(
                f"blobs: centers must be an int or an array of shape (k, n_features), "
                f"got shape {center_points.shape}"
            )
        if n_features is not None and n_features != center_points.shape[1]:
            raise ValueError(
                f"blobs: n_features={n_features} disagrees with centers of shape "
                f"{center_points.shape}; drop n_features or make them match"
            )
    k, n_features = center_points.shape

    try:
        stds = np.asarray(cluster_std, dtype=np.float64)
    except (TypeError, ValueError):
        stds = np.full(0, np.nan)  # reported just below
    if stds.ndim == 0:
        stds = np.full(k, stds)
    if stds.shape != (k,) or not np.all(np.isfinite(stds)) or np.any(stds < 0):
        raise ValueError(
            f"blobs: cluster_std must be a finite float >= 0 or {k} of them (one per "
            f"centre), got {cluster_std!r}"
        )

    counts = np.full(k, n_samples // k)
    counts[: n_samples % k] += 1
    y = np.repeat(np.arange(k), counts)
    x = center_points[y] + stds[y, None] * rng.standard_normal((n_samples, n_features))

    perm = rng.permutation(n_samples)
    x, y = x[perm].astype(np.float32), y[perm].astype(np.int32)
    n_train = (4 * n_samples) // 5
    return {
        "train": {"x": x[:n_train], "y": y[:n_train]},
        "test": {"x": x[n_train:], "y": y[n_train:]},
    }


def _check_box(center_box: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in center_box)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"blobs: center_box must be a pair (low, high), got {center_box!r}"
        ) from None
    if not low < high:
        raise ValueError(f"blobs: center_box needs low < high, got {center_box!r}")
    return low, high
