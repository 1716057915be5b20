"""The shared vocabulary: model tiers, test-time strategies, hardware targets, regions and tenants.

Everything the planner allocates across is described here as frozen (pydantic) dataclasses, loaded and
validated from a TOML file the user can replace (`planner/default_catalog.toml` is the default). A bad file
raises `CatalogError` naming each bad field with its dotted path and value.

This module is a leaf: it imports nothing of the project but `planner.errors`, so `models/` and `simulator/`
may import it freely.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from planner.errors import CatalogError, FieldViolation, NotFoundError

_STRICT = ConfigDict(extra="forbid")
NonEmpty = Annotated[str, Field(min_length=1)]
Positive = Annotated[float, Field(gt=0)]

BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
"""Weight bytes per parameter for each precision the catalog accepts."""

WEIGHT_OVERHEAD = 1.2
"""Memory needed beyond the raw weights (activations, KV cache floor, runtime) as a factor on weight bytes."""


class _FieldError(ValueError):
    """Raised by entity validators so a violation names the exact field and value, not the whole entry."""

    def __init__(self, field_name: str, value: Any, reason: str):
        super().__init__(f"{field_name}={value!r}: {reason}")
        self.field_name = field_name
        self.value = value
        self.reason = reason


class StrategyKind(StrEnum):
    """Test-time compute strategies the predictors know how to respond to."""

    SINGLE = "single"
    CHAIN_OF_THOUGHT = "chain_of_thought"
    MAJORITY_VOTE = "majority_vote"
    BEST_OF_N = "best_of_n"
    PRM_SEARCH = "prm_search"
    REVISION = "revision"


class TargetFamily(StrEnum):
    GPU = "gpu"
    LPU = "lpu"
    WAFER = "wafer"
    EDGE = "edge"
    API = "api"


class PriceModel(StrEnum):
    DEVICE_HOUR = "device_hour"
    PER_TOKEN = "per_token"
    OWNED = "owned"


@dataclass(frozen=True, config=_STRICT)
class ModelTier:
    """A model the planner can send queries to.

    `run_names` are the names this model carries in historical run records (e.g. ZeroEval's
    `gpt-4o-2024-08-06`).
    Closed models (`open_weights = false`) run only on the API target(s) of their `provider`.
    """

    name: NonEmpty
    total_params_b: Positive
    active_params_b: Positive
    precision: str = "bf16"
    context_length: int = Field(default=8192, gt=0)
    strategies: tuple[str, ...] = ("single",)
    open_weights: bool = True
    provider: str = ""
    reasoning: bool = False
    run_names: tuple[str, ...] = ()
    kv_bytes_per_token: float = Field(default=0.0, ge=0)
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> ModelTier:
        if self.precision not in BYTES_PER_PARAM:
            raise _FieldError("precision", self.precision, f"not one of {sorted(BYTES_PER_PARAM)}")
        if self.active_params_b > self.total_params_b:
            raise _FieldError(
                "active_params_b", self.active_params_b, f"exceeds total_params_b {self.total_params_b}"
            )
        if not self.open_weights and not self.provider:
            raise _FieldError(
                "provider", self.provider, "a closed model (open_weights = false) needs a provider"
            )
        return self

    @property
    def weights_gb(self) -> float:
        return self.total_params_b * BYTES_PER_PARAM[self.precision]

    @property
    def kv_bytes(self) -> float:
        """KV-cache bytes per token; estimated from the active size when the catalog gives none."""
        if self.kv_bytes_per_token > 0:
            return self.kv_bytes_per_token
        # Rough GQA-era rule of thumb: ~2 KiB of KV cache per token per billion active parameters (bf16).
        return 2048.0 * self.active_params_b


@dataclass(frozen=True, config=_STRICT)
class Strategy:
    """A test-time compute strategy with its parameters.

    `samples` parallel samples (N, or beam width), `serial_steps` sequential rounds (revisions, search depth),
    `token_multiplier` output tokens of one sample relative to a plain single pass (chain of thought > 1),
    `verifier_cost` extra tokens per sample spent by a verifier / process reward model (relative to a sample),
    `verifier_accuracy` the probability the verifier ranks a correct sample above an incorrect one.
    """

    name: NonEmpty
    kind: StrategyKind = StrategyKind.SINGLE
    samples: int = Field(default=1, ge=1, le=1024)
    serial_steps: int = Field(default=1, ge=1, le=64)
    token_multiplier: float = Field(default=1.0, gt=0)
    verifier_cost: float = Field(default=0.0, ge=0)
    verifier_accuracy: float = Field(default=0.0, ge=0, le=1)
    high_compute: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Strategy:
        single_sample = (StrategyKind.SINGLE, StrategyKind.CHAIN_OF_THOUGHT, StrategyKind.REVISION)
        if self.kind in single_sample and self.samples != 1:
            raise _FieldError("samples", self.samples, f"kind {self.kind.value!r} takes samples = 1")
        if self.kind in (StrategyKind.MAJORITY_VOTE, StrategyKind.BEST_OF_N) and self.samples < 2:
            raise _FieldError("samples", self.samples, f"kind {self.kind.value!r} needs samples >= 2")
        if self.kind in (StrategyKind.BEST_OF_N, StrategyKind.PRM_SEARCH) and self.verifier_accuracy <= 0.5:
            raise _FieldError(
                "verifier_accuracy", self.verifier_accuracy, f"kind {self.kind.value!r} needs > 0.5"
            )
        return self

    @property
    def output_multiplier(self) -> float:
        """Output tokens generated (model + verifier) relative to one plain single-pass answer."""
        return self.samples * self.serial_steps * self.token_multiplier * (1.0 + self.verifier_cost)


@dataclass(frozen=True, config=_STRICT)
class TokenPrice:
    """USD per million input and output tokens of one model on a per-token-priced target."""

    input_usd_per_mtok: Annotated[float, Field(ge=0)]
    output_usd_per_mtok: Annotated[float, Field(ge=0)]
    source: str = ""


@dataclass(frozen=True, config=_STRICT)
class Target:
    """A place a model can run: a GPU type, an LPU-style or wafer-scale service, an edge device or an API.

    Device-hour and owned targets host any open-weight model that fits `max_devices` x `memory_gb`; per-token
    targets host exactly the models in `token_prices` (keyed by tier name) at `tokens_per_s_per_user`.
    """

    name: NonEmpty
    family: TargetFamily
    price_model: PriceModel
    memory_gb: float = Field(default=0.0, ge=0)
    mem_bandwidth_gb_s: float = Field(default=0.0, ge=0)
    bf16_tflops: float = Field(default=0.0, ge=0)
    fp8_tflops: float = Field(default=0.0, ge=0)
    int8_tops: float = Field(default=0.0, ge=0)
    power_w: float = Field(default=0.0, ge=0)
    idle_power_w: float = Field(default=0.0, ge=0)
    max_devices: int = Field(default=1, ge=1, le=1024)
    usd_per_hour: float = Field(default=0.0, ge=0)
    device_price_usd: float = Field(default=0.0, ge=0)
    amortisation_hours: float = Field(default=26280.0, gt=0)
    token_prices: dict[str, TokenPrice] = field(default_factory=dict)
    tokens_per_s_per_user: float = Field(default=0.0, ge=0)
    provider: str = ""
    region: str = "us-east"
    network_rtt_ms: float = Field(default=0.0, ge=0)
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.price_model is PriceModel.DEVICE_HOUR and self.usd_per_hour <= 0:
            raise _FieldError(
                "usd_per_hour", self.usd_per_hour, "price_model 'device_hour' needs usd_per_hour > 0"
            )
        if self.price_model is PriceModel.PER_TOKEN:
            if not self.token_prices:
                raise _FieldError(
                    "token_prices", self.token_prices, "price_model 'per_token' needs token_prices"
                )
            if self.tokens_per_s_per_user <= 0:
                raise _FieldError(
                    "tokens_per_s_per_user",
                    self.tokens_per_s_per_user,
                    "price_model 'per_token' needs a value > 0",
                )
        if self.price_model is PriceModel.OWNED and self.device_price_usd <= 0:
            raise _FieldError(
                "device_price_usd", self.device_price_usd, "price_model 'owned' needs device_price_usd > 0"
            )
        if self.price_model is not PriceModel.PER_TOKEN and self.memory_gb <= 0:
            raise _FieldError(
                "memory_gb", self.memory_gb, f"price_model {self.price_model.value!r} needs memory_gb > 0"
            )
        if self.idle_power_w > self.power_w:
            raise _FieldError("idle_power_w", self.idle_power_w, f"exceeds power_w {self.power_w}")
        return self

    @property
    def hourly_usd(self) -> float:
        """Cost of holding one device for an hour (amortised purchase price for owned devices)."""
        if self.price_model is PriceModel.OWNED:
            return self.device_price_usd / self.amortisation_hours
        return self.usd_per_hour


@dataclass(frozen=True, config=_STRICT)
class Region:
    """A grid region: carbon intensity of electricity (gCO2e/kWh) with its source."""

    name: NonEmpty
    grid_gco2_per_kwh: Annotated[float, Field(ge=0)]
    pue: float = Field(default=1.2, ge=1.0)
    source: str = ""


@dataclass(frozen=True, config=_STRICT)
class Tenant:
    """A budget holder: spend and energy caps per period, latency SLO, per-query guard rails."""

    name: NonEmpty
    period: str = "day"
    spend_usd: float = Field(default=0.0, ge=0)
    energy_kwh: float = Field(default=0.0, ge=0)
    latency_slo_s: float = Field(default=0.0, ge=0)
    max_spend_per_query_usd: float = Field(default=0.0, ge=0)
    max_tokens_per_query: int = Field(default=0, ge=0)
    max_samples_per_query: int = Field(default=0, ge=0)
    escalate_above_usd: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Tenant:
        if self.period not in ("hour", "day", "week", "month"):
            raise _FieldError("period", self.period, "not one of ['day', 'hour', 'month', 'week']")
        return self


@dataclass(frozen=True, config=_STRICT)
class Catalog:
    """The whole vocabulary. Names are unique within each list; cross references are checked on load."""

    tiers: tuple[ModelTier, ...]
    strategies: tuple[Strategy, ...]
    targets: tuple[Target, ...]
    regions: tuple[Region, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    name: str = "catalog"
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        problems = _cross_reference_problems(self)
        if problems:
            raise CatalogError("catalog is inconsistent", problems)
        return self

    # ---- look-ups ------------------------------------------------------------------------------------------
    def tier(self, name: str) -> ModelTier:
        return _lookup(self.tiers, name, "tier")

    def strategy(self, name: str) -> Strategy:
        return _lookup(self.strategies, name, "strategy")

    def target(self, name: str) -> Target:
        return _lookup(self.targets, name, "target")

    def region(self, name: str) -> Region:
        return _lookup(self.regions, name, "region")

    def tenant(self, name: str) -> Tenant:
        return _lookup(self.tenants, name, "tenant")

    def tier_for_run_name(self, run_name: str) -> ModelTier:
        """The tier whose `run_names` (or own name) matches a model name found in run records."""
        for tier in self.tiers:
            if run_name == tier.name or run_name in tier.run_names:
                return tier
        raise NotFoundError(f"no tier maps the run model name {run_name!r}")

    def run_name_map(self) -> dict[str, str]:
        """Every run-record model name -> tier name."""
        out: dict[str, str] = {}
        for tier in self.tiers:
            out[tier.name] = tier.name
            out.update({n: tier.name for n in tier.run_names})
        return out

    def fits(self, tier: ModelTier, target: Target) -> bool:
        """Whether `tier` may run on `target`: provider match, hosted list, or weights fitting memory."""
        if not tier.open_weights and tier.provider != target.provider:
            return False
        if target.price_model is PriceModel.PER_TOKEN:
            return tier.name in target.token_prices
        if not tier.open_weights:
            return False
        return tier.weights_gb * WEIGHT_OVERHEAD <= target.memory_gb * target.max_devices

    def placements(self, tier: ModelTier) -> tuple[Target, ...]:
        """Targets `tier` can run on."""
        return tuple(t for t in self.targets if self.fits(tier, t))

    def strategies_for(self, tier: ModelTier) -> tuple[Strategy, ...]:
        return tuple(s for s in self.strategies if s.name in tier.strategies)

    def combinations(self) -> Iterator[tuple[ModelTier, Strategy, Target]]:
        """Every feasible (tier, strategy, target) triple, in catalog order."""
        for tier in self.tiers:
            targets = self.placements(tier)
            for strategy in self.strategies_for(tier):
                for target in targets:
                    yield tier, strategy, target

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def content_hash(self) -> str:
        """Stable SHA-256 of the catalog's content (used as its version)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, StrEnum):
        return obj.value
    return obj


def _lookup(items: tuple[Any, ...], name: str, kind: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    valid = ", ".join(sorted(i.name for i in items)) or "(none)"
    raise NotFoundError(f"no {kind} named {name!r}; valid: {valid}")


def _duplicates(items: tuple[Any, ...], section: str) -> list[FieldViolation]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        if item.name in seen:
            out.append(FieldViolation(f"{section}[{i}].name", item.name, "duplicate name"))
        seen.add(item.name)
    return out


def _cross_reference_problems(cat: Catalog) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    for section in ("tiers", "strategies", "targets", "regions", "tenants"):
        problems += _duplicates(getattr(cat, section), section)
    strategy_names = {s.name for s in cat.strategies}
    tier_names = {t.name for t in cat.tiers}
    region_names = {r.name for r in cat.regions}
    providers = {t.provider for t in cat.targets if t.family is TargetFamily.API}
    run_names: dict[str, str] = {}
    for i, tier in enumerate(cat.tiers):
        for s in tier.strategies:
            if s not in strategy_names:
                problems.append(FieldViolation(f"tiers[{i}].strategies", s, "unknown strategy"))
        if not tier.open_weights and tier.provider not in providers:
            problems.append(
                FieldViolation(f"tiers[{i}].provider", tier.provider, "no api target of that provider")
            )
        for rn in tier.run_names:
            if rn in run_names:
                problems.append(
                    FieldViolation(f"tiers[{i}].run_names", rn, f"already mapped to tier {run_names[rn]!r}")
                )
            run_names[rn] = tier.name
    closed = {t.name: t.provider for t in cat.tiers if not t.open_weights}
    for i, target in enumerate(cat.targets):
        for model in target.token_prices:
            if model not in tier_names:
                problems.append(FieldViolation(f"targets[{i}].token_prices", model, "unknown tier"))
            elif model in closed and closed[model] != target.provider:
                reason = (
                    f"closed tier of provider {closed[model]!r} on a target of provider {target.provider!r}"
                )
                problems.append(FieldViolation(f"targets[{i}].token_prices", model, reason))
        if region_names and target.region not in region_names:
            problems.append(FieldViolation(f"targets[{i}].region", target.region, "unknown region"))
    for i, tier in enumerate(cat.tiers):
        if not any(cat.fits(tier, t) for t in cat.targets):
            problems.append(FieldViolation(f"tiers[{i}].name", tier.name, "fits no target"))
    return problems


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(catalog)"


def _violation(err: Any, ctx_err: object) -> FieldViolation:
    """One pydantic error as a FieldViolation naming the exact field path and the offending value."""
    path = _loc_to_path(tuple(err["loc"]))
    if isinstance(ctx_err, _FieldError):
        field_path = ctx_err.field_name if path == "(catalog)" else f"{path}.{ctx_err.field_name}"
        return FieldViolation(field_path, ctx_err.value, ctx_err.reason)
    value = None if err.get("type") == "missing" else err.get("input")
    return FieldViolation(path, value, str(err["msg"]))


def catalog_from_dict(data: Mapping[str, Any]) -> Catalog:
    """Validate a plain mapping (as parsed from TOML or JSON) into a Catalog, or raise CatalogError."""
    try:
        return Catalog(**dict(data))
    except CatalogError:
        raise
    except ValidationError as exc:
        violations = []
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, CatalogError):
                raise ctx_err from None
            violations.append(_violation(err, ctx_err))
        raise CatalogError("catalog is invalid", violations) from None
    except TypeError as exc:
        raise CatalogError("catalog is invalid", [FieldViolation("(catalog)", None, str(exc))]) from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a catalog TOML file; the packaged default when `path` is None."""
    if path is None:
        text = resources.files("planner").joinpath("default_catalog.toml").read_text(encoding="utf-8")
        source = "default_catalog.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError("cannot read catalog", [FieldViolation("path", source, str(exc))]) from None
    return parse_catalog(text, source)


def parse_catalog(text: str, source: str = "<string>") -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(
            f"{source} is not valid TOML", [FieldViolation("(file)", source, str(exc))]
        ) from None
    return catalog_from_dict(data)
