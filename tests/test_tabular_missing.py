"""Missing and bad cells of a table: one error line naming the column and the row, or the imputation the
user chose (statistics from the training table only); NaN never reaches the encoded matrix."""

import logging
import re

import numpy as np
import pytest

from dlcore.data import tabular

# 5 data rows; row 2 has no age, row 3 no income, no job and no loan.
CSV = "age,income,job,loan\n20,1.0,a,yes\n,2.0,b,no\n40,,,\n60,4.0,a,yes\n30,9.0,b,yes\n"
FIX = "fill it, or pass TabularEncoder(missing='mean' | 'median' | 'drop')"
COLUMNS = dict(numeric=["age", "income"], binary={"loan": "yes"}, categorical=["job"])


@pytest.fixture
def table(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    return tabular.read_csv(tmp_path / "t.csv", name="t.csv")


def _raises(build, message):
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value) == message
    return err


def test_read_csv_keeps_the_file_and_the_empty_cells(table, tmp_path):
    assert isinstance(table, dict) and table.source == "t.csv"
    assert np.isnan(table["age"][1]) and table["job"].tolist() == ["a", "b", "", "a", "b"]
    assert tabular.read_csv(tmp_path / "t.csv").source == str(tmp_path / "t.csv")


def test_missing_cells_are_errors_by_default(table):
    _raises(lambda: tabular.TabularEncoder(**COLUMNS).fit(table),
            f"t.csv: column 'age', data row 2: empty or NaN cell in a numeric column; {FIX}")
    _raises(lambda: tabular.TabularEncoder(numeric=["income"]).fit(table),
            f"t.csv: column 'income', data row 3: empty or NaN cell in a numeric column; {FIX}")
    _raises(lambda: tabular.TabularEncoder(categorical=["job"]).fit(table),
            f"t.csv: column 'job', data row 3: empty or NaN cell in a categorical column; {FIX}")
    _raises(lambda: tabular.TabularEncoder(binary={"loan": "yes"}).fit(table),
            f"t.csv: column 'loan', data row 3: empty or NaN cell in a binary column; {FIX}")
    # a table that is not the file's (a split): the row of that table
    first = {c: v[:1] for c, v in table.items()}
    enc = tabular.TabularEncoder(**COLUMNS).fit(first)
    rows = {c: v[1:3] for c, v in table.items()}
    _raises(lambda: enc.transform(rows),
            f"column 'age', row 1: empty or NaN cell in a numeric column; {FIX}")
    _raises(lambda: enc.transform({**first, "job": np.array([None], dtype=object)}),
            f"column 'job', row 1: empty or NaN cell in a categorical column; {FIX}")


def test_text_and_infinity_in_a_numeric_column(tmp_path):
    (tmp_path / "t.csv").write_text("age,job\n20,a\n30,b\nabc,a\n50,b\n")
    table = tabular.read_csv(tmp_path / "t.csv", name="t.csv")
    for missing in tabular.MISSING:
        _raises(lambda: tabular.TabularEncoder(numeric=["age"], missing=missing).fit(table),
                "t.csv: column 'age', data row 3: 'abc' is not a number; fix the cell, or list the column under "
                "categorical= if it holds text")
    _raises(lambda: tabular.TabularEncoder(numeric=["job"]).fit(table),
            "t.csv: column 'job', data row 1: 'a' is not a number (numeric column 'job' holds text; list it under "
            "categorical= or binary=)")
    (tmp_path / "inf.csv").write_text("age\n20\ninf\n")
    inf = tabular.read_csv(tmp_path / "inf.csv", name="inf.csv")
    _raises(lambda: tabular.TabularEncoder(numeric=["age"], missing="mean").fit(inf),
            "inf.csv: column 'age', data row 2: inf is not a finite number; fix the cell")
    _raises(lambda: tabular.TabularEncoder(numeric=["age"]).fit({"age": np.array([1.0, 2.0, True], dtype=object)}),
            "column 'age', row 3: True is not a number; fix the cell, or list the column under categorical= if it "
            "holds text")


def test_mean_imputation_by_hand(table):
    enc = tabular.TabularEncoder(**COLUMNS, standardize=False, missing="mean").fit(table)
    assert enc.feature_names == ["age", "income", "loan", "job=a", "job=b", "job="]
    # age: mean(20, 40, 60, 30) = 37.5; income: mean(1, 2, 4, 9) = 4; loan: mean(1, 0, 1, 1) = 0.75
    np.testing.assert_allclose(enc.fill_, [37.5, 4.0])
    np.testing.assert_allclose(enc.binary_fill_, [0.75])
    np.testing.assert_allclose(enc.transform(table), [
        [20.0, 1.0, 1.0, 1, 0, 0],
        [37.5, 2.0, 0.0, 0, 1, 0],
        [40.0, 4.0, 0.75, 0, 0, 1],  # the empty job is its own category
        [60.0, 4.0, 1.0, 1, 0, 0],
        [30.0, 9.0, 1.0, 0, 1, 0],
    ])
    # standardised after imputation: age (20, 37.5, 40, 60, 30) has mean 37.5, std sqrt(875 / 5)
    x = tabular.TabularEncoder(**COLUMNS, missing="mean").fit_transform(table)
    np.testing.assert_allclose(x[:, 0], np.array([-17.5, 0.0, 2.5, 22.5, -7.5]) / np.sqrt(175.0), rtol=1e-6)
    assert np.isfinite(x).all()


def test_median_imputation_by_hand(table):
    enc = tabular.TabularEncoder(**COLUMNS, standardize=False, missing="median").fit(table)
    # age: median(20, 30, 40, 60) = 35; income: median(1, 2, 4, 9) = 3; loan: median(1, 0, 1, 1) = 1
    np.testing.assert_allclose(enc.transform(table)[:, :3], [
        [20.0, 1.0, 1.0], [35.0, 2.0, 0.0], [40.0, 3.0, 1.0], [60.0, 4.0, 1.0], [30.0, 9.0, 1.0]])


def test_fill_values_come_from_the_training_table_only(table):
    train = {c: v[:3] for c, v in table.items()}  # rows 1-3: age 20, NaN, 40; income 1, 2, NaN
    enc = tabular.TabularEncoder(**COLUMNS, standardize=False, missing="mean").fit(train)
    np.testing.assert_allclose(enc.fill_, [30.0, 1.5])
    test = {"age": np.array([np.nan]), "income": np.array([np.nan]), "job": np.array([""]),
            "loan": np.array([""])}
    np.testing.assert_allclose(enc.transform(test), [[30.0, 1.5, 0.5, 0, 0, 1]])
    # a missing category fit never saw encodes as zeros, counted as unknown
    enc = tabular.TabularEncoder(categorical=["job"], missing="mean").fit({"job": np.array(["a", "b"])})
    assert enc.feature_names == ["job=a", "job=b"]
    np.testing.assert_allclose(enc.transform({"job": np.array(["", "b"])}), [[0, 0], [0, 1]])
    assert enc.unknown_counts == {"job": 1}
    _raises(lambda: tabular.TabularEncoder(numeric=["age"], missing="median").fit({"age": np.array([np.nan])}),
            "column 'age' has no value in the table given to fit, so no median to fill its missing cells with "
            "(missing='median')")


def test_drop_leaves_the_rows_out_and_says_which(table, caplog):
    enc = tabular.TabularEncoder(**COLUMNS, standardize=False, missing="drop").fit(table)
    assert enc.feature_names == ["age", "income", "loan", "job=a", "job=b"]
    with caplog.at_level(logging.WARNING):
        x = enc.transform(table)
    np.testing.assert_allclose(x, [[20, 1, 1, 1, 0], [60, 4, 1, 1, 0], [30, 9, 1, 0, 1]])
    np.testing.assert_array_equal(enc.kept_rows, [0, 3, 4])
    assert "2 row(s) with a missing cell left out" in caplog.text
    std = tabular.TabularEncoder(numeric=["age"], missing="drop").fit(table)  # mean of 20, 40, 60, 30
    np.testing.assert_allclose(std.mean_, [37.5])
    _raises(lambda: tabular.TabularEncoder(numeric=["age"], missing="drop").fit({"age": np.array([np.nan])}),
            "TabularEncoder.fit: every row has a missing cell (missing='drop'); nothing to fit")


def test_bad_missing_option():
    _raises(lambda: tabular.TabularEncoder(numeric=["age"], missing="zero"),
            "TabularEncoder: missing must be one of 'error', 'mean', 'median', 'drop', got 'zero'")


@pytest.mark.parametrize("missing", ["mean", "median", "drop"])
def test_no_nan_reaches_the_matrix(table, missing):
    x = tabular.TabularEncoder(**COLUMNS, missing=missing).fit_transform(table)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert not re.search("nan", str(tabular.TabularEncoder(**COLUMNS, missing=missing).fit(table).feature_names))
