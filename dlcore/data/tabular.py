"""Tables: CSV to columns, one-hot encoding and standardisation fitted on the
training split only, and fixed random splits.

A *table* is a dict of equally long 1-D NumPy arrays, one per column: numbers
as float64, text as ``str`` arrays (`read_csv` returns a `Table`, a dict that
also remembers its file). `TabularEncoder` turns a table into a float32 design
matrix; it learns categories, (for numeric columns) mean and standard
deviation, and the values that fill missing cells in `TabularEncoder.fit`,
from the training split alone, so that no statistic of the validation or test
data leaks into training (Géron, Hands-On ML, ch. 2 and 9; Ketkar & Moolayil,
ch. 5, Listings 5-6..5-8). A missing cell (empty, or NaN) is an error naming
the column and the row unless the encoder is told what to do with it
(``missing=``): NaN never reaches the encoded matrix.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np

from dlcore.checks import check_choice

__all__ = ["Table", "TabularEncoder", "read_csv", "split_indices", "train_test_split"]

_log = logging.getLogger(__name__)

MISSING = ("error", "mean", "median", "drop")


class Table(dict):
    """A table read by `read_csv`: a plain ``{column: array}`` dict that also knows its file.

    ``source`` names the file in error messages, and row ``i`` of each column is the file's data row
    ``i + 1`` (the first line after the header is row 1). A table built from it (a split, a selection)
    is a plain dict: its errors name rows of that table.
    """

    source: str | None = None


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
    (empty cells are NaN, which `TabularEncoder` reports by column and row, or
    fills, per its ``missing``); any other column stays text (a ``str``
    array, empty cells as ``""``).

    Args:
        source: A path, or an open text or binary file (e.g. a member of a zip).
        delimiter: The field separator; None sniffs ``,``, ``;`` or tab from
            the header line.
        columns: The columns to keep, in this order; each must exist.
        header: The column names when the file has no header line.
        name: How to name the file in error messages (default: its path).

    Returns:
        A `Table`, ``{column: array (N,)}`` in file order (or in ``columns``
        order), that remembers ``where`` for error messages.

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
    table = Table()
    table.source = where
    for col in keep:
        j = names.index(col)
        table[col] = _column([r[j].strip() for r in rows])
    return table


def _column(values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v != "" else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


_FIX = "fill it, or pass TabularEncoder(missing='mean' | 'median' | 'drop')"


def _at(table: Mapping[str, Any], column: str, i: int) -> str:
    """Where a cell is: the file and its 1-based data row when known, else the row of the table given."""
    source = getattr(table, "source", None)
    if source:
        return f"{source}: column {column!r}, data row {i + 1}"
    return f"column {column!r}, row {i + 1}"


def _cell_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(v)
    if isinstance(v, (str, np.str_)):
        return v.strip() == ""
    return False


def _missing_mask(col: np.ndarray) -> np.ndarray:
    """True where a cell is missing: NaN, None, or empty (or blank) text."""
    if col.dtype.kind in "fc":
        return np.isnan(col)
    if col.dtype.kind == "U":
        return np.char.strip(col) == ""
    if col.dtype.kind == "O":
        return np.array([_cell_missing(v) for v in col], dtype=bool)
    return np.zeros(len(col), dtype=bool)


def _number(v: Any) -> float | None:
    """A cell of a numeric column as a float (NaN when missing), None when it is not a number."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, (str, np.str_)):
        try:
            return float(v)
        except ValueError:
            return None
    return None


class TabularEncoder:
    """Encodes a table as a float32 matrix: numbers (standardised), binary
    flags and one-hot categories, with every statistic fitted on one split.

    Features come in this order: ``numeric`` columns, ``binary`` columns, then
    one block per ``categorical`` column with one feature per category seen in
    `fit`, sorted (as ``pandas.get_dummies`` orders them). A category first
    seen in `transform` encodes as all zeros; how many rows had one is logged
    and kept in ``unknown_counts``.

    Missing cells (empty text, NaN, None; `read_csv` reads an empty numeric
    cell as NaN) follow ``missing``, in `fit` and in `transform` alike:

    * ``"error"`` (default): a ValueError naming the column and the row (the
      file and its 1-based data row for a `Table` from `read_csv`, else the
      1-based row of the table given), in every column (numeric, binary,
      categorical);
    * ``"mean"`` / ``"median"``: a numeric cell takes the column's mean /
      median on the table given to `fit` (the training split), before
      standardisation (scikit-learn's ``SimpleImputer`` then
      ``StandardScaler``, the book's pipeline); a binary cell takes the mean /
      median of the 0/1 flag in `fit`; in a categorical column an empty cell
      is its own category, the feature ``"column="`` after the others (made
      only when `fit` saw one; otherwise all zeros, counted as unknown);
    * ``"drop"``: rows with a missing cell in any encoded column are left out,
      in `fit` (statistics from the other rows) and in `transform`, which
      then records the rows it kept in ``kept_rows`` (index the targets with
      it: ``y[encoder.kept_rows]``).

    A cell of a numeric column that is not a number (``"abc"``) or is
    infinite is always an error naming the column and the row.

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
        missing: ``"error"``, ``"mean"``, ``"median"`` or ``"drop"``, as above.
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        binary: Mapping[str, Any] | None = None,
        standardize: bool = True,
        categories: Mapping[str, Sequence[Any]] | None = None,
        missing: str = "error",
    ):
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.binary = dict(binary or {})
        self.standardize = standardize
        self.missing = check_choice(missing, "missing", MISSING, who="TabularEncoder")
        every = self.numeric + list(self.binary) + self.categorical
        dupes = sorted({c for c in every if every.count(c) > 1})
        if dupes:
            raise ValueError(f"column(s) {dupes} are listed twice; give each column one role")
        if not every:
            raise ValueError("TabularEncoder needs at least one numeric, binary or categorical column")
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.fill_: np.ndarray | None = None  # numeric fill values (missing="mean" / "median")
        self.binary_fill_: np.ndarray | None = None
        self.fixed_categories = {c: np.asarray(v) for c, v in (categories or {}).items()}
        stray = sorted(set(self.fixed_categories) - set(self.categorical))
        if stray:
            raise ValueError(f"categories given for {stray}, which are not in categorical={self.categorical}")
        self.categories_: dict[str, np.ndarray] = dict(self.fixed_categories)
        self.missing_category_: dict[str, bool] = {}
        self.unknown_counts: dict[str, int] = {}
        self.kept_rows: np.ndarray | None = None

    def fit(self, table: Mapping[str, np.ndarray]) -> TabularEncoder:
        """Learns categories, numeric mean/std and fill values from ``table`` (the training split).

        Returns:
            ``self``, so that ``TabularEncoder(...).fit(train)`` reads naturally.

        Raises:
            ValueError: On a missing column, a cell of a numeric column that is not a finite number, or
                (``missing="error"``) a missing cell: one line naming the column and the row.
        """
        n = self._check(table)
        num, nmiss, flags, bmiss, cats = self._cells(table, n)
        keep = self._keep(n, nmiss, bmiss, cats)
        if n and not keep.any():
            raise ValueError("TabularEncoder.fit: every row has a missing cell (missing='drop'); nothing to fit")
        if self.numeric:
            num, nmiss = num[keep], nmiss[keep]
            if self.missing in ("mean", "median"):
                self.fill_ = self._fill_values(table, self.numeric, num, nmiss)
                num = np.where(nmiss, self.fill_, num)
            self.mean_ = num.mean(axis=0) if len(num) else np.zeros(len(self.numeric))
            std = num.std(axis=0) if len(num) else np.ones(len(self.numeric))
            self.std_ = np.where(std > 0, std, 1.0)
        if self.binary and self.missing in ("mean", "median"):
            self.binary_fill_ = self._fill_values(table, list(self.binary), flags[keep], bmiss[keep])
        for c, (col, miss) in zip(self.categorical, cats):
            col, miss = col[keep], miss[keep]
            if c not in self.fixed_categories:
                self.categories_[c] = np.unique(col[~miss])
            self.missing_category_[c] = self.missing in ("mean", "median") and bool(miss.any())
        return self

    @property
    def feature_names(self) -> list[str]:
        """Names of the output features, ``column=value`` for one-hot ones (``column=`` for missing)."""
        self._check_fitted()
        names = self.numeric + list(self.binary)
        for c in self.categorical:
            names += [f"{c}={v}" for v in self.categories_[c]]
            if self.missing_category_.get(c):
                names.append(f"{c}=")
        return names

    def transform(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        """Encodes ``table`` with what `fit` learned.

        Returns:
            float32 ``(N, F)`` with ``F = len(feature_names)`` (``N`` counts the kept rows under
            ``missing="drop"``; ``kept_rows`` says which).

        Raises:
            ValueError: As `fit`.
        """
        self._check_fitted()
        n = self._check(table)
        num, nmiss, flags, bmiss, cats = self._cells(table, n)
        keep = self._keep(n, nmiss, bmiss, cats)
        self.kept_rows = np.flatnonzero(keep)
        if len(self.kept_rows) < n:
            _log.warning("%d row(s) with a missing cell left out (missing='drop'); index the targets with "
                         "encoder.kept_rows", n - len(self.kept_rows))
        parts = []
        if self.numeric:
            if self.fill_ is not None:
                num = np.where(nmiss, self.fill_, num)
            if self.standardize:
                num = (num - self.mean_) / self.std_
            parts.append(num)
        if self.binary:
            if self.binary_fill_ is not None:
                flags = np.where(bmiss, self.binary_fill_, flags)
            parts.append(flags)
        for c, (col, miss) in zip(self.categorical, cats):
            known = self.categories_[c]
            onehot = ((col[:, None] == known[None, :]) & ~miss[:, None]).astype(np.float64)
            if self.missing_category_.get(c):
                onehot = np.concatenate([onehot, miss[:, None].astype(np.float64)], axis=1)
            unknown = int(keep.sum() - onehot[keep].sum())
            self.unknown_counts[c] = unknown
            if unknown:
                _log.warning("column %r: %d row(s) with a category not seen in fit encode as zeros", c, unknown)
            parts.append(onehot)
        out = np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((n, 0), np.float32)
        return out[keep]

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
        return lengths.pop()

    def _numbers(self, table: Mapping[str, np.ndarray], c: str) -> tuple[np.ndarray, np.ndarray]:
        """A numeric column as float64 and its missing mask; the first cell that is no number raises."""
        col = np.asarray(table[c])
        if col.dtype.kind in "iuf":
            values = col.astype(np.float64)
        else:
            parsed = [np.nan if _cell_missing(v) else _number(v) for v in col]
            bad = [i for i, v in enumerate(parsed) if v is None]
            if bad:
                i = bad[0]
                cell = col[i].item() if isinstance(col[i], np.generic) else col[i]
                if len(bad) == sum(not _cell_missing(v) for v in col):
                    raise ValueError(f"{_at(table, c, i)}: {cell!r} is not a number (numeric column {c!r} "
                                     f"holds text; list it under categorical= or binary=)")
                raise ValueError(f"{_at(table, c, i)}: {cell!r} is not a number; fix the cell, or list the "
                                 f"column under categorical= if it holds text")
            values = np.array(parsed, dtype=np.float64)
        inf = np.flatnonzero(np.isinf(values))
        if len(inf):
            raise ValueError(f"{_at(table, c, int(inf[0]))}: {float(values[inf[0]])!r} is not a finite number; "
                             f"fix the cell")
        return values, np.isnan(values)

    def _cells(self, table: Mapping[str, np.ndarray], n: int):
        """Every encoded column read and checked: numeric values, 0/1 flags, categorical columns, with
        their missing masks; under ``missing="error"`` the first missing cell raises."""
        num = np.zeros((n, len(self.numeric)))
        nmiss = np.zeros((n, len(self.numeric)), dtype=bool)
        for j, c in enumerate(self.numeric):
            num[:, j], nmiss[:, j] = self._numbers(table, c)
            self._no_missing(table, c, nmiss[:, j], "a numeric column")
        flags = np.zeros((n, len(self.binary)))
        bmiss = np.zeros((n, len(self.binary)), dtype=bool)
        for j, (c, positive) in enumerate(self.binary.items()):
            col = np.asarray(table[c])
            bmiss[:, j] = _missing_mask(col)
            self._no_missing(table, c, bmiss[:, j], "a binary column")
            flags[:, j] = (col == positive) & ~bmiss[:, j]
        cats = []
        for c in self.categorical:
            col = np.asarray(table[c])
            miss = _missing_mask(col)
            self._no_missing(table, c, miss, "a categorical column")
            cats.append((col, miss))
        return num, nmiss, flags, bmiss, cats

    def _no_missing(self, table: Mapping[str, np.ndarray], c: str, miss: np.ndarray, kind: str) -> None:
        if self.missing == "error" and miss.any():
            i = int(np.flatnonzero(miss)[0])
            raise ValueError(f"{_at(table, c, i)}: empty or NaN cell in {kind}; {_FIX}")

    def _keep(self, n: int, nmiss: np.ndarray, bmiss: np.ndarray, cats: list) -> np.ndarray:
        """The rows to encode: all, or (``missing="drop"``) those without a missing cell."""
        if self.missing != "drop":
            return np.ones(n, dtype=bool)
        miss = nmiss.any(axis=1) | bmiss.any(axis=1)
        for _, m in cats:
            miss |= m
        return ~miss

    def _fill_values(self, table: Mapping[str, np.ndarray], columns: list[str], values: np.ndarray,
                     miss: np.ndarray) -> np.ndarray:
        stat = np.mean if self.missing == "mean" else np.median
        fill = np.zeros(len(columns))
        for j, c in enumerate(columns):
            seen = values[~miss[:, j], j]
            if not len(seen) and miss[:, j].any():
                raise ValueError(f"column {c!r} has no value in the table given to fit, so no {self.missing} "
                                 f"to fill its missing cells with (missing={self.missing!r})")
            fill[j] = stat(seen) if len(seen) else 0.0
        return fill

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

