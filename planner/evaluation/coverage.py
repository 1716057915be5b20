"""Which tiers and queries a replay keeps when the single passes are not recorded on every query.

Historical logs are often *sparse*: each query was answered by only some of the models (a random 60% of
them, a model added late, a model evaluated on a subsample). Two designs:

- **complete case** (the dense design): the tiers recorded on at least `1 - max_missing` of the held-out
  queries, on the queries where every one of them is recorded. Every policy is then scored on the same
  queries (paired comparisons) and no assumption on *why* outcomes are missing is needed. It is used when it
  keeps at least two tiers and at least `1 - max_missing` of all recorded single-pass outcomes of the priced
  tiers (so dense logs -- every tier on every query, or GSM8K where one tier of 42 covers half the queries --
  replay exactly as before, that half-covered tier left out with a note);
- **masked** (sparse logs, where complete case would discard more than that): a tier is kept when its single
  pass is recorded on at least `max(MIN_RECORDED_QUERIES, min_coverage x n)` held-out queries (the bar
  `planner.evaluation.recorded` sets for strategies); each kept tier's single pass is an option *available
  only on the queries where it was recorded* (`Replay.available`), and a query is kept when at least one kept
  tier's single pass is recorded on it. One recorded option is enough: such a query still costs and scores
  something under every policy, so it stays part of the workload (dropping queries by how many models
  answered them would skew the workload whenever coverage depends on the query, and gains nothing when it
  does not); the choosing policies simply have no choice there.

The masked design rests on an assumption the complete-case design does not need: **coverage is missing at
random** (whether a tier was recorded on a query does not depend on how hard the query is for it). Under it,
a tier's mean over the queries where it was recorded estimates its mean over all of them, and every policy
that chooses among the options recorded on each query (the planner, the kNN router, the oracle) is scored on
every kept query. `missing_at_random_check` measures how far the logs depart from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_RECORDED_QUERIES = 20
"""Held-out queries a recorded option (a tier's single pass, a (tier, strategy)) needs at least to be kept."""

COMPLETE = "complete_case"
MASKED = "masked"


@dataclass(frozen=True)
class Coverage:
    """The kept tiers (columns of the candidate tiers), the kept queries (row indices) and the design."""

    tiers: list[int]
    rows: np.ndarray
    design: str


def required_queries(min_coverage: float, n: int) -> int:
    """The coverage bar: `max(MIN_RECORDED_QUERIES, ceil(min_coverage x n))` of `n` held-out queries."""
    return max(MIN_RECORDED_QUERIES, math.ceil(min_coverage * n))


def select(
    recorded: np.ndarray,
    names: list[str],
    max_missing: float,
    min_coverage: float,
    notes: list[str],
) -> Coverage:
    """The design for an (n queries, candidate tiers) single-pass `recorded` mask (see the module docstring);
    what it leaves out goes to `notes`. Returns no tiers when none clears the bar."""
    n = recorded.shape[0]
    complete = _complete_case(recorded, names, max_missing)
    if complete is not None:
        tiers, rows = complete
        dropped = [names[j] for j in range(len(names)) if j not in tiers]
        if dropped:
            notes.append(
                f"tiers missing outcomes on > {max_missing:.0%} of held-out queries (left out): {dropped}"
            )
        if rows.size < n:
            notes.append(f"{n - rows.size} held-out queries lack an outcome for some tier (left out)")
        return Coverage(tiers, rows, COMPLETE)
    need = required_queries(min_coverage, n)
    counts = recorded.sum(axis=0)
    tiers = [j for j in range(len(names)) if counts[j] >= need]
    short = [f"{names[j]} ({int(counts[j])}/{n})" for j in range(len(names)) if counts[j] < need]
    if short:
        notes.append(
            f"tiers whose single pass is recorded on fewer than {need} of the {n} held-out queries "
            f"(left out; recorded/total): {short}"
        )
    rows = np.flatnonzero(recorded[:, tiers].any(axis=1)) if tiers else np.zeros(0, dtype=np.intp)
    if tiers and rows.size < n:
        notes.append(f"{n - rows.size} held-out queries with no kept tier's single pass recorded (left out)")
    if tiers:
        notes.append(
            _masked_note(
                recorded[np.ix_(rows, np.asarray(tiers, dtype=np.intp))],
                [names[j] for j in tiers],
                max_missing,
            )
        )
    return Coverage(tiers, rows, MASKED)


def _complete_case(
    recorded: np.ndarray, names: list[str], max_missing: float
) -> tuple[list[int], np.ndarray] | None:
    """The dense design if it keeps >= 2 tiers and >= 1 - max_missing of the recorded outcomes, else None."""
    n = recorded.shape[0]
    if n == 0:
        return None
    dense = [j for j in range(len(names)) if 1.0 - recorded[:, j].mean() <= max_missing]
    if len(dense) < 2:
        return None
    rows = np.flatnonzero(recorded[:, dense].all(axis=1))
    kept = rows.size * len(dense)
    if kept < (1.0 - max_missing) * recorded.sum():
        return None
    return dense, rows


def _masked_note(recorded: np.ndarray, names: list[str], max_missing: float) -> str:
    per_query = recorded.sum(axis=1)
    shares = ", ".join(f"{t} {s:.0%}" for t, s in zip(names, recorded.mean(axis=0), strict=True))
    return (
        f"sparse logs: complete-case replay would discard > {max_missing:.0%} of the recorded single-pass "
        f"outcomes, so each tier's single pass is an option only on the queries where it was recorded "
        f"(coverage: {shares}; {per_query.min()}-{per_query.max()} tiers per query, mean "
        f"{per_query.mean():.1f}). Single models are scored on the queries where they were recorded (their "
        "estimated full-coverage mean, assuming coverage is missing at random: see figures['coverage']); the "
        "planner, kNN router and oracle choose among the options recorded on each query"
    )


def missing_at_random_check(
    quality: np.ndarray, recorded: np.ndarray, names: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """Per tier: its coverage, and how much better (points) the *other* tiers scored on the queries where it
    was recorded than where it was not (averaged over the other tiers, each on the queries where it was
    recorded itself). Near 0 (within about 2 `se_pp`, a rough, conservative standard error) under missing at
    random; a gap of several points says the logs ran that tier on easier (> 0) or harder (< 0) queries, and
    its single-model figure is then biased by about as much."""
    k = recorded.shape[1]
    out: dict[str, Any] = {}
    for t in range(k):
        gaps, variances = [], []
        for u in range(k):
            if u == t:
                continue
            a = recorded[:, u] & recorded[:, t]
            b = recorded[:, u] & ~recorded[:, t]
            if a.sum() < 2 or b.sum() < 2:
                continue
            ya, yb = quality[a, u], quality[b, u]
            gaps.append(float(ya.mean() - yb.mean()))
            variances.append(float(ya.var(ddof=1) / a.sum() + yb.var(ddof=1) / b.sum()))
        # the other tiers' gaps share queries (correlated): the standard error of one gap, not of their mean
        entry: dict[str, Any] = {"queries": int(recorded[:, t].sum()), "share": float(recorded[:, t].mean())}
        if gaps:
            entry["others_gap_pp"] = float(np.mean(gaps) * 100)
            entry["se_pp"] = float(np.sqrt(np.mean(variances)) * 100)
        out[names[t]] = entry
    return out
