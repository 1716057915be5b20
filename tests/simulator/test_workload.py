"""Request streams: seeded generators, chunking, rates, trace replay (Azure format and the runs schema)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.errors import InvalidArgumentError
from simulator.workload import (
    BurstyWorkload,
    DiurnalWorkload,
    PoissonWorkload,
    TokenDist,
    TraceWorkload,
    count_requests,
)


def _all(workload, seed=0):  # type: ignore[no-untyped-def]
    chunks = list(workload.chunks(seed))
    return chunks, np.concatenate([c.arrival_s for c in chunks])


def test_poisson_rate_chunking_and_determinism() -> None:
    w = PoissonWorkload(rate_per_s=20.0, duration_s=500.0, chunk_size=1000, tasks={"chat": 3, "reasoning": 1})
    chunks, t = _all(w, 7)
    assert all(len(c) <= 1000 for c in chunks)
    assert np.all(np.diff(t) >= 0) and t.max() < 500.0
    assert len(t) == pytest.approx(10_000, rel=0.05)
    share = np.concatenate([c.task_index for c in chunks]).mean()
    assert share == pytest.approx(0.25, abs=0.02)
    _, t2 = _all(w, 7)
    np.testing.assert_array_equal(t, t2)
    _, t3 = _all(w, 8)
    assert len(t3) != len(t) or not np.array_equal(t, t3)


def test_diurnal_peaks_at_its_peak_hour() -> None:
    w = DiurnalWorkload(mean_rate_per_s=0.5, amplitude=0.8, peak_hour=12.0, duration_s=86_400.0)
    _, t = _all(w, 1)
    hours = np.bincount((t // 3600).astype(int), minlength=24)
    assert int(np.argmax(hours)) in (11, 12, 13)
    assert hours.sum() == pytest.approx(43_200, rel=0.05)
    assert hours.max() > 3 * hours.min()


def test_bursty_mean_rate() -> None:
    w = BurstyWorkload(
        base_rate_per_s=1.0, burst_rate_per_s=10.0, calm_s=100.0, burst_s=20.0, duration_s=50_000
    )
    _, t = _all(w, 2)
    expected = (1.0 * 100 + 10.0 * 20) / 120 * 50_000
    assert len(t) == pytest.approx(expected, rel=0.1)
    per_min = np.bincount((t // 60).astype(int))
    assert per_min.var() > 3 * per_min.mean()  # over-dispersed vs Poisson


def test_max_requests_and_token_bounds() -> None:
    w = PoissonWorkload(rate_per_s=100.0, duration_s=1e9, max_requests=2500, chunk_size=1000)
    assert count_requests(w) == 2500
    d = TokenDist(100.0, 1.0, minimum=5, maximum=500)
    x = d.sample(np.random.default_rng(0), 10_000)
    assert x.min() >= 5 and x.max() <= 500
    assert float(np.median(x)) == pytest.approx(100, rel=0.1)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError):
        list(PoissonWorkload(rate_per_s=0.0).chunks(0))
    with pytest.raises(InvalidArgumentError):
        list(PoissonWorkload(tenants={"a": -1.0}).chunks(0))
    with pytest.raises(InvalidArgumentError):
        TokenDist(0.0)
    with pytest.raises(InvalidArgumentError, match="no such trace"):
        list(TraceWorkload("/nonexistent.csv").chunks())


def test_azure_conv_trace_replay(shared_data: Path) -> None:
    path = str(shared_data / "traces" / "azure_llm_2023_conv.csv")
    chunks, t = _all(TraceWorkload(path, chunk_size=5000))
    assert len(t) == 19_366
    assert np.all(np.diff(t) >= 0)
    assert 3000 < t[-1] < 3700
    tokens = np.concatenate([c.input_tokens for c in chunks])
    assert float(np.median(tokens)) == pytest.approx(1020, rel=0.05)
    _, t2 = _all(TraceWorkload(path, time_scale=2.0, repeat=3, max_requests=50_000, chunk_size=5000))
    assert len(t2) == 50_000
    assert np.all(np.diff(t2) >= 0)


def test_runs_schema_trace_with_tenants_and_tasks(tmp_path: Path) -> None:
    p = tmp_path / "runs.csv"
    p.write_text(
        "query_id,timestamp,prompt_chars,output_tokens,tenant,task\n"
        "a,2026-01-01T00:00:10Z,400,10,acme,gsm\n"
        "b,2026-01-01T00:00:00Z,40,20,beta,code\n"
        "c,2026-01-01T00:01:00Z,8,5,acme,gsm\n"
    )
    (chunk,) = list(TraceWorkload(str(p), fmt="runs").chunks())
    np.testing.assert_allclose(chunk.arrival_s, [0.0, 10.0, 60.0])
    np.testing.assert_allclose(chunk.input_tokens, [10.0, 100.0, 2.0])
    assert [chunk.tenants[i] for i in chunk.tenant] == ["beta", "acme", "acme"]
    assert [chunk.tasks[i] for i in chunk.task_index] == ["code", "gsm", "gsm"]
