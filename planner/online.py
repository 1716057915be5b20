"""`OnlineRouter`: one replica's online decision path (Route / RouteBatch without the gRPC layer).

forecast -> fast pricing (`planner.router.FastPricer`) -> guard rails (`planner.governance`, enforced) ->
shadow prices of the tenant's period budget (`planner.pacing`) -> argmax -> escalation cap -> charge the
local lease (reserved in the ledger beforehand, so the hard cap holds across replicas) -> explanation
(`planner.decision`) -> audit record queued for the background writer. No database round trip on the path
except a lease top-up when the local lease cannot cover a decision (normally topped up in the background
before that happens).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.api import Forecaster, Query
from planner.catalog import Catalog, Tenant
from planner.decision import BatchView, Decision, DecisionContext, make_decisions
from planner.errors import BudgetExhaustedError, InfeasibleError, InvalidArgumentError
from planner.governance import (
    AuditWriter,
    GuardRails,
    combine,
    dynamic_masks,
    empty_reason,
    static_masks,
)
from planner.options import OptionArrays, OptionSet
from planner.pacing import (
    Budget,
    LedgerLike,
    Pacer,
    PacerBook,
    PacingConfig,
    release_unused,
    reserve_lease,
)
from planner.router import FastPricer, ShadowPrices, best, choose

MAINTAIN_EVERY = 8
"""Background lease upkeep runs every this many `route` calls (a lease covers hundreds of decisions, and a
decision its lease cannot cover tops it up synchronously), and whenever a period has rolled over."""


@dataclass(frozen=True)
class CallOptions:
    """Per-call settings of Route / RouteBatch."""

    rails: GuardRails = field(default_factory=GuardRails)
    budget: Budget | None = None
    """Overrides the tenant's budget (None: the tenant's catalog budget)."""
    dry_run: bool = False
    fallback: bool = False
    """The deadline is too close to decide properly: take the cheapest allowed option."""


def _now() -> datetime:
    return datetime.now(UTC)


class OnlineRouter:
    """Routes queries for one server replica (see module docstring). Owned by one event loop."""

    def __init__(
        self,
        catalog: Catalog,
        options: OptionSet,
        forecaster: Forecaster,
        ledger: LedgerLike,
        audit: AuditWriter | None = None,
        *,
        predictor_version: str = "",
        catalog_version: str = "",
        config: PacingConfig | None = None,
        clock: Callable[[], datetime] = _now,
        executor: Executor | None = None,
    ) -> None:
        self.catalog, self.options, self.forecaster = catalog, options, forecaster
        self.ledger, self.audit = ledger, audit
        self.predictor_version = predictor_version
        self.catalog_version = catalog_version or catalog.content_hash()
        self.pricer = FastPricer(options)
        self.book = PacerBook(len(options), config)
        self.clock, self.executor = clock, executor
        self._tenants = {t.name: t for t in catalog.tenants}
        self._static: dict[GuardRails, tuple[dict[str, np.ndarray], np.ndarray]] = {}
        self._rails: dict[tuple[str, GuardRails], GuardRails] = {}
        self._refills: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._id_prefix = os.urandom(8).hex()  # random per replica: ids stay unique across replicas
        self._ids = itertools.count()
        self._since_maintain = MAINTAIN_EVERY  # the first call looks after the leases

    # ---- public -------------------------------------------------------------------------------------------
    async def route(self, queries: Sequence[Query], call: CallOptions | None = None) -> list[Decision]:
        """Decide every query (in order). Raises InvalidArgumentError (unknown tenant), InfeasibleError (no
        option passes the guard rails) or BudgetExhaustedError (the tenant's cap is reached)."""
        call = call or CallOptions()
        if not queries:
            return []
        now = self.clock()
        arrays = self.pricer.price(self.forecaster.forecast(queries))
        input_tokens = np.array([q.input_tokens for q in queries], float)
        tenants = [q.tenant or "default" for q in queries]
        names = dict.fromkeys(tenants)
        if len(names) == 1:  # one tenant (the usual case): no regrouping
            decisions = await self._route_tenant(tenants[0], list(queries), arrays, input_tokens, call, now)
        else:
            out: list[Decision | None] = [None] * len(queries)
            for tenant in names:
                rows = np.array([i for i, t in enumerate(tenants) if t == tenant], np.intp)
                decided = await self._route_tenant(
                    tenant, [queries[i] for i in rows], arrays.take(rows), input_tokens[rows], call, now
                )
                for i, d in zip(rows, decided, strict=True):
                    out[i] = d
            decisions = [d for d in out if d is not None]
        if self.audit is not None and not call.dry_run:
            self.audit.submit(decisions)  # `Decision.to_record` runs on the audit writer's thread
        self._maintain()
        return decisions

    async def aclose(self, close_audit: bool = True) -> None:
        """Wait for background lease top-ups, give unused leases back, stop the audit writer (flushes) unless
        it is shared with a successor router (`close_audit=False`)."""
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        pacers = self.book.all() + self.book.take_retired()
        await asyncio.get_running_loop().run_in_executor(self.executor, release_unused, self.ledger, pacers)
        if self.audit is not None and close_audit:
            self.audit.close()

    def close(self) -> None:
        """Synchronous shutdown (no running loop): give leases back and flush the audit log."""
        release_unused(self.ledger, self.book.all() + self.book.take_retired())
        if self.audit is not None:
            self.audit.close()

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"

    # ---- steps --------------------------------------------------------------------------------------------
    def tenant(self, name: str) -> Tenant | None:
        if not self._tenants:
            return None
        t = self._tenants.get(name)
        if t is None:
            raise InvalidArgumentError.for_field(
                "query.tenant", name, f"unknown tenant; the catalog has {sorted(self._tenants)}"
            )
        return t

    def _masks(
        self, rails: GuardRails, arrays: OptionArrays, inp: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-rail masks and the allowed mask (n, n_options); the option-only rails are cached per rails."""
        cached = self._static.get(rails)
        if cached is None:
            static = static_masks(rails, self.options)
            cached = (static, combine(static.values(), (1, len(self.options))))
            if len(self._static) > 256:
                self._static.clear()
            self._static[rails] = cached
        static, static_ok = cached
        dynamic = dynamic_masks(rails, arrays, inp)
        if not dynamic:
            return {**static}, np.repeat(static_ok, arrays.shape[0], axis=0)
        allowed = static_ok & next(iter(dynamic.values()))
        for m in itertools.islice(dynamic.values(), 1, None):
            allowed &= m
        return {**static, **dynamic}, allowed

    async def _route_tenant(
        self,
        tenant: str,
        queries: list[Query],
        arrays: OptionArrays,
        inp: np.ndarray,
        call: CallOptions,
        now: datetime,
    ) -> list[Decision]:
        t = self.tenant(tenant)
        rails = self._rails.get((tenant, call.rails))
        if rails is None:
            base = GuardRails.from_tenant(t) if t is not None else GuardRails()
            rails = base.stricter(call.rails)
            if len(self._rails) > 1024:
                self._rails.clear()
            self._rails[(tenant, call.rails)] = rails
        budget = call.budget or (Budget.from_tenant(t) if t is not None else Budget())
        masks, allowed = self._masks(rails, arrays, inp)
        some = allowed.any(axis=1)
        if not some.all():
            row = int(np.argmin(some))
            raise InfeasibleError(
                f"query {queries[row].query_id!r}: no option passes the guard rails "
                f"({', '.join(v.field for v in empty_reason(masks, row))})"
            )
        final_allowed = self._within_threshold(rails, arrays, allowed)
        pacer = self.book.get(tenant, budget, now)
        # The reservoir includes this batch, so even a first batch is priced against the allowance.
        pacer.observe(arrays.quality, arrays.usd, arrays.energy_j, final_allowed, now)
        prices = ShadowPrices() if call.fallback else pacer.prices
        if call.fallback:
            cheap = np.where(allowed, arrays.usd, np.inf)
            pick = allowed & (cheap <= cheap.min(axis=1, keepdims=True))
            choice = choose(arrays, pick, ShadowPrices(), self.pricer.group)
            preferred = choice.chosen
        else:
            choice = choose(arrays, final_allowed, prices, self.pricer.group)
            preferred = best(arrays, allowed, prices) if final_allowed is not allowed else choice.chosen
        rows = np.arange(len(queries))
        escalated = np.zeros(len(queries), bool)
        if rails.escalate_above_usd > 0:
            escalated = arrays.usd[rows, preferred] > rails.escalate_above_usd
        chosen = choice.chosen.copy()
        capped = np.zeros(len(queries), bool)
        if not call.dry_run:
            await self._charge(pacer, arrays, final_allowed, chosen, capped)
        view = BatchView(arrays, choice, chosen, preferred, escalated, capped)
        ctx = DecisionContext(
            tenant, budget, rails, self.options, call.dry_run, call.fallback, self._next_id,
            self.predictor_version, self.catalog_version, now,
        )  # fmt: skip
        return make_decisions(queries, view, ctx, masks, prices)

    @staticmethod
    def _within_threshold(rails: GuardRails, arrays: OptionArrays, allowed: np.ndarray) -> np.ndarray:
        """The allowed options within the escalation threshold (rows with none keep all theirs: their choice
        is flagged as escalated, not capped). Choosing among these equals choosing freely and capping the
        rows whose choice is above the threshold."""
        if rails.escalate_above_usd <= 0:
            return allowed
        within = allowed & (arrays.usd <= rails.escalate_above_usd)
        return np.where(within.any(axis=1, keepdims=True), within, allowed)

    async def _charge(
        self, pacer: Pacer, arrays: OptionArrays, allowed: np.ndarray, chosen: np.ndarray, capped: np.ndarray
    ) -> None:
        """Charge every chosen option to the lease (topping it up first when needed); rows no lease covers
        fall back to the best option that fits, and if none fits the whole batch is refunded and refused."""
        rows = np.arange(len(chosen))
        usd: list[float] = arrays.usd[rows, chosen].tolist()
        joules: list[float] = arrays.energy_j[rows, chosen].tolist()
        if not pacer.covers(sum(usd), sum(joules)):
            await self._refill(pacer, sum(usd), sum(joules))
        charged: list[tuple[float, float]] = []
        for i, (u, j) in enumerate(zip(usd, joules, strict=True)):
            ok = pacer.charge(u, j)
            if not ok:
                await self._refill(pacer, u, j)
                ok = pacer.charge(u, j)
            if not ok:
                alt = self._affordable(pacer, arrays, allowed, i)
                if alt < 0:
                    for cu, cj in charged:
                        pacer.refund(cu, cj)
                    raise BudgetExhaustedError(
                        f"tenant {pacer.tenant!r}: the {pacer.budget.period} budget "
                        f"(${pacer.budget.spend_usd:g}, {pacer.budget.energy_kwh:g} kWh) of {pacer.key} "
                        "cannot cover even the cheapest allowed option"
                    )
                chosen[i], capped[i] = alt, True
                u, j = float(arrays.usd[i, alt]), float(arrays.energy_j[i, alt])
                pacer.charge(u, j)
            charged.append((u, j))

    def _affordable(self, pacer: Pacer, arrays: OptionArrays, allowed: np.ndarray, i: int) -> int:
        fits = allowed[i].copy()
        if pacer.budget.cap_usd is not None:
            fits &= arrays.usd[i] <= pacer.lease_usd
        if pacer.budget.cap_energy_j is not None:
            fits &= arrays.energy_j[i] <= pacer.lease_energy_j
        if not fits.any():
            return -1
        return int(choose(arrays.take(slice(i, i + 1)), fits, pacer.prices).chosen[0])

    async def _refill(self, pacer: Pacer, need_usd: float, need_j: float) -> None:
        """Top the lease up from the ledger until it covers the need (or the ledger has nothing left)."""
        for _ in range(2):  # the first wait may be on a background top-up sized before this need
            await asyncio.shield(self._start_refill(pacer, need_usd, need_j))
            if pacer.covers(need_usd, need_j):
                return

    def _start_refill(self, pacer: Pacer, need_usd: float, need_j: float) -> asyncio.Task[None]:
        """The pacer's top-up in flight, or a new one (at most one per pacer at a time)."""
        key = id(pacer)
        task = self._refills.get(key)
        if task is None or task.done():
            want_usd, want_j = pacer.wanted(need_usd, need_j)
            task = asyncio.ensure_future(self._top_up(pacer, want_usd, want_j))
            self._refills[key] = task
            task.add_done_callback(lambda t: self._refills.pop(key) if self._refills.get(key) is t else None)
        return task

    async def _top_up(self, pacer: Pacer, want_usd: float, want_j: float) -> None:
        loop = asyncio.get_running_loop()
        grant = await loop.run_in_executor(
            self.executor, reserve_lease, self.ledger, pacer.tenant, pacer.key, want_usd, want_j,
            pacer.budget.cap_usd, pacer.budget.cap_energy_j,
        )  # fmt: skip
        pacer.apply(grant)

    def _maintain(self) -> None:
        """Start background top-ups of low leases and give back leases of ended periods."""
        self._since_maintain += 1
        if self._since_maintain < MAINTAIN_EVERY and not self.book.retired:
            return
        self._since_maintain = 0
        for pacer in self.book.all():
            if id(pacer) not in self._refills and pacer.low():
                self._spawn(self._start_refill(pacer, 0.0, 0.0))
        retired = self.book.take_retired()
        if retired:
            loop = asyncio.get_running_loop()
            self._spawn(loop.run_in_executor(self.executor, release_unused, self.ledger, retired))

    def _spawn(self, aw: Any) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
