"""Spend forecasts with prediction intervals (statsmodels) and a rolling-origin backtest against a
seasonal-naive baseline.

Models (`ForecastModel`):
- `ets`: exponential smoothing (statsmodels `ETSModel`) with additive error, damped additive trend and
  additive seasonality of `season` periods (weekly for daily data). Fitted on log spend when every value
  is > 0 (trend and season then act multiplicatively and the intervals stay positive; the point forecast
  is the log-normal mean exp(mu + s^2 / 2), s from the interval width), else on raw spend with the lower
  bound clipped at 0. Intervals are the model's analytic prediction intervals.
- `holt`: the same without seasonality (damped trend).
- `sarimax`: SARIMAX(1,1,1)(0,1,1,season) on log spend, intervals from `get_forecast`.
- `seasonal_naive` / `naive`: the value one season (one period) ago; intervals from empirical quantiles of the
  in-sample seasonal differences, widened by sqrt(seasons ahead).
`auto` takes `ets` with at least 6 seasons of history, else `seasonal_naive` with at least a season + 2
periods; without seasonality (`season` 1) `holt` from 10 periods; else `naive` (short histories).
`backtest` refits at each origin of a rolling window and reports MAE, MAPE, empirical coverage of each
interval level, and the same figures of the seasonal-naive baseline on the same folds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from planner.errors import FieldViolation, InvalidArgumentError

Intervals = dict[float, tuple[np.ndarray, np.ndarray]]
AUTO_ETS_SEASONS = 6
"""`auto` fits seasonal ETS from this many seasons of history on; below it the seasonal-naive model (with
fewer, the ETS smoothing and damping parameters are poorly determined and its intervals too narrow: on the
30-day demo history it backtested worse than seasonal naive, see bench/RESULTS.md)."""


class ForecastModel(StrEnum):
    AUTO = "auto"
    ETS = "ets"
    HOLT = "holt"
    SARIMAX = "sarimax"
    SEASONAL_NAIVE = "seasonal_naive"
    NAIVE = "naive"

    @classmethod
    def parse(cls, name: str) -> ForecastModel:
        try:
            return cls(name or "auto")
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise InvalidArgumentError.for_field("model", name, f"not one of: {valid}") from None


@dataclass(frozen=True)
class SpendForecast:
    """Point forecasts and one prediction interval per period ahead."""

    index: pd.DatetimeIndex
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "level": self.level,
            "points": [
                {"period": ts.isoformat(), "mean": float(m), "lo": float(lo), "hi": float(hi)}
                for ts, m, lo, hi in zip(self.index, self.mean, self.lo, self.hi, strict=True)
            ],
        }


@dataclass(frozen=True)
class Backtest:
    """Rolling-origin backtest of one model and of the seasonal-naive baseline on the same folds."""

    model: str
    folds: int
    horizon: int
    mae: float
    mape: float
    coverage: dict[float, float] = field(default_factory=dict)
    baseline_mae: float = math.nan
    baseline_mape: float = math.nan
    baseline_coverage: dict[float, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "folds": self.folds,
            "horizon": self.horizon,
            "mae": self.mae,
            "mape": self.mape,
            "coverage": {str(k): v for k, v in self.coverage.items()},
            "baseline": "seasonal_naive",
            "baseline_mae": self.baseline_mae,
            "baseline_mape": self.baseline_mape,
            "baseline_coverage": {str(k): v for k, v in self.baseline_coverage.items()},
            "mape_ratio_vs_baseline": self.mape / self.baseline_mape if self.baseline_mape > 0 else None,
        }


# ---- model selection and fitting -------------------------------------------------------------------------
def choose_model(n: int, season: int, model: ForecastModel = ForecastModel.AUTO) -> ForecastModel:
    """The model `auto` resolves to for `n` periods of history (explicit choices need enough history too)."""
    seasonal = season > 1
    if model is ForecastModel.AUTO:
        if seasonal and n >= AUTO_ETS_SEASONS * season:
            return ForecastModel.ETS
        if seasonal and n >= season + 2:
            return ForecastModel.SEASONAL_NAIVE
        if n >= 10:
            return ForecastModel.HOLT
        return ForecastModel.SEASONAL_NAIVE if seasonal and n >= season + 2 else ForecastModel.NAIVE
    need = {ForecastModel.ETS: 3 * season, ForecastModel.SARIMAX: 3 * season, ForecastModel.HOLT: 10}
    if n < need.get(model, 2):
        raise InvalidArgumentError.for_field(
            "model", model.value, f"needs at least {need.get(model, 2)} periods of history, have {n}"
        )
    return model


def fit_predict(
    y: np.ndarray, horizon: int, levels: Sequence[float], model: ForecastModel, season: int
) -> tuple[np.ndarray, Intervals, ForecastModel]:
    """Point forecasts and intervals (per level) `horizon` periods past the end of `y`."""
    y = np.asarray(y, float)
    chosen = choose_model(len(y), season, model)
    if chosen in (ForecastModel.SEASONAL_NAIVE, ForecastModel.NAIVE):
        m = season if chosen is ForecastModel.SEASONAL_NAIVE else 1
        mean, iv = seasonal_naive(y, horizon, levels, m)
        return mean, iv, chosen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mean, iv = _statsmodels(y, horizon, levels, chosen, season)
        except (ValueError, np.linalg.LinAlgError):
            m = season if len(y) >= season + 2 and season > 1 else 1
            mean, iv = seasonal_naive(y, horizon, levels, m)
            return mean, iv, ForecastModel.SEASONAL_NAIVE if m > 1 else ForecastModel.NAIVE
    if not np.all(np.isfinite(mean)):
        m = season if len(y) >= season + 2 and season > 1 else 1
        mean, iv = seasonal_naive(y, horizon, levels, m)
        return mean, iv, ForecastModel.SEASONAL_NAIVE if m > 1 else ForecastModel.NAIVE
    return mean, iv, chosen


def _statsmodels(
    y: np.ndarray, horizon: int, levels: Sequence[float], model: ForecastModel, season: int
) -> tuple[np.ndarray, Intervals]:
    log = bool(np.all(y > 0))
    z = np.log(y) if log else y
    bounds: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    if model is ForecastModel.SARIMAX:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        res = SARIMAX(z, order=(1, 1, 1), seasonal_order=(0, 1, 1, season)).fit(disp=False)
        fc = res.get_forecast(horizon)
        mu = np.asarray(fc.predicted_mean, float)
        for lv in levels:
            ci = np.asarray(fc.conf_int(alpha=1 - lv), float)
            bounds[lv] = (ci[:, 0], ci[:, 1])
    else:
        seasonal = "add" if model is ForecastModel.ETS else None
        res = _fit_ets(pd.Series(z), seasonal, season)
        pred = res.get_prediction(start=len(z), end=len(z) + horizon - 1)
        mu = np.asarray(pred.predicted_mean, float)
        for lv in levels:
            frame = pred.summary_frame(alpha=1 - lv)
            bounds[lv] = (frame["pi_lower"].to_numpy(float), frame["pi_upper"].to_numpy(float))
    if not log:
        return mu, {lv: (np.maximum(lo, 0.0), hi) for lv, (lo, hi) in bounds.items()}
    lv0 = max(levels)
    zq = stats.norm.ppf(0.5 + lv0 / 2)
    sd = (bounds[lv0][1] - bounds[lv0][0]) / (2 * zq)
    mean = np.exp(mu + sd**2 / 2)
    return mean, {lv: (np.exp(lo), np.exp(hi)) for lv, (lo, hi) in bounds.items()}


def _fit_ets(z: pd.Series, seasonal: str | None, season: int) -> Any:
    """ETS fit with heuristic initial states (3x faster than estimating them), estimated when too short."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    kw: dict[str, Any] = {"error": "add", "trend": "add", "damped_trend": True, "seasonal": seasonal}
    if seasonal:
        kw["seasonal_periods"] = season
    try:
        return ETSModel(z, initialization_method="heuristic", **kw).fit(disp=False, maxiter=200)
    except ValueError:
        return ETSModel(z, **kw).fit(disp=False, maxiter=200)


def seasonal_naive(
    y: np.ndarray, horizon: int, levels: Sequence[float], season: int
) -> tuple[np.ndarray, Intervals]:
    """Value one season ago (season 1 = last value); empirical-quantile intervals of in-sample
    season-differences, scaled by sqrt(seasons ahead)."""
    y = np.asarray(y, float)
    m = season if len(y) > season else 1
    k = np.arange(horizon)
    mean = y[len(y) - m + (k % m)]
    resid = y[m:] - y[:-m] if len(y) > m else np.zeros(1)
    scale = np.sqrt(k // m + 1.0)
    iv: Intervals = {}
    for lv in levels:
        lo_q, hi_q = np.quantile(resid, [0.5 - lv / 2, 0.5 + lv / 2])
        iv[lv] = (np.maximum(mean + lo_q * scale, 0.0), mean + hi_q * scale)
    return mean, iv


# ---- public API ------------------------------------------------------------------------------------------
def check_level(level: float, name: str = "interval_level") -> float:
    if not 0 < level < 1:
        raise InvalidArgumentError.for_field(name, level, "must be in (0, 1)")
    return float(level)


def forecast(
    series: pd.Series,
    horizon: int,
    level: float = 0.9,
    model: ForecastModel | str = ForecastModel.AUTO,
    season: int = 7,
) -> SpendForecast:
    """Forecast `horizon` periods past the end of a regular series (index: period starts)."""
    _check(series, horizon, season)
    check_level(level)
    chosen_in = ForecastModel.parse(model) if isinstance(model, str) else model
    mean, iv, chosen = fit_predict(series.to_numpy(float), horizon, [level], chosen_in, season)
    index = pd.DatetimeIndex(series.index)
    freq = index.freq or pd.infer_freq(index) or "D"
    future = pd.date_range(index[-1], periods=horizon + 1, freq=freq)[1:]
    return SpendForecast(future, mean, iv[level][0], iv[level][1], level, chosen.value)


def backtest(
    series: pd.Series,
    horizon: int,
    levels: Sequence[float] = (0.8, 0.95),
    model: ForecastModel | str = ForecastModel.AUTO,
    season: int = 7,
    folds: int = 12,
    min_train: int | None = None,
) -> Backtest:
    """Rolling-origin evaluation: `folds` origins spaced evenly over the history after `min_train` periods
    (default: 3 seasons, at least 10), each forecasting `horizon` periods; the baseline is the seasonal
    naive forecast on the same folds."""
    _check(series, horizon, season)
    for lv in levels:
        check_level(lv, "levels")
    if folds < 1:
        raise InvalidArgumentError.for_field("folds", folds, "must be >= 1")
    y = series.to_numpy(float)
    start = min_train if min_train is not None else max(3 * season, 10)
    last = len(y) - horizon
    if last < start:
        raise InvalidArgumentError.for_field(
            "history", len(y), f"too short to backtest: need >= {start + horizon} periods"
        )
    origins = np.unique(np.linspace(start, last, num=min(folds, last - start + 1)).round().astype(int))
    chosen_in = ForecastModel.parse(model) if isinstance(model, str) else model
    acc: dict[str, list[np.ndarray]] = {"err": [], "ape": [], "berr": [], "bape": []}
    cover: dict[float, list[np.ndarray]] = {lv: [] for lv in levels}
    bcover: dict[float, list[np.ndarray]] = {lv: [] for lv in levels}
    used = chosen_in.value
    base_m = season if season > 1 else 1
    for o in origins.tolist():
        train, actual = y[:o], y[o : o + horizon]
        mean, iv, chosen = fit_predict(train, horizon, levels, chosen_in, season)
        used = chosen.value
        bmean, biv = seasonal_naive(train, horizon, levels, base_m)
        _score(acc, "err", "ape", mean, actual)
        _score(acc, "berr", "bape", bmean, actual)
        for lv in levels:
            cover[lv].append((actual >= iv[lv][0]) & (actual <= iv[lv][1]))
            bcover[lv].append((actual >= biv[lv][0]) & (actual <= biv[lv][1]))
    return Backtest(
        used,
        len(origins),
        horizon,
        _mean(acc["err"]),
        _mean(acc["ape"]),
        {lv: _mean(cover[lv]) for lv in levels},
        _mean(acc["berr"]),
        _mean(acc["bape"]),
        {lv: _mean(bcover[lv]) for lv in levels},
    )


def _score(
    acc: dict[str, list[np.ndarray]], err: str, ape: str, pred: np.ndarray, actual: np.ndarray
) -> None:
    acc[err].append(np.abs(pred - actual))
    pos = actual > 0
    acc[ape].append(np.abs(pred[pos] - actual[pos]) / actual[pos])


def _mean(parts: list[np.ndarray]) -> float:
    x = np.concatenate(parts).astype(float) if parts else np.zeros(0)
    return float(x.mean()) if x.size else math.nan


def _check(series: pd.Series, horizon: int, season: int) -> None:
    bad = []
    if not 1 <= horizon <= 366:
        bad.append(FieldViolation("horizon", horizon, "must be in [1, 366]"))
    if season < 1:
        bad.append(FieldViolation("season", season, "must be >= 1"))
    if len(series) < 2:
        bad.append(FieldViolation("history", len(series), "need at least 2 periods"))
    elif not np.all(np.isfinite(series.to_numpy(float))) or float(series.min()) < 0:
        bad.append(FieldViolation("history", "non-finite or negative", "spend must be finite and >= 0"))
    if bad:
        raise InvalidArgumentError("bad forecast input", bad)
