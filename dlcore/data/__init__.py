"""Datasets as dicts of NumPy arrays, and a small in-memory batch loader."""

from dlcore.data.idx import read_idx
from dlcore.data.loader import batches, num_batches, validate_split
from dlcore.data.registry import (
    DatasetInfo,
    DatasetNotFoundError,
    cache_dir,
    info,
    load,
    load_or_standin,
    names,
)

__all__ = [
    "DatasetInfo",
    "DatasetNotFoundError",
    "batches",
    "cache_dir",
    "info",
    "load",
    "load_or_standin",
    "names",
    "num_batches",
    "read_idx",
    "validate_split",
]
