"""Bulk insert of historical runs: a column batch in, one driver-level bulk insert per table out.

`RunBatch` holds validated runs column by column (object arrays, `None` for missing) in `STORED_COLUMNS`.
`encode(batch, dialect)` turns it into two driver statements with their parameter tuples; it touches no
database, so the import builds the next chunk's in its worker thread while the database inserts this one.
`insert_encoded` runs them in the caller's transaction:
1. `queries`: the first prompt of each (task, query_id) in the batch, `ON CONFLICT DO NOTHING` (first one
   stored wins);
2. `runs`: `ON CONFLICT DO NOTHING` on the idempotency key (task, query_id, model, strategy, strategy_params,
   target, sample_index), strategy_params as its canonical JSON in the `params_key` column (`params_keys`:
   '' for none, so runs without parameters still collide with their re-import). A run keeps its own prompt
   only when it differs from its query's stored one (see `planner.store.runs`): `encode` blanks the prompts
   equal to the batch's first prompt of their query, which is exactly that whenever the first prompt is the
   stored one; `insert_encoded` checks and, in the rare other case, compares with the stored prompts itself.
SQLite (>= 3.24) and PostgreSQL understand the same SQL; only the parameter marks differ. On PostgreSQL a
batch of `_COPY_MIN_ROWS` or more goes through COPY into a temporary staging table instead (`_copy_insert`).

Speed: the statement names only the columns that hold a value somewhere in the batch (an all-missing
column is left to its NULL default instead of binding one NULL per row, and `params_key` to its '' default
when no run of the batch has strategy_params), parameters are plain tuples built column-wise in C (`zip` over
lists), and they go straight to the DBAPI's `executemany` (SQLAlchemy's per-row parameter processing costs
more than SQLite's insert itself). The only conversion SQLAlchemy would have done is the `DateTime` one on
SQLite (text in UTC, in its format); it is done here the same way, so readers see the same values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select, tuple_

from planner.store.driver import execute_many, insert_sql, sqlite_time
from planner.store.tables import QueryRow, RunRow

RUNS = RunRow.__table__  # type: ignore[attr-defined]
QUERIES = QueryRow.__table__  # type: ignore[attr-defined]

CANONICAL_COLUMNS: tuple[str, ...] = (
    "query_id", "task", "prompt", "prompt_chars", "output_chars", "tags", "features", "model", "tier",
    "strategy", "strategy_params", "target", "sample_index", "correct", "score", "input_tokens",
    "output_tokens", "cost_usd", "latency_s", "energy_j", "timestamp", "tenant",
)  # fmt: skip
"""The run columns of the shared import schema, in the order `load_frame` returns them."""

STORED_COLUMNS: tuple[str, ...] = (*CANONICAL_COLUMNS, "source")
JSON_COLUMNS = ("features", "strategy_params")
_DEFAULTS: dict[str, Any] = {"task": "default", "strategy": "single", "target": "", "sample_index": 0,
                             "tenant": "default"}  # fmt: skip
_COPY_MIN_ROWS = 1_000  # PostgreSQL batches at least this big are inserted through COPY
_KEYS_PER_SELECT = 500  # (task, query_id) pairs per lookup: well under every driver's parameter limit
PARAMS_KEY = "params_key"
"""The key column derived from strategy_params by `encode` (not a `RunBatch` column; readers omit it)."""
_STAGED_COLUMNS = {RUNS.name: (*STORED_COLUMNS, PARAMS_KEY), QUERIES.name: ("task", "query_id", "prompt")}


@dataclass(frozen=True)
class RunBatch:
    """Validated runs, column by column: every `STORED_COLUMNS` name -> an object array (None = missing)."""

    columns: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        missing = set(STORED_COLUMNS) - set(self.columns)
        if missing or len(lengths) > 1:
            raise ValueError(
                f"a RunBatch needs equal-length columns {STORED_COLUMNS}; got {dict(self.columns)}"
            )

    def __len__(self) -> int:
        return len(self.columns[STORED_COLUMNS[0]])

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> RunBatch:
        """A batch from canonical records: defaults filled, tier defaulting to the model name, score to
        correct, JSON fields serialised (canonical `json.dumps(..., sort_keys=True)`)."""
        rows = [_with_defaults(r) for r in records]
        columns = {}
        for i, name in enumerate(STORED_COLUMNS):
            col = np.empty(len(rows), dtype=object)
            col[:] = [r[i] for r in rows]
            columns[name] = col
        return cls(columns)


def _with_defaults(record: Mapping[str, Any]) -> tuple[Any, ...]:
    row = {c: record.get(c) for c in STORED_COLUMNS}
    for key, value in _DEFAULTS.items():
        if row[key] is None:
            row[key] = value
    if row["tier"] is None:
        row["tier"] = row["model"]
    if row["score"] is None and row["correct"] is not None:
        row["score"] = float(row["correct"])
    for key in JSON_COLUMNS:
        if isinstance(row[key], Mapping):
            row[key] = json.dumps(row[key], sort_keys=True)
    return tuple(row[c] for c in STORED_COLUMNS)


def _present(column: np.ndarray) -> np.ndarray:
    return np.asarray(column != None, dtype=bool)  # noqa: E711 (element-wise on an object array)


def _whole_numbers_as_ints(obj: Any) -> Any:
    """`obj` with every float that is a whole number as an int (5.0 -> 5), in nested objects and lists too."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, Mapping):
        return {k: _whole_numbers_as_ints(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_whole_numbers_as_ints(v) for v in obj]
    return obj


def params_key(value: Any) -> str:
    """The idempotency-key text of one strategy_params value (JSON text or a mapping): its canonical JSON,
    `json.dumps(obj, sort_keys=True, separators=(",", ":"))` with whole-number floats written as ints, so
    '{"n": 5}', '{"n":5}', {"n": 5} and {"n": 5.0} (what a protobuf Struct from `RecordRuns` holds) are one
    key; '' for none (None, JSON null, an empty object). Text that is not JSON keys as itself (stripped)."""
    if value is None:
        return ""
    obj = value
    if isinstance(value, str | bytes):
        try:
            obj = json.loads(value)
        except ValueError:
            return value.strip() if isinstance(value, str) else value.decode().strip()
    if obj is None or (isinstance(obj, Mapping) and not obj):
        return ""
    return json.dumps(_whole_numbers_as_ints(obj), sort_keys=True, separators=(",", ":"))


def params_keys(strategy_params: np.ndarray) -> np.ndarray:
    """`params_key` of a whole column, '' where missing: each DISTINCT value is canonicalised once (a run file
    holds a handful of parameter sets), so the per-row work is pandas' hashing, not Python."""
    out = np.full(len(strategy_params), "", dtype=object)
    present = _present(strategy_params)
    if not present.any():
        return out
    values = strategy_params[present]
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:  # unhashable values (mappings): one at a time
        out[present] = [params_key(v) for v in values]
        return out
    keys = np.empty(len(uniques), dtype=object)
    keys[:] = [params_key(u) for u in uniques]
    out[present] = keys[codes]
    return out


@dataclass(frozen=True)
class Statement:
    """An insert of parameter tuples into `columns` of `table` that skips rows whose key exists."""

    dialect: str
    table: str
    columns: tuple[str, ...]
    params: list[tuple[Any, ...]]

    @property
    def sql(self) -> str:
        return insert_sql(self.dialect, self.table, self.columns, "ON CONFLICT DO NOTHING")


@dataclass(frozen=True)
class EncodedBatch:
    """A `RunBatch` turned into driver statements for one dialect (`encode`); `insert_encoded` runs them.

    `runs` binds a prompt only where it differs from the batch's first prompt of its query (`queries`), which
    is right whenever that first prompt is the one stored; `columns` (the batch's, after dialect conversion)
    serve the rare other case (see `insert_encoded`)."""

    dialect: str
    rows: int
    queries: Statement | None
    runs: Statement
    columns: Mapping[str, np.ndarray]


def _tuples(columns: Sequence[np.ndarray]) -> list[tuple[Any, ...]]:
    return list(zip(*(c.tolist() for c in columns), strict=True))


def _keyed_prompts(columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({k: columns[k] for k in ("task", "query_id", "prompt")}, dtype=object)


def _query_codes(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """One integer per (task, query_id) of each row (equal keys, equal codes)."""
    task_codes, _ = pd.factorize(columns["task"])
    qid_codes, qids = pd.factorize(columns["query_id"])
    return np.asarray(task_codes, dtype=np.int64) * max(len(qids), 1) + qid_codes


def _first_prompts(columns: Mapping[str, np.ndarray], has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows holding the first prompt of their query, each row's query's first prompt or None)."""
    codes = _query_codes(columns)
    with_prompt = np.flatnonzero(has)
    unique, at = np.unique(codes[with_prompt], return_index=True)
    firsts = with_prompt[at]
    reference = np.empty(len(codes), dtype=object)
    slot = np.searchsorted(unique, codes).clip(max=len(unique) - 1)
    known = unique[slot] == codes
    reference[known] = columns["prompt"][firsts[slot[known]]]
    return np.sort(firsts), reference


def _runs_statement(columns: Mapping[str, np.ndarray], prompt: np.ndarray, dialect: str) -> Statement:
    """The `runs` insert over the columns that hold a value somewhere, with `prompt` as the prompt column;
    `params_key` only when some run has parameters (else every row takes the column's '' default)."""
    columns = {**columns, "prompt": prompt}
    names = [n for n in STORED_COLUMNS if _present(columns[n]).any()]
    if np.asarray(columns[PARAMS_KEY] != "", dtype=bool).any():
        names.append(PARAMS_KEY)
    return Statement(dialect, RUNS.name, tuple(names), _tuples([columns[n] for n in names]))


def _blank_where_equal(prompt: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`prompt` with None where it equals `reference` (aligned by position; None and NaN never equal)."""
    same = np.asarray(reference == prompt, dtype=bool) & _present(prompt)
    out = prompt.copy()
    out[same] = None
    return out


def encode(batch: RunBatch, dialect: str) -> EncodedBatch:
    """Driver statements for `batch` on `dialect` (`sqlite` or `postgresql`); pure (no database), so a worker
    thread can build the next batch's while the database inserts this one."""
    columns = dict(batch.columns)
    columns[PARAMS_KEY] = params_keys(columns["strategy_params"])
    ts = columns["timestamp"]
    present = _present(ts)
    if dialect == "sqlite" and present.any():
        ts = ts.copy()
        ts[present] = [sqlite_time(v) for v in ts[present]]
        columns["timestamp"] = ts
    prompt = columns["prompt"]
    has = _present(prompt)
    queries = None
    if has.any():
        firsts, reference = _first_prompts(columns, has)
        prompt = _blank_where_equal(prompt, reference)
        names = ["task", "query_id", "prompt"]
        params = _tuples([columns[k][firsts] for k in names])
        queries = Statement(dialect, QUERIES.name, tuple(names), params)
    return EncodedBatch(dialect, len(batch), queries, _runs_statement(columns, prompt, dialect), columns)


def _execute(conn: Connection, statement: Statement) -> int:
    """Run an insert; returns how many rows were new. Big PostgreSQL batches go through COPY."""
    if not statement.params:
        return 0
    if statement.dialect == "postgresql" and len(statement.params) >= _COPY_MIN_ROWS:
        return _copy_insert(conn, statement)
    return execute_many(conn, statement.sql, statement.params)


def _copy_insert(conn: Connection, statement: Statement) -> int:
    """PostgreSQL: COPY the rows into a temporary table of the same column types (dropped at commit), then
    `INSERT ... SELECT ... ORDER BY` row number `ON CONFLICT DO NOTHING`, so ids follow the batch's order
    and existing keys are skipped as by the plain insert (psycopg's executemany: ~40 us of Python a row)."""
    names = ", ".join(statement.columns)
    staging = f"{statement.table}_import"
    every = ", ".join(_STAGED_COLUMNS[statement.table])
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "
            f"SELECT {every}, 0::bigint AS row_number FROM {statement.table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {staging} ({names}, row_number) FROM STDIN") as copy:
            for number, row in enumerate(statement.params):
                copy.write_row((*row, number))
        cursor.execute(
            f"INSERT INTO {statement.table} ({names}) SELECT {names} FROM {staging} ORDER BY row_number "
            "ON CONFLICT DO NOTHING"
        )
        inserted = max(int(cursor.rowcount), 0)
        cursor.execute(f"TRUNCATE {staging}")
    finally:
        cursor.close()
    return inserted


def _stored_prompts(conn: Connection, keys: Sequence[tuple[str, str]]) -> pd.DataFrame:
    found: list[tuple[str, str, str]] = []
    q = QUERIES.c
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        part = keys[start : start + _KEYS_PER_SELECT]
        stmt = select(q.task, q.query_id, q.prompt).where(tuple_(q.task, q.query_id).in_(part))
        found.extend((t, i, p) for t, i, p in conn.execute(stmt))
    return pd.DataFrame(found, columns=["task", "query_id", "stored"], dtype=object)


def insert_encoded(conn: Connection, batch: EncodedBatch) -> int:
    """Run an encoded batch on an open connection (the caller's transaction); returns how many runs were new.

    The batch's first prompt of each query goes into `queries` (existing ones are kept). When every one of
    them is now the stored prompt (always so for new queries), the encoded runs statement is right as it is.
    Otherwise (a query stored earlier with another prompt) each run's prompt is compared with its query's
    stored one here, and kept only where it differs.
    """
    if batch.dialect != conn.dialect.name:
        raise ValueError(f"batch encoded for {batch.dialect!r}, connection is {conn.dialect.name!r}")
    if batch.queries is None:
        return _execute(conn, batch.runs)
    if _execute(conn, batch.queries) == len(batch.queries.params):
        return _execute(conn, batch.runs)
    stored = _stored_prompts(conn, [(t, i) for t, i, _ in batch.queries.params])
    if set(stored.itertuples(index=False, name=None)) == set(batch.queries.params):
        return _execute(conn, batch.runs)
    frame = _keyed_prompts(batch.columns).merge(stored, how="left", on=["task", "query_id"])
    prompt = _blank_where_equal(batch.columns["prompt"], frame["stored"].to_numpy(dtype=object))
    return _execute(conn, _runs_statement(batch.columns, prompt, batch.dialect))


def insert_batch(conn: Connection, batch: RunBatch) -> int:
    """Insert a batch on an open connection (the caller's transaction); returns how many runs were new."""
    return insert_encoded(conn, encode(batch, conn.dialect.name))
