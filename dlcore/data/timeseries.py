"""Time series: windows for next-step, k-ahead and seq2seq forecasting, covariates,
chronological splits, date periods, naive and SARIMA baselines.

Géron's forecasting chapter (Hands-On ML, ch. 13) turns a series into
windows of ``window`` steps and asks for the next value, the next ``horizon``
values, or, seq2seq, the next ``horizon`` values after *every* step of the
window (his ``unfold``). `windows` builds all three as arrays, with
covariates (e.g. the one-hot type of the next day) added to the inputs only.

The chapter's two baselines are here too: the seasonal naive forecast
(`naive_forecast` with ``lag=7``) and a SARIMA model refitted every day
(`sarima_forecast`, through ``statsmodels``: ``pip install dlcore[forecast]``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlcore.checks import check_int

__all__ = [
    "chronological_split",
    "forecast_errors",
    "naive_forecast",
    "next_step_covariates",
    "one_hot",
    "period",
    "sarima_forecast",
    "windows",
]


def windows(
    series: Any,
    window: int,
    *,
    mode: str = "next",
    horizon: int = 1,
    target: int | Sequence[int] | None = 0,
    covariates: Any = None,
    stride: int = 1,
) -> dict[str, np.ndarray]:
    """Cuts a series into input windows and forecasting targets.

    For a window starting at ``i`` the input is ``series[i : i + window]``
    (with ``covariates[i : i + window]`` appended as features) and the target:

    - ``"next"``: ``series[i + window]``, the next step;
    - ``"ahead"``: ``series[i + window : i + window + horizon]``, the next
      ``horizon`` steps;
    - ``"seq2seq"``: for every step ``t`` of the window, the ``horizon``
      values after it, ``series[i + t + 1 : i + t + 1 + horizon]``.

    Args:
        series: ``(T,)`` or ``(T, F)`` values.
        window: Input length (Géron uses 56 days).
        mode: ``"next"``, ``"ahead"`` or ``"seq2seq"``.
        horizon: Steps to forecast for ``"ahead"`` and ``"seq2seq"``.
        target: The column(s) of ``series`` to forecast; an int gives targets
            without a feature axis, a list keeps one; None: all columns.
        covariates: ``(T, C)`` known features (e.g. calendar), inputs only.
        stride: Steps between window starts.

    Returns:
        ``{"x": float32 (N, window, F + C), "y": ...}`` with ``y`` of shape
        ``(N,)`` / ``(N, horizon)`` / ``(N, window, horizon)`` for an int
        ``target`` in the three modes (a trailing target axis otherwise).

    Raises:
        ValueError: If the series is too short for one window, or the shapes
            or options are wrong.
    """
    values = np.asarray(series, np.float32)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"series must be (T,) or (T, F), got shape {np.shape(series)}")
    window = check_int(window, "window", low=1)
    horizon = check_int(horizon, "horizon", low=1)
    stride = check_int(stride, "stride", low=1)
    if mode not in ("next", "ahead", "seq2seq"):
        raise ValueError(f"mode must be 'next', 'ahead' or 'seq2seq', got {mode!r}")
    t = len(values)
    if mode == "next":
        horizon = 1
    n = t - window - horizon + 1
    if n < 1:
        raise ValueError(f"a series of {t} steps is too short for window={window} and horizon={horizon} "
                         f"(needs at least {window + horizon})")
    if target is not None:
        wanted = [target] if isinstance(target, numbers.Integral) else list(target)
        bad = [c for c in wanted if not isinstance(c, numbers.Integral) or not -values.shape[1] <= c < values.shape[1]]
        if bad or not wanted:
            raise ValueError(f"target must be a column of the series (an int, or a list of ints, in "
                             f"[-{values.shape[1]}, {values.shape[1]})), got {target!r}")
    cols = values if target is None else values[:, wanted]
    squeeze = isinstance(target, numbers.Integral)

    x = values
    if covariates is not None:
        cov = np.asarray(covariates, np.float32)
        cov = cov[:, None] if cov.ndim == 1 else cov
        if cov.ndim != 2 or len(cov) != t:
            raise ValueError(f"covariates must be (T, C) with T = {t} like the series, got {np.shape(covariates)}")
        x = np.concatenate([values, cov], axis=1)
    starts = np.arange(0, n, stride)
    xw = sliding_window_view(x, window, axis=0)[starts].transpose(0, 2, 1)  # (N, window, F)
    if mode == "seq2seq":
        # ahead[j] = the horizon values after step j: (T - horizon, horizon, K)
        ahead = sliding_window_view(cols[1:], horizon, axis=0).transpose(0, 2, 1)
        y = sliding_window_view(ahead, window, axis=0)[starts].transpose(0, 3, 1, 2)  # (N, window, horizon, K)
    else:
        y = sliding_window_view(cols[window:], horizon, axis=0)[starts].transpose(0, 2, 1)  # (N, horizon, K)
        if mode == "next":
            y = y[:, 0]
    if squeeze:
        y = y[..., 0]
    return {"x": np.ascontiguousarray(xw), "y": np.ascontiguousarray(y)}


def one_hot(codes: Any, n: int) -> np.ndarray:
    """One-hot rows for integer codes in ``0..n-1``.

    Returns:
        float32 ``(..., n)``.
    """
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer) or (codes.size and (codes.min() < 0 or codes.max() >= n)):
        raise ValueError(f"codes must be integers in 0..{n - 1}, got {codes.dtype} in "
                         f"[{codes.min() if codes.size else '-'}, {codes.max() if codes.size else '-'}]")
    return np.eye(n, dtype=np.float32)[codes]


def next_step_covariates(series: Any, codes: Any, n: int) -> np.ndarray:
    """Géron's multivariate input: each step's values and the *next* step's one-hot code.

    E.g. rail and bus ridership with the type of the following day (W, A, U),
    five features: the model knows tomorrow is a Sunday.

    Args:
        series: ``(T,)`` or ``(T, F)`` values.
        codes: ``(T,)`` integer codes (e.g. ``day_type``).
        n: Number of codes.

    Returns:
        float32 ``(T - 1, F + n)``: ``series[:-1]`` beside ``one_hot(codes[1:])``.
    """
    values = np.asarray(series, np.float32)
    values = values[:, None] if values.ndim == 1 else values
    codes = np.asarray(codes)
    if len(codes) != len(values):
        raise ValueError(f"codes ({len(codes)}) and series ({len(values)}) differ in length")
    return np.concatenate([values[:-1], one_hot(codes[1:], n)], axis=1)


def chronological_split(arrays: Mapping[str, Any], fractions: Sequence[float],
                        names: Sequence[str] = ("train", "valid", "test")) -> dict[str, dict[str, np.ndarray]]:
    """Splits arrays in time order (no shuffling: the future stays unseen).

    Args:
        arrays: Arrays with a common leading time axis.
        fractions: Share of each part but the last, e.g. ``(0.7, 0.15)``.
        names: One name per part (``len(fractions) + 1``).

    Returns:
        ``{name: {key: array}}`` of consecutive, non-overlapping periods.
    """
    if len(names) != len(fractions) + 1:
        raise ValueError(f"need {len(fractions) + 1} names for {len(fractions)} fractions, got {list(names)}")
    if any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"fractions must be > 0 and sum to < 1, got {list(fractions)}")
    lengths = {len(np.asarray(v)) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"arrays differ in length {sorted(lengths)}")
    t = lengths.pop()
    cuts = [0, *np.round(np.cumsum(fractions) * t).astype(int).tolist(), t]
    empty = [name for i, name in enumerate(names) if cuts[i + 1] <= cuts[i]]
    if empty:
        raise ValueError(f"chronological_split: {t} time steps split by {list(fractions)} leave {empty} empty; "
                         f"use more data or larger fractions")
    return {name: {k: np.asarray(v)[cuts[i]:cuts[i + 1]] for k, v in arrays.items()}
            for i, name in enumerate(names)}


def naive_forecast(series: Any, lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The naive forecast: each value predicted by the one ``lag`` steps earlier.

    ``lag=1`` is the plain naive forecast, ``lag=7`` the seasonal naive one
    for daily data with a weekly season (Géron's baseline: MAE 42,143 for
    rail over 2019-03..05).

    Returns:
        ``(y_true, y_pred)``: ``series[lag:]`` and ``series[:-lag]``.
    """
    values = np.asarray(series)
    lag = check_int(lag, "lag", low=1)
    if len(values) <= lag:
        raise ValueError(f"a series of {len(values)} steps is too short for lag {lag}")
    return values[lag:], values[:-lag]


def forecast_errors(y_true: Any, y_pred: Any) -> dict[str, float]:
    """MAE and MAPE of a forecast.

    Returns:
        ``{"mae": mean |y - p|, "mape": mean |y - p| / |y|}`` (MAPE as a
        fraction: 0.083 is 8.3%; steps with ``y == 0`` are left out of it).
    """
    y, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y.shape != p.shape:
        raise ValueError(f"y_true {y.shape} and y_pred {p.shape} differ in shape")
    err = np.abs(y - p)
    nz = y != 0
    return {"mae": float(err.mean()), "mape": float((err[nz] / np.abs(y[nz])).mean()) if nz.any() else float("nan")}


def period(dates: Any, first: str, last: str) -> slice:
    """The positions of an inclusive date range, as a slice (Pandas' ``df["2019-03":"2019-05"]``).

    Args:
        dates: ``(T,)`` sorted dates (``datetime64`` or ISO strings), one per step.
        first: first date of the period, ``"2019-03-01"``; a month ``"2019-03"`` or a year
            ``"2019"`` means its first day.
        last: last date, included; a month ``"2019-05"`` or a year means its last day.

    Returns:
        ``slice(i, j)`` with ``dates[i:j]`` the steps from ``first`` to ``last``.

    Raises:
        ValueError: If no step falls in the period, or the dates are not sorted.
    """
    d = np.asarray(dates).astype("datetime64[D]")
    if d.ndim != 1:
        raise ValueError(f"dates must be (T,), got shape {d.shape}")
    if len(d) > 1 and np.any(d[1:] < d[:-1]):
        raise ValueError("dates must be sorted in time order")
    try:
        lo = np.datetime64(first).astype("datetime64[D]")                       # "2019" -> 2019-01-01
        hi = (np.datetime64(last) + 1).astype("datetime64[D]") - np.timedelta64(1, "D")   # "2019-05" -> 05-31
    except ValueError:
        raise ValueError(f"first and last must be ISO dates, months or years, got {first!r} and {last!r}") from None
    i, j = int(np.searchsorted(d, lo, "left")), int(np.searchsorted(d, hi, "right"))
    if j <= i:
        raise ValueError(f"no step between {first} and {last}: the dates run from {d[0] if len(d) else '-'} "
                         f"to {d[-1] if len(d) else '-'}")
    return slice(i, j)


def sarima_forecast(series: Any, start: int, *, order: tuple[int, int, int] = (1, 0, 0),
                    seasonal_order: tuple[int, int, int, int] = (0, 1, 1, 7), origin: int = 0,
                    steps: int | None = None) -> np.ndarray:
    """Rolling one-step SARIMA forecasts, the model refitted every step (Géron's second baseline).

    For each step ``t`` from ``start`` on, a ``statsmodels`` ``ARIMA(series[origin:t], order,
    seasonal_order)`` is fitted on everything known up to the day before and forecasts ``series[t]``
    (Géron, Hands-On Machine Learning, ch. 13, The ARMA Model Family: SARIMA(1,0,0)(0,1,1,7) on rail
    ridership from 2019-01-01, refitted each day of 2019-03..05, MAE 32,040.7). The fits use
    statsmodels' defaults (no trend term once the series is differenced); its convergence warnings
    are silenced.

    Args:
        series: ``(T,)`` values at a regular frequency (daily).
        start: first step to forecast; the first fit sees ``series[origin:start]``.
        order: ``(p, d, q)``.
        seasonal_order: ``(P, D, Q, s)``.
        origin: first step of every fit (an expanding window from there).
        steps: how many steps to forecast (default: to the end of the series).

    Returns:
        float64 ``(steps,)``: the forecast of ``series[start + k]`` made on the day before.

    Raises:
        ImportError: Without statsmodels (``pip install dlcore[forecast]``).
        ValueError: If the series is not 1-D, or ``start``/``origin``/``steps`` leave no step to
            forecast or too few to fit (at least ``2 * s + 2`` steps from ``origin``).
    """
    values = np.asarray(series, np.float64)
    if values.ndim != 1:
        raise ValueError(f"sarima_forecast: series must be 1-D (T,), got shape {values.shape}")
    if len(order) != 3 or len(seasonal_order) != 4:
        raise ValueError(f"sarima_forecast: order is (p, d, q) and seasonal_order (P, D, Q, s), got {order} "
                         f"and {seasonal_order}")
    origin = check_int(origin, "origin", low=0, who="sarima_forecast")
    start = check_int(start, "start", low=origin + 1, high=len(values) - 1, who="sarima_forecast")
    steps = len(values) - start if steps is None else check_int(steps, "steps", low=1, high=len(values) - start,
                                                                 who="sarima_forecast")
    need = 2 * max(seasonal_order[3], 1) + 2
    if start - origin < need:
        raise ValueError(f"sarima_forecast: the first fit sees {start - origin} steps ({origin}..{start - 1}); "
                         f"SARIMA{tuple(order)}{tuple(seasonal_order)} needs at least {need}")
    try:
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tools.sm_exceptions import ConvergenceWarning
    except ImportError:
        raise ImportError("sarima_forecast needs statsmodels: pip install dlcore[forecast]") from None
    import warnings

    preds = np.empty(steps)
    for k in range(steps):
        t = start + k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = ARIMA(values[origin:t], order=tuple(order), seasonal_order=tuple(seasonal_order)).fit()
        preds[k] = float(np.asarray(fit.forecast(1))[0])
    return preds
