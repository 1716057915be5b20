"""Spend histories (runs, Azure trace, synthetic) and forecasts with intervals, backtested."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.catalog import load_catalog
from planner.errors import InvalidArgumentError
from simulator.costmodel import CostModel
from simulator.forecast import ForecastModel, backtest, choose_model, forecast, seasonal_naive
from simulator.history import cheapest_placement, runs_spend, synthetic_daily, trace_span, trace_spend


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel(load_catalog())


def test_synthetic_history_is_seeded_positive_and_weekly() -> None:
    a, b = synthetic_daily(70, seed=4), synthetic_daily(70, seed=4)
    assert a.spend.equals(b.spend)
    assert not a.spend.equals(synthetic_daily(70, seed=5).spend)
    assert (a.spend > 0).all() and len(a.spend) == 70
    weekend = a.spend.index.day_of_week >= 5
    assert a.spend[weekend].mean() < a.spend[~weekend].mean()


def test_forecast_has_ordered_intervals_and_continues_the_calendar() -> None:
    hist = synthetic_daily(84, seed=1).spend
    fc = forecast(hist, 10, level=0.9)
    assert fc.model == "ets"
    assert len(fc.mean) == 10
    assert np.all(fc.lo <= fc.mean) and np.all(fc.mean <= fc.hi) and np.all(fc.lo >= 0)
    assert fc.index[0] == hist.index[-1] + pd.Timedelta(days=1)
    wide = forecast(hist, 10, level=0.99)
    assert np.all(wide.hi - wide.lo >= fc.hi - fc.lo - 1e-9)


def test_backtest_reports_coverage_and_beats_seasonal_naive_on_a_trending_series() -> None:
    hist = synthetic_daily(140, seed=2, growth_per_day=0.004).spend
    bt = backtest(hist, horizon=7, levels=(0.8, 0.95), folds=6)
    assert bt.model == "ets" and bt.folds == 6 and bt.horizon == 7
    assert set(bt.coverage) == {0.8, 0.95}
    assert 0.5 <= bt.coverage[0.95] <= 1.0
    assert bt.coverage[0.8] <= bt.coverage[0.95]
    assert bt.mape < bt.baseline_mape
    assert bt.to_dict()["mape_ratio_vs_baseline"] < 1.0


def test_short_histories_fall_back_to_simpler_models() -> None:
    assert choose_model(42, 7) is ForecastModel.ETS
    assert choose_model(30, 7) is ForecastModel.SEASONAL_NAIVE
    assert choose_model(9, 7) is ForecastModel.SEASONAL_NAIVE
    assert choose_model(30, 1) is ForecastModel.HOLT
    assert choose_model(5, 7) is ForecastModel.NAIVE
    fc = forecast(synthetic_daily(5, seed=0).spend, 3)
    assert fc.model == "naive" and len(fc.mean) == 3
    with pytest.raises(InvalidArgumentError, match="sarimax"):
        choose_model(10, 7, ForecastModel.SARIMAX)


def test_seasonal_naive_repeats_a_periodic_series() -> None:
    y = np.tile([1.0, 2.0, 3.0], 5)
    mean, iv = seasonal_naive(y, 4, [0.9], 3)
    assert mean.tolist() == [1.0, 2.0, 3.0, 1.0]
    assert np.allclose(iv[0.9][0], mean) and np.allclose(iv[0.9][1], mean)


def test_bad_inputs_name_the_field() -> None:
    hist = synthetic_daily(30).spend
    with pytest.raises(InvalidArgumentError) as info:
        forecast(hist, 0)
    assert info.value.violations[0].field == "horizon"
    with pytest.raises(InvalidArgumentError, match="ets, holt"):
        forecast(hist, 3, model="prophet")
    with pytest.raises(InvalidArgumentError, match="interval_level"):
        forecast(hist, 3, level=1.5)
    with pytest.raises(InvalidArgumentError, match="too short"):
        backtest(hist.iloc[:15], 7)


def test_runs_spend_uses_recorded_costs_else_catalog_prices(cost_model: CostModel) -> None:
    tier = cost_model.catalog.tier("llama-3.1-8b")
    _, unit = cheapest_placement(cost_model, tier)
    frame = pd.DataFrame(
        {
            "tier": ["llama-3.1-8b", "llama-3.1-8b", "not-a-tier", "llama-3.1-8b"],
            "model": ["m", "m", "x", "m"],
            "input_tokens": [100, 200, 50, 10],
            "output_tokens": [300, 100, 50, 10],
            "cost_usd": [np.nan, 0.5, np.nan, np.nan],
            "timestamp": pd.to_datetime(
                ["2026-01-01T10:00Z", "2026-01-01T12:00Z", "2026-01-02T01:00Z", "2026-01-03T05:00Z"]
            ),
            "tenant": ["a", "a", "a", "b"],
        }
    )
    hist = runs_spend(frame, cost_model)
    first = 100 * unit.usd_per_input_token + 300 * unit.usd_per_output_token + 0.5
    assert hist.spend.iloc[0] == pytest.approx(first)
    assert hist.spend.iloc[1] == 0.0  # a day with only an unpriceable run: filled with 0
    assert hist.skipped_rows == 1 and len(hist.spend) == 3
    assert runs_spend(frame, cost_model, reprice=True).spend.iloc[0] < first
    assert len(runs_spend(frame, cost_model, tenant="b").spend) == 1


@pytest.mark.shared_data
def test_azure_trace_is_short_and_aggregates_per_minute(shared_data: Path, cost_model: CostModel) -> None:
    path = str(shared_data / "traces" / "azure_llm_2023_conv.csv")
    first, last = trace_span(path)
    assert (last - first) < pd.Timedelta(hours=2)  # too short for a daily series: per-minute spend instead
    hist = trace_spend(path, cost_model, "llama-3.1-70b", "H100-SXM5-80GB")
    assert 50 <= len(hist.spend) <= 62
    assert (hist.spend > 0).all()
    bt = backtest(hist.spend, 5, (0.8, 0.95), season=1, folds=4, min_train=20)
    assert bt.folds == 4 and 0 <= bt.coverage[0.95] <= 1


def test_cli_forecast_prints_one_json_object() -> None:
    from typer.testing import CliRunner

    from planner.cli import app

    args = ["forecast", "--synthetic", "--days", "70", "--horizon", "7", "--folds", "3", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["forecast"]["model"] == "ets" and len(out["forecast"]["points"]) == 7
    assert set(out["backtest"]["coverage"]) == {"0.8", "0.9", "0.95"}
    bad = CliRunner().invoke(app, ["forecast", "--synthetic", "--horizon", "0", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"] == "InvalidArgumentError"
