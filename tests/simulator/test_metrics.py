"""Streaming metrics: histogram quantiles against numpy, merging, hourly series, confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.metrics import HourlySeries, LogHistogram, flatten, mean_ci


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), sigma=st.floats(0.1, 3.0))
def test_histogram_quantiles_within_bin_resolution(seed: int, sigma: float) -> None:
    x = np.random.default_rng(seed).lognormal(0.0, sigma, 20_000)
    h = LogHistogram()
    h.add(x[:7000])
    h.add(x[7000:])
    got = h.quantile([0.5, 0.95, 0.99])
    want = np.quantile(x, [0.5, 0.95, 0.99])
    np.testing.assert_allclose(got, want, rtol=0.02)
    assert h.mean == pytest.approx(x.mean())
    assert h.n == x.size


def test_merge_equals_adding_everything() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.exponential(1.0, 1000), rng.exponential(3.0, 500)
    h1, h2, both = LogHistogram(), LogHistogram(), LogHistogram()
    h1.add(a)
    h2.add(b)
    both.add(np.concatenate([a, b]))
    h1.merge(h2)
    np.testing.assert_array_equal(h1.counts, both.counts)
    assert h1.max == both.max
    x, f = h1.cdf_points()
    assert f[-1] == pytest.approx(1.0) and np.all(np.diff(x) > 0)


def test_hourly_series_sums_and_spreads() -> None:
    s = HourlySeries(bin_s=10.0)
    s.add("usd", np.array([1.0, 12.0, 15.0]), np.array([1.0, 2.0, 3.0]))
    s.add_uniform("usd", 0.0, 40.0, 8.0)
    assert s.to_dict()["usd"] == pytest.approx([3.0, 7.0, 2.0, 2.0])


def test_mean_ci_and_flatten() -> None:
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["lo"] < 2.0 < ci["hi"]
    assert mean_ci([5.0])["lo"] == 5.0
    assert flatten({"a": {"b": 1, "c": "x"}, "d": 2.5}) == {"a.b": 1.0, "d": 2.5}
