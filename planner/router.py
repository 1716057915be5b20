"""Online routing core: price a batch of queries' options fast, then pick argmax(quality - prices . cost).

Pure and vectorised. `FastPricer` turns a `models.api.Forecast` into `planner.options.OptionArrays` like
`OptionSet.price` does (same affine cost coefficients of the one cost model), but reads the strategy response
from a per-strategy table over P(correct) instead of evaluating it per call: the beta-binomial responses of
`models.strategies` cost about a millisecond per query, the table a few microseconds (linear interpolation on
a 2049-point grid; error below 1e-4 for the smooth responses, checked in tests).

`choose(arrays, allowed, prices)` picks, per query, the allowed option with the best score
``quality - lambda_usd * usd - mu_kwh * energy_kwh`` (ties go to the cheaper option), the runner-up (best
option of a different tier x strategy), the best-quality allowed option (what an unpriced router would pick)
and the marginal quality per extra USD up the efficient frontier from the chosen option.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.api import Forecast
from planner.errors import InvalidArgumentError
from planner.options import OptionArrays, OptionSet, lognormal_mean

J_PER_KWH = 3.6e6
GRID = 2049
"""Points of the P(correct) grid the strategy responses are tabulated on."""
ROW_CACHE = 4096
"""Forecast rows whose token-independent pricing `FastPricer` keeps (small batches and single queries)."""
CACHED_BATCH = 64
"""Batches up to this size are priced row by row through the cache; larger ones fully vectorised."""
TIE_BREAK_PER_USD = 1e-6
"""Quality per USD always charged, so that equal-quality options resolve to the cheapest."""


@dataclass(frozen=True)
class ShadowPrices:
    """Prices of the constrained resources in quality units: per USD of spend and per kWh of energy."""

    usd: float = 0.0
    energy_kwh: float = 0.0

    def __post_init__(self) -> None:
        for name in ("usd", "energy_kwh"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InvalidArgumentError.for_field(
                    f"shadow_prices.{name}", value, "must be finite and >= 0"
                )


@dataclass(frozen=True)
class Choice:
    """Per-query outcome of `choose`; index arrays of shape (n,), -1 where there is none."""

    chosen: np.ndarray
    runner_up: np.ndarray
    top_quality: np.ndarray
    """The best-quality allowed option (what the router picks at zero prices)."""
    gain_per_usd: np.ndarray
    """Marginal expected quality per extra USD to the next option up the efficient frontier (0: none)."""

    @property
    def feasible(self) -> np.ndarray:
        return self.chosen >= 0


class FastPricer:
    """`OptionSet.price` with tabulated strategy responses (see module docstring)."""

    def __init__(self, options: OptionSet) -> None:
        self.options = options
        grid = np.linspace(0.0, 1.0, GRID)
        table = np.empty((len(options.strategies), GRID))
        for si, strategy in enumerate(options.strategies):
            table[si] = np.clip(options.quality_fn(grid[:, None], strategy)[:, 0], 0.0, 1.0)
        self.table = table
        self._flat = table.ravel()
        self._row_base = (options.strategy_of * GRID).astype(np.intp)
        self.group = _groups(options)
        self.high_compute = options.high_compute()
        rows = [("usd", 0), ("usd", 1), ("latency_s", 0), ("latency_s", 1), ("ttft_s", 0), ("energy_j", 0),
                ("device_s", 0)]  # fmt: skip
        coef = np.stack([options.coef[m] for m, _ in rows], axis=1)  # (3, 7, k)
        self._c0, self._c1, self._c2 = coef[0][None], coef[1][None], coef[2][None]
        self._which_out = np.array([w for _, w in rows], np.intp)
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def quality(self, p_correct: np.ndarray) -> np.ndarray:
        """Expected quality (n, n_options) from per-tier P(correct) (n, n_tiers), option-set tier order."""
        p = np.clip(p_correct[:, self.options.tier_col], 0.0, 1.0) * (GRID - 1)
        lo = np.minimum(p.astype(np.intp), GRID - 2)
        w = p - lo
        idx = lo + self._row_base
        return self._flat[idx] * (1.0 - w) + self._flat[idx + 1] * w

    def price(self, forecast: Forecast) -> OptionArrays:
        opts = self.options
        if not opts.linear:  # exact path (cost model not affine in tokens): the option set prices it
            return opts.price(forecast)
        same = tuple(forecast.tiers) == opts.forecast_tiers
        if same:
            p_tier, p50_t, p90_t = forecast.p_correct, forecast.output_tokens_p50, forecast.output_tokens_p90
        else:
            idx = _tier_index(forecast, opts.forecast_tiers)
            p_tier = forecast.p_correct[:, idx]
            p50_t, p90_t = forecast.output_tokens_p50[:, idx], forecast.output_tokens_p90[:, idx]
        inp = np.asarray(forecast.input_tokens, float)[:, None, None]
        if len(inp) <= CACHED_BATCH:
            parts = [
                self._cached_parts(p_tier[i : i + 1], p50_t[i : i + 1], p90_t[i : i + 1])
                for i in range(len(inp))
            ]
            if len(parts) == 1:
                quality, base, p90 = parts[0]
            else:
                quality, base, p90 = (np.concatenate(x) for x in zip(*parts, strict=True))
        else:
            quality, base, p90 = self._row_parts(p_tier, p50_t, p90_t)
        return self._assemble(quality, base + self._c1 * inp, inp, p90)

    def _row_parts(
        self, p_tier: np.ndarray, p50_t: np.ndarray, p90_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What does not depend on input tokens: quality, c0 + c_out * out (n, 7, k), p90 output tokens."""
        opts = self.options
        p90_tier = np.maximum(p90_t, p50_t)
        mean = lognormal_mean(p50_t, p90_tier)[:, opts.tier_col]  # per tier, then gathered to options
        p90 = p90_tier[:, opts.tier_col]
        out = np.stack([mean, p90], axis=1)[:, self._which_out, :]  # (n, 7, k)
        return self.quality(p_tier), self._c0 + self._c2 * out, p90

    def _cached_parts(
        self, p_tier: np.ndarray, p50_t: np.ndarray, p90_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_row_parts` of one forecast row, cached by its bytes (a prior forecaster repeats its rows)."""
        key = p_tier.tobytes() + p50_t.tobytes() + p90_t.tobytes()
        parts = self._cache.get(key)
        if parts is None:
            parts = self._row_parts(p_tier, p50_t, p90_t)
            if len(self._cache) >= ROW_CACHE:
                self._cache.clear()
            self._cache[key] = parts
        return parts

    def _assemble(self, quality: np.ndarray, m: np.ndarray, inp: np.ndarray, p90: np.ndarray) -> OptionArrays:
        opts = self.options
        return OptionArrays(
            quality=quality,
            usd=m[:, 0],
            usd_p90=m[:, 1],
            latency_s=m[:, 2],
            latency_p90_s=m[:, 3],
            ttft_s=m[:, 4],
            energy_j=m[:, 5],
            device_s=m[:, 6],
            tokens_p90=inp[:, 0] + p90 * opts.output_multiplier[None, :],
        )


def _tier_index(forecast: Forecast, tiers: tuple[str, ...]) -> list[int]:
    missing = [t for t in tiers if t not in forecast.tiers]
    if missing:
        raise InvalidArgumentError.for_field("forecast.tiers", list(forecast.tiers), f"lacks tiers {missing}")
    return [forecast.tiers.index(t) for t in tiers]


def _groups(options: OptionSet) -> np.ndarray:
    """Integer id of each option's (tier, strategy): options differing only in target share an id."""
    keys: dict[tuple[str, str], int] = {}
    return np.array([keys.setdefault((o.tier, o.strategy), len(keys)) for o in options.options], np.intp)


def scores(arrays: OptionArrays, prices: ShadowPrices) -> np.ndarray:
    """quality - lambda * usd - mu * kWh (plus the cheapest-on-ties term), shape (n, n_options)."""
    out = arrays.quality - (prices.usd + TIE_BREAK_PER_USD) * arrays.usd
    if prices.energy_kwh > 0:
        out = out - (prices.energy_kwh / J_PER_KWH) * arrays.energy_j
    return np.asarray(out)


def choose(
    arrays: OptionArrays, allowed: np.ndarray, prices: ShadowPrices, group: np.ndarray | None = None
) -> Choice:
    """The best allowed option per query under `prices` (module docstring); `allowed` is (n, k) or (k,)."""
    n, k = arrays.shape
    if n == 1:
        return _choose_one(arrays, allowed.reshape(k), prices, group)
    if allowed.shape != (n, k):
        allowed = np.broadcast_to(allowed, (n, k))
    rows = np.arange(n)
    s = np.where(allowed, scores(arrays, prices), -np.inf)
    chosen = np.argmax(s, axis=1)
    any_allowed = allowed[rows, chosen]
    if prices.usd == 0 and prices.energy_kwh == 0:
        top = chosen  # unpriced: the choice is the best-quality option (cheapest on ties)
    else:
        top = np.argmax(np.where(allowed, arrays.quality - TIE_BREAK_PER_USD * arrays.usd, -np.inf), axis=1)
    if group is not None:
        s = np.where(group[None, :] == group[chosen][:, None], -np.inf, s)
    else:
        s[rows, chosen] = -np.inf
    runner = np.argmax(s, axis=1)
    has_runner = np.isfinite(s[rows, runner])
    gain = frontier_gain(arrays, allowed, chosen)
    if any_allowed.all():
        return Choice(chosen, np.where(has_runner, runner, -1), top, gain)
    return Choice(
        chosen=np.where(any_allowed, chosen, -1),
        runner_up=np.where(any_allowed & has_runner, runner, -1),
        top_quality=np.where(any_allowed, top, -1),
        gain_per_usd=np.where(any_allowed, gain, 0.0),
    )


def _choose_one(
    arrays: OptionArrays, allowed: np.ndarray, prices: ShadowPrices, group: np.ndarray | None
) -> Choice:
    """`choose` for one query (allowed of shape (k,)): the same result with a third of the numpy calls (the
    Route hot path decides lone calls one at a time)."""
    q, u = arrays.quality[0], arrays.usd[0]
    s = q - (prices.usd + TIE_BREAK_PER_USD) * u
    if prices.energy_kwh > 0:
        s = s - (prices.energy_kwh / J_PER_KWH) * arrays.energy_j[0]
    s = np.where(allowed, s, -np.inf)
    c = int(s.argmax())
    if not allowed[c]:
        none = np.array([-1])
        return Choice(none, none, none, np.zeros(1))
    if prices.usd == 0 and prices.energy_kwh == 0:
        top = c
    else:
        top = int(np.where(allowed, q - TIE_BREAK_PER_USD * u, -np.inf).argmax())
    if group is not None:
        s[group == group[c]] = -np.inf
    else:
        s[c] = -np.inf
    r = int(s.argmax())
    dc = u - u[c]
    up = allowed & (dc > 1e-15)
    gain = max(float(((q[up] - q[c]) / dc[up]).max()), 0.0) if up.any() else 0.0
    return Choice(np.array([c]), np.array([r if s[r] > -np.inf else -1]), np.array([top]), np.array([gain]))


def best(arrays: OptionArrays, allowed: np.ndarray, prices: ShadowPrices) -> np.ndarray:
    """Just the argmax of `choose` (index per query; meaningless where nothing is allowed)."""
    return np.asarray(np.argmax(np.where(allowed, scores(arrays, prices), -np.inf), axis=1))


def frontier_gain(arrays: OptionArrays, allowed: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Slope of the efficient frontier just above each chosen option: max over dearer allowed options of
    (quality gain) / (extra USD), floored at 0."""
    rows = np.arange(arrays.shape[0])
    q0 = arrays.quality[rows, chosen][:, None]
    c0 = arrays.usd[rows, chosen][:, None]
    dc = arrays.usd - c0
    up = allowed & (dc > 1e-15)
    slope = np.where(up, (arrays.quality - q0) / np.where(up, dc, 1.0), 0.0)
    return np.asarray(np.maximum(slope.max(axis=1, initial=0.0), 0.0))


def mean_chosen_cost(
    quality: np.ndarray, usd: np.ndarray, energy_j: np.ndarray, allowed: np.ndarray, prices: ShadowPrices
) -> tuple[float, float]:
    """Mean USD and energy (J) of the options `choose` would pick for these rows (the pacing dual's
    sub-gradient)."""
    s = quality - (prices.usd + TIE_BREAK_PER_USD) * usd - (prices.energy_kwh / J_PER_KWH) * energy_j
    s = np.where(allowed, s, -np.inf)
    idx = np.argmax(s, axis=1)
    rows = np.arange(len(idx))
    ok = allowed[rows, idx]
    if not ok.any():
        return 0.0, 0.0
    return float(usd[rows, idx][ok].mean()), float(energy_j[rows, idx][ok].mean())
