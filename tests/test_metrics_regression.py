"""R² and MAPE of dlcore.metrics: scikit-learn parity, hand-computed values, streaming == one batch, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import metrics as M
from one_line import raises_one_line

sk = pytest.importorskip("sklearn.metrics")


def _data(n=300, d=3, mean=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(mean, 2.0, (n, d)).astype(np.float32)
    p = (y + rng.normal(0.0, 1.0, y.shape) + rng.normal(0.0, 0.5, d)).astype(np.float32)
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    return p, y, w


# One compiled update per (metric, batch shape), shared by the tests: eager updates would compile every
# primitive for every batch shape.
_update = jax.jit(lambda metric, acc, p, y, w: metric.update(acc, p, y, w), static_argnums=0)
CUTS = (7, 8, 100, 250)  # uneven batches of 7, 1, 92, 150 and 50 rows (of 300)


def _fold(metric, p, y, w, cuts):
    acc = metric.init()
    for a, b in zip((0, *cuts), (*cuts, len(y))):
        acc = _update(metric, acc, p[a:b], y[a:b], w[a:b])
    return acc


def _stream(metric, p, y, w, cuts):
    return np.asarray(metric.compute(_fold(metric, p, y, w, cuts)))


def test_hand_computed_values():
    # y = [1, 2, 3, 4], p = [1, 2, 3, 5]: rss = 1, tss = 5 -> R² = 0.8; MAPE = (1/4) / 4 = 0.0625
    y, p = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]
    assert float(M.r2_score(p, y)) == pytest.approx(0.8)
    assert float(M.mean_absolute_percentage_error(p, y)) == pytest.approx(0.0625)
    # weights 0 on the last row: the first three are perfect -> R² 1, MAPE 0
    assert float(M.r2_score(p, y, [1, 1, 1, 0])) == 1.0
    assert float(M.mean_absolute_percentage_error(p, y, [1, 1, 1, 0])) == 0.0
    # scikit-learn's force_finite: constant target, perfect -> 1, imperfect -> 0
    assert float(M.r2_score([2.0, 2.0, 2.0], [2.0, 2.0, 2.0])) == 1.0
    assert float(M.r2_score([2.0, 2.0, 3.0], [2.0, 2.0, 2.0])) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
def test_r2_matches_sklearn(weighted):
    p, y, w = _data()
    w = w if weighted else None
    for multioutput in ("uniform_average", "variance_weighted", "raw_values"):
        ours = np.asarray(M.r2_score(p, y, w, multioutput=multioutput))
        ref = sk.r2_score(y, p, sample_weight=w, multioutput=multioutput)
        np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-6)
    # one output given as (N,)
    ours1 = float(M.r2_score(p[:, 0], y[:, 0], w))
    assert ours1 == pytest.approx(sk.r2_score(y[:, 0], p[:, 0], sample_weight=w), rel=2e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_r2_of_a_constant_output(weighted):
    # an output with a constant target (column 1) scores 0 (force_finite), the others as before; scikit-learn's
    # own float32 mean of 5.0s need not be exactly 5 with weights, and then its column-1 score is -1e13, not 0
    p, y, w = _data()
    w = w if weighted else np.ones(len(y), np.float32)
    y2 = y.copy()
    y2[:, 1] = 5.0
    raw = np.asarray(M.r2_score(p, y2, w, multioutput="raw_values"))
    ref = sk.r2_score(y, p, sample_weight=w, multioutput="raw_values")
    assert raw[1] == 0.0
    np.testing.assert_allclose(raw[[0, 2]], ref[[0, 2]], rtol=2e-5)
    expected = {"raw_values": raw, "uniform_average": raw.mean(),  # variance_weighted: column 1 weighs 0
                "variance_weighted": sk.r2_score(y[:, [0, 2]], p[:, [0, 2]], sample_weight=w,
                                                 multioutput="variance_weighted")}
    acc = _fold(M.R2Score(num_outputs=3), p, y2, w, CUTS)
    for multioutput, value in expected.items():
        np.testing.assert_allclose(np.asarray(M.r2_score(p, y2, w, multioutput=multioutput)), value, rtol=2e-5)
        np.testing.assert_allclose(np.asarray(M.R2Score(num_outputs=3, multioutput=multioutput).compute(acc)),
                                   value, rtol=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_mape_matches_sklearn_zero_targets_included(weighted):
    p, y, w = _data(seed=1)
    y[3, 0] = 0.0  # scikit-learn's epsilon: |p| / 2.2e-16, a huge but finite term
    w = w if weighted else None
    for mo in ("uniform_average", "raw_values"):
        np.testing.assert_allclose(np.asarray(M.mean_absolute_percentage_error(p, y, w, multioutput=mo)),
                                   sk.mean_absolute_percentage_error(y, p, sample_weight=w, multioutput=mo),
                                   rtol=2e-5)
    y[3, 0] = 1.0
    assert float(M.mean_absolute_percentage_error(p, y, w)) == pytest.approx(
        sk.mean_absolute_percentage_error(y, p, sample_weight=w), rel=2e-5)


@pytest.mark.parametrize("mean", [0.0, 1000.0])
def test_streaming_r2_equals_one_batch_and_sklearn(mean):
    # far from zero (mean 1000, sd 2): float32 sums of y^2 would lose R² here; the merged moments do not
    p, y, w = _data(mean=mean, seed=2)
    m = M.R2Score(num_outputs=3)
    one = _fold(m, p, y, w, ())
    many = _fold(m, p, y, w, CUTS)  # uneven, one batch of a single row
    for multioutput in ("uniform_average", "variance_weighted", "raw_values"):  # the same sums, other averages
        m = M.R2Score(num_outputs=3, multioutput=multioutput)
        ref = sk.r2_score(y.astype(np.float64), p.astype(np.float64), sample_weight=w, multioutput=multioutput)
        np.testing.assert_allclose(np.asarray(m.compute(one)), ref, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(m.compute(many)), ref, rtol=1e-4)


def test_streaming_mape_equals_one_batch_and_sklearn():
    p, y, w = _data(seed=3)
    m = M.get("MAPE")
    ref = sk.mean_absolute_percentage_error(y, p, sample_weight=w)
    assert float(_stream(m, p, y, w, ())) == pytest.approx(ref, rel=2e-5)
    assert float(_stream(m, p, y, w, CUTS)) == pytest.approx(ref, rel=2e-5)


def test_padded_rows_count_nowhere_even_with_garbage():
    p, y, w = _data(seed=4)
    # the last 50 rows (the last batch of CUTS) are padding: weight 0 and garbage values
    w[250:] = 0.0
    p[250:] = np.nan
    y[250:] = np.inf
    for metric, ref in ((M.R2Score(num_outputs=3), sk.r2_score(y[:250], p[:250], sample_weight=w[:250])),
                        (M.MeanAbsolutePercentageError(),
                         sk.mean_absolute_percentage_error(y[:250], p[:250], sample_weight=w[:250]))):
        assert float(_stream(metric, p, y, w, CUTS)) == pytest.approx(ref, rel=1e-4)


def test_streaming_r2_scans_and_needs_two_rows():
    p, y, w = _data(n=64, d=2, seed=5)
    m = M.R2Score(num_outputs=2)

    def fold(acc, batch):
        return m.update(acc, *batch), None

    batches = tuple(a.reshape(8, 8, *a.shape[1:]) for a in (p, y, w))
    acc, _ = jax.lax.scan(fold, m.init(), batches)  # the accumulator keeps its shapes: an epoch as one scan
    assert float(m.compute(acc)) == pytest.approx(sk.r2_score(y, p, sample_weight=w), rel=1e-4)
    one = m.update(m.init(), p[:1], y[:1])
    assert np.isnan(float(m.compute(one)))  # undefined for one row, as scikit-learn's NaN


def test_trainer_reports_r2_and_mape_by_name():
    import dlcore
    from dlcore import losses, optim

    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 3.0 + 0.1 * rng.normal(size=(50, 1))).astype(np.float32)
    model = dlcore.models.create("linear", in_features=3, out_features=1, seed=0)
    trainer = dlcore.Trainer(model, optim.sgd(0.05), losses.mse, metrics=["r2", "mape"], batch_size=16,
                             progress=False)
    trainer.fit({"x": x, "y": y}, epochs=3)
    logs = trainer.evaluate({"x": x, "y": y})  # 50 rows in batches of 16: a padded last batch
    pred = trainer.predict(x)
    assert logs["r2"] == pytest.approx(sk.r2_score(y, pred), rel=1e-4)
    assert logs["mape"] == pytest.approx(sk.mean_absolute_percentage_error(y, pred), rel=1e-4)


def test_bad_input_one_line():
    raises_one_line(lambda: M.r2_score([1.0, 2.0], [1.0, 2.0, 3.0]), "r2_score", "shape")
    raises_one_line(lambda: M.r2_score([1.0], [1.0]), "fewer than two")
    raises_one_line(lambda: M.r2_score([], []), "no examples")
    raises_one_line(lambda: M.r2_score([1.0, np.nan], [1.0, 2.0]), "NaN")
    raises_one_line(lambda: M.r2_score(["a", "b"], [1.0, 2.0]), "must be numbers")
    raises_one_line(lambda: M.r2_score([1.0, 2.0], [1.0, 2.0], [1.0, -1.0]), "weights must be >= 0")
    raises_one_line(lambda: M.r2_score([1.0, 2.0], [1.0, 2.0], [1.0]), "weights shape")
    raises_one_line(lambda: M.r2_score([1.0, 2.0], [1.0, 2.0], multioutput="mean"), "multioutput")
    raises_one_line(lambda: M.r2_score(np.ones((2, 2, 2)), np.ones((2, 2, 2))), "(N,) or (N, outputs)")
    raises_one_line(lambda: M.mean_absolute_percentage_error([1.0], [1.0], multioutput="variance_weighted"),
                    "multioutput")
    raises_one_line(lambda: M.mean_absolute_percentage_error([1.0], [1.0], epsilon=0.0), "epsilon")
    raises_one_line(lambda: M.MeanAbsolutePercentageError(epsilon=-1.0), "epsilon")
    raises_one_line(lambda: M.R2Score(num_outputs=0), "num_outputs")
    raises_one_line(lambda: M.R2Score(multioutput="sum"), "multioutput")
    m = M.R2Score(num_outputs=2)
    raises_one_line(lambda: m.update(m.init(), jnp.ones((4, 3)), jnp.ones((4, 3))), "num_outputs=2")
    raises_one_line(lambda: m.update(m.init(), jnp.ones((4, 2)), jnp.ones((4, 1))), "shape")
    raises_one_line(lambda: m.update(m.init(), jnp.ones((4, 2)), jnp.ones((4, 2)), jnp.ones(3)), "weights shape")
    raises_one_line(lambda: M.get("r3"), "r3")
