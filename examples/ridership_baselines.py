"""Forecasting baselines, Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 13.

Recipe (Forecasting a Time Series; The ARMA Model Family): Chicago's daily bus and rail ridership.

- Naive forecasting with the weekly season: tomorrow's ridership is the value 7 days earlier. Over
  March, April and May 2019 the book measures an MAE of 43,916 (bus) and 42,143 (rail), a MAPE of
  8.3% (bus) and 9.0% (rail).
- SARIMA(1,0,0)(0,1,1,7) through statsmodels, fitted on the rail series from 2019-01-01 up to
  "today". For today = 2019-05-31 it forecasts 427,758.6 for 2019-06-01 (actual 379,044, naive
  426,932); refitted every day of 2019-03..05 to forecast the next, its MAE is 32,040.7.

SARIMA needs the optional statsmodels (`pip install dlcore[forecast]`); without it only the naive
figures are computed. Under --quick the SARIMA rolling forecast covers the first 3 days of March.

Stand-in: without the CTA file it uses `daily_series`, a synthetic series with the same periods and
weekly pattern; its figures differ from the book's.

Run: `dlcore run ridership_baselines` or `python examples/ridership_baselines.py`.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from dlcore.data import timeseries as ts
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="ridership_baselines",
    title="Naive lag-7 and SARIMA(1,0,0)(0,1,1,7) forecasts of Chicago ridership",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 13, Forecasting a Time Series; The ARMA Model Family",
    source="the naive MAE/MAPE over 2019-03..05 and the SARIMA forecasts (Figures 13-6, 13-7)",
    data="ridership",
    standin="daily_series",
    book_figures={"naive_rail_mae": 42143.271739, "naive_bus_mae": 43915.608696,
                  "naive_rail_mape": 0.089948, "naive_bus_mape": 0.082938,
                  "sarima_2019_06_01": 427758.6, "actual_2019_06_01": 379044.0, "naive_2019_06_01": 426932.0,
                  "sarima_rail_mae": 32040.7},
)

ORDER, SEASONAL_ORDER = (1, 0, 0), (0, 1, 1, 7)


def run(ctx: Context) -> dict[str, float]:
    series = ctx.load()["all"]
    dates, rail, bus = series["date"], series["x"][:, 0].astype(np.float64), series["x"][:, 1].astype(np.float64)
    spring = ts.period(dates, "2019-03", "2019-05")      # March 1st .. May 31st, 2019, inclusive
    if spring.start < 7:
        raise ValueError("the series must start at least 7 days before 2019-03-01 for the lag-7 forecast")

    metrics: dict[str, float] = {}
    ctx.print("naive forecast (the value 7 days earlier), 2019-03..05:")
    ctx.print(f"{'series':<6} {'MAE':>10} {'book':>10} {'MAPE':>7} {'book':>7}")
    for name, values in (("rail", rail), ("bus", bus)):
        y, y_pred = ts.naive_forecast(values[spring.start - 7:spring.stop], lag=7)   # y: the 92 days of spring
        err = ts.forecast_errors(y, y_pred)
        metrics[f"naive_{name}_mae"], metrics[f"naive_{name}_mape"] = err["mae"], err["mape"]
        book = EXAMPLE.book_figures
        ctx.print(f"{name:<6} {err['mae']:>10,.0f} {book[f'naive_{name}_mae']:>10,.0f} "
                  f"{err['mape']:>7.1%} {book[f'naive_{name}_mape']:>7.1%}")

    if importlib.util.find_spec("statsmodels") is None:
        ctx.print("SARIMA: skipped, statsmodels is not installed (pip install dlcore[forecast])")
        return metrics

    origin = ts.period(dates, "2019-01-01", "2019-01-01").start
    june1 = ts.period(dates, "2019-06-01", "2019-06-01").start
    one = float(ts.sarima_forecast(rail, june1, order=ORDER, seasonal_order=SEASONAL_ORDER, origin=origin,
                                   steps=1)[0])
    metrics.update(sarima_2019_06_01=one, actual_2019_06_01=float(rail[june1]),
                   naive_2019_06_01=float(rail[june1 - 7]))
    ctx.print(f"SARIMA{ORDER}{SEASONAL_ORDER} fitted on rail 2019-01-01..05-31, forecast for 2019-06-01: "
              f"{one:,.1f} (book 427,758.6); actual {rail[june1]:,.0f} (book 379,044), "
              f"naive {rail[june1 - 7]:,.0f} (book 426,932)")

    days = 3 if ctx.quick else spring.stop - spring.start
    preds = ts.sarima_forecast(rail, spring.start, order=ORDER, seasonal_order=SEASONAL_ORDER, origin=origin,
                               steps=days)
    mae = ts.forecast_errors(rail[spring.start:spring.start + days], preds)["mae"]
    metrics["sarima_rail_mae"] = mae
    what = "2019-03-01..03 (--quick)" if ctx.quick else "2019-03..05"
    ctx.print(f"SARIMA refitted every day, one-day forecasts over {what}: rail MAE {mae:,.1f} (book 32,040.7; "
              f"naive {metrics['naive_rail_mae']:,.0f})")
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
