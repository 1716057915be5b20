"""Strategies for run records whose strategy name the catalog does not know.

Run logs name test-time strategies in many ways: `majority_vote` with `{"n": 5}`, `maj@8`,
`self_consistency_16`, `best_of_4`, `greedy`, `self_refine` ... For each distinct (strategy name,
strategy_params) of the runs whose name is not a catalog strategy, `resolve_strategies` reads

- the kind, from words of the name (`KIND_WORDS`, searched in order: search before best-of-N before vote
  before revision before chain of thought before single, so `cot_sc` is a vote);
- the sample count (params `n`, `samples`, `k`, `num_samples`, `best_of`, `width`, else the last number in the
  name) and the rounds (params `steps`, `rounds`, `revisions`, `depth`, `iterations`); a single or
  chain-of-thought pass with several samples (params, or `@N` at the end of the name: `cot@8`) is read as
  a majority vote over them (self-consistency), its longer samples priced by the measured token multiplier;
  `pass@k` names no deployable strategy (it needs the answer key) and is left out;

and maps it onto the catalog strategy of the same kind, samples and rounds (an alias), else derives a strategy
of that shape named after the run name (plus `-n<samples>` when one name comes with several sample counts).
A derived strategy's token multiplier is measured from the runs -- the median ratio of its output tokens to
the plain single-pass tokens of the same (task, query, model), per sample and round -- when at least
`MIN_TOKEN_PAIRS` such pairs exist, else copied from a catalog strategy of the same kind; verifier figures
are copied from one of the same kind (ASSUMPTION, said in its description); it is high-compute when it
generates more than `HIGH_COMPUTE_MULTIPLIER` x a plain answer (the default catalog's own line: vote8, bon8
and prm_search are flagged, vote5 is not). A name whose kind or sample count cannot be read is left out with
a note (its runs stay in the store; the planner does not offer it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.catalog import Catalog, Strategy, StrategyKind
from planner.store.run_insert import params_key as store_params_key

MIN_TOKEN_PAIRS = 20
HIGH_COMPUTE_MULTIPLIER = 5.0
KIND_WORDS: tuple[tuple[StrategyKind, str], ...] = (
    (StrategyKind.PRM_SEARCH, r"prm|beam|search|tree|mcts|(^|[^a-z])tot($|[^a-z])"),
    (StrategyKind.BEST_OF_N, r"best.?of|(^|[^a-z])bo[n\d]|rerank|verif|(^|[^a-z])orm($|[^a-z])"),
    (StrategyKind.MAJORITY_VOTE, r"vote|voting|majority|(^|[^a-z])maj|consistency|(^|[^a-z])sc($|[^a-z])"),
    (StrategyKind.REVISION, r"revis|refine|reflect|critique|iterat|correct"),
    (StrategyKind.CHAIN_OF_THOUGHT, r"(^|[^a-z])cot($|[^a-z])|chain|think|reason|step.?by.?step"),
    (StrategyKind.SINGLE, r"single|greedy|plain|direct|zero.?shot|standard|vanilla|base"),
)
_SAMPLE_KEYS = ("n", "samples", "k", "num_samples", "best_of", "width", "n_samples")
_ROUND_KEYS = ("steps", "rounds", "revisions", "depth", "iterations", "serial_steps")
_MULTI = (StrategyKind.MAJORITY_VOTE, StrategyKind.BEST_OF_N, StrategyKind.PRM_SEARCH)


def params_key(value: Any) -> str:
    """The canonical text of a run's strategy_params: the store's own (`planner.store.run_insert.params_key`,
    what the run's idempotency key holds; '' for none), with a frame's missing value (NaN) as none."""
    if not isinstance(value, str | bytes | Mapping):
        return ""
    return store_params_key(value)


def run_params(runs: pd.DataFrame) -> pd.Series:
    """`params_key` of every run (all '' when the frame has no strategy_params column)."""
    if "strategy_params" not in runs:
        return pd.Series("", index=runs.index, dtype=object)
    return runs["strategy_params"].map(params_key)


def kind_of(name: str) -> StrategyKind | None:
    low = name.lower()
    for kind, pattern in KIND_WORDS:
        if re.search(pattern, low):
            return kind
    return None


def _int_param(params: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
            return int(value)
    return None


def shape_of(name: str, params_json: str) -> tuple[StrategyKind, int, int] | str:
    """(kind, samples, rounds) of a run strategy, or why it cannot be read."""
    if re.search(r"pass\s*@\s*\d+", name.lower()):
        return (
            "pass@k counts a query solved when any of k samples is right: that needs the answer key, "
            "so it is not a strategy the planner can deploy"
        )
    kind = kind_of(name)
    if kind is None:
        return f"kind not recognised from the name (words for each kind: {[k.value for k, _ in KIND_WORDS]})"
    try:
        params = json.loads(params_json)
    except json.JSONDecodeError:
        params = {}
    params = params if isinstance(params, Mapping) else {}
    numbers = re.findall(r"\d+", name)
    samples = _int_param(params, _SAMPLE_KEYS)
    rounds = _int_param(params, _ROUND_KEYS) or 1
    if kind in _MULTI:
        samples = samples or (int(numbers[-1]) if numbers else None)
        if samples is None or samples < 2:
            return f"a {kind.value} strategy needs a sample count >= 2 (strategy_params n, or in the name)"
    elif kind is StrategyKind.REVISION:
        rounds = _int_param(params, _ROUND_KEYS) or (int(numbers[-1]) if numbers else 2)
        samples = 1
    else:  # a plain or chain-of-thought pass sampled several times (`cot@8`, `{"n": 5}`) is voted over
        at = re.search(r"@(\d+)\s*$", name)
        samples = samples or (int(at.group(1)) if at else 1)
        if samples > 1:
            return StrategyKind.MAJORITY_VOTE, samples, max(1, rounds)
    return kind, samples, max(1, rounds)


@dataclass(frozen=True)
class StrategyResolution:
    mapping: Mapping[tuple[str, str], str]
    """(run strategy name, canonical params) -> catalog or derived strategy name."""
    derived: tuple[Strategy, ...]
    how: Mapping[str, str]
    """run strategy label -> what was done."""
    used_by: Mapping[str, frozenset[str]]
    """derived strategy name -> run models with runs of it."""


def resolve_strategies(catalog: Catalog, runs: pd.DataFrame, plain: str = "single") -> StrategyResolution:
    """Map every run strategy name the catalog lacks (module docstring)."""
    if "strategy" not in runs or not len(runs):
        return StrategyResolution({}, (), {}, {})
    names = {s.name for s in catalog.strategies}
    strategy = runs["strategy"].fillna(plain).astype(str)
    params = run_params(runs)
    keys = pd.DataFrame({"name": strategy, "params": params})
    unknown = keys[~keys["name"].isin(names)].drop_duplicates()
    mapping: dict[tuple[str, str], str] = {}
    derived: dict[str, Strategy] = {}
    how: dict[str, str] = {}
    used_by: dict[str, set[str]] = {}
    counts = unknown.groupby("name")["params"].nunique()
    plain_names = {
        (name, pj): plain
        for name, pj in unknown.itertuples(index=False)
        if shape_of(name, pj) == (StrategyKind.SINGLE, 1, 1) and plain in names
    }
    plain_rows = plain_mask(runs, plain_names, plain)
    for name, pj in unknown.itertuples(index=False):
        label = f"{name} {pj}" if pj else name
        shape = shape_of(name, pj)
        if isinstance(shape, str):
            how[label] = f"left out: {shape}"
            continue
        alias = _same_shape(catalog, *shape)
        if alias is not None:
            mapping[(name, pj)] = alias.name
            how[label] = f"alias of catalog strategy {alias.name!r}"
            continue
        new_name = name if counts[name] == 1 else f"{name}-n{shape[1]}"
        rows = (keys["name"] == name) & (keys["params"] == pj)
        s, note = _derive(catalog, new_name, shape, runs, rows.to_numpy(), plain_rows)
        derived[new_name] = s
        mapping[(name, pj)] = new_name
        used_by.setdefault(new_name, set()).update(runs.loc[rows.to_numpy(), "model"].astype(str))
        how[label] = f"derived strategy {new_name!r}: {note}"
    return StrategyResolution(
        mapping, tuple(derived.values()), how, {k: frozenset(v) for k, v in used_by.items()}
    )


def _same_shape(catalog: Catalog, kind: StrategyKind, samples: int, rounds: int) -> Strategy | None:
    for s in catalog.strategies:
        if s.kind is kind and s.samples == samples and s.serial_steps == rounds:
            return s
    return None


def _derive(
    catalog: Catalog,
    name: str,
    shape: tuple[StrategyKind, int, int],
    runs: pd.DataFrame,
    rows: np.ndarray,
    plain_rows: np.ndarray,
) -> tuple[Strategy, str]:
    kind, samples, rounds = shape
    like = next((s for s in catalog.strategies if s.kind is kind), None)
    verifier_cost = like.verifier_cost if like is not None else (0.2 if kind in _MULTI[1:] else 0.0)
    verifier_acc = like.verifier_accuracy if like is not None else (0.8 if kind in _MULTI[1:] else 0.0)
    measured = _token_ratio(runs, rows, plain_rows)
    if measured is not None:
        tm = float(np.clip(measured / (samples * rounds * (1.0 + verifier_cost)), 0.05, 50.0))
        note = f"token multiplier {tm:.2f} measured on {int(rows.sum())} runs"
    else:
        tm = like.token_multiplier if like is not None else 1.0
        note = f"token multiplier {tm:g} copied from {like.name if like else 'the default'} (too few pairs)"
    multiplier = samples * rounds * tm * (1.0 + verifier_cost)
    assumption = f"; ASSUMPTION: verifier as {like.name!r}" if kind in _MULTI[1:] and like else ""
    strategy = Strategy(
        name=name,
        kind=kind,
        samples=samples,
        serial_steps=rounds,
        token_multiplier=tm,
        verifier_cost=verifier_cost,
        verifier_accuracy=verifier_acc,
        high_compute=multiplier > HIGH_COMPUTE_MULTIPLIER,
        description=f"derived from run records: {kind.value}, {samples} samples, {rounds} rounds; {note}"
        + assumption,
    )
    return strategy, note


def plain_mask(
    runs: pd.DataFrame, mapping: Mapping[tuple[str, str], str], plain: str = "single"
) -> np.ndarray:
    """Which runs are plain single passes: strategy `plain`, or a name `mapping` resolves to it."""
    if "strategy" not in runs:
        return np.ones(len(runs), dtype=bool)
    strategy = runs["strategy"].fillna(plain).astype(str)
    out = np.array(strategy == plain, dtype=bool)
    aliases = {k for k, v in mapping.items() if v == plain}
    if aliases:
        params = run_params(runs)
        pairs = pd.Series(list(zip(strategy, params, strict=True)), index=runs.index)
        out |= pairs.isin(aliases).to_numpy()
    return out


def _token_ratio(runs: pd.DataFrame, rows: np.ndarray, is_plain: np.ndarray) -> float | None:
    """Median output tokens of the strategy's runs over the plain runs of the same (task, query, model)."""
    if "output_tokens" not in runs:
        return None
    tokens = pd.to_numeric(runs["output_tokens"], errors="coerce")
    task = runs["task"].astype(str) if "task" in runs else pd.Series("", index=runs.index)
    key = task + "\x1f" + runs["query_id"].astype(str) + "\x1f" + runs["model"].astype(str)
    base = tokens[is_plain].groupby(key[is_plain]).mean()
    mine = tokens[rows]
    ratio = (mine / key[rows].map(base)).replace([np.inf, -np.inf], np.nan).dropna()
    ratio = ratio[ratio > 0]
    return float(ratio.median()) if len(ratio) >= MIN_TOKEN_PAIRS else None
