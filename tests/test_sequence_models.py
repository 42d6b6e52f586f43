"""The forecasting models of Géron's ch. 13 (dlcore.models.sequence) and the baselines of dlcore.data.timeseries."""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
import pytest

import dlcore
from dlcore import losses, models, optim
from dlcore.data import timeseries as ts
from dlcore.nn.regularization import mc_predict

# name, constructor arguments (tiny), input shape, output shape
SHAPES = [
    ("forecast_linear", {"window": 12}, (3, 12, 1), (3, 1)),
    ("simple_rnn_forecaster", {"hidden_size": 4}, (3, 12, 1), (3, 1)),
    ("rnn_forecaster", {"hidden_size": 4}, (3, 12, 1), (3, 1)),
    ("rnn_forecaster", {"hidden_size": 4, "num_layers": 3}, (3, 12, 1), (3, 1)),
    ("mulvar_rnn_forecaster", {"hidden_size": 4}, (3, 12, 5), (3, 1)),
    ("ahead_rnn_forecaster", {"hidden_size": 4}, (3, 12, 5), (3, 14)),
    ("seq2seq_rnn", {"hidden_size": 4}, (3, 12, 5), (3, 12, 14)),
    ("ln_rnn_forecaster", {"hidden_size": 4}, (3, 12, 5), (3, 14)),
    ("lstm_forecaster", {"hidden_size": 4}, (3, 12, 1), (3, 1)),
    ("gru_forecaster", {"hidden_size": 4}, (3, 12, 1), (3, 1)),
    ("downsampling_forecaster", {"hidden_size": 4}, (3, 112, 5), (3, 55, 14)),
    ("wavenet_forecaster", {"hidden_size": 4}, (3, 12, 5), (3, 12, 14)),
]


@pytest.mark.parametrize("name,kwargs,x_shape,y_shape", SHAPES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)])
def test_every_forecaster_gives_the_books_output_shape(name, kwargs, x_shape, y_shape):
    model = models.create(name, **kwargs)
    y = model(jnp.ones(x_shape, jnp.float32))
    assert y.shape == y_shape and bool(jnp.all(jnp.isfinite(y)))


def test_parameter_counts_match_the_books_pytorch_models():
    # SimpleRnnModel(1, 32, 1): Linear(33, 32) + Linear(32, 1); nn.RNN adds a second bias
    assert models.count_params(models.create("simple_rnn_forecaster")) == 33 * 32 + 32 + 33
    assert models.count_params(models.create("rnn_forecaster")) == 32 + 32 * 32 + 2 * 32 + 33
    assert models.count_params(models.create("forecast_linear")) == 57


def test_the_hand_written_rnn_is_the_books_loop():
    model = models.create("simple_rnn_forecaster", hidden_size=3, seed=1)
    x = np.random.default_rng(0).normal(size=(2, 5, 1)).astype(np.float32)
    lin, out = model.memory_cell[0], model.output
    h = np.zeros((2, 3), np.float32)
    for t in range(5):
        h = np.tanh(np.concatenate([x[:, t], h], 1) @ np.asarray(lin.kernel[...]) + np.asarray(lin.bias[...]))
    want = h @ np.asarray(out.kernel[...]) + np.asarray(out.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-6)


def test_wavenet_and_seq2seq_are_causal():
    x = np.random.default_rng(0).normal(size=(1, 16, 5)).astype(np.float32)
    later = x.copy()
    later[:, 10:] += 1.0                                   # change only the future of step 9
    for name in ("wavenet_forecaster", "seq2seq_rnn"):
        model = models.create(name, hidden_size=4)
        a, b = np.asarray(model(x)), np.asarray(model(later))
        np.testing.assert_allclose(a[:, :10], b[:, :10], rtol=1e-6, err_msg=name)
        assert not np.allclose(a[:, 10:], b[:, 10:]), name


def test_downsampling_outputs_line_up_with_cropped_targets():
    series = np.arange(200, dtype=np.float32)
    w = ts.windows(series, 112, mode="seq2seq", horizon=14)
    y = w["y"][:, 3::2]                                     # the book's target[3::2]
    out = models.create("downsampling_forecaster", input_size=1, hidden_size=4)(w["x"][:2])
    assert out.shape[1:] == y.shape[1:]
    # output j reads steps 2j..2j+3, so its first forecast is for step 2j+4
    assert y[0, 0, 0] == w["x"][0, 4, 0] and y[0, -1, 0] == w["x"][0, 111, 0] + 1


def _sine(n=300):
    t = np.arange(n, dtype=np.float32)
    return 0.5 + 0.3 * np.sin(2 * np.pi * t / 7)


@pytest.mark.parametrize("name,kwargs", [("forecast_linear", {"window": 14}),
                                         ("seq2seq_rnn", {"input_size": 1, "hidden_size": 8, "output_size": 3})])
def test_a_forecaster_learns_a_weekly_series(name, kwargs):
    mode, horizon = ("next", 1) if name == "forecast_linear" else ("seq2seq", 3)
    data = ts.windows(_sine()[:, None], 14, mode=mode, horizon=horizon, target=[0] if mode == "next" else 0)
    model = models.create(name, seed=0, **kwargs)
    trainer = dlcore.Trainer(model, optim.sgd(0.1, momentum=0.9), losses.huber, batch_size=32, progress=False)
    history = trainer.fit(data, epochs=8)
    assert history["loss"][-1] < 0.6 * history["loss"][0]


def test_ln_rnn_gives_mc_dropout_error_bars_and_is_deterministic_in_eval_mode():
    model = models.create("ln_rnn_forecaster", hidden_size=4, dropout=0.3, recurrent_dropout=0.3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 10, 5)), jnp.float32)
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
    mean, std = mc_predict(model, x, n_samples=8, transform=None)
    assert mean.shape == std.shape == (2, 14) and float(std.min()) > 0


def test_naive_forecast_and_errors_by_hand():
    series = np.array([10, 20, 30, 40, 50, 60, 70, 80, 100, 90], np.float64)
    y, p = ts.naive_forecast(series, lag=7)
    np.testing.assert_array_equal(y, [80, 100, 90])
    np.testing.assert_array_equal(p, [10, 20, 30])
    err = ts.forecast_errors(y, p)
    assert err["mae"] == pytest.approx((70 + 80 + 60) / 3)
    assert err["mape"] == pytest.approx((70 / 80 + 80 / 100 + 60 / 90) / 3)


def test_period_is_pandas_inclusive_date_slicing():
    dates = np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-07-01"))
    p = ts.period(dates, "2019-03", "2019-05")
    assert str(dates[p][0]) == "2019-03-01" and str(dates[p][-1]) == "2019-05-31" and len(dates[p]) == 92
    assert len(dates[ts.period(dates, "2018", "2019")]) == 181            # a year runs to its Dec 31st
    with pytest.raises(ValueError, match="no step between"):
        ts.period(dates, "2020-01", "2020-02")


def test_sarima_forecast_is_statsmodels_refitted_every_day():
    pytest.importorskip("statsmodels")
    from statsmodels.tsa.arima.model import ARIMA

    rng = np.random.default_rng(0)
    week = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 0.4])
    series = np.tile(week, 9) * 100 + rng.normal(0, 3, 63)
    got = ts.sarima_forecast(series, 61, origin=2)           # forecasts of steps 61 and 62
    want = [ARIMA(series[2:t], order=(1, 0, 0), seasonal_order=(0, 1, 1, 7)).fit().forecast(1)[0]
            for t in (61, 62)]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_sarima_without_statsmodels_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.arima.model", None)
    with pytest.raises(ImportError, match=r"pip install dlcore\[forecast\]"):
        ts.sarima_forecast(np.ones(30), 20)


@pytest.mark.parametrize("call,match", [
    (lambda: ts.windows(np.ones(40), 56), "too short for window=56"),
    (lambda: ts.sarima_forecast(np.ones(30), 5), "needs at least 16"),
    (lambda: ts.sarima_forecast(np.ones((30, 2)), 20), "must be 1-D"),
    (lambda: models.create("mulvar_rnn_forecaster")(jnp.ones((2, 56, 1))), "built for input_size=5"),
    (lambda: models.create("simple_rnn_forecaster")(jnp.ones((2, 56))), "add a feature axis"),
    (lambda: models.create("forecast_linear")(jnp.ones((2, 50, 1))), "windows of 56 steps"),
    (lambda: models.create("downsampling_forecaster")(jnp.ones((2, 3, 5))), "at least 4 steps"),
])
def test_bad_input_is_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
