"""Option sets priced with the real default catalog and cost model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.api import Forecast
from planner.catalog import Strategy, load_catalog
from planner.errors import FailedPreconditionError, InvalidArgumentError
from planner.options import OptionSet, lognormal_mean, lognormal_p99
from simulator.costmodel import CostModel


def _quality(p: np.ndarray, strategy: Strategy) -> np.ndarray:
    return 1.0 - (1.0 - p) ** strategy.samples  # stand-in strategy response (pass@n) for these tests


@pytest.fixture(scope="module")
def setup() -> tuple[OptionSet, CostModel]:
    catalog = load_catalog()
    cm = CostModel(catalog)
    tiers = tuple(t.name for t in catalog.tiers[:4])
    return OptionSet.build(catalog, cm, tiers, quality_fn=_quality), cm


def _forecast(tiers: tuple[str, ...], n: int = 5) -> Forecast:
    rng = np.random.default_rng(0)
    p50 = rng.uniform(50, 400, (n, len(tiers)))
    return Forecast(tiers, rng.uniform(0.3, 0.95, (n, len(tiers))), p50, 2 * p50, rng.uniform(20, 900, n))


def test_options_cover_only_forecaster_tiers(setup: tuple[OptionSet, CostModel]) -> None:
    options, _ = setup
    assert {o.tier for o in options.options} <= set(options.forecast_tiers)
    assert len(options.unavailable_tiers) == len(load_catalog().tiers) - 4


def test_affine_pricing_matches_the_cost_model(setup: tuple[OptionSet, CostModel]) -> None:
    options, cm = setup
    catalog = load_catalog()
    forecast = _forecast(options.forecast_tiers)
    arrays = options.price(forecast)
    assert arrays.shape == (5, len(options))
    assert np.all(arrays.usd_p90 >= arrays.usd) and np.all(arrays.latency_p90_s >= arrays.latency_s)
    mean_tokens = lognormal_mean(forecast.output_tokens_p50, forecast.output_tokens_p90)
    for o in options.options[:: max(1, len(options) // 7)]:
        col = options.forecast_tiers.index(o.tier)
        exact = cm.option_cost(
            catalog.tier(o.tier),
            catalog.strategy(o.strategy),
            catalog.target(o.target),
            forecast.input_tokens,
            mean_tokens[:, col],
        )
        np.testing.assert_allclose(arrays.usd[:, o.index], exact.usd, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(arrays.energy_j[:, o.index], exact.energy_j, rtol=1e-6, atol=1e-9)


def test_quality_applies_the_strategy_response(setup: tuple[OptionSet, CostModel]) -> None:
    options, _ = setup
    forecast = _forecast(options.forecast_tiers)
    q = options.price(forecast).quality
    for o in options.options:
        p = forecast.p_correct[:, options.forecast_tiers.index(o.tier)]
        np.testing.assert_allclose(q[:, o.index], 1 - (1 - p) ** o.samples)


def test_forecast_in_another_tier_order_is_reindexed(setup: tuple[OptionSet, CostModel]) -> None:
    options, _ = setup
    f = _forecast(options.forecast_tiers)
    rev = Forecast(
        f.tiers[::-1],
        f.p_correct[:, ::-1],
        f.output_tokens_p50[:, ::-1],
        f.output_tokens_p90[:, ::-1],
        f.input_tokens,
    )
    np.testing.assert_allclose(options.price(rev).usd, options.price(f).usd)
    np.testing.assert_allclose(options.price(rev).quality, options.price(f).quality)
    with pytest.raises(InvalidArgumentError):
        options.price(
            Forecast(
                f.tiers[:1],
                f.p_correct[:, :1],
                f.output_tokens_p50[:, :1],
                f.output_tokens_p90[:, :1],
                f.input_tokens,
            )
        )


def test_restrict_keeps_prices(setup: tuple[OptionSet, CostModel]) -> None:
    options, _ = setup
    keep = [len(options) - 1, 0]
    sub = options.restrict(keep)
    f = _forecast(options.forecast_tiers)
    np.testing.assert_allclose(sub.price(f).usd, options.price(f).usd[:, keep])
    assert [o.index for o in sub.options] == [0, 1]


def test_no_known_tier_is_a_failed_precondition() -> None:
    catalog = load_catalog()
    with pytest.raises(FailedPreconditionError):
        OptionSet.build(catalog, CostModel(catalog), ("no-such-tier",), quality_fn=_quality)


def test_lognormal_mean_is_median_when_no_spread() -> None:
    np.testing.assert_allclose(lognormal_mean(np.array([100.0]), np.array([100.0])), [100.0])
    assert lognormal_mean(np.array([100.0]), np.array([200.0]))[0] > 100.0


def test_lognormal_p99_recovers_the_tail_of_a_lognormal() -> None:
    mu, sigma = np.array([0.0, 1.0, 2.5]), np.array([0.1, 0.6, 1.0])
    mean, p90 = np.exp(mu + sigma**2 / 2), np.exp(mu + 1.2815515655446004 * sigma)
    np.testing.assert_allclose(lognormal_p99(mean, p90), np.exp(mu + 2.3263478740408408 * sigma), rtol=1e-9)
    assert lognormal_p99(np.array([5.0]), np.array([5.0]))[0] == pytest.approx(5.0)  # no spread
    assert lognormal_p99(np.array([5.0]), np.array([4.0]))[0] == pytest.approx(5.0)  # p90 below the mean
    assert np.all(np.diff(lognormal_p99(np.ones(4), np.array([1.1, 1.5, 2.0, 30.0]))) > 0)  # grows with p90


def test_level_errors_follow_each_options_tier_and_group(setup: tuple[OptionSet, CostModel]) -> None:
    options, _ = setup
    f = _forecast(options.forecast_tiers, n=3)
    assert options.level_errors(f) is None  # no level errors in the forecast: nothing to correct
    k = len(f.tiers)
    se_by_tier = np.tile(np.arange(1.0, k + 1), (3, 1))
    f = dataclasses.replace(f, level_se=se_by_tier, level_group=np.array([0, 0, 1]))
    got = options.level_errors(f)
    assert got is not None
    se, level = got
    assert se.shape == level.shape == (3, len(options))
    for j, o in enumerate(options.options):
        t = f.tiers.index(o.tier)
        assert se[0, j] == t + 1
        assert level[0, j] == level[1, j] == t  # same group, same tier: one shared level
        assert level[2, j] == k + t  # another group: levels of its own
