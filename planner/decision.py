"""Routing decisions and their explanations: `Decision` (what Route returns and the audit log stores), the
chosen options' figures of a decided batch (`BatchView`), and the explanation of each decision -- the binding
constraint and its shadow price, the quality gain per extra dollar up the frontier and versus the runner-up,
the runner-up itself, high-compute and escalation flags (`make_decisions`). Pure: no I/O, no pacing state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from models.api import Query
from planner.governance import Explanation, GuardRails, blocking_rail, summarise
from planner.options import Option, OptionArrays, OptionSet
from planner.pacing import Budget
from planner.router import ShadowPrices
from planner.store.audit import DecisionRecord

QUALITY_TOL = 1e-9


@dataclass(frozen=True)
class Decision:
    """One routing decision (mirrors `planner.v1.Decision`)."""

    decision_id: str
    query_id: str
    tenant: str
    option: Option
    expected_quality: float
    usd: float
    usd_p90: float
    latency_s: float
    latency_p90_s: float
    ttft_s: float
    energy_j: float
    explanation: Explanation
    predictor_version: str
    catalog_version: str
    decided_at: datetime

    def to_record(self) -> DecisionRecord:
        """The audit record of this decision (built on the audit writer's thread)."""
        exp = self.explanation.to_dict()
        exp.update(cost_usd_p90=self.usd_p90, latency_p90_s=self.latency_p90_s, energy_j=self.energy_j)
        return DecisionRecord(
            request_id=self.decision_id,
            tenant=self.tenant,
            query_id=self.query_id,
            tier=self.option.tier,
            strategy=self.option.strategy,
            target=self.option.target,
            expected_quality=self.expected_quality,
            expected_cost_usd=self.usd,
            explanation=exp,
            catalog_version=self.catalog_version,
            predictor_version=self.predictor_version,
            created_at=self.decided_at,
        )


@dataclass(frozen=True)
class DecisionContext:
    """What every decision of one tenant's batch shares."""

    tenant: str
    budget: Budget
    rails: GuardRails
    options: OptionSet
    dry_run: bool
    fallback: bool
    next_id: Callable[[], str]
    predictor_version: str
    catalog_version: str
    now: datetime


def make_decisions(
    queries: Sequence[Query],
    v: BatchView,
    ctx: DecisionContext,
    masks: dict[str, np.ndarray],
    prices: ShadowPrices,
) -> list[Decision]:
    """One explained `Decision` per query of a decided batch."""
    tenant, budget, rails = ctx.tenant, ctx.budget, ctx.rails
    kinds = bindings(tenant, budget, masks, v, prices)
    extra = {
        "shadow_price_usd": prices.usd,
        "shadow_price_kwh": prices.energy_kwh,
        "dry_run": ctx.dry_run,
        "period": budget.period,
    }
    opts = ctx.options.options
    out = []
    for i, q in enumerate(queries):
        c, r = v.c[i], v.r[i]
        opt, runner = opts[c], (opts[r] if r >= 0 else None)
        qual, usd, rq, ru = v.qual[i], v.usd[i], v.rq[i], v.ru[i]
        du = usd - ru
        reason = escalation_reason(ctx.options, v, i, rails) if v.escalated[i] else ""
        kind, name, price = kinds[i]
        fields: dict[str, Any] = dict(
            binding_constraint=name,
            binding_kind=kind,
            shadow_price=price,
            quality_gain_per_usd=v.gain[i],
            gain_vs_runner_up_per_usd=(qual - rq) / du if runner is not None and abs(du) > 1e-15 else 0.0,
            runner_up=(runner.tier, runner.strategy, runner.target) if runner is not None else None,
            runner_up_quality=rq,
            runner_up_cost_usd=ru,
            high_compute=opt.high_compute,
            escalated=v.escalated[i],
            escalation_reason=reason,
            deadline_fallback=ctx.fallback,
            extra={"samples": opt.samples, **extra},
        )
        fields["summary"] = summarise(opt.label(), qual, usd, fields)
        out.append(
            Decision(
                decision_id=ctx.next_id(),
                query_id=q.query_id,
                tenant=tenant,
                option=opt,
                expected_quality=qual,
                usd=usd,
                usd_p90=v.usd_p90[i],
                latency_s=v.lat[i],
                latency_p90_s=v.lat_p90[i],
                ttft_s=v.ttft[i],
                energy_j=v.energy[i],
                explanation=Explanation(**fields),
                predictor_version=ctx.predictor_version,
                catalog_version=ctx.catalog_version,
                decided_at=ctx.now,
            )
        )
    return out


def escalation_reason(options: OptionSet, v: BatchView, i: int, rails: GuardRails) -> str:
    """Why query i's decision needs approval (its preferred option is above the escalation threshold)."""
    p = int(v.preferred[i])
    pref = options.options[p]
    verdict = (
        "capped to the best option within the threshold; the preferred one needs approval"
        if p != v.c[i]
        else "no allowed option is within the threshold; needs approval"
    )
    return (
        f"preferred {pref.label()} expects ${float(v.arrays.usd[i, p]):.5f} > escalate_above_usd "
        f"${rails.escalate_above_usd:g}: {verdict}"
    )


def bindings(
    tenant: str, budget: Budget, masks: dict[str, np.ndarray], v: BatchView, prices: ShadowPrices
) -> list[tuple[str, str, float]]:
    """(kind, constraint name, shadow price) per query: what kept it from a better option."""
    a = v.arrays
    tops: list[int] = v.choice.top_quality.tolist()
    is_priced = prices.usd > 0 or prices.energy_kwh > 0
    spend = f"tenant:{tenant}:spend_usd/{budget.period}"
    energy = f"tenant:{tenant}:energy_kwh/{budget.period}"
    out: list[tuple[str, str, float]] = []
    for i, (c, top) in enumerate(zip(v.c, tops, strict=True)):
        q = a.quality[i]
        q_top = float(q[top])
        if v.capped[i]:
            out.append(("spend", spend + " (hard cap)", prices.usd))
        elif is_priced and float(q[c]) < q_top - QUALITY_TOL:
            by_usd = prices.usd * float(a.usd[i, top] - a.usd[i, c])
            by_kwh = prices.energy_kwh * float(a.energy_j[i, top] - a.energy_j[i, c]) / 3.6e6
            out.append(
                ("energy", energy, prices.energy_kwh) if by_kwh > by_usd else ("spend", spend, prices.usd)
            )
        elif v.escalated[i]:
            out.append(("guard_rail", "escalation.escalate_above_usd", 0.0))
        elif q_top < float(q.max()) - QUALITY_TOL:
            rail = blocking_rail(masks, i, int(np.argmax(q - 1e-6 * a.usd[i])))
            kind = "latency" if rail in ("max_latency_s", "max_latency_p99_s", "max_ttft_s") else "guard_rail"
            out.append((kind, f"guard_rails.{rail}", 0.0) if rail else ("none", "", 0.0))
        else:
            out.append(("none", "", 0.0))
    return out


class BatchView:
    """The chosen options' figures of a decided batch as Python lists (one gather per array)."""

    def __init__(
        self,
        arrays: OptionArrays,
        choice: Any,
        chosen: np.ndarray,
        preferred: np.ndarray,
        escalated: np.ndarray,
        capped: np.ndarray,
    ) -> None:
        runner = choice.runner_up
        self.arrays, self.choice, self.preferred = arrays, choice, preferred
        self.c: list[int] = chosen.tolist()
        self.r: list[int] = runner.tolist()
        if len(self.c) <= 8:  # a few scalar reads beat a dozen fancy-indexing calls
            pairs = list(enumerate(self.c))
            q, u = arrays.quality, arrays.usd
            self.qual = [float(q[i, c]) for i, c in pairs]
            self.usd = [float(u[i, c]) for i, c in pairs]
            self.usd_p90 = [float(arrays.usd_p90[i, c]) for i, c in pairs]
            self.lat = [float(arrays.latency_s[i, c]) for i, c in pairs]
            self.lat_p90 = [float(arrays.latency_p90_s[i, c]) for i, c in pairs]
            self.ttft = [float(arrays.ttft_s[i, c]) for i, c in pairs]
            self.energy = [float(arrays.energy_j[i, c]) for i, c in pairs]
            self.rq = [float(q[i, r]) if r >= 0 else 0.0 for i, r in enumerate(self.r)]
            self.ru = [float(u[i, r]) if r >= 0 else 0.0 for i, r in enumerate(self.r)]
            orig = choice.chosen.tolist()
            gains = choice.gain_per_usd.tolist()
            self.gain = [g if c == o else 0.0 for g, c, o in zip(gains, self.c, orig, strict=True)]
        else:
            rows = np.arange(len(chosen))
            has = runner >= 0
            safe = np.where(has, runner, 0)
            self.qual = arrays.quality[rows, chosen].tolist()
            self.usd = arrays.usd[rows, chosen].tolist()
            self.usd_p90 = arrays.usd_p90[rows, chosen].tolist()
            self.lat = arrays.latency_s[rows, chosen].tolist()
            self.lat_p90 = arrays.latency_p90_s[rows, chosen].tolist()
            self.ttft = arrays.ttft_s[rows, chosen].tolist()
            self.energy = arrays.energy_j[rows, chosen].tolist()
            self.rq = np.where(has, arrays.quality[rows, safe], 0.0).tolist()
            self.ru = np.where(has, arrays.usd[rows, safe], 0.0).tolist()
            self.gain = np.where(chosen == choice.chosen, choice.gain_per_usd, 0.0).tolist()
        self.escalated: list[bool] = escalated.tolist()
        self.capped: list[bool] = capped.tolist()
