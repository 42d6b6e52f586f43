"""Where the real (not embedded) datasets come from, and how they are found.

A real dataset is read from the first of these that has it:

1. a TFDS copy prepared in a random-access format (array_record) under the
   TFDS data dir, read with ``tfds.data_source`` (TensorFlow is never
   imported, and TFDS is never asked to download);
2. dlcore's cache, ``cache_dir() / <name>``, holding the dataset's canonical
   files (or files a user put there under the same names);
3. a download of those canonical files into the cache (`dlcore.data.download`:
   checksum verified, progress bar, atomic, resumable), unless ``download``
   is False or ``$DLCORE_OFFLINE`` is set. ``$DLCORE_MIRROR`` names a base
   URL tried first, as ``<mirror>/<dataset>/<file name>``.

When none of them has the data, `DatasetNotFoundError` says where dlcore
looked, why the download failed, and how to get the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlcore.data import download as _download

__all__ = [
    "DatasetNotFoundError",
    "FileDataset",
    "RemoteFile",
    "cache_dir",
    "offline",
    "tfds_data_dir",
]

Split = dict[str, np.ndarray]
Splits = dict[str, Split]


class DatasetNotFoundError(ValueError):
    """A real dataset is not present in any local source and could not be
    downloaded.

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


def offline() -> bool:
    """True when ``$DLCORE_OFFLINE`` is set to anything but ``""``/``0``: no downloads."""
    return os.environ.get("DLCORE_OFFLINE", "") not in ("", "0")


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
class RemoteFile:
    """One canonical file of a dataset.

    Attributes:
        name: Its name in the dataset's cache directory.
        urls: Where it is published, tried in order.
        sha256: The published SHA-256 (hex), or None where dlcore does not
            know it for certain: the hash is then recorded on first download
            (``<name>.sha256`` beside the file) and enforced afterwards.
        size: Its size in bytes, where known.
        alternatives: Other names accepted in the cache for the same content
            in another packaging (e.g. the ungzipped file), never downloaded.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    alternatives: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FileDataset:
    """How to find, fetch and parse one real dataset.

    Attributes:
        name: dlcore's name, also the cache subdirectory.
        files: The canonical files.
        parse: ``(paths, splits, **options) -> {split: Split}``: ``paths``
            maps each needed `RemoteFile.name` to the local file found for it;
            ``options`` are the dataset's `load` options (e.g. image_size).
        splits: dlcore's split names.
        needs: For each split, the names of the files it needs; by default
            every split needs every file.
        tfds_name: The TFDS builder name, or None when TFDS has no copy.
        tfds_splits: dlcore split -> TFDS split (default: the same name).
        tfds_convert: ``(records, where, **options) -> Split``: turns the
            list of TFDS examples (dicts of NumPy values) of one split into a
            split; ``where`` names the copy for error messages.
        standin: The embedded dataset to suggest in the not-found message.
        prepared: Keep the parsed arrays in the cache (``prepared/*.npy``) so
            that a slow parse (a tar of 100k files) runs once.
    """

    name: str
    files: tuple[RemoteFile, ...]
    parse: Callable[..., Splits]
    splits: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]] | None = None
    tfds_name: str | None = None
    tfds_splits: Mapping[str, str] | None = None
    tfds_convert: Callable[[list[dict[str, Any]], str], Split] | None = None
    standin: str = ""
    prepared: bool = False

    def load(
        self,
        splits: tuple[str, ...],
        data_dir: str | os.PathLike | None = None,
        *,
        download: bool = True,
        progress: bool | None = None,
        **options: Any,
    ) -> Splits:
        """Reads ``splits`` from the first source that has them.

        Args:
            splits: Split names, a subset of ``self.splits``.
            data_dir: TFDS data dir to search instead of the default.
            download: Fetch missing files (unless ``$DLCORE_OFFLINE`` is set).
            progress: Progress bars for downloads; None: only on a terminal.
            **options: Passed to ``parse`` and ``tfds_convert``.

        Returns:
            ``{split: Split}`` for each of ``splits``.

        Raises:
            DatasetNotFoundError: If no source has all of ``splits`` and the
                download is off or failed.
            ValueError: If a source is present but its files are corrupt, or
                a downloaded file fails its checksum (`ChecksumError`).
        """
        tfds_dir = tfds_data_dir(data_dir)
        note = ""
        if self.tfds_name is not None:
            state, note = _tfds_state(self.tfds_name, tfds_dir)
            if state == "ready":
                return {s: self._from_tfds(s, tfds_dir, options) for s in splits}

        cache = cache_dir() / self.name
        prepared = cache / ("-".join([_PREPARED, *(f"{k}{v}" for k, v in sorted(options.items()))]))
        if self.prepared:
            ready = _read_prepared(prepared, splits)
            if ready is not None:
                return ready
        paths, missing = self._find(cache, splits)
        failure = ""
        if missing:
            if not download:
                failure = "downloading is off (download=False)"
            elif offline():
                failure = "downloading is off (DLCORE_OFFLINE is set)"
            else:
                try:
                    self.fetch(missing, progress=progress)
                except _download.DownloadError as err:
                    failure = f"the download failed ({err})"
                paths, missing = self._find(cache, splits)
        if missing:
            raise self._not_found(tfds_dir, cache, missing, note, failure)
        out = self.parse(paths, tuple(splits), **options)
        if self.prepared:
            _write_prepared(prepared, out)
            out = _read_prepared(prepared, splits)  # memory-mapped, like the next call's
        return out

    def fetch(self, files: list[RemoteFile] | None = None, *, progress: bool | None = None) -> None:
        """Downloads ``files`` (default: all not yet in the cache) into the cache.

        Raises:
            DownloadError: If a file could not be downloaded.
            ChecksumError: If a downloaded file has the wrong SHA-256.
        """
        cache = cache_dir() / self.name
        if files is None:
            _, files = self._find(cache, self.splits)
        mirror = os.environ.get("DLCORE_MIRROR", "").rstrip("/")
        for f in files:
            urls = ((f"{mirror}/{self.name}/{f.name}",) if mirror else ()) + f.urls
            _download.fetch(urls, cache / f.name, sha256=f.sha256, size=f.size, progress=progress)

    def _find(self, cache: Path, splits: tuple[str, ...]) -> tuple[dict[str, Path], list[RemoteFile]]:
        by_name = {f.name: f for f in self.files}
        wanted: list[str] = []
        for split in splits:
            for name in self.needs[split] if self.needs else by_name:
                if name not in wanted:
                    wanted.append(name)
        paths, missing = {}, []
        for name in wanted:
            f = by_name[name]
            found = next(
                (cache / n for n in (f.name, *f.alternatives) if (cache / n).is_file()), None
            )
            if found is None:
                missing.append(f)
            else:
                paths[name] = found
        return paths, missing

    def _from_tfds(self, split: str, tfds_dir: str, options: dict[str, Any]) -> Split:
        import tensorflow_datasets as tfds

        tfds_split = (self.tfds_splits or {}).get(split, split)
        # download=False: a missing dataset must fail here, never start a
        # download by TFDS behind the caller's back.
        source = tfds.data_source(self.tfds_name, split=tfds_split, data_dir=tfds_dir, download=False)
        # Record by record: decoding each image dominates the cost, so batched
        # `__getitems__` reads would not buy much (and tfds.testing.mock_data's
        # stand-in reader breaks them in tfds 4.9.10).
        records = [source[i] for i in range(len(source))]
        if not records:
            raise ValueError(
                f"TFDS copy of {self.tfds_name!r} in {tfds_dir} has an empty {tfds_split!r} "
                "split; re-prepare it or remove it to use dlcore's cache"
            )
        assert self.tfds_convert is not None, f"{self.name}: tfds_name without tfds_convert"
        return self.tfds_convert(records, f"TFDS {self.tfds_name}[{tfds_split}] in {tfds_dir}", **options)

    def _not_found(self, tfds_dir: str, cache: Path, missing: list[RemoteFile], note: str,
                   failure: str) -> DatasetNotFoundError:
        listing = ", ".join(
            f.name + (f" (or {' / '.join(f.alternatives)})" if f.alternatives else "") for f in missing
        )
        where = f"dlcore's cache {cache} lacks {listing}"
        searched: tuple[str, ...] = (str(cache),)
        if self.tfds_name is not None:
            tfds_note = f" ({note})" if note else ""
            where = f"no usable TFDS copy of {self.tfds_name!r} in {tfds_dir}{tfds_note}, and " + where
            searched = (tfds_dir, str(cache))
        standin = f", or fall back with load_or_standin({self.name!r}, {self.standin!r})" if self.standin else ""
        message = (
            f"dataset {self.name!r} is not available locally: {where}; {failure or 'it was not downloaded'}. "
            f"Run `dlcore data prepare {self.name}` on a machine with a network and copy {cache} "
            f"here (set DLCORE_DATA to move the cache), or put the files there yourself{standin}"
        )
        return DatasetNotFoundError(message, name=self.name, searched=searched)


def _tfds_state(tfds_name: str, tfds_dir: str) -> tuple[str, str]:
    """Says whether TFDS has ``tfds_name`` prepared for random access.

    Returns:
        ``(state, note)``: state is ``"ready"`` or ``"absent"``; note explains
        an unusable copy (for the not-found message), else is empty.
    """
    # Cheap local check first: it spares the TFDS import and its log noise in
    # the common case of no TFDS copy at all. Remote dirs (gs://...) go to TFDS.
    base = tfds_name.split("/")[0].split(":")[0]
    if "://" not in tfds_dir and not os.path.isdir(os.path.join(tfds_dir, base)):
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


# --- prepared arrays ---------------------------------------------------------
# Layout: cache/NAME/prepared[-OPTIONS]/SPLIT/KEY.npy, plus SPLIT/done.json
# written last: a split without done.json is incomplete and is prepared again.

_PREPARED = "prepared"


def _read_prepared(root: Path, splits: tuple[str, ...]) -> Splits | None:
    out = {}
    for split in splits:
        folder = root / split
        try:
            keys = json.loads((folder / "done.json").read_text())["keys"]
        except (FileNotFoundError, ValueError, KeyError):
            return None
        # mmap: a split larger than memory is still random-access.
        out[split] = {k: _load_npy(folder / f"{k}.npy") for k in keys}
    return out


def _load_npy(path: Path) -> np.ndarray:
    try:
        # mmap: a split larger than memory is still random-access.
        return np.load(path, mmap_mode="c")  # copy-on-write: writable, file untouched
    except ValueError:
        # Object arrays (Python strings) cannot be mapped; dlcore wrote them.
        return np.load(path, allow_pickle=True)


def _write_prepared(root: Path, splits: Splits) -> None:
    for split, arrays in splits.items():
        folder = root / split
        if (folder / "done.json").is_file():
            continue
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", np.asarray(value), allow_pickle=np.asarray(value).dtype.hasobject)
        (tmp / "done.json").write_text(json.dumps({"keys": list(arrays)}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
