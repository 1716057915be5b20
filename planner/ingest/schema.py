"""The one import schema for historical runs (the store's `runs` table), as data the README can quote.

| column | type | required | notes |
|---|---|---|---|
| query_id | str | yes | |
| task | str | no (default "default") | task / dataset tag, e.g. "gsm" |
| prompt | str | no | prompt text |
| prompt_chars | int >= 0 | no | derived from prompt when missing |
| output_chars | int >= 0 | no | |
| tags | str | no | comma-separated domain tags |
| features | JSON object str -> number | no | any numeric per-query features |
| model | str | yes | model name as in the run records |
| tier | str | no | derived: catalog tier whose run_names contain `model`, else the model name |
| strategy | str | no (default "single") | catalog strategy name |
| strategy_params | JSON object | no | e.g. {"n": 5} |
| target | str | no (default "") | hardware target name |
| sample_index | int >= 0 | no (default 0) | several samples of the same (query, model, strategy) |
| correct | 0/1 | one of correct/score | also true/false |
| score | float in [0, 1] | one of correct/score | derived from correct when missing |
| input_tokens | int >= 0 | no | derived as ceil(prompt_chars / 4) when missing |
| output_tokens | int >= 0 | no | ceil(output_chars / 4) when missing; a strategy's TOTAL (see below) |
| cost_usd, latency_s, energy_j | float >= 0 | no | left empty when missing |
| timestamp | ISO 8601 datetime | no | stored in UTC (naive times are read as UTC) |
| tenant | str | no (default "default") | |

For a run of a non-single strategy, `output_tokens` is everything the strategy generated (every sample,
revision round and verifier pass: about 5x a plain answer for vote5, 3x for cot); consumers divide it by the
strategy's `output_multiplier` to get the plain single-sample length the cost model prices
(`planner.evaluation.recorded`).

Idempotency key: (task, query_id, model, strategy, strategy_params, target, sample_index); strategy_params
compare as canonical JSON (key order, spacing and 5 vs 5.0 do not matter; missing = {}), so runs that differ
only in their parameters (majority_vote n=5 and n=16) are all kept. Columns outside the schema are
ignored (and listed in the import result); `mapping` renames source columns onto canonical ones first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from planner.errors import InvalidArgumentError


class Kind(StrEnum):
    """How a column is validated."""

    TEXT = "text"
    COUNT = "count"  # integer >= 0
    AMOUNT = "amount"  # finite float >= 0
    BINARY = "binary"  # 0 / 1
    UNIT = "unit"  # float in [0, 1]
    JSON_OBJECT = "json_object"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    required: bool = False
    default: object = None
    notes: str = ""


RUN_SCHEMA: tuple[ColumnSpec, ...] = (
    ColumnSpec("query_id", Kind.TEXT, required=True),
    ColumnSpec("task", Kind.TEXT, default="default", notes="task / dataset tag"),
    ColumnSpec("prompt", Kind.TEXT, notes="prompt text"),
    ColumnSpec("prompt_chars", Kind.COUNT, notes="derived from prompt when missing"),
    ColumnSpec("output_chars", Kind.COUNT),
    ColumnSpec("tags", Kind.TEXT, notes="comma-separated domain tags"),
    ColumnSpec("features", Kind.JSON_OBJECT, notes="JSON object of str -> number"),
    ColumnSpec("model", Kind.TEXT, required=True, notes="model name as in the run records"),
    ColumnSpec("tier", Kind.TEXT, notes="derived from the catalog's run_names, else the model name"),
    ColumnSpec("strategy", Kind.TEXT, default="single"),
    ColumnSpec("strategy_params", Kind.JSON_OBJECT, notes='e.g. {"n": 5}'),
    ColumnSpec("target", Kind.TEXT, default="", notes="hardware target name"),
    ColumnSpec("sample_index", Kind.COUNT, default=0),
    ColumnSpec("correct", Kind.BINARY, notes="one of correct/score is required"),
    ColumnSpec("score", Kind.UNIT, notes="derived from correct when missing"),
    ColumnSpec("input_tokens", Kind.COUNT, notes="derived as ceil(prompt_chars / 4) when missing"),
    ColumnSpec("output_tokens", Kind.COUNT, notes="derived as ceil(output_chars / 4) when missing"),
    ColumnSpec("cost_usd", Kind.AMOUNT),
    ColumnSpec("latency_s", Kind.AMOUNT),
    ColumnSpec("energy_j", Kind.AMOUNT),
    ColumnSpec("timestamp", Kind.TIMESTAMP, notes="ISO 8601; stored in UTC"),
    ColumnSpec("tenant", Kind.TEXT, default="default"),
)
"""Every canonical column, in schema order."""

SPECS: dict[str, ColumnSpec] = {c.name: c for c in RUN_SCHEMA}
CHARS_PER_TOKEN = 4

PRESETS: dict[str, dict[str, str]] = {
    "zeroeval": {"question": "prompt", "question_chars": "prompt_chars"},
}
"""Named column mappings for known run formats (`--preset zeroeval`)."""


def check_mapping(mapping: dict[str, str] | None) -> dict[str, str]:
    """A mapping source column -> canonical column, every target checked against the schema."""
    mapping = dict(mapping or {})
    bad = [dst for dst in mapping.values() if dst not in SPECS]
    if bad:
        valid = ", ".join(SPECS)
        raise InvalidArgumentError.for_field("mapping", bad[0], f"not a canonical run column; valid: {valid}")
    return mapping


def preset(name: str) -> dict[str, str]:
    """A named mapping; the error lists the known names."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise InvalidArgumentError.for_field(
            "preset", name, f"unknown; valid: {', '.join(PRESETS)}"
        ) from None
