"""Reader for the IDX format of the MNIST family of datasets.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the data in C order, big-endian.
MNIST ships its images as ``idx3`` (uint8, ``(N, 28, 28)``) and its labels as
``idx1`` (uint8, ``(N,)``), usually gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

# Type byte of the magic number -> element dtype (always big-endian on disk).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_REFETCH = "delete it and fetch it again"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file, gzipped or not, into a NumPy array.

    Compression is detected from the content (the gzip magic bytes), not from
    the file name, so a ``.gz`` name on a plain file, or the reverse, is fine.

    Args:
        path: The file to read.

    Returns:
        An array of shape ``dims`` (as stored in the header) in the native byte
        order, e.g. ``(N, 28, 28)`` uint8 for MNIST images and ``(N,)`` uint8
        for MNIST labels. The array owns its memory and is writable.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not IDX, is truncated, has trailing bytes,
            or is a corrupt gzip stream.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(
                f"{path}: corrupt or truncated gzip data ({err}); {_REFETCH}"
            ) from None

    if len(raw) < 4:
        raise ValueError(
            f"{path}: {len(raw)} bytes is too short for an IDX header; {_REFETCH}"
        )
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(raw[:4], "big")
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{magic:08x}; expected "
            f"0x0000TTDD with a known type TT and DD >= 1 dimensions); {_REFETCH}"
        )

    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{path}: header declares {ndim} dimensions but the file ends after "
            f"{len(raw)} bytes; the file is truncated, {_REFETCH}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_DTYPES[type_code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    present = len(raw) - header_len
    if present < expected:
        raise ValueError(
            f"{path}: header promises shape {dims} ({expected} data bytes) but "
            f"only {present} are present; the file is truncated, {_REFETCH}"
        )
    if present > expected:
        raise ValueError(
            f"{path}: {present - expected} unexpected bytes after the data of "
            f"shape {dims}; the file is corrupt, {_REFETCH}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len)
    # astype copies: the result is native-endian and no longer tied to `raw`.
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)
