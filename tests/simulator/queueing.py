"""Reference queueing results for the engine tests: Erlang C and the exact FCFS multi-server recursion."""

from __future__ import annotations

import heapq
import math

import numpy as np


class ConstService:
    """A service model with a batch-independent decode step and a fixed prefill (satisfies ServiceModel)."""

    def __init__(
        self, step_s: float = 1.0, prefill_s: float = 0.0, busy_w: float = 100.0, idle_w: float = 10.0
    ):
        self.step, self.pre, self.busy_w, self.idle_w = step_s, prefill_s, busy_w, idle_w

    def decode_step_s(self, batch: np.ndarray) -> np.ndarray:
        return np.full(np.shape(batch), self.step, dtype=float)

    def prefill_s(self, tokens: np.ndarray) -> np.ndarray:
        return np.full(np.shape(tokens), self.pre, dtype=float)

    def power_w(self, batch: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(batch) > 0, self.busy_w, self.idle_w).astype(float)

    @property
    def prefill_power_w(self) -> float:
        return self.busy_w


def erlang_c_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of an M/M/c queue (Erlang C)."""
    a = lam / mu
    rho = a / c
    below = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1.0 - rho)
    return top / (below + top) / (c * mu - lam)


def fcfs_waits(arrival: np.ndarray, service: np.ndarray, c: int) -> np.ndarray:
    """Exact waits of a FCFS c-server queue (Kiefer-Wolfowitz recursion on server free times)."""
    free = [0.0] * c
    out = np.empty(len(arrival))
    for i, (a, s) in enumerate(zip(arrival.tolist(), service.tolist(), strict=True)):
        f = heapq.heappop(free)
        start = max(a, f)
        out[i] = start - a
        heapq.heappush(free, start + s)
    return out
