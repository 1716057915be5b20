"""Request streams for the serving simulator: trace replay and seeded Poisson, diurnal and bursty generators.

A workload is never materialised whole: every source yields `RequestChunk`s (columns of numpy arrays, sorted
by arrival time) of at most `chunk_size` requests, so a simulation of millions of requests holds one chunk
at a time. Every generator is a frozen dataclass whose `chunks(seed)` is deterministic for a given seed.

Trace formats:
- ``azure``: the Azure LLM inference trace (``TIMESTAMP, ContextTokens, GeneratedTokens``);
- ``runs``: the project's run-import schema (``timestamp``, ``input_tokens``/``output_tokens`` or
  ``prompt_chars``/``output_chars``, optional ``tenant``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from planner.errors import FieldViolation, InvalidArgumentError

CHARS_PER_TOKEN = 4.0
DEFAULT_CHUNK = 65_536


@dataclass(frozen=True)
class RequestChunk:
    """A slice of a request stream. `tenant` holds indices into `tenants`, `task` indices into `tasks`
    (a task is a request class a routing policy may treat differently, e.g. "chat" vs "reasoning")."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    tenant: np.ndarray
    tenants: tuple[str, ...] = ("default",)
    task: np.ndarray | None = None
    tasks: tuple[str, ...] = ("default",)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if self.task is None:
            object.__setattr__(self, "task", np.zeros(n, np.int32))
        for name in ("input_tokens", "output_tokens", "tenant", "task"):
            if len(getattr(self, name)) != n:
                raise InvalidArgumentError.for_field(
                    name, len(getattr(self, name)), f"length differs from {n}"
                )

    @property
    def task_index(self) -> np.ndarray:
        """`task` as a non-optional array (always set after construction)."""
        assert self.task is not None
        return self.task

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, mask: np.ndarray) -> RequestChunk:
        return RequestChunk(
            self.arrival_s[mask],
            self.input_tokens[mask],
            self.output_tokens[mask],
            self.tenant[mask],
            self.tenants,
            self.task_index[mask],
            self.tasks,
        )


def weight_table(name: str, weights: Mapping[str, float]) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and normalised probabilities of a {name: weight} mix; rejects empty or negative mixes."""
    names = tuple(weights)
    w = np.array([weights[n] for n in names], dtype=float)
    if not names or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidArgumentError.for_field(name, dict(weights), "need non-negative weights, sum > 0")
    return names, w / w.sum()


def draw(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """n seeded draws of category indices with probabilities p."""
    if len(p) == 1:
        return np.zeros(n, np.int32)
    return np.searchsorted(np.cumsum(p), rng.random(n), side="right").clip(0, len(p) - 1).astype(np.int32)


class Workload(Protocol):
    """Anything that yields request chunks for a seed."""

    def chunks(self, seed: int) -> Iterator[RequestChunk]: ...


@dataclass(frozen=True)
class TokenDist:
    """Log-normal token counts with the given median and log-space sigma, clipped to [minimum, maximum]."""

    median: float
    sigma: float = 0.8
    minimum: int = 1
    maximum: int = 32_768

    def __post_init__(self) -> None:
        if self.median <= 0:
            raise InvalidArgumentError.for_field("median", self.median, "must be > 0")
        if self.sigma < 0:
            raise InvalidArgumentError.for_field("sigma", self.sigma, "must be >= 0")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = np.exp(np.log(self.median) + self.sigma * rng.standard_normal(n))
        return np.clip(np.round(x), self.minimum, self.maximum)


@dataclass(frozen=True)
class _Common:
    """Fields shared by the synthetic generators."""

    input_tokens: TokenDist = field(default_factory=lambda: TokenDist(1020.0, 0.9))
    output_tokens: TokenDist = field(default_factory=lambda: TokenDist(129.0, 0.8))
    tenants: Mapping[str, float] = field(default_factory=lambda: {"default": 1.0})
    tasks: Mapping[str, float] = field(default_factory=lambda: {"default": 1.0})
    duration_s: float = 3600.0
    max_requests: int | None = None
    chunk_size: int = DEFAULT_CHUNK

    def _finish(self, rng: np.random.Generator, arrivals: np.ndarray) -> RequestChunk:
        names, p = weight_table("tenants", self.tenants)
        tasks, q = weight_table("tasks", self.tasks)
        n = len(arrivals)
        return RequestChunk(
            arrivals,
            self.input_tokens.sample(rng, n),
            self.output_tokens.sample(rng, n),
            draw(rng, p, n),
            names,
            draw(rng, q, n),
            tasks,
        )

    def _stream(self, seed: int, arrivals: Iterator[np.ndarray]) -> Iterator[RequestChunk]:
        rng = np.random.default_rng([seed, 1])
        emitted = 0
        for arr in arrivals:
            arr = arr[arr < self.duration_s]
            if self.max_requests is not None:
                arr = arr[: self.max_requests - emitted]
            if len(arr):
                emitted += len(arr)
                yield self._finish(rng, arr)
            if len(arr) < self.chunk_size or (self.max_requests is not None and emitted >= self.max_requests):
                return


def _homogeneous(
    rng: np.random.Generator, rate: float, chunk: int, start: float = 0.0
) -> Iterator[np.ndarray]:
    t = start
    while True:
        arr = t + np.cumsum(rng.exponential(1.0 / rate, chunk))
        t = float(arr[-1])
        yield arr


@dataclass(frozen=True)
class PoissonWorkload(_Common):
    """Homogeneous Poisson arrivals at `rate_per_s`."""

    rate_per_s: float = 1.0

    def chunks(self, seed: int) -> Iterator[RequestChunk]:
        _positive("rate_per_s", self.rate_per_s)
        rng = np.random.default_rng([seed, 0])
        return self._stream(seed, _homogeneous(rng, self.rate_per_s, self.chunk_size))


@dataclass(frozen=True)
class DiurnalWorkload(_Common):
    """Non-homogeneous Poisson with a sinusoidal daily rate, mean `mean_rate_per_s`, peak at `peak_hour`:
    rate(t) = mean * (1 + amplitude * cos(2 pi (t/period - peak_hour/24))). Sampled by thinning."""

    mean_rate_per_s: float = 1.0
    amplitude: float = 0.5
    peak_hour: float = 14.0
    period_s: float = 86_400.0

    def rate(self, t: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (t / self.period_s - self.peak_hour / 24.0)
        return self.mean_rate_per_s * (1.0 + self.amplitude * np.cos(phase))

    def chunks(self, seed: int) -> Iterator[RequestChunk]:
        _positive("mean_rate_per_s", self.mean_rate_per_s)
        if not 0 <= self.amplitude <= 1:
            raise InvalidArgumentError.for_field("amplitude", self.amplitude, "must be in [0, 1]")
        rng = np.random.default_rng([seed, 0])
        peak = self.mean_rate_per_s * (1 + self.amplitude)
        return self._stream(seed, self._thinned(rng, peak))

    def _thinned(self, rng: np.random.Generator, peak: float) -> Iterator[np.ndarray]:
        pending = np.empty(0)
        for cand in _homogeneous(rng, peak, self.chunk_size):
            keep = cand[rng.random(len(cand)) * peak < self.rate(cand)]
            pending = np.concatenate([pending, keep])
            while len(pending) >= self.chunk_size:
                yield pending[: self.chunk_size]
                pending = pending[self.chunk_size :]
            if cand[-1] >= self.duration_s:
                yield pending
                return


@dataclass(frozen=True)
class BurstyWorkload(_Common):
    """Markov-modulated Poisson: a calm state at `base_rate_per_s` and bursts at `burst_rate_per_s`, with
    exponentially distributed sojourns of mean `calm_s` and `burst_s`."""

    base_rate_per_s: float = 1.0
    burst_rate_per_s: float = 5.0
    calm_s: float = 300.0
    burst_s: float = 30.0

    def chunks(self, seed: int) -> Iterator[RequestChunk]:
        for name in ("base_rate_per_s", "burst_rate_per_s", "calm_s", "burst_s"):
            _positive(name, getattr(self, name))
        rng = np.random.default_rng([seed, 0])
        return self._stream(seed, self._modulated(rng))

    def _modulated(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        t, burst, pending = 0.0, False, []
        size = 0
        while True:
            stay = rng.exponential(self.burst_s if burst else self.calm_s)
            rate = self.burst_rate_per_s if burst else self.base_rate_per_s
            n = rng.poisson(rate * stay)
            pending.append(np.sort(t + rng.random(n) * stay))
            size += n
            t += stay
            burst = not burst
            if size >= self.chunk_size or t >= self.duration_s:
                arr = np.concatenate(pending)
                while len(arr) >= self.chunk_size:
                    yield arr[: self.chunk_size]
                    arr = arr[self.chunk_size :]
                if t >= self.duration_s:
                    yield arr
                    return
                pending, size = [arr], len(arr)


@dataclass(frozen=True)
class TraceWorkload:
    """Replay of a request trace file (`fmt` = "azure" or "runs"), read in chunks.

    `time_scale` divides inter-arrival times (2.0 = twice the request rate); `repeat` replays the trace back
    to back that many times (each copy shifted by the trace span plus one mean gap); `max_requests` stops
    early. Tenant and task come from the trace's ``tenant`` / ``task`` columns when present, else they are
    drawn (seeded) from the `tenants` / `tasks` mixes; arrivals and tokens are the trace's own."""

    path: str
    fmt: str = "azure"
    time_scale: float = 1.0
    repeat: int = 1
    max_requests: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    tenants: Mapping[str, float] = field(default_factory=lambda: {"default": 1.0})
    tasks: Mapping[str, float] = field(default_factory=lambda: {"default": 1.0})

    def chunks(self, seed: int = 0) -> Iterator[RequestChunk]:
        _positive("time_scale", self.time_scale)
        if self.fmt not in _READERS:
            raise InvalidArgumentError.for_field("fmt", self.fmt, f"must be one of {sorted(_READERS)}")
        if not Path(self.path).is_file():
            raise InvalidArgumentError.for_field("path", self.path, "no such trace file")
        span, gap = self._span()
        rng = np.random.default_rng([seed, 2])
        labels = _Labels(self.tenants, self.tasks)
        emitted = 0
        for copy in range(max(1, self.repeat)):
            offset = copy * (span + gap)
            for raw in _READERS[self.fmt](self.path, self.chunk_size):
                chunk = labels.chunk(raw, rng, offset, self.time_scale)
                if self.max_requests is not None:
                    chunk = chunk.take(np.arange(len(chunk)) < self.max_requests - emitted)
                emitted += len(chunk)
                if len(chunk):
                    yield chunk
                if self.max_requests is not None and emitted >= self.max_requests:
                    return

    def _span(self) -> tuple[float, float]:
        first = last = None
        n = 0
        for raw in _READERS[self.fmt](self.path, self.chunk_size):
            t = raw["t"]
            first = t[0] if first is None else first
            last, n = t[-1], n + len(t)
        if first is None or last is None:
            raise InvalidArgumentError.for_field("path", self.path, "trace has no rows")
        span = float(last - first) / self.time_scale
        return span, span / max(n - 1, 1)


class _Labels:
    """Tenant and task codes of trace rows: the trace's own columns, else seeded draws from the mixes."""

    def __init__(self, tenants: Mapping[str, float], tasks: Mapping[str, float]) -> None:
        self.mix = {"tenant": weight_table("tenants", tenants), "task": weight_table("tasks", tasks)}
        self.seen: dict[str, dict[str, int]] = {"tenant": {}, "task": {}}

    def codes(self, key: str, raw: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        seen = self.seen[key]
        names = raw.get(key)
        if names is None:
            for name in self.mix[key][0]:
                seen.setdefault(name, len(seen))
            lookup = np.array([seen[n] for n in self.mix[key][0]], np.int32)
            return lookup[draw(rng, self.mix[key][1], len(raw["t"]))]
        return np.array([seen.setdefault(str(x), len(seen)) for x in names], np.int32)

    def chunk(
        self, raw: dict[str, np.ndarray], rng: np.random.Generator, offset: float, scale: float
    ) -> RequestChunk:
        tenant, task = self.codes("tenant", raw, rng), self.codes("task", raw, rng)
        return RequestChunk(
            offset + raw["t"] / scale,
            np.maximum(raw["input"], 1.0),
            np.maximum(raw["output"], 1.0),
            tenant,
            tuple(self.seen["tenant"]),
            task,
            tuple(self.seen["task"]),
        )


def _read_azure(path: str, chunk: int) -> Iterator[dict[str, np.ndarray]]:
    t0: pd.Timestamp | None = None
    for df in pd.read_csv(path, chunksize=chunk):
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(df.columns)
        if missing:
            raise InvalidArgumentError.for_field("path", path, f"azure trace lacks columns {sorted(missing)}")
        ts = pd.to_datetime(df["TIMESTAMP"])
        t0 = ts.iloc[0] if t0 is None else t0
        yield {
            "t": (ts - t0).dt.total_seconds().to_numpy(float),
            "input": df["ContextTokens"].to_numpy(float),
            "output": df["GeneratedTokens"].to_numpy(float),
        }


def _read_runs(path: str, chunk: int) -> Iterator[dict[str, np.ndarray]]:
    t0: pd.Timestamp | None = None
    for df in pd.read_csv(path, chunksize=chunk):
        if "timestamp" not in df.columns:
            raise InvalidArgumentError.for_field("path", path, "a runs trace needs a 'timestamp' column")
        df = df.sort_values("timestamp", kind="stable")
        ts = pd.to_datetime(df["timestamp"], utc=True)
        t0 = ts.iloc[0] if t0 is None else t0
        out = {
            "t": (ts - t0).dt.total_seconds().to_numpy(float),
            "input": _tokens(df, "input_tokens", "prompt_chars"),
            "output": _tokens(df, "output_tokens", "output_chars"),
        }
        for key in ("tenant", "task"):
            if key in df.columns:
                out[key] = df[key].fillna("default").astype(str).to_numpy()
        yield out


def _tokens(df: pd.DataFrame, tokens: str, chars: str) -> np.ndarray:
    if tokens in df.columns:
        return np.maximum(df[tokens].to_numpy(float), 1.0)
    if chars in df.columns:
        return np.maximum(np.ceil(df[chars].to_numpy(float) / CHARS_PER_TOKEN), 1.0)
    raise InvalidArgumentError(
        "runs trace lacks token columns", [FieldViolation(tokens, None, f"or {chars}")]
    )


_READERS = {"azure": _read_azure, "runs": _read_runs}


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError.for_field(name, value, "must be a finite number > 0")


def count_requests(workload: Workload, seed: int = 0) -> int:
    """Number of requests a workload yields (streams it; nothing is kept)."""
    return sum(len(c) for c in workload.chunks(seed))
