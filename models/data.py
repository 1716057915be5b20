"""Run frames: validate a DataFrame of historical runs in the canonical run columns and fill derived columns.

Every predictor trains on the output of `prepare_runs`: one row per run with at least `query_id`, `tier`,
`score` (in [0, 1]), `prompt`, `prompt_chars`, `input_tokens`, `output_tokens` (NaN when unknown), `task`,
`tags`, `tenant`, `strategy`, `sample_index`. `queries_from_frame` turns a frame into the `Query` objects a
scheduler would see at request time (one per query, no outcome columns).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.api import CHARS_PER_TOKEN, Query
from planner.errors import FieldViolation, InvalidArgumentError

PLAIN_STRATEGY = "single"
"""Runs of this strategy are single plain samples: what the success and token models learn from."""

_TEXT_DEFAULTS: dict[str, str] = {"task": "default", "prompt": "", "tags": "", "tenant": "default"}


def _require(frame: pd.DataFrame) -> None:
    problems = [
        FieldViolation(c, None, "required column missing") for c in ("query_id", "model") if c not in frame
    ]
    if "correct" not in frame and "score" not in frame:
        problems.append(FieldViolation("correct", None, "one of 'correct' or 'score' is required"))
    if problems:
        raise InvalidArgumentError("run frame lacks required columns", problems)
    if frame.empty:
        raise InvalidArgumentError.for_field("runs", 0, "no runs to train on")


def _score(frame: pd.DataFrame) -> pd.Series:
    score = pd.to_numeric(frame["score"], errors="coerce") if "score" in frame else None
    if "correct" in frame:
        correct = pd.to_numeric(frame["correct"], errors="coerce").astype(float)
        score = correct if score is None else score.fillna(correct)
    assert score is not None
    bad = score.isna() | (score < 0) | (score > 1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InvalidArgumentError.for_field(f"score[{i}]", score.iloc[i], "must be a number in [0, 1]")
    return score.astype(float)


def _tokens(frame: pd.DataFrame, tokens_col: str, chars_col: str) -> pd.Series:
    tokens = pd.to_numeric(frame[tokens_col], errors="coerce") if tokens_col in frame else None
    if chars_col in frame:
        derived = np.ceil(pd.to_numeric(frame[chars_col], errors="coerce") / CHARS_PER_TOKEN)
        tokens = derived if tokens is None else tokens.fillna(derived)
    if tokens is None:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return tokens.astype(float)


def prepare_runs(frame: pd.DataFrame, run_name_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A copy of `frame` with every derived canonical column filled; raises InvalidArgumentError on bad input.

    `run_name_map` maps run-record model names to tier names (`Catalog.run_name_map()`); models it does not
    know keep their own name as tier. An existing non-empty `tier` column wins.
    """
    _require(frame)
    out = frame.copy()
    for col, default in _TEXT_DEFAULTS.items():
        out[col] = out[col].fillna(default).astype(str) if col in out else default
    out["query_id"] = out["query_id"].astype(str)
    out["model"] = out["model"].astype(str)
    mapped = out["model"].map(lambda m: (run_name_map or {}).get(m, m))
    if "tier" in out:
        tier = out["tier"].where(out["tier"].notna() & (out["tier"].astype(str) != ""), mapped)
        out["tier"] = tier.astype(str)
    else:
        out["tier"] = mapped
    out["strategy"] = (
        out["strategy"].fillna(PLAIN_STRATEGY).astype(str) if "strategy" in out else PLAIN_STRATEGY
    )
    out["sample_index"] = (
        pd.to_numeric(out["sample_index"], errors="coerce").fillna(0).astype(int)
        if "sample_index" in out
        else 0
    )
    out["score"] = _score(out)
    if "prompt_chars" not in out:
        out["prompt_chars"] = out["prompt"].str.len()
    out["prompt_chars"] = pd.to_numeric(out["prompt_chars"], errors="coerce").fillna(out["prompt"].str.len())
    out["input_tokens"] = _tokens(out, "input_tokens", "prompt_chars").clip(lower=1)
    out["output_tokens"] = _tokens(out, "output_tokens", "output_chars")
    if "features" not in out:
        out["features"] = [{} for _ in range(len(out))]
    out["features"] = [_as_features(v) for v in out["features"]]
    return out.reset_index(drop=True)


def _as_features(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip():
        parsed = json.loads(value)
        if isinstance(parsed, Mapping):
            return {str(k): float(v) for k, v in parsed.items()}
    return {}


def plain_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The single-sample plain runs of a prepared frame (all runs when none is marked plain)."""
    plain = runs[runs["strategy"] == PLAIN_STRATEGY]
    return plain if len(plain) else runs


def query_keys(runs: pd.DataFrame) -> pd.Series:
    """One key per run identifying its query: (task, query_id), since query ids may repeat across tasks."""
    return runs["task"].astype(str) + "\x1f" + runs["query_id"].astype(str)


def queries_from_frame(runs: pd.DataFrame) -> list[Query]:
    """One `Query` per distinct (task, query_id) of a prepared frame, in order of first appearance
    (the order of `dict.fromkeys(query_keys(runs))`)."""
    first = runs.loc[~query_keys(runs).duplicated()]
    out = []
    for row in first.itertuples(index=False):
        tags = tuple(t.strip() for t in str(row.tags).split(",") if t.strip())
        tokens = row.input_tokens
        out.append(
            Query(
                query_id=str(row.query_id),
                prompt=str(row.prompt),
                task=str(row.task),
                tags=tags,
                tenant=str(row.tenant),
                prompt_tokens=int(tokens) if tokens and not math.isnan(tokens) else 0,
                features=dict(row.features),
            )
        )
    return out


def read_run_csv(path: str | Path, run_name_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a run CSV (e.g. ZeroEval's GSM8K export) into a prepared frame, mapping question -> prompt."""
    raw = pd.read_csv(path)
    raw = raw.rename(columns={"question": "prompt", "question_chars": "prompt_chars"})
    return prepare_runs(raw, run_name_map)


def default_run_name_map() -> dict[str, str]:
    """The default catalog's run-name -> tier map, or an empty map when no default catalog is installed."""
    try:
        from planner.catalog import load_catalog

        return load_catalog().run_name_map()
    except Exception:  # no packaged default catalog yet, or an invalid one: tiers stay model names
        return {}


def index_of(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """Positions of `values` in `vocabulary` (-1 where absent)."""
    lookup = {v: i for i, v in enumerate(vocabulary)}
    return values.map(lambda v: lookup.get(v, -1)).to_numpy(dtype=int)
