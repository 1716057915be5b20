"""Predictor kinds: an Enum-keyed registry of the forecasters the service can train, and their persistence.

Each kind knows how to build its estimator from string hyper-parameters (the RPC's `params` map), how to fit
it with progress, and how to turn it into skops bytes and back -- loading only an explicit allowlist of types
(never pickle). `difficulty` is the learned `models.predictor.DifficultyPredictor`; `prior` the per-tier prior
baseline (`models.baseline.PriorForecaster`), also the bootstrap predictor of a fresh server.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd
import skops.io as sio

from models.api import Forecaster
from planner.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError

Progress = Callable[[float, str], None]
"""`progress(fraction in [0, 1], message)` as reported by a fitting estimator."""


class PredictorKind(StrEnum):
    DIFFICULTY = "difficulty"
    PRIOR = "prior"


PRIOR_TYPES: tuple[str, ...] = ("models.baseline.PriorForecaster",)
"""Types (beyond skops' own defaults) a stored prior artifact may contain."""

DIFFICULTY_TYPES: tuple[str, ...] = (
    "models.features.QueryFeaturizer",
    "models.predictor.DifficultyPredictor",
    "models.response.StrategyEvidence",
    "models.strategies.CorrelationFit",
    "models.success.Calibrator",
    "models.success.CoreParams",
    "models.success.MFParams",
    "models.success.SuccessModel",
    "models.tokens.TokenModel",
)
"""Allowlist for a difficulty artifact when `models.persist` (its own allowlist) is not installed."""

RESERVED_PARAMS = frozenset({"run_name_map", "random_state"})
"""Set by the service (from the catalog and the request's seed), never by `params`."""


@dataclass(frozen=True)
class KindSpec:
    """How to build, persist and load one kind of predictor."""

    kind: PredictorKind
    estimator: str
    """`module:Class` of the estimator (imported lazily)."""
    allowlist: tuple[str, ...]

    def estimator_class(self) -> type[Any]:
        module, _, name = self.estimator.partition(":")
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            missing = f"{module}.{name}"
            raise FailedPreconditionError(f"predictor kind {self.kind.value!r} needs {missing}") from None

    def build(self, run_name_map: Mapping[str, str], params: Mapping[str, str], seed: int) -> Any:
        """An unfitted estimator: defaults, then `params` (strings coerced to each default's type)."""
        cls = self.estimator_class()
        defaults = cls().get_params(deep=False)
        values: dict[str, Any] = {"run_name_map": dict(run_name_map)}
        if "random_state" in defaults:
            values["random_state"] = int(seed)
        values.update(coerce_params(params, defaults, self.kind))
        return cls(**values)

    def fit(self, estimator: Any, runs: pd.DataFrame, progress: Progress) -> Forecaster:
        """Fit on a canonical runs frame, passing `progress` to estimators that report it."""
        if self.kind is PredictorKind.DIFFICULTY:
            return estimator.fit(runs, progress=progress)  # type: ignore[no-any-return]
        progress(0.0, f"fitting {self.kind.value} on {len(runs)} runs")
        fitted: Forecaster = estimator.fit(runs)
        progress(1.0, "done")
        return fitted

    def dumps(self, predictor: Any) -> bytes:
        persist = _persist_module() if self.kind is PredictorKind.DIFFICULTY else None
        if persist is not None:
            return persist.dumps(predictor)  # type: ignore[no-any-return]
        return sio.dumps(predictor)

    def loads(self, data: bytes) -> Forecaster:
        """Load an artifact, refusing any type outside the allowlist (FailedPreconditionError)."""
        persist = _persist_module() if self.kind is PredictorKind.DIFFICULTY else None
        if persist is not None:
            try:
                return persist.loads(data)  # type: ignore[no-any-return]
            except InvalidArgumentError as exc:  # a stored artifact is not the caller's argument
                raise FailedPreconditionError(f"stored {self.kind.value} artifact rejected: {exc}") from None
        untrusted = set(sio.get_untrusted_types(data=data)) - set(self.allowlist)
        if untrusted:
            raise FailedPreconditionError(
                f"{self.kind.value} artifact holds types outside the allowlist: {sorted(untrusted)}"
            )
        return sio.loads(data, trusted=list(self.allowlist))  # type: ignore[no-any-return]


def _persist_module() -> Any:
    try:
        return importlib.import_module("models.persist")
    except ImportError:
        return None


SPECS: dict[PredictorKind, KindSpec] = {
    PredictorKind.DIFFICULTY: KindSpec(
        PredictorKind.DIFFICULTY, "models.predictor:DifficultyPredictor", DIFFICULTY_TYPES
    ),
    PredictorKind.PRIOR: KindSpec(PredictorKind.PRIOR, "models.baseline:PriorForecaster", PRIOR_TYPES),
}


def default_kind() -> PredictorKind:
    """`difficulty` when `models.predictor` is installed, else `prior`."""
    try:
        importlib.import_module("models.predictor")
    except ImportError:
        return PredictorKind.PRIOR
    return PredictorKind.DIFFICULTY


def parse_kind(value: str | None, field: str = "kind") -> PredictorKind:
    """The kind named `value` (empty/None: `default_kind()`); InvalidArgumentError lists the valid keys."""
    if not value:
        return default_kind()
    try:
        return PredictorKind(value.strip().lower())
    except ValueError:
        raise InvalidArgumentError.for_field(
            field, value, f"unknown predictor kind; valid: {[k.value for k in PredictorKind]}"
        ) from None


def spec_for(kind: PredictorKind | str) -> KindSpec:
    return SPECS[parse_kind(kind) if isinstance(kind, str) else kind]


def _coerce(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise ValueError("expected true or false")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def coerce_params(
    params: Mapping[str, str], defaults: Mapping[str, Any], kind: PredictorKind
) -> dict[str, Any]:
    """String hyper-parameters converted to the type of each default; unknown names and bad values are
    reported together as field violations (`params.<name>`)."""
    allowed = sorted(set(defaults) - RESERVED_PARAMS)
    out: dict[str, Any] = {}
    problems: list[FieldViolation] = []
    for name, text in sorted(params.items()):
        if name not in allowed:
            reason = f"not a parameter of {kind.value!r}; valid: {allowed}"
            problems.append(FieldViolation(f"params.{name}", text, reason))
            continue
        try:
            out[name] = _coerce(str(text), defaults[name])
        except ValueError as exc:
            problems.append(FieldViolation(f"params.{name}", text, f"bad value: {exc}"))
    if problems:
        raise InvalidArgumentError("invalid predictor parameters", problems)
    return out
