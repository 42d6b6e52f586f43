"""Tables: CSV to columns, one-hot encoding and standardisation fitted on the
training split only, and fixed random splits.

A *table* is a dict of equally long 1-D NumPy arrays, one per column: numbers
as float64, text as ``str`` arrays. `TabularEncoder` turns a table into a
float32 design matrix; it learns categories and (for numeric columns) mean and
standard deviation in `TabularEncoder.fit`, from the training split alone, so
that no statistic of the validation or test data leaks into training
(Géron, Hands-On ML, ch. 2 and 9; Ketkar & Moolayil, ch. 5, Listings 5-6..5-8).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np

__all__ = ["TabularEncoder", "read_csv", "split_indices", "train_test_split"]

_log = logging.getLogger(__name__)


def read_csv(
    source: str | os.PathLike | IO[str] | IO[bytes],
    *,
    delimiter: str | None = None,
    columns: Sequence[str] | None = None,
    header: Sequence[str] | None = None,
    name: str | None = None,
) -> dict[str, np.ndarray]:
    """Reads a CSV file into a table of columns.

    A column whose every non-empty value parses as a number becomes float64
    (empty cells are NaN); any other column stays text (a ``str`` array).

    Args:
        source: A path, or an open text or binary file (e.g. a member of a zip).
        delimiter: The field separator; None sniffs ``,``, ``;`` or tab from
            the header line.
        columns: The columns to keep, in this order; each must exist.
        header: The column names when the file has no header line.
        name: How to name the file in error messages (default: its path).

    Returns:
        ``{column: array (N,)}`` in file order (or in ``columns`` order).

    Raises:
        ValueError: If the file is empty, a row has the wrong number of fields,
            or a requested column is missing (the message lists the columns).
    """
    where = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "CSV data")
    if isinstance(source, (str, os.PathLike)):
        with open(source, newline="", encoding="utf-8") as f:
            text = f.read()
    else:
        raw = source.read()
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise ValueError(f"{where}: empty CSV (no header line); check the file")
    if delimiter is None:
        delimiter = max((",", ";", "\t"), key=first.count)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    rows = [r for r in rows if r]  # blank lines
    names = list(header) if header is not None else [c.strip() for c in rows.pop(0)]
    for i, row in enumerate(rows):
        if len(row) != len(names):
            line = i + (1 if header is not None else 2)
            raise ValueError(
                f"{where}: line {line} has {len(row)} fields but the header has {len(names)} "
                f"({names}); check the delimiter ({delimiter!r}) and the quoting"
            )
    keep = list(columns) if columns is not None else names
    missing = [c for c in keep if c not in names]
    if missing:
        raise ValueError(
            f"{where}: no column(s) {missing}; its columns are {names}; check the spelling or the file"
        )
    table = {}
    for col in keep:
        j = names.index(col)
        table[col] = _column([r[j].strip() for r in rows])
    return table


def _column(values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v != "" else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


class TabularEncoder:
    """Encodes a table as a float32 matrix: numbers (standardised), binary
    flags and one-hot categories, with every statistic fitted on one split.

    Features come in this order: ``numeric`` columns, ``binary`` columns, then
    one block per ``categorical`` column with one feature per category seen in
    `fit`, sorted (as ``pandas.get_dummies`` orders them). A category first
    seen in `transform` encodes as all zeros; how many rows had one is logged
    and kept in ``unknown_counts``.

    Example::

        enc = TabularEncoder(numeric=["age"], categorical=["job"]).fit(train)
        x_train, x_test = enc.transform(train), enc.transform(test)

    Args:
        numeric: Numeric columns; standardised to mean 0, std 1 when
            ``standardize`` (a constant column gets std 1).
        categorical: Text (or integer code) columns to one-hot encode.
        binary: ``{column: positive value}``: 1.0 where the cell equals it,
            else 0.0 (e.g. ``{"loan": "yes"}``).
        standardize: Standardise the numeric columns.
        categories: ``{column: values}`` to fix a categorical column's
            categories (and their order) instead of learning them in `fit`.
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        binary: Mapping[str, Any] | None = None,
        standardize: bool = True,
        categories: Mapping[str, Sequence[Any]] | None = None,
    ):
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.binary = dict(binary or {})
        self.standardize = standardize
        every = self.numeric + list(self.binary) + self.categorical
        dupes = sorted({c for c in every if every.count(c) > 1})
        if dupes:
            raise ValueError(f"column(s) {dupes} are listed twice; give each column one role")
        if not every:
            raise ValueError("TabularEncoder needs at least one numeric, binary or categorical column")
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.fixed_categories = {c: np.asarray(v) for c, v in (categories or {}).items()}
        stray = sorted(set(self.fixed_categories) - set(self.categorical))
        if stray:
            raise ValueError(f"categories given for {stray}, which are not in categorical={self.categorical}")
        self.categories_: dict[str, np.ndarray] = dict(self.fixed_categories)
        self.unknown_counts: dict[str, int] = {}

    def fit(self, table: Mapping[str, np.ndarray]) -> TabularEncoder:
        """Learns categories and numeric mean/std from ``table`` (the training split).

        Returns:
            ``self``, so that ``TabularEncoder(...).fit(train)`` reads naturally.
        """
        n = self._check(table)
        if self.numeric:
            values = np.stack([np.asarray(table[c], np.float64) for c in self.numeric], axis=1)
            self.mean_ = np.nanmean(values, axis=0) if n else np.zeros(len(self.numeric))
            std = np.nanstd(values, axis=0)
            self.std_ = np.where(std > 0, std, 1.0)
        for c in self.categorical:
            if c not in self.fixed_categories:
                self.categories_[c] = np.unique(np.asarray(table[c]))
        return self

    @property
    def feature_names(self) -> list[str]:
        """Names of the output features, ``column=value`` for one-hot ones."""
        self._check_fitted()
        return (self.numeric + list(self.binary)
                + [f"{c}={v}" for c in self.categorical for v in self.categories_[c]])

    def transform(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        """Encodes ``table`` with what `fit` learned.

        Returns:
            float32 ``(N, F)`` with ``F = len(feature_names)``.
        """
        self._check_fitted()
        n = self._check(table)
        parts = []
        if self.numeric:
            values = np.stack([np.asarray(table[c], np.float64) for c in self.numeric], axis=1)
            if self.standardize:
                values = (values - self.mean_) / self.std_
            parts.append(values)
        for c, positive in self.binary.items():
            parts.append((np.asarray(table[c]) == positive).astype(np.float64)[:, None])
        for c in self.categorical:
            cats = self.categories_[c]
            col = np.asarray(table[c])
            onehot = (col[:, None] == cats[None, :]).astype(np.float64)
            unknown = int(n - onehot.sum())
            self.unknown_counts[c] = unknown
            if unknown:
                _log.warning("column %r: %d row(s) with a category not seen in fit encode as zeros", c, unknown)
            parts.append(onehot)
        return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((n, 0), np.float32)

    def fit_transform(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        """`fit` then `transform` on the same (training) table."""
        return self.fit(table).transform(table)

    def _check(self, table: Mapping[str, np.ndarray]) -> int:
        wanted = self.numeric + list(self.binary) + self.categorical
        missing = [c for c in wanted if c not in table]
        if missing:
            raise ValueError(f"table has no column(s) {missing}; its columns are {list(table)}")
        lengths = {len(np.asarray(table[c])) for c in wanted}
        if len(lengths) != 1:
            raise ValueError(f"table columns differ in length {sorted(lengths)}; one value per row each")
        for c in self.numeric:
            if not np.issubdtype(np.asarray(table[c]).dtype, np.number):
                raise ValueError(f"numeric column {c!r} holds text; list it under categorical= or binary=")
        return lengths.pop()

    def _check_fitted(self) -> None:
        if (self.numeric and self.mean_ is None) or any(c not in self.categories_ for c in self.categorical):
            raise ValueError("TabularEncoder is not fitted; call fit(train) first")


def split_indices(n: int, fractions: Sequence[float], *, seed: int = 0) -> list[np.ndarray]:
    """Shuffles ``range(n)`` with ``seed`` and cuts it by ``fractions``.

    Args:
        n: Number of rows.
        fractions: The share of each part but the last, e.g. ``(0.8,)`` for
            80/20; the last part takes the rest.
        seed: NumPy seed of the permutation.

    Returns:
        One int64 index array per part (``len(fractions) + 1`` of them).
    """
    if not fractions or any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"fractions must be > 0 and sum to < 1 (the last part takes the rest), got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions) * n).astype(int)
    return np.split(perm, cuts)


def train_test_split(
    arrays: Mapping[str, np.ndarray], test_fraction: float = 0.2, *, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits a split (dict of arrays) into train and test parts at random.

    Returns:
        ``(train, test)`` with ``round((1 - test_fraction) * N)`` rows in train.
    """
    n = len(next(iter(arrays.values())))
    train_idx, test_idx = split_indices(n, (1.0 - test_fraction,), seed=seed)
    return ({k: np.asarray(v)[train_idx] for k, v in arrays.items()},
            {k: np.asarray(v)[test_idx] for k, v in arrays.items()})

