"""Cost model: pinned interface, vectorised == scalar, strategy effects, price models, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hw_catalog import small_catalog
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import PriceModel
from planner.errors import InvalidArgumentError, NotFoundError
from simulator.costmodel import CostModel, OptionCost, UnitCost
from simulator.replica import request_service

CAT = small_catalog()
CM = CostModel(CAT)


def _options() -> list[tuple[str, str, str]]:
    return [(t.name, s.name, g.name) for t, s, g in CAT.combinations()]


@pytest.mark.parametrize("tier,strategy,target", _options())
def test_option_cost_shapes_and_signs(tier: str, strategy: str, target: str) -> None:
    tin = np.array([[10.0, 200.0], [1000.0, 0.0]])
    tout = np.array([[5.0, 300.0], [2000.0, 1.0]])
    c = CM.option_cost(CAT.tier(tier), CAT.strategy(strategy), CAT.target(target), tin, tout)
    assert isinstance(c, OptionCost)
    for arr in (c.usd, c.latency_s, c.ttft_s, c.energy_j, c.device_s):
        assert arr.shape == tin.shape
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0)
    assert np.all(c.latency_s >= c.ttft_s)


@pytest.mark.parametrize("tier,strategy,target", _options())
def test_vectorised_equals_scalar_loop(tier: str, strategy: str, target: str) -> None:
    rng = np.random.default_rng(0)
    tin, tout = rng.integers(0, 4000, 50).astype(float), rng.integers(0, 4000, 50).astype(float)
    args = (CAT.tier(tier), CAT.strategy(strategy), CAT.target(target))
    vec = CM.option_cost(*args, tin, tout)
    for i in range(len(tin)):
        one = CM.option_cost(*args, tin[i : i + 1], tout[i : i + 1])
        for name in ("usd", "latency_s", "ttft_s", "energy_j", "device_s"):
            assert getattr(one, name)[0] == pytest.approx(getattr(vec, name)[i], rel=1e-12)


def test_strategy_effects() -> None:
    tier, h100 = CAT.tier("llama-8b"), CAT.target("h100")
    tin, tout = np.array([300.0]), np.array([500.0])
    single = CM.option_cost(tier, CAT.strategy("single"), h100, tin, tout)
    vote = CM.option_cost(tier, CAT.strategy("vote5"), h100, tin, tout)
    revise = CM.option_cost(tier, CAT.strategy("revise3"), h100, tin, tout)
    # parallel samples: ~5x the generated tokens' cost, same latency (one shared batch)
    assert vote.usd[0] > 4.5 * single.usd[0]
    assert vote.latency_s[0] == pytest.approx(single.latency_s[0])
    # serial steps: latency grows about 3x
    assert revise.latency_s[0] > 2.9 * single.latency_s[0]


def test_matches_hardware_request_service() -> None:
    """The planner's price and the simulator's service function agree for a single pass."""
    tier, target = CAT.tier("llama-70b"), CAT.target("h100")
    tin, tout = np.array([100.0, 900.0]), np.array([50.0, 700.0])
    cost = CM.option_cost(tier, CAT.strategy("single"), target, tin, tout)
    svc = request_service(CM.deployment(tier, target), CM.efficiency, tin, tout)
    np.testing.assert_allclose(cost.device_s, svc.device_s, rtol=1e-12)
    np.testing.assert_allclose(cost.energy_j, svc.energy_j, rtol=1e-12)
    np.testing.assert_allclose(cost.ttft_s, svc.ttft_s, rtol=1e-12)
    np.testing.assert_allclose(cost.latency_s, svc.ttft_s + svc.decode_s, rtol=1e-12)


def test_unit_costs_by_price_model() -> None:
    gpu = CM.unit_cost(CAT.tier("llama-8b"), CAT.target("h100"))
    edge = CM.unit_cost(CAT.tier("llama-8b"), CAT.target("jetson"))
    api = CM.unit_cost(CAT.tier("gpt-4o"), CAT.target("openai"))
    assert isinstance(gpu, UnitCost) and gpu.price_model is PriceModel.DEVICE_HOUR
    assert gpu.usd_per_output_token == pytest.approx(gpu.device_s_per_output_token * 4.25 / 3600)
    assert edge.batch_size == 1.0 and edge.price_model is PriceModel.OWNED
    assert edge.s_per_output_token > gpu.s_per_output_token  # 200 GB/s vs 3.35 TB/s
    assert api.usd_per_output_token == pytest.approx(10e-6)
    assert api.s_per_output_token == pytest.approx(1 / 80)
    assert api.energy_is_estimate and not gpu.energy_is_estimate
    assert api.device_s_per_output_token == 0.0


def test_bigger_operating_batch_is_cheaper_but_slower_per_user() -> None:
    tier, target = CAT.tier("llama-8b"), CAT.target("h100")
    small = CostModel(CAT, operating_batch=8).unit_cost(tier, target)
    big = CostModel(CAT, operating_batch={"h100": 128}).unit_cost(tier, target)
    assert big.usd_per_output_token < small.usd_per_output_token
    assert big.energy_j_per_output_token < small.energy_j_per_output_token
    assert big.s_per_output_token > small.s_per_output_token


def test_errors_name_values() -> None:
    with pytest.raises(NotFoundError, match="llama-8b"):
        CM.unit_cost(CAT.tier("llama-8b"), CAT.target("openai"))
    with pytest.raises(NotFoundError, match="gpt-4o"):
        CM.unit_cost(CAT.tier("gpt-4o"), CAT.target("h100"))
    with pytest.raises(InvalidArgumentError, match="shape"):
        CM.option_cost(
            CAT.tier("llama-8b"), CAT.strategy("single"), CAT.target("h100"), np.ones(2), np.ones(3)
        )
    with pytest.raises(InvalidArgumentError, match="-1"):
        CM.option_cost(
            CAT.tier("llama-8b"),
            CAT.strategy("single"),
            CAT.target("h100"),
            np.array([-1.0]),
            np.array([1.0]),
        )
    with pytest.raises(InvalidArgumentError, match="electricity"):
        CostModel(CAT, electricity_usd_per_kwh=-1)


tokens = st.lists(st.floats(0, 1e5, allow_nan=False), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(tin=tokens, tout=tokens, extra=st.floats(0, 1e4), which=st.sampled_from(_options()))
def test_costs_monotone_in_tokens(tin: list[float], tout: list[float], extra: float, which: tuple) -> None:
    n = min(len(tin), len(tout))
    a, b = np.array(tin[:n]), np.array(tout[:n])
    tier, strategy, target = CAT.tier(which[0]), CAT.strategy(which[1]), CAT.target(which[2])
    base = CM.option_cost(tier, strategy, target, a, b)
    more_out = CM.option_cost(tier, strategy, target, a, b + extra)
    more_in = CM.option_cost(tier, strategy, target, a + extra, b)
    for name in ("usd", "latency_s", "energy_j", "device_s"):
        assert np.all(getattr(base, name) >= 0)
        assert np.all(getattr(more_out, name) >= getattr(base, name))
        assert np.all(getattr(more_in, name) >= getattr(base, name))


def test_service_model_is_the_same_physics_as_the_unit_cost() -> None:
    tier, target = CAT.tier("llama-70b"), CAT.target("h100")
    unit, svc = CM.unit_cost(tier, target), CM.service_model(tier, target)
    b = np.array([0.0, 1.0, unit.batch_size, 256.0])
    steps = svc.decode_step_s(b)
    assert steps[2] == pytest.approx(unit.s_per_output_token, rel=1e-12)
    assert np.all(np.diff(steps[1:]) > 0)
    power = svc.power_w(b)
    assert power[0] < power[1] < power[3]
    assert power[2] == pytest.approx(unit.power_w, rel=1e-12)
    ttft = svc.prefill_s(np.array([0.0, 1000.0]))
    assert ttft[0] == pytest.approx(unit.ttft_base_s, rel=1e-12)
    assert ttft[1] - ttft[0] == pytest.approx(1000 * unit.ttft_s_per_input_token, rel=1e-9)
    assert svc.prefill_power_w > 0
    with pytest.raises(InvalidArgumentError, match="per-token"):
        CM.service_model(CAT.tier("gpt-4o"), CAT.target("openai"))


def test_default_catalog_prices_every_combination() -> None:
    from planner.catalog import load_catalog

    cat = load_catalog()
    model = CostModel(cat)
    tin, tout = np.array([0.0, 120.0, 4000.0]), np.array([1.0, 300.0, 8000.0])
    for tier, strategy, target in cat.combinations():
        c = model.option_cost(tier, strategy, target, tin, tout)
        for arr in (c.usd, c.latency_s, c.ttft_s, c.energy_j, c.device_s):
            assert np.all(np.isfinite(arr)) and np.all(arr >= 0), (tier.name, strategy.name, target.name)
        assert np.all(np.diff(c.usd) > 0) and np.all(np.diff(c.latency_s) > 0)
