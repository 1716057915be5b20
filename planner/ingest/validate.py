"""Vectorised validation and derivation of one chunk of run records (a DataFrame in canonical columns).

`prepare_chunk` checks every schema rule over whole columns at once (numpy), raises `ImportRowError` for the
first bad row of the chunk (lowest row number; ties in schema order), derives the optional fields and returns
a column-wise `RunBatch`, ready for `RunStore.insert_rows`. Only JSON fields are checked value by
value (and only where present).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import ImportRowError
from planner.ingest.schema import CHARS_PER_TOKEN, RUN_SCHEMA, ColumnSpec, Kind
from planner.store.run_insert import STORED_COLUMNS, RunBatch

NULL_TOKENS = ("", "nan", "NaN", "NA", "null", "None")
"""Strings read as missing in numeric, timestamp and JSON columns (text columns: only the empty string)."""
_BOOL_WORDS = {"true": 1.0, "false": 0.0}


@dataclass(frozen=True)
class ChunkContext:
    """What validation needs besides the chunk: the file name for errors, tier names, default values."""

    source: str
    run_name_map: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tag: str | None = None


@dataclass
class _Problems:
    """The earliest problem seen so far: (position in chunk, field, value, reason)."""

    best: tuple[int, str, Any, str] | None = None

    def add(self, bad: np.ndarray, raw: np.ndarray, name: str, reason: str) -> None:
        if not bad.any():
            return
        pos = int(np.argmax(bad))
        if self.best is None or pos < self.best[0]:
            value = raw[pos]
            self.best = (pos, name, value.item() if isinstance(value, np.generic) else value, reason)


def _raw(frame: pd.DataFrame, spec: ColumnSpec, ctx: ChunkContext) -> np.ndarray:
    """The column as an object array with None for missing (default applied), all None when absent."""
    n = len(frame)
    if spec.name not in frame:
        out = np.empty(n, dtype=object)
        out[:] = ctx.defaults.get(spec.name)
        return out
    col = frame[spec.name]
    arr = col.to_numpy(dtype=object, na_value=None) if col.hasnans or col.dtype != object else col.to_numpy()
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        tokens = ("",) if spec.kind is Kind.TEXT else NULL_TOKENS
        arr = arr.copy()
        arr[np.isin(arr, tokens)] = None
    default = ctx.defaults.get(spec.name)
    if default is not None:
        arr = arr.copy()
        arr[_isnone(arr)] = default
    return arr


def _isnone(arr: np.ndarray) -> np.ndarray:
    """Where the value is None (missing, as `_raw` and the parsers write it: NaN and pd.NA became None)."""
    if arr.dtype != object:
        return np.asarray(pd.isna(arr), dtype=bool)
    return np.asarray(arr == None, dtype=bool)  # noqa: E711 (element-wise on an object array)


def _cast_float(values: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """Floats with NaN where missing, by numpy's C cast; None when some present value does not convert."""
    num = np.full(len(values), np.nan)
    present = ~missing
    if present.any():
        try:
            num[present] = values[present].astype(float)
        except (TypeError, ValueError):
            return None
    return num


def _to_float(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Floats with NaN where missing or unparseable: the C cast when every present value converts (the
    common case), else pandas' element-wise coercion."""
    num = _cast_float(values, missing)
    if num is None:
        num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
    return num


def _numbers(raw: np.ndarray, spec: ColumnSpec, missing: np.ndarray, problems: _Problems) -> np.ndarray:
    num = _cast_float(raw, missing)
    if num is None:
        values = raw
        if spec.kind is Kind.BINARY:  # true / false words, only looked for when some value is not a number
            values = np.array(
                [_BOOL_WORDS.get(v.lower(), v) if isinstance(v, str) else v for v in raw], dtype=object
            )
        num = _to_float(values, missing)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(num)
        problems.add(~missing & ~finite, raw, spec.name, "not a finite number")
        ok = ~missing & finite
        if spec.kind is Kind.BINARY:
            problems.add(ok & (num != 0) & (num != 1), raw, spec.name, "must be 0 or 1")
        elif spec.kind is Kind.UNIT:
            problems.add(ok & ((num < 0) | (num > 1)), raw, spec.name, "must be in [0, 1]")
        else:
            problems.add(ok & (num < 0), raw, spec.name, "must be >= 0")
            if spec.kind is Kind.COUNT:
                problems.add(ok & (num != np.floor(num)), raw, spec.name, "must be a whole number")
    return num


def _json_object(value: Any, name: str) -> tuple[str | None, str]:
    """(canonical JSON text, "") of one JSON-object value (text or mapping), or (None, why it is not one)."""
    try:
        obj = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, Mapping):
        return None, "not a JSON object"
    if name == "features" and not all(_is_number(v) for v in obj.values()):
        return None, "feature values must be numbers"
    return json.dumps(obj, sort_keys=True), ""


def _json_objects(raw: np.ndarray, spec: ColumnSpec, missing: np.ndarray, problems: _Problems) -> np.ndarray:
    """Canonical JSON text per present value. Each DISTINCT value is parsed once (a run file repeats a handful
    of strategy_params sets on every row); mappings (records) are unhashable and go one by one."""
    out = np.empty(len(raw), dtype=object)
    present = np.flatnonzero(~missing)
    if not len(present):
        return out
    values = raw[present]
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:
        codes, uniques = np.arange(len(values)), values
    texts = np.empty(len(uniques), dtype=object)
    reasons = np.empty(len(uniques), dtype=object)
    for i, value in enumerate(uniques):
        texts[i], reasons[i] = _json_object(value, spec.name)
    bad = np.asarray(reasons != "", dtype=bool)[codes]
    if bad.any():
        first = int(np.argmax(bad))
        problems.add(_at(len(raw), int(present[first])), raw, spec.name, reasons[codes[first]])
        return out
    out[present] = texts[codes]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def _at(n: int, pos: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[pos] = True
    return mask


def _texts(raw: np.ndarray, spec: ColumnSpec, missing: np.ndarray, problems: _Problems) -> np.ndarray:
    if spec.required:
        problems.add(missing, raw, spec.name, "required field is missing")
    if pd.api.types.infer_dtype(raw, skipna=True) not in ("string", "empty"):
        raw = np.array([None if m else str(v) for v, m in zip(raw, missing, strict=True)], dtype=object)
    return raw


def _timestamps(raw: np.ndarray, spec: ColumnSpec, missing: np.ndarray, problems: _Problems) -> np.ndarray:
    out = np.empty(len(raw), dtype=object)
    if missing.all():
        return out
    ts = pd.to_datetime(pd.Series(raw), errors="coerce", utc=True, format="ISO8601")
    bad = ~missing & np.asarray(ts.isna(), dtype=bool)
    problems.add(bad, raw, spec.name, "not an ISO 8601 timestamp")
    ok = ~missing & ~bad
    out[ok] = ts[ok].dt.to_pydatetime()
    return out


def prepare_chunk(frame: pd.DataFrame, first_row: int, ctx: ChunkContext) -> RunBatch:
    """Validate a chunk whose first data row is number `first_row` (1-based); return rows to insert."""
    problems = _Problems()
    parsed: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    raws: dict[str, np.ndarray] = {}
    for spec in RUN_SCHEMA:
        raw = raws[spec.name] = _raw(frame, spec, ctx)
        miss = missing[spec.name] = _isnone(raw)
        if spec.kind is Kind.TEXT:
            parsed[spec.name] = _texts(raw, spec, miss, problems)
        elif spec.kind is Kind.JSON_OBJECT:
            parsed[spec.name] = _json_objects(raw, spec, miss, problems)
        elif spec.kind is Kind.TIMESTAMP:
            parsed[spec.name] = _timestamps(raw, spec, miss, problems)
        else:
            parsed[spec.name] = _numbers(raw, spec, miss, problems)
    neither = missing["correct"] & missing["score"]
    problems.add(neither, raws["correct"], "correct", "one of correct/score is required")
    if problems.best is not None:
        pos, name, value, reason = problems.best
        raise ImportRowError(ctx.source, first_row + pos, name, value, reason)
    return _rows(parsed, ctx, len(frame))


def _fill(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), fallback, values)


def _as_objects(values: np.ndarray, integer: bool) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    ok = ~np.isnan(values)
    out[ok] = values[ok].astype(np.int64) if integer else values[ok]
    return out


def _rows(p: dict[str, np.ndarray], ctx: ChunkContext, n: int) -> RunBatch:
    prompt_len = np.array([np.nan if v is None else len(v) for v in p["prompt"]], dtype=float)
    p["prompt_chars"] = _fill(p["prompt_chars"], prompt_len)
    with np.errstate(invalid="ignore"):
        p["input_tokens"] = _fill(p["input_tokens"], np.ceil(p["prompt_chars"] / CHARS_PER_TOKEN))
        p["output_tokens"] = _fill(p["output_tokens"], np.ceil(p["output_chars"] / CHARS_PER_TOKEN))
    p["score"] = _fill(p["score"], p["correct"])
    tier_missing = _isnone(p["tier"])
    if tier_missing.any():
        tier = p["tier"].copy()
        tier[tier_missing] = [ctx.run_name_map.get(m, m) for m in p["model"][tier_missing]]
        p["tier"] = tier
    columns: dict[str, np.ndarray] = {}
    for spec in RUN_SCHEMA:
        value = p[spec.name]
        if value.dtype != object:
            value = _as_objects(value, integer=spec.kind in (Kind.COUNT, Kind.BINARY))
        if spec.default is not None:
            value[_isnone(value)] = spec.default
        columns[spec.name] = value
    columns["source"] = np.full(n, ctx.tag, dtype=object)
    return RunBatch({c: columns[c] for c in STORED_COLUMNS})
