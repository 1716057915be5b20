"""APGR / CPT / AIQ on hand-made curves, and envelope invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.evaluation.metrics import Curve, aiq, apgr, cost_to_reach, cpt, envelope, quality_at


def test_random_mix_line_has_apgr_one_half() -> None:
    line = Curve.of([1.0, 2.0], [0.5, 0.9])
    assert apgr(line, (1.0, 0.5), (2.0, 0.9)) == pytest.approx(0.5, abs=1e-3)
    assert cpt(line, (1.0, 0.5), (2.0, 0.9), 50) == pytest.approx(0.75)


def test_router_reaching_strong_quality_at_weak_cost_has_apgr_one() -> None:
    curve = Curve.of([1.0], [0.9])
    assert apgr(curve, (1.0, 0.5), (2.0, 0.9)) == pytest.approx(1.0)
    assert cpt(curve, (1.0, 0.5), (2.0, 0.9), 95) == pytest.approx(0.5)


def test_aiq_of_a_flat_curve_is_its_quality() -> None:
    assert aiq(Curve.of([0.0, 1.0], [0.7, 0.7]), 0.0, 1.0) == pytest.approx(0.7)


def test_envelope_drops_dominated_and_concave_points() -> None:
    env = envelope(Curve.of([1, 2, 3, 4], [0.5, 0.55, 0.9, 0.8]))
    assert list(env.cost) == [1.0, 3.0]
    assert cost_to_reach(Curve.of([1, 3], [0.5, 0.9]), 0.95) == float("inf")
    assert float(quality_at(Curve.of([1, 3], [0.5, 0.9]), 0.5)) == 0.0


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1)), min_size=1, max_size=30))
def test_envelope_is_non_decreasing_and_dominates_points(points: list[tuple[float, float]]) -> None:
    curve = Curve.of([p[0] for p in points], [p[1] for p in points])
    env = envelope(curve)
    assert np.all(np.diff(env.quality) > 0) and np.all(np.diff(env.cost) > 0)
    assert np.all(quality_at(curve, curve.cost) >= curve.quality - 1e-9)


def test_resolution_tells_signal_from_noise() -> None:
    from types import SimpleNamespace

    from planner.evaluation.harness import resolution

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.2, 0.9, size=(4000, 3))
    outcome = (rng.random(truth.shape) < truth).astype(float)
    informed = SimpleNamespace(
        predicted=SimpleNamespace(quality=truth), realised_quality=outcome, tiers=("a", "b", "c")
    )
    res = resolution(informed, best=0, contender_pp=100.0)  # type: ignore[arg-type]
    assert res["query"]["slope"] == pytest.approx(1.0, abs=0.1)
    assert res["contrast_among_contenders"]["slope"] == pytest.approx(1.0, abs=0.15)
    noise = SimpleNamespace(
        predicted=SimpleNamespace(quality=rng.permutation(truth)),
        realised_quality=outcome,
        tiers=("a", "b", "c"),
    )
    assert abs(resolution(noise, best=0)["query"]["slope"]) < 0.1  # type: ignore[arg-type]
