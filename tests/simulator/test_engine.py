"""The discrete-event core: exact against the FCFS recursion, M/M/c mean wait, batching, rounds, energy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InvalidArgumentError
from simulator.engine import Completions, Jobs, PoolConfig, PoolEngine, PoolStats
from tests.simulator.queueing import ConstService, erlang_c_mean_wait, fcfs_waits


def _jobs(arrival: np.ndarray, work: np.ndarray, slots: int = 1, rounds: int = 1, inp: float = 0.0) -> Jobs:
    n = len(arrival)
    z = np.zeros(n, np.int64)
    return Jobs(arrival, np.full(n, inp), work, np.full(n, slots), np.full(n, rounds), z, z, np.zeros(n))


def _run(
    cfg: PoolConfig, service: ConstService, jobs: Jobs, block: int = 65_536
) -> tuple[Completions, PoolStats]:
    blocks: list[Completions] = []
    engine = PoolEngine(cfg, service, blocks.append, block=block)
    engine.feed(jobs)
    stats = engine.finish()
    cat = {f: np.concatenate([getattr(b, f) for b in blocks]) for f in Completions.__dataclass_fields__}
    order = np.argsort(cat["arrival_s"], kind="stable")
    return Completions(**{k: v[order] for k, v in cat.items()}), stats


def _poisson(seed: int, n: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / lam, n)), rng.exponential(1.0, n)


def test_single_slot_pool_is_exactly_the_fcfs_multiserver_queue() -> None:
    arrival, work = _poisson(0, 20_000, 3.2)
    done, _ = _run(PoolConfig(replicas=4), ConstService(), _jobs(arrival, work), block=1000)
    np.testing.assert_allclose(done.start_s - done.arrival_s, fcfs_waits(arrival, work, 4), atol=1e-6)
    np.testing.assert_allclose(done.done_s - done.start_s, work, rtol=1e-9, atol=1e-9)


def test_mean_wait_matches_erlang_c_within_sampling_error() -> None:
    # The 2% figure over millions of requests is in bench/sim_queueing.py; here 400k requests, whose
    # batch-means standard error is about 1.5%, must land within 3 standard errors and 5%.
    lam, c = 2.0, 4
    batch_means = []
    for seed in range(4):
        arrival, work = _poisson(seed, 100_000, lam)
        done, _ = _run(PoolConfig(replicas=c), ConstService(), _jobs(arrival, work))
        batch_means.append((done.start_s - done.arrival_s).reshape(10, -1).mean(axis=1))
    means = np.concatenate(batch_means)
    measured, se = float(means.mean()), float(means.std(ddof=1) / np.sqrt(means.size))
    expected = erlang_c_mean_wait(lam, 1.0, c)
    assert abs(measured - expected) < min(3 * se, 0.05 * expected)


def test_continuous_batching_shares_the_step_and_frees_slots_early() -> None:
    # Two requests in one batch of a replica: both advance one token per step; the short one leaves first.
    arrival = np.array([0.0, 0.0])
    work = np.array([10.0, 4.0])
    done, stats = _run(PoolConfig(replicas=1, max_batch=2), ConstService(step_s=0.5), _jobs(arrival, work))
    np.testing.assert_allclose(np.sort(done.done_s), [2.0, 5.0])
    np.testing.assert_allclose(done.first_token_s, [0.5, 0.5])
    assert stats.completed == 2
    assert stats.busy_s == pytest.approx(5.0)


def test_parallel_samples_take_slots_and_rounds_add_serial_prefill() -> None:
    svc = ConstService(step_s=1.0, prefill_s=2.0)
    # 3 slots per request on a 4-slot replica: the second request waits for the first.
    done, _ = _run(
        PoolConfig(replicas=1, max_batch=4), svc, _jobs(np.array([0.0, 0.0]), np.array([5.0, 5.0]), 3)
    )
    np.testing.assert_allclose(done.start_s, [0.0, 7.0])
    np.testing.assert_allclose(done.done_s, [7.0, 14.0])
    # 2 rounds: prefill, decode 5, re-prefill, decode 5.
    one, _ = _run(PoolConfig(replicas=1, max_batch=4), svc, _jobs(np.array([0.0]), np.array([5.0]), 1, 2))
    assert one.done_s[0] == pytest.approx(14.0)
    assert one.tokens[0] == pytest.approx(10.0)


def test_admission_limit_rejects_overflow() -> None:
    rejected: list[np.ndarray] = []
    engine = PoolEngine(
        PoolConfig(replicas=1, max_queue=2),
        ConstService(),
        lambda c: None,
        lambda a, t, g: rejected.append(a),
    )
    engine.feed(_jobs(np.zeros(5), np.ones(5)))
    stats = engine.finish()
    assert stats.completed == 3
    assert stats.rejected == 2
    assert sum(len(r) for r in rejected) == 2


def test_energy_books_balance_with_hourly_bins() -> None:
    arrival, work = _poisson(1, 2000, 0.5)
    svc = ConstService(step_s=2.0, prefill_s=0.5)
    _, stats = _run(PoolConfig(replicas=2, max_batch=4, hour_s=600.0), svc, _jobs(arrival, work))
    assert sum(stats.hourly_energy_j) == pytest.approx(stats.energy_j, rel=1e-9)
    idle_floor = 2 * 10.0 * stats.horizon_s
    assert stats.energy_j > idle_floor


def test_rejects_bad_config_and_unsorted_arrivals() -> None:
    with pytest.raises(InvalidArgumentError):
        PoolConfig(replicas=0)
    engine = PoolEngine(PoolConfig(replicas=1), ConstService(), lambda c: None)
    engine.feed(_jobs(np.array([5.0]), np.ones(1)))
    with pytest.raises(InvalidArgumentError, match="earlier"):
        engine.feed(_jobs(np.array([1.0]), np.ones(1)))
    with pytest.raises(InvalidArgumentError, match="max_batch"):
        PoolEngine(PoolConfig(replicas=1), ConstService(), lambda c: None).feed(
            _jobs(np.zeros(1), np.ones(1), 2)
        )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    replicas=st.integers(1, 4),
    max_batch=st.integers(1, 8),
    slots=st.integers(1, 3),
    rounds=st.integers(1, 3),
)
def test_every_request_completes_in_causal_order(
    seed: int, replicas: int, max_batch: int, slots: int, rounds: int
) -> None:
    slots = min(slots, max_batch)
    rng = np.random.default_rng(seed)
    n = 200
    arrival = np.cumsum(rng.exponential(0.3, n))
    work = rng.integers(1, 50, n).astype(float)
    done, stats = _run(
        PoolConfig(replicas=replicas, max_batch=max_batch),
        ConstService(0.02, 0.05),
        _jobs(arrival, work, slots, rounds),
    )
    assert stats.completed == n
    assert np.all(done.start_s >= done.arrival_s - 1e-9)
    assert np.all(done.first_token_s > done.start_s)
    assert np.all(done.done_s >= done.first_token_s - 1e-9)
    np.testing.assert_allclose(done.tokens, work * rounds)
