"""The pure routing core: fast pricing matches `OptionSet.price`; `choose` maximises quality - price.cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.api import Forecast, Query
from models.baseline import PriorForecaster
from planner.catalog import load_catalog
from planner.demo import demo_records
from planner.errors import InvalidArgumentError
from planner.options import OptionArrays, OptionSet
from planner.router import FastPricer, ShadowPrices, choose, frontier_gain, mean_chosen_cost
from simulator.costmodel import CostModel


@pytest.fixture(scope="module")
def pricer() -> FastPricer:
    catalog = load_catalog()
    forecaster = PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 150)))
    return FastPricer(OptionSet.build(catalog, CostModel(catalog), forecaster.tiers))


def forecast(tiers: tuple[str, ...], n: int, seed: int = 0) -> Forecast:
    rng = np.random.default_rng(seed)
    p50 = rng.uniform(30, 600, (n, len(tiers)))
    return Forecast(
        tiers,
        rng.uniform(0.0, 1.0, (n, len(tiers))),
        p50,
        p50 * rng.uniform(1, 3, (n, 1)),
        rng.uniform(5, 3000, n),
    )


def test_fast_pricing_matches_the_option_set(pricer: FastPricer) -> None:
    f = forecast(pricer.options.forecast_tiers, 40)
    fast, exact = pricer.price(f), pricer.options.price(f)
    for name in OptionArrays.__dataclass_fields__:
        if name != "quality":
            np.testing.assert_allclose(getattr(fast, name), getattr(exact, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.quality, exact.quality, atol=2e-4)


def test_fast_pricing_reorders_forecast_tiers(pricer: FastPricer) -> None:
    f = forecast(pricer.options.forecast_tiers, 5)
    rev = Forecast(
        f.tiers[::-1],
        f.p_correct[:, ::-1],
        f.output_tokens_p50[:, ::-1],
        f.output_tokens_p90[:, ::-1],
        f.input_tokens,
    )
    np.testing.assert_allclose(pricer.price(rev).usd, pricer.price(f).usd)
    np.testing.assert_allclose(pricer.price(rev).quality, pricer.price(f).quality)


def test_missing_forecast_tier_names_the_field(pricer: FastPricer) -> None:
    f = forecast(pricer.options.forecast_tiers[:-1], 2)
    with pytest.raises(InvalidArgumentError) as err:
        pricer.price(f)
    assert err.value.violations[0].field == "forecast.tiers"


def brute_force(arrays: OptionArrays, allowed: np.ndarray, prices: ShadowPrices) -> np.ndarray:
    out = []
    for i in range(arrays.shape[0]):
        best, best_score = -1, -np.inf
        for j in range(arrays.shape[1]):
            if not allowed[i, j]:
                continue
            score = arrays.quality[i, j] - (prices.usd + 1e-6) * arrays.usd[i, j]
            score -= prices.energy_kwh * arrays.energy_j[i, j] / 3.6e6
            if score > best_score:
                best, best_score = j, score
        out.append(best)
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(
    lam=st.floats(0, 1e4),
    mu=st.floats(0, 10),
    seed=st.integers(0, 2**16),
    density=st.floats(0.0, 1.0),
)
def test_choose_is_the_argmax_of_the_priced_score(
    pricer: FastPricer, lam: float, mu: float, seed: int, density: float
) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 6, seed))
    rng = np.random.default_rng(seed)
    allowed = rng.random(arrays.shape) < density
    prices = ShadowPrices(lam, mu)
    choice = choose(arrays, allowed, prices, pricer.group)
    expected = brute_force(arrays, allowed, prices)
    np.testing.assert_array_equal(choice.chosen, expected)
    rows = np.flatnonzero(expected >= 0)
    assert np.all(allowed[rows, choice.chosen[rows]])
    assert np.all(allowed[rows, choice.runner_up[rows]] | (choice.runner_up[rows] < 0))
    # the runner-up is another tier x strategy, and scores no better than the choice
    has = rows[choice.runner_up[rows] >= 0]
    assert np.all(pricer.group[choice.runner_up[has]] != pricer.group[choice.chosen[has]])
    # the top-quality option is at least as good as the choice
    assert np.all(arrays.quality[rows, choice.top_quality[rows]] >= arrays.quality[rows, choice.chosen[rows]])


@settings(deadline=None)
@given(
    lam=st.sampled_from([0.0, 1e-3, 10.0, 1e4]),
    mu=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
    density=st.floats(0.0, 1.0),
    grouped=st.booleans(),
)
def test_one_query_path_equals_the_batch_path(
    pricer: FastPricer, lam: float, mu: float, seed: int, density: float, grouped: bool
) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 5, seed))
    allowed = np.random.default_rng(seed).random(arrays.shape) < density
    prices, group = ShadowPrices(lam, mu), pricer.group if grouped else None
    batch = choose(arrays, allowed, prices, group)
    for i in range(5):
        one = choose(arrays.take(slice(i, i + 1)), allowed[i : i + 1], prices, group)
        assert one.chosen[0] == batch.chosen[i] and one.runner_up[0] == batch.runner_up[i]
        assert one.top_quality[0] == batch.top_quality[i]
        assert one.gain_per_usd[0] == pytest.approx(batch.gain_per_usd[i], rel=1e-12, abs=1e-15)


def test_zero_price_picks_best_quality_cheapest_on_ties(pricer: FastPricer) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 8))
    allowed = np.ones(arrays.shape, bool)
    choice = choose(arrays, allowed, ShadowPrices(), pricer.group)
    rows = np.arange(8)
    top = arrays.quality.max(axis=1)
    np.testing.assert_allclose(arrays.quality[rows, choice.chosen], top, atol=1e-6)
    same = np.isclose(arrays.quality, top[:, None], atol=0, rtol=0)
    cheapest = np.where(same, arrays.usd, np.inf).min(axis=1)
    assert np.all(arrays.usd[rows, choice.chosen] <= cheapest + 1e-3)


def test_huge_price_picks_the_cheapest_allowed(pricer: FastPricer) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 8))
    allowed = np.ones(arrays.shape, bool)
    choice = choose(arrays, allowed, ShadowPrices(1e9), pricer.group)
    np.testing.assert_allclose(arrays.usd[np.arange(8), choice.chosen], arrays.usd.min(axis=1))


def test_nothing_allowed_gives_minus_one(pricer: FastPricer) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 3))
    allowed = np.ones(arrays.shape, bool)
    allowed[1] = False
    choice = choose(arrays, allowed, ShadowPrices(1.0), pricer.group)
    assert (
        choice.chosen[1] == -1 and choice.runner_up[1] == -1 and list(choice.feasible) == [True, False, True]
    )


def test_frontier_gain_is_the_best_slope_up() -> None:
    q = np.array([[0.5, 0.7, 0.8, 0.6]])
    usd = np.array([[1.0, 2.0, 4.0, 3.0]])
    zeros = np.zeros_like(q)
    arrays = OptionArrays(q, usd, usd, zeros, zeros, zeros, zeros, zeros, zeros)
    allowed = np.ones_like(q, bool)
    assert frontier_gain(arrays, allowed, np.array([0]))[0] == pytest.approx(0.2)  # to (2.0, 0.7)
    assert frontier_gain(arrays, allowed, np.array([2]))[0] == 0.0  # nothing dearer


def test_mean_chosen_cost_falls_as_the_price_rises(pricer: FastPricer) -> None:
    arrays = pricer.price(forecast(pricer.options.forecast_tiers, 30))
    ok = np.ones(arrays.shape, bool)
    costs = [
        mean_chosen_cost(arrays.quality, arrays.usd, arrays.energy_j, ok, ShadowPrices(lam))[0]
        for lam in (0.0, 1.0, 10.0, 100.0, 1e4, 1e7)
    ]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]


def test_shadow_prices_reject_negative_values() -> None:
    with pytest.raises(InvalidArgumentError, match=r"shadow_prices\.usd"):
        ShadowPrices(-1.0)


def test_route_one_query_uses_the_forecasters_input_tokens(pricer: FastPricer) -> None:
    catalog = load_catalog()
    forecaster = PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 50)))
    short, long = (forecaster.forecast([Query(prompt_tokens=n)]) for n in (10, 10_000))
    assert np.all(pricer.price(long).usd >= pricer.price(short).usd)
