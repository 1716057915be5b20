"""Options: every feasible (model tier, strategy, hardware target) for a batch of queries, priced as arrays.

An `OptionSet` is built once per (catalog, cost model, forecaster tiers). It holds the static list of
feasible combinations (`Catalog.combinations()`) restricted to tiers the forecaster knows, as index arrays,
and per option the affine unit-cost coefficients of the one cost model
(`simulator.costmodel.CostModel.option_cost`): ``metric = c0 + c_in * input + c_out * output`` for usd,
latency, ttft, energy and device-seconds. The coefficients are read off the cost model at build time and
checked for linearity; when the cost model is not affine in the token counts, `price` calls it per option
instead (exact, slower). Either way the planner and the simulator agree on what an option costs.

`price(forecast)` turns a `models.api.Forecast` into `OptionArrays` of shape (n_queries, n_options):
expected quality (the strategy response applied to the tier's single-sample P(correct)), expected and p90
cost, latency, energy and device-seconds. Expected tokens come from the forecast's p50/p90 under a
log-normal fit (a right-skewed token distribution's mean exceeds its median, so pricing at p50 would
under-forecast spend).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from models.api import Forecast
from planner.catalog import Catalog, ModelTier, Strategy, Target
from planner.errors import FailedPreconditionError, InvalidArgumentError

METRICS = ("usd", "latency_s", "ttft_s", "energy_j", "device_s")
"""Cost-model outputs the option arrays carry."""

Z90 = 1.2815515655446004
"""The standard normal 90th percentile (log-normal token fit from p50 and p90)."""

_PROBE_IN = np.array([1.0, 2001.0, 1.0, 2001.0, 8001.0, 517.0])
_PROBE_OUT = np.array([1.0, 1.0, 2001.0, 2001.0, 3001.0, 4099.0])

QualityFn = Callable[[np.ndarray, Strategy], np.ndarray]


class CostModelLike(Protocol):
    """What the option set needs of `simulator.costmodel.CostModel`."""

    def option_cost(
        self,
        tier: ModelTier,
        strategy: Strategy,
        target: Target,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
    ) -> Any: ...


@dataclass(frozen=True)
class Option:
    """One (tier, strategy, target) combination."""

    index: int
    tier: str
    strategy: str
    target: str
    samples: int
    output_multiplier: float
    high_compute: bool

    def label(self) -> str:
        return f"{self.tier}/{self.strategy}@{self.target}"


@dataclass(frozen=True)
class OptionArrays:
    """Priced options for a batch: every array has shape (n_queries, n_options)."""

    quality: np.ndarray
    usd: np.ndarray
    usd_p90: np.ndarray
    latency_s: np.ndarray
    latency_p90_s: np.ndarray
    ttft_s: np.ndarray
    energy_j: np.ndarray
    device_s: np.ndarray
    tokens_p90: np.ndarray
    """Total tokens (input + all generated output at the p90 sample length) an option may consume."""

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.quality.shape[0]), int(self.quality.shape[1]))

    def take(self, rows: np.ndarray | slice) -> OptionArrays:
        """The arrays of a subset of queries."""
        return OptionArrays(**{k: getattr(self, k)[rows] for k in self.__dataclass_fields__})


Z99 = 2.3263478740408408


def lognormal_p99(mean: np.ndarray, p90: np.ndarray) -> np.ndarray:
    """99th percentile of the log-normal with this mean and 90th percentile. Its shape s is the smaller root
    of z90 s - s^2 / 2 = ln(p90 / mean), capped at s = z90 where no log-normal has both figures; p90 <= mean
    is read as no spread (p99 = max(p90, mean))."""
    mean = np.maximum(np.asarray(mean, float), 1e-12)
    p90 = np.asarray(p90, float)
    gap = np.log(np.maximum(p90 / mean, 1.0))
    sigma = Z90 - np.sqrt(np.maximum(Z90**2 - 2.0 * gap, 0.0))
    return np.asarray(np.maximum(p90, mean) * np.exp((Z99 - Z90) * sigma))


def lognormal_mean(p50: np.ndarray, p90: np.ndarray) -> np.ndarray:
    """Mean of a log-normal with the given median and 90th percentile (p90 < p50 is read as p90 = p50)."""
    p50 = np.maximum(np.asarray(p50, float), 1e-9)
    ratio = np.maximum(np.asarray(p90, float) / p50, 1.0)
    sigma = np.log(ratio) / Z90
    return np.asarray(p50 * np.exp(0.5 * sigma**2))


def _default_quality_fn() -> QualityFn:
    from models.strategies import expected_quality

    return expected_quality


@dataclass(frozen=True)
class OptionSet:
    """The static option list and its unit-cost coefficients; `price` a forecast into `OptionArrays`."""

    options: tuple[Option, ...]
    forecast_tiers: tuple[str, ...]
    tier_col: np.ndarray
    """Column of each option's tier in the forecast, shape (n_options,)."""
    strategies: tuple[Strategy, ...]
    strategy_of: np.ndarray
    """Index into `strategies` of each option's strategy."""
    output_multiplier: np.ndarray
    samples: np.ndarray
    coef: dict[str, np.ndarray]
    """metric -> (3, n_options) affine coefficients (constant, per input token, per output token)."""
    linear: bool
    unavailable_tiers: tuple[str, ...]
    """Catalog tiers the forecaster does not know: never offered."""
    quality_fn: QualityFn
    exact_fn: Callable[[int, np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = field(default=None)
    targets: tuple[str, ...] = ()
    target_of: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        catalog: Catalog,
        cost_model: CostModelLike,
        forecast_tiers: Sequence[str],
        quality_fn: QualityFn | None = None,
        strategies: Sequence[str] | None = None,
    ) -> OptionSet:
        """All feasible combinations of `catalog` whose tier the forecaster knows (and whose strategy is in
        `strategies` when given)."""
        tiers = tuple(forecast_tiers)
        combos = [
            (t, s, g)
            for t, s, g in catalog.combinations()
            if t.name in tiers and (strategies is None or s.name in strategies)
        ]
        if not combos:
            raise FailedPreconditionError(
                f"no feasible option: catalog tiers {[t.name for t in catalog.tiers]} vs forecaster tiers "
                f"{list(tiers)}, strategies {strategies}"
            )
        strat_list: list[Strategy] = []
        for _, s, _ in combos:
            if s not in strat_list:
                strat_list.append(s)
        target_names = tuple(g.name for g in catalog.targets)
        options = tuple(
            Option(i, t.name, s.name, g.name, s.samples, s.output_multiplier, s.high_compute)
            for i, (t, s, g) in enumerate(combos)
        )
        coef, linear = _fit_coefficients(cost_model, combos)

        def exact(i: int, inp: np.ndarray, out: np.ndarray) -> dict[str, np.ndarray]:
            t, s, g = combos[i]
            res = cost_model.option_cost(t, s, g, inp, out)
            return {m: np.asarray(getattr(res, m), float) for m in METRICS}

        return cls(
            options=options,
            forecast_tiers=tiers,
            tier_col=np.array([tiers.index(o.tier) for o in options], dtype=np.intp),
            strategies=tuple(strat_list),
            strategy_of=np.array([strat_list.index(s) for _, s, _ in combos], dtype=np.intp),
            output_multiplier=np.array([o.output_multiplier for o in options], float),
            samples=np.array([o.samples for o in options], float),
            coef=coef,
            linear=linear,
            unavailable_tiers=tuple(t.name for t in catalog.tiers if t.name not in tiers),
            quality_fn=quality_fn or _default_quality_fn(),
            exact_fn=exact,
            targets=target_names,
            target_of=np.array([target_names.index(o.target) for o in options], dtype=np.intp),
        )

    def restrict(self, keep: Sequence[int]) -> OptionSet:
        """The same option set with only the options at `keep` (renumbered in that order)."""
        idx = np.asarray(keep, dtype=np.intp)
        exact_fn = self.exact_fn

        def exact(i: int, inp: np.ndarray, out: np.ndarray) -> dict[str, np.ndarray]:
            assert exact_fn is not None
            return exact_fn(int(idx[i]), inp, out)

        options = tuple(
            Option(j, o.tier, o.strategy, o.target, o.samples, o.output_multiplier, o.high_compute)
            for j, o in enumerate(self.options[i] for i in idx)
        )
        return replace(
            self,
            options=options,
            tier_col=self.tier_col[idx],
            strategy_of=self.strategy_of[idx],
            output_multiplier=self.output_multiplier[idx],
            samples=self.samples[idx],
            coef={m: c[:, idx] for m, c in self.coef.items()},
            exact_fn=exact,
            target_of=self.target_of[idx],
        )

    def __len__(self) -> int:
        return len(self.options)

    def labels(self) -> list[str]:
        return [o.label() for o in self.options]

    def cheapest_targets(self) -> dict[tuple[str, str], int]:
        """(tier, strategy) -> index of its option on the cheapest target (priced at 200 input and 300 plain
        output tokens)."""
        probe = self.metrics(np.array([200.0]), np.full((1, len(self)), 300.0))["usd"][0]
        cheapest: dict[tuple[str, str], int] = {}
        for o in self.options:
            key = (o.tier, o.strategy)
            if key not in cheapest or probe[o.index] < probe[cheapest[key]]:
                cheapest[key] = o.index
        return cheapest

    def high_compute(self) -> np.ndarray:
        return np.array([o.high_compute for o in self.options], bool)

    # ---- pricing --------------------------------------------------------------------------------------
    def quality(self, p_correct: np.ndarray) -> np.ndarray:
        """Expected quality (n, n_options) from per-tier single-sample P(correct) (n, n_tiers)."""
        out = np.empty((p_correct.shape[0], len(self.options)))
        for si, strategy in enumerate(self.strategies):
            cols = np.flatnonzero(self.strategy_of == si)
            tier_cols = self.tier_col[cols]
            out[:, cols] = self.quality_fn(p_correct[:, tier_cols], strategy)
        return np.clip(out, 0.0, 1.0)

    def metrics(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Cost-model metrics (n, n_options) for per-query input tokens (n,) and per-(query, option) plain
        single-sample output tokens (n, n_options)."""
        inp = np.asarray(input_tokens, float)[:, None]
        if self.linear:
            return {m: c[0] + c[1] * inp + c[2] * output_tokens for m, c in self.coef.items()}
        assert self.exact_fn is not None
        cols = [self.exact_fn(j, inp[:, 0], output_tokens[:, j]) for j in range(len(self.options))]
        return {m: np.stack([c[m] for c in cols], axis=1) for m in METRICS}

    def price(self, forecast: Forecast) -> OptionArrays:
        """Price every option for every query of `forecast`."""
        cols = self.tier_columns(forecast)
        p50 = forecast.output_tokens_p50[:, cols]
        p90 = np.maximum(forecast.output_tokens_p90[:, cols], p50)
        mean = lognormal_mean(p50, p90)
        same = tuple(forecast.tiers) == self.forecast_tiers
        tier_p = forecast.p_correct if same else _reorder(forecast, self.forecast_tiers)
        at_mean = self.metrics(forecast.input_tokens, mean)
        at_p90 = self.metrics(forecast.input_tokens, p90)
        return OptionArrays(
            quality=self.quality(tier_p),
            usd=at_mean["usd"],
            usd_p90=at_p90["usd"],
            latency_s=at_mean["latency_s"],
            latency_p90_s=at_p90["latency_s"],
            ttft_s=at_mean["ttft_s"],
            energy_j=at_mean["energy_j"],
            device_s=at_mean["device_s"],
            tokens_p90=forecast.input_tokens[:, None] + p90 * self.output_multiplier[None, :],
        )

    def level_errors(self, forecast: Forecast) -> tuple[np.ndarray, np.ndarray] | None:
        """(se, level), shape (queries, options), for `planner.solve.optimism`: each option's logit standard
        error of its tier's level and the id of that shared level (queries of one `level_group` share it);
        None when the forecast carries no level errors."""
        if forecast.level_se is None or forecast.level_group is None:
            return None
        cols = self.tier_columns(forecast)
        group = np.asarray(forecast.level_group, dtype=np.int64)[:, None]
        return np.asarray(forecast.level_se, dtype=float)[:, cols], group * len(forecast.tiers) + cols[
            None, :
        ]

    def tier_columns(self, forecast: Forecast) -> np.ndarray:
        """Each option's tier column in `forecast` (raises INVALID_ARGUMENT when it lacks a tier)."""
        if tuple(forecast.tiers) == self.forecast_tiers:
            return self.tier_col
        missing = [t for t in self.forecast_tiers if t not in forecast.tiers]
        if missing:
            raise InvalidArgumentError.for_field(
                "forecast.tiers", list(forecast.tiers), f"lacks tiers {missing}"
            )
        return np.array([forecast.tiers.index(o.tier) for o in self.options], dtype=np.intp)


def _reorder(forecast: Forecast, tiers: tuple[str, ...]) -> np.ndarray:
    idx = [forecast.tiers.index(t) for t in tiers]
    return forecast.p_correct[:, idx]


def _fit_coefficients(
    cost_model: CostModelLike, combos: Sequence[tuple[ModelTier, Strategy, Target]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Affine coefficients of each metric in (input, output) tokens, and whether the fit is exact."""
    design = np.stack([np.ones_like(_PROBE_IN), _PROBE_IN, _PROBE_OUT], axis=1)
    coef = {m: np.zeros((3, len(combos))) for m in METRICS}
    linear = True
    for j, (t, s, g) in enumerate(combos):
        res = cost_model.option_cost(t, s, g, _PROBE_IN, _PROBE_OUT)
        for m in METRICS:
            y = np.asarray(getattr(res, m), float)
            beta, *_ = np.linalg.lstsq(design, y, rcond=None)
            coef[m][:, j] = beta
            resid = np.max(np.abs(design @ beta - y))
            if resid > 1e-6 * max(1.0, float(np.max(np.abs(y)))):
                linear = False
    return coef, linear
