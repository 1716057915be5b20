"""Scenario files: the workload, the fleet, the routing policy under test, SLOs and admission, from TOML.

A scenario is a frozen pydantic model (unknown keys rejected; a bad value raises `InvalidArgumentError`
naming the dotted field and the value). Example::

    name = "baseline-h100"
    replicates = 3
    [workload]
    kind = "trace"                      # trace | poisson | diurnal | bursty
    trace = "azure_llm_2023_conv"       # file path, or a name found in the traces directory
    tasks = { chat = 0.8, reasoning = 0.2 }
    [slo]
    ttft_s = 2.0
    e2e_s = 30.0
    [[fleet]]                           # devices of each target per region
    target = "H100-SXM5-80GB"
    count = 16
    [[routes]]                          # the fixed policy: tier x strategy x target mix, per task
    task = "reasoning"
    tier = "llama-3.1-70b"
    strategy = "bon8"
    target = "H100-SXM5-80GB"

Trace names resolve against the scenario file's folder, then ``$PLANNER_TRACES_DIR``, then
``$PLANNER_SHARED_DATA/traces`` and the repository's sibling ``shared/data/traces``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import FieldViolation, InvalidArgumentError
from simulator.workload import (
    BurstyWorkload,
    DiurnalWorkload,
    PoissonWorkload,
    TokenDist,
    TraceWorkload,
    Workload,
)

_FROZEN = ConfigDict(extra="forbid", frozen=True)
_REPO = Path(__file__).resolve().parents[1]


class TokenSpec(BaseModel):
    """Log-normal token counts: median and log-space sigma."""

    model_config = _FROZEN
    median: float = Field(gt=0)
    sigma: float = Field(default=0.8, ge=0)
    maximum: int = Field(default=32_768, ge=1)

    def dist(self) -> TokenDist:
        return TokenDist(self.median, self.sigma, 1, self.maximum)


class WorkloadSpec(BaseModel):
    """Where requests come from: a trace replay or a seeded generator."""

    model_config = _FROZEN
    kind: Literal["trace", "poisson", "diurnal", "bursty"] = "poisson"
    trace: str = ""
    format: Literal["azure", "runs"] = "azure"
    time_scale: float = Field(default=1.0, gt=0)
    repeat: int = Field(default=1, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    rate_per_s: float = Field(default=1.0, gt=0)
    duration_s: float = Field(default=3600.0, gt=0)
    amplitude: float = Field(default=0.5, ge=0, le=1)
    peak_hour: float = Field(default=14.0, ge=0, lt=24)
    burst_rate_per_s: float = Field(default=5.0, gt=0)
    calm_s: float = Field(default=300.0, gt=0)
    burst_s: float = Field(default=30.0, gt=0)
    input_tokens: TokenSpec = TokenSpec(median=1020.0, sigma=0.9)
    output_tokens: TokenSpec = TokenSpec(median=129.0, sigma=0.8)
    tasks: dict[str, float] = Field(default_factory=lambda: {"default": 1.0})
    tenants: dict[str, float] = Field(default_factory=lambda: {"default": 1.0})

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if self.kind == "trace" and not self.trace:
            raise ValueError("kind 'trace' needs a trace (file path or name)")
        for name in ("tasks", "tenants"):
            mix = getattr(self, name)
            if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
                raise ValueError(f"{name} needs non-negative weights with a positive sum, got {mix}")
        return self


class SloSpec(BaseModel):
    """Latency objectives; a request meets the SLO when every given bound holds (0 = no bound)."""

    model_config = _FROZEN
    ttft_s: float = Field(default=0.0, ge=0)
    tbt_s: float = Field(default=0.0, ge=0)
    e2e_s: float = Field(default=0.0, ge=0)


class AdmissionSpec(BaseModel):
    """Per-pool admission control: batch slots per replica and the waiting-queue limit (beyond: rejected)."""

    model_config = _FROZEN
    max_batch: int | None = Field(default=None, ge=1)
    max_queue: int | None = Field(default=None, ge=0)


class FleetEntry(BaseModel):
    """`count` devices of `target` in `region` (default: the target's own region). `tier` pins the devices
    to one model tier; otherwise they are shared out among the tiers routed there, by demand."""

    model_config = _FROZEN
    target: str = Field(min_length=1)
    count: int = Field(ge=1)
    region: str = ""
    tier: str = ""


class Route(BaseModel):
    """One option of the fixed policy: requests of `task` ("*" = any) go to (tier, strategy, target) with
    probability proportional to `weight` among the routes of that task. `quality` is the expected quality
    of the option when known (e.g. from a forecaster); NaN means unknown."""

    model_config = _FROZEN
    tier: str = Field(min_length=1)
    strategy: str = "single"
    target: str = Field(min_length=1)
    task: str = "*"
    weight: float = Field(default=1.0, gt=0)
    region: str = ""
    quality: float = float("nan")


class Scenario(BaseModel):
    """A what-if scenario; `simulator.run.simulate` turns it into a `SimulationResult`."""

    model_config = _FROZEN
    name: str = Field(default="scenario", min_length=1)
    description: str = ""
    catalog: str = ""
    seed: int = Field(default=0, ge=0)
    replicates: int = Field(default=1, ge=1, le=1000)
    interval_level: float = Field(default=0.95, gt=0, lt=1)
    horizon_s: float | None = Field(default=None, gt=0)
    workload: WorkloadSpec = WorkloadSpec()
    slo: SloSpec = SloSpec()
    admission: AdmissionSpec = AdmissionSpec()
    fleet: tuple[FleetEntry, ...] = ()
    routes: tuple[Route, ...] = ()
    base_dir: str = ""

    def build_workload(self) -> Workload:
        """The request stream this scenario describes (a generator's duration is the horizon when given)."""
        w = self.workload
        common: dict[str, Any] = {"tasks": dict(w.tasks), "tenants": dict(w.tenants)}
        if w.kind == "trace":
            path = resolve_trace(w.trace, self.base_dir)
            return TraceWorkload(
                str(path), w.format, w.time_scale, w.repeat, w.max_requests, tasks=w.tasks, tenants=w.tenants
            )
        common |= {
            "input_tokens": w.input_tokens.dist(),
            "output_tokens": w.output_tokens.dist(),
            "duration_s": self.horizon_s or w.duration_s,
            "max_requests": w.max_requests,
        }
        if w.kind == "poisson":
            return PoissonWorkload(rate_per_s=w.rate_per_s, **common)
        if w.kind == "diurnal":
            return DiurnalWorkload(
                mean_rate_per_s=w.rate_per_s, amplitude=w.amplitude, peak_hour=w.peak_hour, **common
            )
        return BurstyWorkload(
            base_rate_per_s=w.rate_per_s,
            burst_rate_per_s=w.burst_rate_per_s,
            calm_s=w.calm_s,
            burst_s=w.burst_s,
            **common,
        )

    def span_hint_s(self) -> float:
        """Expected simulated span (for progress): the horizon, the generator duration or the trace span."""
        if self.horizon_s:
            return self.horizon_s
        wl = self.build_workload()
        if isinstance(wl, TraceWorkload):
            span, gap = wl._span()
            return max(wl.repeat * (span + gap), 1.0)
        return float(getattr(wl, "duration_s", 3600.0))


def scenario_from_dict(data: Mapping[str, Any], source: str = "<dict>", base_dir: str = "") -> Scenario:
    """Validate a scenario mapping; errors name each bad field with its dotted path."""
    try:
        return Scenario.model_validate({**data, "base_dir": data.get("base_dir", base_dir)})
    except ValidationError as exc:
        violations = [
            FieldViolation(".".join(str(p) for p in e["loc"]) or "(scenario)", e.get("input"), e["msg"])
            for e in exc.errors()
        ]
        raise InvalidArgumentError(f"scenario {source} is invalid", violations) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError.for_field("scenario", str(p), "no such scenario file")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError.for_field("scenario", str(p), f"not valid TOML: {exc}") from None
    return scenario_from_dict(data, str(p), str(p.resolve().parent))


def trace_dirs(base_dir: str = "") -> list[Path]:
    """Folders searched for trace names, in order."""
    dirs = [Path(base_dir)] if base_dir else []
    for env, sub in (("PLANNER_TRACES_DIR", ""), ("PLANNER_SHARED_DATA", "traces")):
        if os.environ.get(env):
            dirs.append(Path(os.environ[env]) / sub)
    dirs.append(_REPO.parent / "shared" / "data" / "traces")
    return dirs


def resolve_trace(name: str, base_dir: str = "") -> Path:
    """A trace file from a path or a bare name (with or without ``.csv``)."""
    p = Path(name).expanduser()
    if p.is_absolute():
        if p.is_file():
            return p
        raise InvalidArgumentError.for_field("workload.trace", name, "no such trace file")
    for d in trace_dirs(base_dir):
        for cand in (d / name, d / f"{name}.csv"):
            if cand.is_file():
                return cand
    where = ", ".join(str(d) for d in trace_dirs(base_dir))
    raise InvalidArgumentError.for_field("workload.trace", name, f"not found in {where}")
