"""Governance: guard rails that are enforced (not advisory), escalation, explanations, and the audit writer.

- `GuardRails`: per-query limits (generated tokens, parallel samples, expected spend, p90 latency and TTFT,
  allowed tiers / targets, no high-compute strategies) plus the tenant's escalation threshold. Tenant and
  request rails combine with `stricter` (the tighter of each wins). `allowed_mask` removes every option that
  breaks a rail before the router scores anything, so no decision can cross one.
- Escalation: an option whose expected spend is above `escalate_above_usd` is never chosen silently. The
  router picks the best option within the threshold and marks the decision `escalated` with the preferred
  option in the reason (it needs approval); when no option is within the threshold the cheapest allowed one is
  returned, flagged.
- `Explanation`: chosen option, marginal quality per extra USD up the frontier and versus the runner-up, the
  binding constraint with its shadow price, the runner-up, high-compute flag, escalation, deadline fallback.
- `AuditWriter`: a background thread with a bounded queue writes decisions in batches (one transaction per
  batch) so a call only pays for a queue put; `flush()` waits for what is queued, `close()` drains and stops.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import structlog

from planner.catalog import Tenant
from planner.errors import FieldViolation, InvalidArgumentError
from planner.options import OptionArrays, OptionSet, lognormal_p99
from planner.store.audit import DecisionRecord

log = structlog.get_logger(__name__)

RAILS = (
    "allowed_tiers",
    "allowed_targets",
    "forbid_high_compute",
    "max_samples",
    "max_tokens",
    "max_spend_usd",
    "max_latency_s",
    "max_latency_p99_s",
    "max_ttft_s",
)
"""Guard rails in the order a binding one is reported."""


@dataclass(frozen=True)
class GuardRails:
    """Per-query limits; 0 / None means no limit."""

    max_tokens: int = 0
    max_samples: int = 0
    max_spend_usd: float = 0.0
    max_latency_s: float = 0.0
    """Cap on the forecast p90 end-to-end latency."""
    max_latency_p99_s: float = 0.0
    """Cap on the p99 end-to-end latency, extrapolated from the forecast mean and p90 (log-normal tail)."""
    max_ttft_s: float = 0.0
    allowed_tiers: frozenset[str] | None = None
    allowed_targets: frozenset[str] | None = None
    forbid_high_compute: bool = False
    escalate_above_usd: float = 0.0

    def __post_init__(self) -> None:
        bad = [
            FieldViolation(f"guard_rails.{name}", getattr(self, name), "must be finite and >= 0")
            for name in ("max_tokens", "max_samples", "max_spend_usd", "max_latency_s", "max_latency_p99_s",
                         "max_ttft_s", "escalate_above_usd")
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0)
        ]  # fmt: skip
        if bad:
            raise InvalidArgumentError("invalid guard rails", bad)

    @classmethod
    def from_tenant(cls, tenant: Tenant) -> GuardRails:
        return cls(
            max_tokens=tenant.max_tokens_per_query,
            max_samples=tenant.max_samples_per_query,
            max_spend_usd=tenant.max_spend_per_query_usd,
            max_latency_s=tenant.latency_slo_s,
            escalate_above_usd=tenant.escalate_above_usd,
        )

    def stricter(self, other: GuardRails) -> GuardRails:
        """The tighter of each limit of `self` and `other`."""

        def low(a: float, b: float) -> Any:
            return min(a, b) if a > 0 and b > 0 else max(a, b)

        def both(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
            return b if a is None else a if b is None else a & b

        return GuardRails(
            max_tokens=int(low(self.max_tokens, other.max_tokens)),
            max_samples=int(low(self.max_samples, other.max_samples)),
            max_spend_usd=low(self.max_spend_usd, other.max_spend_usd),
            max_latency_s=low(self.max_latency_s, other.max_latency_s),
            max_latency_p99_s=low(self.max_latency_p99_s, other.max_latency_p99_s),
            max_ttft_s=low(self.max_ttft_s, other.max_ttft_s),
            allowed_tiers=both(self.allowed_tiers, other.allowed_tiers),
            allowed_targets=both(self.allowed_targets, other.allowed_targets),
            forbid_high_compute=self.forbid_high_compute or other.forbid_high_compute,
            escalate_above_usd=low(self.escalate_above_usd, other.escalate_above_usd),
        )

    def without_escalation(self) -> GuardRails:
        return replace(self, escalate_above_usd=0.0)


def static_masks(rails: GuardRails, options: OptionSet) -> dict[str, np.ndarray]:
    """Per-rail masks (n_options,) of the rails that depend only on the option (cacheable per rails)."""
    out: dict[str, np.ndarray] = {}
    if rails.allowed_tiers is not None:
        out["allowed_tiers"] = np.array([o.tier in rails.allowed_tiers for o in options.options])
    if rails.allowed_targets is not None:
        out["allowed_targets"] = np.array([o.target in rails.allowed_targets for o in options.options])
    if rails.forbid_high_compute:
        out["forbid_high_compute"] = ~options.high_compute()
    if rails.max_samples > 0:
        out["max_samples"] = options.samples <= rails.max_samples
    return out


def dynamic_masks(rails: GuardRails, arrays: OptionArrays, input_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Per-rail masks (n, n_options) of the rails that depend on the priced forecast."""
    out: dict[str, np.ndarray] = {}
    if rails.max_tokens > 0:
        generated = arrays.tokens_p90 - np.asarray(input_tokens, float)[:, None]
        out["max_tokens"] = generated <= rails.max_tokens
    if rails.max_spend_usd > 0:
        out["max_spend_usd"] = arrays.usd <= rails.max_spend_usd
    if rails.max_latency_s > 0:
        out["max_latency_s"] = arrays.latency_p90_s <= rails.max_latency_s
    if rails.max_latency_p99_s > 0:
        p99 = lognormal_p99(arrays.latency_s, arrays.latency_p90_s)
        out["max_latency_p99_s"] = p99 <= rails.max_latency_p99_s
    if rails.max_ttft_s > 0:
        out["max_ttft_s"] = arrays.ttft_s <= rails.max_ttft_s
    return out


def combine(masks: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    allowed = np.ones(shape, bool)
    for m in masks:
        allowed &= m
    return allowed


def blocking_rail(masks: dict[str, np.ndarray], row: int, option: int) -> str:
    """The first rail (in `RAILS` order) that excludes `option` for query `row` ('' if none)."""
    for name in RAILS:
        m = masks.get(name)
        if m is not None and not (m[option] if m.ndim == 1 else m[row, option]):
            return name
    return ""


def empty_reason(masks: dict[str, np.ndarray], row: int) -> list[FieldViolation]:
    """Why no option is left for query `row`: the rails that each remove everything, or all of them."""
    killers = [
        n for n in RAILS if n in masks and not np.any(masks[n] if masks[n].ndim == 1 else masks[n][row])
    ]
    names = killers or [n for n in RAILS if n in masks]
    return [FieldViolation(f"guard_rails.{n}", "", "no option satisfies it together with the others")
            for n in names]  # fmt: skip


@dataclass(frozen=True)
class Explanation:
    """Why a decision was made (mirrors `planner.v1.Explanation`)."""

    binding_constraint: str = ""
    binding_kind: str = "none"
    """one of none, spend, energy, guard_rail, latency"""
    shadow_price: float = 0.0
    quality_gain_per_usd: float = 0.0
    gain_vs_runner_up_per_usd: float = 0.0
    runner_up: tuple[str, str, str] | None = None
    runner_up_quality: float = 0.0
    runner_up_cost_usd: float = 0.0
    high_compute: bool = False
    escalated: bool = False
    escalation_reason: str = ""
    deadline_fallback: bool = False
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _EXPLANATION_FIELDS}
        out["extra"] = dict(self.extra)
        return out


_EXPLANATION_FIELDS = tuple(f.name for f in fields(Explanation))


def summarise(label: str, quality: float, usd: float, exp: Mapping[str, Any] | Explanation) -> str:
    """One sentence a person can read, from an explanation (or its fields)."""
    if isinstance(exp, Explanation):
        exp = {name: getattr(exp, name) for name in _EXPLANATION_FIELDS}
    parts = [f"{label}: expected quality {quality:.3f} at ${usd:.5f}"]
    if exp["binding_kind"] in ("spend", "energy"):
        price = exp["shadow_price"]
        parts.append(f"{exp['binding_constraint']} binds (shadow price {price:.4g} quality/unit)")
    elif exp["binding_constraint"]:
        parts.append(f"limited by {exp['binding_constraint']}")
    if exp["quality_gain_per_usd"] > 0:
        parts.append(f"next option up gains {exp['quality_gain_per_usd']:.4g} quality per extra $")
    if exp["runner_up"] is not None:
        parts.append(f"runner-up {'/'.join(exp['runner_up'])} ({exp['runner_up_quality']:.3f} at "
                     f"${exp['runner_up_cost_usd']:.5f})")  # fmt: skip
    if exp["high_compute"]:
        parts.append("HIGH-COMPUTE mode")
    if exp["escalated"]:
        parts.append(f"ESCALATED: {exp['escalation_reason']}")
    if exp["deadline_fallback"]:
        parts.append("deadline fallback (cheapest allowed option)")
    return "; ".join(parts)


Sink = Callable[[list[DecisionRecord]], int]


class AuditWriter:
    """Writes decision records in batches from a background thread (bounded queue; see module docstring).

    `submit` never touches the database: it is one queue put per call (it only waits when the queue is full,
    i.e. the database has fallen `max_queue` submissions behind -- back-pressure rather than lost audit
    records). Items are `DecisionRecord`s or objects with a `to_record()` method (e.g. the router's
    decisions), which the writer's thread calls, so the caller does not pay for building records either.
    """

    def __init__(
        self,
        sink: Sink,
        max_queue: int = 100_000,
        batch_size: int = 1000,
        interval_s: float = 0.1,
    ):
        if max_queue < 1 or batch_size < 1 or not interval_s > 0:
            raise InvalidArgumentError.for_field(
                "audit_writer",
                (max_queue, batch_size, interval_s),
                "max_queue, batch_size >= 1, interval_s > 0",
            )
        self._sink = sink
        self._queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=max_queue)
        self._batch, self._interval = batch_size, interval_s
        self.written = 0
        self.failed = 0
        self._closed = False
        self._wake = threading.Event()
        """Set by `flush` and `close` so the writer stops collecting and writes now."""
        self._thread = threading.Thread(target=self._run, name="planner-audit", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Any]) -> None:
        """Queue decision records (or objects with `to_record()`) to be written."""
        if self._closed:
            raise RuntimeError("audit writer is closed")
        if items:
            self._queue.put(list(items))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every record submitted so far has been written (or failed)."""
        done = threading.Event()
        self._wake.set()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        try:
            if not done.wait(timeout_s):
                raise TimeoutError(f"audit writer did not flush within {timeout_s} s")
        finally:
            self._wake.clear()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._queue.put(None)
        self._thread.join(timeout_s)

    @property
    def pending(self) -> int:
        """Submissions queued and not yet taken by the writer."""
        return self._queue.qsize()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            items: list[Any] = []
            taken = 1
            if first is None:
                stop = True
            else:
                items.extend(first)
            if not stop and len(items) < self._batch:
                # Collect for a while without waking per call: few, large transactions, little GIL traffic.
                self._wake.wait(self._interval)
            while len(items) < self._batch and not stop:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if more is None:
                    stop = True
                else:
                    items.extend(more)
            for start in range(0, len(items), self._batch):
                self._write(items[start : start + self._batch])
            for _ in range(taken):
                self._queue.task_done()

    def _write(self, items: list[Any]) -> None:
        if not items:
            return
        try:
            batch = [i if isinstance(i, DecisionRecord) else i.to_record() for i in items]
        except Exception as exc:  # a record that cannot be built must not stop the writer
            log.error("audit.convert_failed", records=len(items), error=str(exc))
            self.failed += len(items)
            return
        for attempt in (1, 2):
            try:
                self.written += self._sink(batch)
                return
            except Exception as exc:  # the audit thread must survive a database hiccup
                log.error("audit.write_failed", attempt=attempt, records=len(batch), error=str(exc))
        self.failed += len(batch)
