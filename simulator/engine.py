"""The discrete-event core: one replica pool with a shared FCFS queue and iteration-level continuous batching.

Design (why not SimPy): a SimPy process per request costs about 13-16 us of CPU per request even for a plain
M/M/c queue (bench/sim_queueing.py; this engine: 7-9 us), and continuous batching in SimPy would need an event
per decode iteration, i.e. hundreds per request. Instead each replica keeps a *virtual token clock* V: all
sequences in its batch advance one decode step per iteration, so a sequence admitted at V0 with n tokens to
go finishes when V reaches V0 + n. Between events the batch is constant, so V advances at 1 / step(b) tokens
per second, where step(b) is the decode-iteration time at batch b from the service model. Events are only
arrivals and completions (a heap of finish marks per replica, a heap of next-completion times across
replicas with lazy invalidation), so the cost per request is O(log batch) of plain Python, independent of
the token count.

Admission: a request needs `slots` free batch slots (N parallel samples occupy N slots); prefill of its prompt
stalls the replica's decode for `prefill_s(input_tokens)` (prefill-prioritised scheduling, as vLLM's default).
`rounds` > 1 (revisions, search depth) re-prefills the grown context and decodes again, keeping its slots.
With `max_batch = 1`, zero prefill and a batch-independent step, the pool is exactly an FCFS M/G/c queue.

Results stream out through a sink in fixed-size blocks: nothing is kept per request once it completes.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from planner.errors import InvalidArgumentError

INF = float("inf")


class ServiceModel(Protocol):
    """Per-replica service times and power of one (tier, target, devices) pool."""

    def decode_step_s(self, batch: np.ndarray) -> np.ndarray:
        """Seconds per decode iteration at each batch size (sequences in flight, >= 1)."""
        ...

    def prefill_s(self, tokens: np.ndarray) -> np.ndarray:
        """Seconds to prefill prompts of these token counts."""
        ...

    def power_w(self, batch: np.ndarray) -> np.ndarray:
        """Replica power draw in watts while decoding at each batch size (batch 0 = idle)."""
        ...

    @property
    def prefill_power_w(self) -> float: ...


@dataclass(frozen=True)
class PoolConfig:
    """Replicas, batch slots per replica and the admission limit of one pool."""

    replicas: int
    max_batch: int = 1
    max_queue: int | None = None
    hour_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise InvalidArgumentError.for_field("replicas", self.replicas, "must be >= 1")
        if self.max_batch < 1:
            raise InvalidArgumentError.for_field("max_batch", self.max_batch, "must be >= 1")
        if self.max_queue is not None and self.max_queue < 0:
            raise InvalidArgumentError.for_field("max_queue", self.max_queue, "must be >= 0")


@dataclass(frozen=True)
class Jobs:
    """Requests routed to one pool, sorted by arrival. `work` is decode tokens per sample per round."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    work: np.ndarray
    slots: np.ndarray
    rounds: np.ndarray
    tenant: np.ndarray
    group: np.ndarray
    quality: np.ndarray


@dataclass(frozen=True)
class Completions:
    """A block of finished requests: times (s) and attributes, as arrays."""

    arrival_s: np.ndarray
    start_s: np.ndarray
    first_token_s: np.ndarray
    done_s: np.ndarray
    tokens: np.ndarray
    slots: np.ndarray
    tenant: np.ndarray
    group: np.ndarray
    quality: np.ndarray


@dataclass
class PoolStats:
    """Running totals of a pool (fixed size)."""

    energy_j: float = 0.0
    busy_s: float = 0.0
    slot_s: float = 0.0
    rejected: int = 0
    completed: int = 0
    max_queue_len: int = 0
    horizon_s: float = 0.0
    hourly_energy_j: list[float] = field(default_factory=list)


_FIELDS = ("arrival", "start", "first", "done", "tokens", "slots", "tenant", "group", "quality")


class PoolEngine:
    """Feed jobs in arrival order with `feed`, then `finish`. Completed and rejected requests go to the
    sinks."""

    def __init__(
        self,
        config: PoolConfig,
        service: ServiceModel,
        sink: Callable[[Completions], None],
        reject_sink: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
        block: int = 65_536,
    ) -> None:
        self.cfg = config
        self.service = service
        self.sink = sink
        self.reject_sink = reject_sink
        self.block = block
        b = np.arange(config.max_batch + 1)
        steps = np.asarray(service.decode_step_s(np.maximum(b, 1)), float)
        if np.any(~np.isfinite(steps)) or np.any(steps <= 0):
            raise InvalidArgumentError.for_field(
                "decode_step_s", steps.tolist()[:4], "must be finite and > 0"
            )
        self.step = steps.tolist()
        self.power = np.asarray(service.power_w(b), float).tolist()
        self.prefill_power = float(service.prefill_power_w)
        r = config.replicas
        self.V = [0.0] * r
        self.t = [0.0] * r
        self.b = [0] * r
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(r)]
        self.version = [0] * r
        self.events: list[tuple[float, int, int]] = []
        self.queue: deque[int] = deque()
        self.jobs: dict[int, list[float]] = {}
        self.next_id = 0
        self.now = 0.0
        self.stats = PoolStats()
        self.out: dict[str, list[float]] = {k: [] for k in _FIELDS}
        self.rej: dict[str, list[float]] = {"arrival": [], "tenant": [], "group": []}

    # ---- public ------------------------------------------------------------------------------------------
    def feed(self, jobs: Jobs) -> None:
        n = len(jobs.arrival_s)
        if n == 0:
            return
        pre = np.asarray(self.service.prefill_s(jobs.input_tokens), float)
        pre_next = np.asarray(self.service.prefill_s(jobs.input_tokens + jobs.work), float)
        cols = zip(
            jobs.arrival_s.tolist(),
            jobs.work.tolist(),
            jobs.slots.tolist(),
            jobs.rounds.tolist(),
            pre.tolist(),
            pre_next.tolist(),
            jobs.tenant.tolist(),
            jobs.group.tolist(),
            jobs.quality.tolist(),
            strict=True,
        )
        events, complete, arrive = self.events, self._complete, self._arrive
        for row in cols:
            ta = row[0]
            if ta < self.now:
                raise InvalidArgumentError.for_field(
                    "arrival_s", ta, f"earlier than the pool clock {self.now}"
                )
            while events and events[0][0] <= ta:
                complete()
            self.now = ta
            arrive(list(row))
        self._flush(force=False)

    def finish(self) -> PoolStats:
        """Run until every admitted request is done, close the energy books and flush everything."""
        while self.events:
            self._complete()
        end = max([self.now, *self.t])
        for r in range(self.cfg.replicas):
            self._advance(r, end)
        self.stats.horizon_s = end
        self._flush(force=True)
        return self.stats

    # ---- events ------------------------------------------------------------------------------------------
    def _arrive(self, job: list[float]) -> None:
        # job: arrival, work, slots, rounds_left, prefill, prefill_next, tenant, group, quality,
        # then appended: rounds (9), start (10), first token (11)
        job.append(job[3])
        jid = self.next_id
        self.next_id += 1
        slots = int(job[2])
        if slots > self.cfg.max_batch:
            raise InvalidArgumentError.for_field("slots", slots, f"exceeds max_batch {self.cfg.max_batch}")
        if not self.queue:
            b = self.b
            r = min(range(len(b)), key=b.__getitem__)
            if b[r] + slots <= self.cfg.max_batch:
                self.jobs[jid] = job
                self._admit(r, jid, job[0])
                self._schedule(r)
                return
        if self.cfg.max_queue is not None and len(self.queue) >= self.cfg.max_queue:
            self.stats.rejected += 1
            rej = self.rej
            rej["arrival"].append(job[0])
            rej["tenant"].append(job[6])
            rej["group"].append(job[7])
            return
        self.jobs[jid] = job
        self.queue.append(jid)
        if len(self.queue) > self.stats.max_queue_len:
            self.stats.max_queue_len = len(self.queue)

    def _admit(self, r: int, jid: int, now: float) -> None:
        job = self.jobs[jid]
        self._advance(r, now)
        start = self.t[r]
        p = job[4]
        self.t[r] = start + p
        self._prefill_energy(start, p)
        self.b[r] += int(job[2])
        job.append(start)
        job.append(self.t[r] + self.step[self.b[r]])
        heapq.heappush(self.heaps[r], (self.V[r] + job[1], jid))

    def _complete(self) -> None:
        tc, r, ver = heapq.heappop(self.events)
        if ver != self.version[r]:
            return
        self._advance(r, tc)
        heap = self.heaps[r]
        fv, jid = heapq.heappop(heap)
        self.V[r] = max(self.V[r], fv)
        self._done(r, jid, tc)
        eps = 1e-9 * max(1.0, self.V[r])
        while heap and heap[0][0] <= self.V[r] + eps:
            self._done(r, heapq.heappop(heap)[1], tc)
        queue, b, cap = self.queue, self.b, self.cfg.max_batch
        while queue and b[r] + int(self.jobs[queue[0]][2]) <= cap:
            self._admit(r, queue.popleft(), tc)
        self._schedule(r)

    def _done(self, r: int, jid: int, tc: float) -> None:
        job = self.jobs[jid]
        if job[3] > 1:  # another serial round: re-prefill the grown context, keep the slots
            job[3] -= 1
            p = job[5]
            self._prefill_energy(self.t[r], p)
            self.t[r] += p
            heapq.heappush(self.heaps[r], (self.V[r] + job[1], jid))
            return
        del self.jobs[jid]
        slots = int(job[2])
        self.b[r] -= slots
        self.stats.completed += 1
        out = self.out
        out["arrival"].append(job[0])
        out["start"].append(job[10])
        out["first"].append(job[11])
        out["done"].append(tc)
        out["tokens"].append(job[1] * job[9])
        out["slots"].append(slots)
        out["tenant"].append(job[6])
        out["group"].append(job[7])
        out["quality"].append(job[8])
        self.stats.slot_s += slots * (tc - job[10])
        if len(out["done"]) >= self.block:
            self._flush(force=True)

    def _advance(self, r: int, now: float) -> None:
        t = self.t[r]
        if now <= t:
            return
        b = self.b[r]
        dt = now - t
        if b:
            self.V[r] += dt / self.step[b]
            self.stats.busy_s += dt
        e = dt * self.power[b]
        self.stats.energy_j += e
        self._hourly(t, now, e)
        self.t[r] = now

    def _prefill_energy(self, t0: float, p: float) -> None:
        if p <= 0:
            return
        e = p * self.prefill_power
        self.stats.energy_j += e
        self.stats.busy_s += p
        self._hourly(t0, t0 + p, e)

    def _hourly(self, t0: float, t1: float, e: float) -> None:
        h = self.stats.hourly_energy_j
        hs = self.cfg.hour_s
        i0, i1 = int(t0 // hs), int(t1 // hs)
        if i1 >= len(h):
            h.extend([0.0] * (i1 + 1 - len(h)))
        if i0 == i1:
            h[i0] += e
            return
        rate = e / (t1 - t0)
        h[i0] += rate * ((i0 + 1) * hs - t0)
        for i in range(i0 + 1, i1):
            h[i] += rate * hs
        h[i1] += rate * (t1 - i1 * hs)

    def _schedule(self, r: int) -> None:
        self.version[r] += 1
        heap = self.heaps[r]
        if heap:
            tn = self.t[r] + (heap[0][0] - self.V[r]) * self.step[self.b[r]]
            heapq.heappush(self.events, (tn, r, self.version[r]))

    # ---- output ------------------------------------------------------------------------------------------
    def _flush(self, force: bool) -> None:
        out = self.out
        if out["done"] and (force or len(out["done"]) >= self.block):
            a = {k: np.asarray(v, float) for k, v in out.items()}
            self.sink(
                Completions(
                    a["arrival"],
                    a["start"],
                    a["first"],
                    a["done"],
                    a["tokens"],
                    a["slots"],
                    a["tenant"].astype(np.int64),
                    a["group"].astype(np.int64),
                    a["quality"],
                )
            )
            for v in out.values():
                v.clear()
        rej = self.rej
        if rej["arrival"] and self.reject_sink is not None:
            self.reject_sink(
                np.asarray(rej["arrival"]),
                np.asarray(rej["tenant"], np.int64),
                np.asarray(rej["group"], np.int64),
            )
        for v in rej.values():
            v.clear()
