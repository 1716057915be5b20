"""A seeded synthetic run history for demos and for the default store (no external data needed).

Each query has a difficulty `b` (normal around a per-task offset); each model tier an ability `theta`; a
sample is correct with probability `sigmoid(theta - b)` (a one-parameter IRT / Rasch model). Abilities are set
so that a tier's mean accuracy on the math task matches a published GSM8K accuracy where one is listed in
`PUBLISHED_GSM8K` (vendor model cards / technical reports, quoted there), else a size-based prior. Output
length grows with difficulty; prompts are templated text whose length and vocabulary follow difficulty, so
text features carry signal. Some queries get repeated samples and a majority-vote record; timestamps span 30
days with a weekly pattern and a trend (daily traffic for forecasting), spread over the catalog's tenants.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from planner.catalog import Catalog, ModelTier, StrategyKind
from planner.ingest import import_records
from planner.store.database import Database
from planner.store.runs import RunStore

DEMO_SOURCE = "demo"
START = datetime(2026, 10, 24, tzinfo=UTC)
DAYS = 30

PUBLISHED_GSM8K: dict[str, tuple[float, str]] = {
    "llama-3.1-405b": (0.968, "Meta Llama 3.1 model card (GSM8K 8-shot CoT, instruct)"),
    "llama-3.1-70b": (0.951, "Meta Llama 3.1 model card (GSM8K 8-shot CoT, instruct)"),
    "llama-3.1-8b": (0.845, "Meta Llama 3.1 model card (GSM8K 8-shot CoT, instruct)"),
    "llama-3-70b": (0.930, "Meta Llama 3 model card (GSM8K 8-shot CoT, instruct)"),
    "llama-3-8b": (0.796, "Meta Llama 3 model card (GSM8K 8-shot CoT, instruct)"),
    "claude-3-opus": (0.950, "Anthropic Claude 3 model card (GSM8K 0-shot CoT)"),
    "claude-3-sonnet": (0.923, "Anthropic Claude 3 model card (GSM8K 0-shot CoT)"),
    "claude-3-haiku": (0.889, "Anthropic Claude 3 model card (GSM8K 0-shot CoT)"),
    "claude-3.5-sonnet": (0.964, "Anthropic Claude 3.5 Sonnet announcement (GSM8K 0-shot CoT)"),
    "phi-3.5-mini": (0.862, "Microsoft Phi-3.5-mini-instruct model card (GSM8K 8-shot CoT)"),
    "gpt-4o-2024-08-06": (0.962, "ZeroEval public GSM8K leaderboard (Yuchen Lin et al.)"),
    "gemma-2-2b": (0.516, "ZeroEval public GSM8K leaderboard (Yuchen Lin et al.)"),
}
"""Tier name -> (GSM8K accuracy, source). Other tiers get `size_prior`."""

TASKS: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "math": (0.0, "math,arithmetic", ("apples", "trains", "coins", "tickets", "eggs", "workers")),
    "code": (0.6, "code,python", ("function", "list", "string", "parser", "cache", "graph")),
    "qa": (-0.4, "knowledge,qa", ("river", "treaty", "element", "painter", "planet", "language")),
    "reasoning": (0.9, "logic,puzzle", ("knights", "boxes", "switches", "islands", "doors", "cards")),
}
"""Task -> (difficulty offset, tags, topic words)."""

_HARD_WORDS = ("prove", "optimise", "recursively", "constraint", "minimise", "invariant", "exactly", "derive")
_EASY_WORDS = ("simple", "one", "total", "each", "how many", "list", "name", "add")
_VOTE_SHARE = 0.2
_COT_SHARE = 0.15
_MAX_TIERS = 10


def size_prior(tier: ModelTier) -> float:
    """A rough GSM8K accuracy prior from active parameters (log-linear, clipped) for unlisted tiers."""
    acc = 0.55 + 0.09 * math.log2(max(tier.active_params_b, 0.5) / 2.5)
    return float(min(max(acc, 0.45), 0.95 if not tier.reasoning else 0.97))


def _ability(acc: float) -> float:
    # Mean of sigmoid(theta - b) over b ~ N(0, 1) is about sigmoid(theta / sqrt(1 + pi / 8)).
    acc = min(max(acc, 0.02), 0.98)
    return math.log(acc / (1 - acc)) * math.sqrt(1 + math.pi / 8)


def _pick_tiers(catalog: Catalog) -> list[ModelTier]:
    known = [t for t in catalog.tiers if t.name in PUBLISHED_GSM8K]
    rest = [t for t in catalog.tiers if t.name not in PUBLISHED_GSM8K]
    return (known + rest)[:_MAX_TIERS]


def _prompt(rng: np.random.Generator, task: str, difficulty: float) -> str:
    topics = TASKS[task][2]
    steps = int(np.clip(round(2 + 1.5 * (difficulty + 1.5) + rng.normal(0, 0.7)), 1, 12))
    words = _HARD_WORDS if difficulty > 0.5 else _EASY_WORDS
    parts = [f"Consider {rng.integers(2, 500)} {rng.choice(topics)}."]
    for _ in range(steps):
        parts.append(
            f"Then {rng.choice(words)} the {rng.choice(topics)} by {rng.integers(2, 90)} "
            f"and {rng.choice(words)} {rng.integers(1, 40)} more {rng.choice(topics)}."
        )
    parts.append(f"What is the {rng.choice(words)} result for the {rng.choice(topics)}?")
    return " ".join(parts)


def _timestamps(rng: np.random.Generator, n: int) -> list[datetime]:
    days = np.arange(DAYS)
    weight = (1 + 0.015 * days) * np.where((days + START.weekday()) % 7 >= 5, 0.6, 1.0)
    day = rng.choice(days, size=n, p=weight / weight.sum())
    hour = np.clip(rng.normal(14, 4, size=n), 0, 23.99)
    return [START + timedelta(days=int(d), hours=float(h)) for d, h in zip(day, hour, strict=True)]


def _vote_strategy(catalog: Catalog) -> tuple[str, int] | None:
    for s in catalog.strategies:
        if s.kind is StrategyKind.MAJORITY_VOTE:
            return s.name, s.samples
    return None


def _cot_strategy(catalog: Catalog) -> tuple[str, float] | None:
    for s in catalog.strategies:
        if s.kind is StrategyKind.CHAIN_OF_THOUGHT:
            return s.name, s.token_multiplier
    return None


def demo_records(catalog: Catalog, n_queries: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """The synthetic history as canonical run records (deterministic for a given catalog, size and seed)."""
    rng = np.random.default_rng(seed)
    tiers = _pick_tiers(catalog)
    tenants = [t.name for t in catalog.tenants] or ["default"]
    vote, cot = _vote_strategy(catalog), _cot_strategy(catalog)
    task_names = list(TASKS)
    task_idx = rng.choice(len(task_names), size=n_queries, p=[0.4, 0.25, 0.2, 0.15])
    difficulty = rng.normal(0, 1, size=n_queries) + np.array([TASKS[task_names[i]][0] for i in task_idx])
    times = _timestamps(rng, n_queries)
    tenant = rng.choice(len(tenants), size=n_queries)
    records: list[dict[str, Any]] = []
    for tier in tiers:
        acc = PUBLISHED_GSM8K.get(tier.name, (size_prior(tier), ""))[0]
        theta = _ability(acc)
        base_tokens = 120 + 40 * math.log2(1 + tier.active_params_b / 10)
        model = tier.run_names[0] if tier.run_names else tier.name
        records += _tier_records(rng, tier.name, model, theta, base_tokens, difficulty, vote, cot)
    queries = [
        {
            "task": task_names[i],
            "query_id": f"demo-{task_names[i]}-{q:05d}",
            "prompt": _prompt(rng, task_names[i], float(difficulty[q])),
            "tags": TASKS[task_names[i]][1],
            "timestamp": times[q],
            "tenant": tenants[tenant[q]],
        }
        for q, i in enumerate(task_idx)
    ]
    for rec in records:
        rec.update(queries[rec.pop("q")])
    return records


def _tier_records(
    rng: np.random.Generator,
    tier: str,
    model: str,
    theta: float,
    base_tokens: float,
    difficulty: np.ndarray,
    vote: tuple[str, int] | None,
    cot: tuple[str, float] | None,
) -> list[dict[str, Any]]:
    n = len(difficulty)
    p = 1 / (1 + np.exp(-(theta - difficulty)))
    tokens = base_tokens * np.exp(0.25 * difficulty + rng.normal(0, 0.3, size=n))
    out: list[dict[str, Any]] = []
    for q in range(n):
        out.append(_record(q, model, tier, "single", 0, rng.random() < p[q], tokens[q]))
    if cot is not None:
        name, mult = cot
        p_cot = 1 / (1 + np.exp(-(theta + 0.4 - difficulty)))
        for q in np.flatnonzero(rng.random(n) < _COT_SHARE).tolist():
            out.append(_record(int(q), model, tier, name, 0, rng.random() < p_cot[q], tokens[q] * mult))
    if vote is not None:
        name, k = vote
        for q in np.flatnonzero(rng.random(n) < _VOTE_SHARE).tolist():
            hits = rng.random(k) < p[q]
            for s in range(1, k):  # sample 0 is the plain run above
                out.append(_record(int(q), model, tier, "single", s, bool(hits[s]), tokens[q]))
            rec = _record(int(q), model, tier, name, 0, bool(hits.sum() * 2 > k), tokens[q] * k)
            rec["strategy_params"] = {"n": k}
            out.append(rec)
    return out


def _record(
    q: int, model: str, tier: str, strategy: str, sample: int, ok: bool, tokens: float
) -> dict[str, Any]:
    return {
        "q": q,
        "model": model,
        "tier": tier,
        "strategy": strategy,
        "sample_index": sample,
        "correct": int(ok),
        "output_tokens": max(1, round(float(tokens))),
    }


def seed_demo(db: Database, catalog: Catalog, n_queries: int = 1000, seed: int = 0) -> int:
    """Write the demo history unless the store already has demo runs; returns the number of runs inserted."""
    store = RunStore(db)
    if store.has_source(DEMO_SOURCE):
        return 0
    result = import_records(demo_records(catalog, n_queries, seed), db, catalog=catalog, source=DEMO_SOURCE)
    return result.inserted
