"""Checksummed, atomic, resumable downloads into dlcore's cache.

A file is fetched into ``<dest>.part`` and renamed to ``dest`` only once every
byte has arrived and its SHA-256 matches, so a file under its final name is
always complete: an interrupted download leaves only the ``.part`` file, which
the next call resumes (HTTP ``Range``) or, when the server cannot resume,
restarts from zero. A wrong checksum deletes the partial file and raises
`ChecksumError`; nothing is left in the cache.

Where only the first hex digits of the SHA-256 are published (torchvision's
weight files end their names with them: ``resnet18-f37072fd.pth``), pass them
as ``sha256_prefix``: the download must start with them and nothing is
recorded.

Where a file's published SHA-256 is not known (``sha256=None``), the hash is
*trusted on first use*: it is computed while downloading and recorded next to
the file as ``<dest>.sha256`` (``sha256sum`` format); a later download of the
same file must match that record.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["ChecksumError", "DownloadError", "fetch", "recorded_sha256", "sha256_file"]

_log = logging.getLogger(__name__)
_CHUNK = 1 << 16
_USER_AGENT = "dlcore-data/0.1 (+https://github.com; python urllib)"


class DownloadError(OSError):
    """No URL of a file could be downloaded (network down, server error, cut)."""


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the expected one."""


def sha256_file(path: str | os.PathLike) -> str:
    """Returns the hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_sha256(dest: str | os.PathLike) -> str | None:
    """The hash recorded on first use for ``dest`` (its ``.sha256`` file), or None."""
    record = Path(os.fspath(dest) + ".sha256")
    try:
        text = record.read_text().split()
    except FileNotFoundError:
        return None
    if not text or not re.fullmatch(r"[0-9a-f]{64}", text[0]):
        raise ValueError(f"{record}: not a SHA-256 record; delete it to record the hash again")
    return text[0]


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    size: int | None = None,
    progress: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """Downloads ``dest`` from the first of ``urls`` that answers.

    Does nothing when ``dest`` exists: a file under its final name is complete
    (this function never writes one that is not).

    Args:
        urls: One URL or several mirrors, tried in order (http, https, file).
        dest: The final path; its directory is created.
        sha256: The published hex SHA-256, or None to trust on first use (the
            hash is then recorded in ``<dest>.sha256``; a recorded hash is
            enforced like a published one).
        sha256_prefix: Instead of ``sha256``, the first 8 to 64 hex digits
            of the published hash (as torchvision's file names carry them);
            checked like a published hash, and no hash is recorded.
        size: The expected size in bytes, if known (checked before hashing).
        progress: Show a tqdm bar on stderr; None shows it only on a terminal.
        timeout: Seconds to wait for a server before trying the next URL.

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: The bytes arrived but their hash is wrong (nothing of
            them is kept; other mirrors are not tried: a wrong file is
            a problem to look at, not to route around).
        DownloadError: Every URL failed (network, HTTP error, cut connection);
            a partial download is kept as ``<dest>.part`` for the next call.
    """
    dest = Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"no URL given for {dest.name}; pass at least one")
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 for {dest.name} must be 64 lowercase hex digits, got {sha256!r}")
    if sha256_prefix is not None:
        if sha256 is not None:
            raise ValueError(f"give {dest.name} a sha256 or a sha256_prefix, not both")
        if not isinstance(sha256_prefix, str) or not re.fullmatch(r"[0-9a-f]{8,64}", sha256_prefix):
            raise ValueError(f"sha256_prefix for {dest.name} must be 8 to 64 lowercase hex digits, "
                             f"got {sha256_prefix!r}")
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest):
        if dest.exists():  # another process finished it while we waited
            return dest
        expected = sha256 or sha256_prefix or recorded_sha256(dest)
        errors = []
        for url in urls:
            try:
                digest = _download(url, dest, size=size, progress=progress, timeout=timeout)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                errors.append(f"{url}: {_describe(err)}")
                continue
            part = _part(dest)
            if expected is not None and not digest.startswith(expected):
                part.unlink(missing_ok=True)
                kind = ("published" if sha256 else "published prefix of the" if sha256_prefix
                        else "recorded on first use")
                raise ChecksumError(
                    f"{dest.name} from {url} has SHA-256 {digest}, but the {kind} hash is "
                    f"{expected}; the download was deleted. The file may have changed upstream "
                    "or been tampered with; retry later, use another mirror, or (for a recorded "
                    f"hash you no longer trust) delete {dest}.sha256"
                )
            os.replace(part, dest)
            if expected is None:
                _write_record(dest, digest)
                _log.warning(
                    "%s: no published SHA-256 is known; recorded %s on first use in %s.sha256",
                    dest.name, digest, dest,
                )
            return dest
        raise DownloadError(f"could not download {dest.name}: " + "; ".join(errors))


def _download(url: str, dest: Path, *, size: int | None, progress: bool | None,
              timeout: float) -> str:
    """Fetches ``url`` into ``<dest>.part``, resuming it if it exists.

    Returns:
        The hex SHA-256 of the complete ``.part`` file.
    """
    part = _part(dest)
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        offset = 0  # a longer leftover cannot be a prefix of this file
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        # 416: the leftover is as long as the file or longer: start afresh.
        part.unlink()
        return _download(url, dest, size=size, progress=progress, timeout=timeout)

    with response:
        status = getattr(response, "status", None) or 200
        resumed = offset and status == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else size
        digest = hashlib.sha256()
        if resumed:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        from tqdm.auto import tqdm

        received = offset
        with open(part, "ab" if resumed else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, disable=(None if progress is None else not progress), leave=False,
        ) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    if total is not None and received != total:
        raise DownloadError(
            f"connection ended after {received} of {total} bytes; the partial file is kept "
            "and the next call resumes it"
        )
    return digest.hexdigest()


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _write_record(dest: Path, digest: str) -> None:
    record = Path(os.fspath(dest) + ".sha256")
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{digest}  {dest.name}\n")
    os.replace(tmp, record)


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


@contextlib.contextmanager
def _lock(dest: Path) -> Iterator[None]:
    """Serialises downloads of ``dest`` across processes (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still holds
        yield
        return
    lock_path = dest.with_name(dest.name + ".lock")
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
