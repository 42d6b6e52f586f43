"""Local sources of the real (not embedded) datasets.

A real dataset is read from the first of these that has it:

1. a TFDS copy prepared in a random-access format (array_record) under the
   TFDS data dir, read with ``tfds.data_source`` (no TensorFlow needed);
2. dlcore's cache, ``cache_dir() / <name>``, holding the dataset's four IDX
   files, gzipped or not.

Nothing here downloads. When neither source has the data,
`DatasetNotFoundError` says where dlcore looked and how to get the files.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from dlcore.data.idx import read_idx

__all__ = ["DatasetNotFoundError", "ImageClassificationSource", "cache_dir", "tfds_data_dir"]

# Canonical file stems of the MNIST distribution (Fashion-MNIST reuses them).
IDX_STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(ValueError):
    """A real dataset is not present in any local source.

    Attributes:
        name: The dataset that was asked for.
        searched: The directories dlcore looked in, in order.
    """

    def __init__(self, message: str, *, name: str, searched: tuple[str, ...]):
        super().__init__(message)
        self.name = name
        self.searched = searched


def cache_dir() -> Path:
    """Returns dlcore's dataset cache directory.

    This is ``$DLCORE_DATA`` when set (and non-empty), else
    ``~/.cache/dlcore``. The directory is not created.

    Returns:
        The cache directory; dataset ``name`` lives in ``cache_dir() / name``.
    """
    env = os.environ.get("DLCORE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlcore"


def tfds_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """Returns the TFDS data dir to search: ``data_dir``, ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``.

    TFDS itself reads ``TFDS_DATA_DIR`` once, when it is imported; resolving it
    here at call time makes a later change of the variable count too.
    """
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


@dataclasses.dataclass(frozen=True)
class ImageClassificationSource:
    """How to find one MNIST-like dataset locally.

    Attributes:
        name: dlcore's name, also the cache subdirectory.
        tfds_name: The TFDS builder name.
        image_shape: ``(H, W, C)`` of one image.
    """

    name: str
    tfds_name: str
    image_shape: tuple[int, int, int] = (28, 28, 1)

    def load(
        self, splits: tuple[str, ...], data_dir: str | os.PathLike | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        """Reads ``splits`` from the first local source that has them.

        Args:
            splits: Split names, a subset of ``("train", "test")``.
            data_dir: TFDS data dir to search instead of the default.

        Returns:
            ``{split: {"x": float32 (N, H, W, C) in [0, 1], "y": int32 (N,)}}``.

        Raises:
            DatasetNotFoundError: If no local source has all of ``splits``.
            ValueError: If a source is present but its files are corrupt.
        """
        tfds_dir = tfds_data_dir(data_dir)
        state, note = _tfds_state(self.tfds_name, tfds_dir)
        if state == "ready":
            return {s: self._from_tfds(s, tfds_dir) for s in splits}

        cache = cache_dir() / self.name
        files, missing = _find_idx_files(cache, splits)
        if not missing:
            return {s: self._from_idx(*files[s]) for s in splits}

        # Seam for downloads (a later issue): fetching the IDX files into
        # `cache` and retrying the cache branch above belongs here.
        raise self._not_found(tfds_dir, cache, missing, note)

    def _from_tfds(self, split: str, tfds_dir: str) -> dict[str, np.ndarray]:
        import tensorflow_datasets as tfds

        # download=False: a missing dataset must fail here, never start a
        # multi-MB download behind the caller's back.
        source = tfds.data_source(
            self.tfds_name, split=split, data_dir=tfds_dir, download=False
        )
        # Record by record: decoding each PNG dominates the cost, so batched
        # `__getitems__` reads would not buy much (and tfds.testing.mock_data's
        # stand-in reader breaks them in tfds 4.9.10).
        records = [source[i] for i in range(len(source))]
        if not records:
            raise ValueError(
                f"TFDS copy of {self.tfds_name!r} in {tfds_dir} has an empty "
                f"{split!r} split; re-prepare it or remove it to use dlcore's cache"
            )
        images = np.stack([np.asarray(r["image"]) for r in records])
        labels = np.asarray([r["label"] for r in records])
        return self._to_split(images, labels, f"TFDS {self.tfds_name}[{split}] in {tfds_dir}")

    def _from_idx(self, images_path: Path, labels_path: Path) -> dict[str, np.ndarray]:
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if labels.ndim != 1:
            raise ValueError(
                f"{labels_path}: labels must be 1-D (idx1), got shape {labels.shape}; "
                "check that the images and labels files are not swapped"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path.name} holds {len(images)} images but "
                f"{labels_path.name} holds {len(labels)} labels; the two files "
                f"in {images_path.parent} come from different releases, fetch both again"
            )
        return self._to_split(images, labels, str(images_path))

    def _to_split(self, images: np.ndarray, labels: np.ndarray, where: str) -> dict[str, np.ndarray]:
        h, w, c = self.image_shape
        if images.shape[1:] == (h, w) and c == 1:
            # IDX stores single-channel images without a channel axis.
            images = images[..., None]
        if images.shape[1:] != self.image_shape or images.dtype != np.uint8:
            raise ValueError(
                f"{where}: expected uint8 images of shape (N, {h}, {w}[, {c}]), got "
                f"{images.dtype} {images.shape}; this is not {self.name!r} data"
            )
        return {
            "x": images.astype(np.float32) / np.float32(255.0),
            "y": labels.astype(np.int32),
        }

    def _not_found(
        self, tfds_dir: str, cache: Path, missing: list[str], note: str
    ) -> DatasetNotFoundError:
        tfds_note = f" ({note})" if note else ""
        message = (
            f"dataset {self.name!r} is not available locally: no usable TFDS copy "
            f"of {self.tfds_name!r} in {tfds_dir}{tfds_note}, and dlcore's cache "
            f"{cache} lacks {', '.join(missing)} (gzipped or not); put the IDX files "
            f"there (set DLCORE_DATA to move the cache), or prepare it once with "
            f"tensorflow_datasets.data_source({self.tfds_name!r}, data_dir=...), "
            f"or fall back with load_or_standin({self.name!r}, 'digits', "
            f"standin_options={{'image_size': 28}})"
        )
        return DatasetNotFoundError(
            message, name=self.name, searched=(tfds_dir, str(cache))
        )


def _tfds_state(tfds_name: str, tfds_dir: str) -> tuple[str, str]:
    """Says whether TFDS has ``tfds_name`` prepared for random access.

    Returns:
        ``(state, note)``: state is ``"ready"`` or ``"absent"``; note explains
        an unusable copy (for the not-found message), else is empty.
    """
    # Cheap local check first: it spares the TFDS import and its log noise in
    # the common case of no TFDS copy at all. Remote dirs (gs://...) go to TFDS.
    if "://" not in tfds_dir and not os.path.isdir(os.path.join(tfds_dir, tfds_name)):
        return "absent", ""
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import file_adapters
    except ImportError as err:
        return "absent", f"tensorflow_datasets cannot be imported: {err}"

    builder = tfds.builder(tfds_name, data_dir=tfds_dir)
    # is_prepared() only inspects the version directory's metadata; unlike
    # download_and_prepare() it never fetches anything.
    if not builder.is_prepared():
        return "absent", f"{builder.data_path} is not a prepared TFDS dataset"
    formats = builder.info.available_file_formats()
    if not formats & file_adapters.FileFormat.with_random_access():
        found = ", ".join(sorted(f.value for f in formats)) or "unknown"
        return "absent", (
            f"the copy at {builder.data_path} is in {found} format, which needs "
            "TensorFlow to read; re-prepare it with file_format='array_record'"
        )
    return "ready", ""


def _find_idx_files(
    directory: Path, splits: tuple[str, ...]
) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Locates the IDX files of ``splits`` in ``directory``.

    Returns:
        ``(files, missing)``: ``files[split]`` is ``(images_path, labels_path)``
        for each split whose two files exist; ``missing`` names the absent
        file stems (with a ``[.gz]`` suffix, for the error message).
    """
    files, missing = {}, []
    for split in splits:
        paths = []
        for stem in IDX_STEMS[split]:
            found = next(
                (p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()),
                None,
            )
            if found is None:
                missing.append(f"{stem}[.gz]")
            paths.append(found)
        if None not in paths:
            files[split] = (paths[0], paths[1])
    return files, missing
