"""Reading pretrained word vectors: GloVe and fastText text files, plain, gzipped or inside a zip.

Kept apart from `dlcore.data.text` (vocabularies, tokenizers, the vectors registry) and `dlcore.data.real`
(the download entries), which both read vectors, so that neither imports the other.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["read_vectors"]


def _vector_lines(path: Path, member: str | None) -> Iterator[str]:
    """The text lines of a vectors file: plain, ``.gz``, or ``member`` of a ``.zip``."""
    if member is not None or path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                name = member if member is not None else (names[0] if len(names) == 1 else None)
                if name is None or name not in names:
                    raise ValueError(f"{path}: no {member or 'single vectors file'} inside (it holds {names[:6]}); "
                                     "name the member to read")
                with z.open(name) as raw:
                    yield from io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        except zipfile.BadZipFile as err:
            raise ValueError(f"{path}: corrupt or truncated zip ({err}); delete it and fetch it again") from None
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from f


def read_vectors(
    path: str | os.PathLike,
    *,
    member: str | None = None,
    dim: int | None = None,
    wanted: set[str] | None = None,
    max_words: int | None = None,
) -> tuple[list[str], np.ndarray]:
    """The words and vectors of a GloVe or fastText text file (``.txt``, ``.vec``, ``.gz``, or a ``.zip`` member).

    Args:
        path: The file.
        member: The file inside a zip (e.g. ``"glove.6B.100d.txt"``).
        dim: The expected vector size (the embedding's); None: from the file.
        wanted: Keep only these words (None: all).
        max_words: Read only the first lines (files are sorted by frequency).

    Returns:
        ``(words, vectors float32 (W, dim))``.

    Raises:
        ValueError: Vectors of another size than ``dim``, a line with the
            wrong number of values, or no vectors, each in one line.
    """
    path = Path(path)
    where = f"{path}:{member}" if member else str(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    found_dim = None
    read = 0
    for n, line in enumerate(_vector_lines(path, member), 1):
        parts = line.rstrip().split(" ")
        if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # fastText header: "<count> <dim>"
        if len(parts) < 2:
            continue
        if found_dim is None:
            found_dim = len(parts) - 1
            if dim is not None and found_dim != dim:
                raise ValueError(f"{where} holds vectors of {found_dim} values, but the embedding has dim {dim}: "
                                 f"use the {dim}-d file, or an embedding of dim {found_dim}")
        if len(parts) - 1 != found_dim:
            raise ValueError(f"{where}: line {n} has {len(parts) - 1} values, expected {found_dim}; the file is "
                             "corrupt or not space-separated")
        if max_words is not None and read >= max_words:
            break
        read += 1
        if wanted is not None and parts[0] not in wanted:
            continue
        words.append(parts[0])
        rows.append(np.asarray(parts[1:], np.float32))
    if found_dim is None:
        raise ValueError(f"{where}: no vectors found; is it a GloVe/fastText text file?")
    return words, (np.stack(rows) if rows else np.zeros((0, found_dim), np.float32))
