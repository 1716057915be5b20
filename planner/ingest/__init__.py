"""Run import: stream CSV / JSONL / Parquet run files (or records) into the store, validated, idempotently.

The schema is `planner.ingest.schema.RUN_SCHEMA` (documented in that module). `import_file` reads the file in
chunks, maps column names (`mapping`: source column -> canonical column), validates each chunk vectorised,
derives the optional fields (tier from the catalog's run names, score from correct, tokens from
characters / 4, prompt_chars from the prompt) and inserts it, skipping rows whose idempotency key already
exists.

Atomicity: the WHOLE import runs in ONE database transaction (SQLite and PostgreSQL alike). The first bad row
raises `ImportRowError` naming the file, the 1-based data row (counted across chunks, header excluded),
the field and the value; the transaction is rolled back, so nothing of the file is written. On SQLite this
holds the database's write lock for the duration of the import (other writers wait up to the busy timeout).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from planner.catalog import Catalog, load_catalog
from planner.ingest.readers import Chunk, read_chunks
from planner.ingest.schema import PRESETS, RUN_SCHEMA, SPECS, ColumnSpec, Kind, check_mapping, preset
from planner.ingest.validate import ChunkContext, prepare_chunk
from planner.store.database import Database
from planner.store.run_insert import EncodedBatch, encode
from planner.store.runs import RunStore

__all__ = [
    "PRESETS",
    "RUN_SCHEMA",
    "SPECS",
    "ColumnSpec",
    "ImportProgress",
    "ImportResult",
    "Kind",
    "import_file",
    "import_records",
    "preset",
]


@dataclass(frozen=True)
class ImportResult:
    """What an import did. `ignored_columns`: source columns outside the schema (after mapping)."""

    source: str
    rows_read: int
    inserted: int
    skipped_duplicates: int
    ignored_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "skipped_duplicates": self.skipped_duplicates,
            "ignored_columns": list(self.ignored_columns),
        }


@dataclass(frozen=True)
class ImportProgress:
    """Reported after each chunk: records read and inserted so far, bytes of the file read of its total."""

    rows_read: int
    inserted: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[ImportProgress], None]
_T = TypeVar("_T")


def _run_name_map(catalog: Catalog | None) -> dict[str, str]:
    if catalog is None:
        try:
            catalog = load_catalog()
        except FileNotFoundError:  # no packaged default catalog: tiers default to model names
            return {}
    return catalog.run_name_map()


def _ahead(items: Iterator[_T]) -> Generator[_T, None, None]:
    """`items`, each next one produced in a worker thread while the caller works on the current one.

    Used on PostgreSQL, where the server inserts in its own process while this one reads and validates the
    next chunk. Not on SQLite: the sqlite3 module takes the GIL back after every row it steps, so a second
    Python thread only adds switching (measured: the GSM8K import took 10-30% more CPU with it).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def _import_chunks(
    chunks: Iterator[Chunk],
    db: Database,
    ctx: ChunkContext,
    mapping: Mapping[str, str],
    progress: ProgressCallback | None,
    bytes_total: int,
) -> ImportResult:
    store = RunStore(db)
    rows_read = inserted = 0
    ignored: set[str] = set()

    def prepared() -> Generator[tuple[EncodedBatch, Chunk], None, None]:
        for chunk in chunks:
            frame = chunk.frame.rename(columns=dict(mapping))
            ignored.update(str(c) for c in frame.columns if c not in SPECS)
            yield encode(prepare_chunk(frame, chunk.first_row, ctx), db.dialect), chunk

    batches = _ahead(prepared()) if db.dialect != "sqlite" else prepared()
    with db.begin() as conn, closing(batches):
        for batch, chunk in batches:
            inserted += store.insert_rows(conn, batch)
            rows_read += batch.rows
            if progress is not None:
                progress(ImportProgress(rows_read, inserted, chunk.bytes_done, bytes_total))
    return ImportResult(ctx.source, rows_read, inserted, rows_read - inserted, tuple(sorted(ignored)))


def import_file(
    path: str | Path,
    db: Database,
    mapping: Mapping[str, str] | None = None,
    chunk_size: int = 20_000,
    progress: ProgressCallback | None = None,
    catalog: Catalog | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Import one run file, all or nothing. `defaults` fill missing values, e.g. {"task": "gsm"}."""
    path = Path(path)
    checked = check_mapping(dict(mapping or {}))
    ctx = ChunkContext(str(path), _run_name_map(catalog), dict(defaults or {}), tag=path.name)
    chunks = read_chunks(path, chunk_size)
    return _import_chunks(chunks, db, ctx, checked, progress, path.stat().st_size)


def import_records(
    records: Iterable[Mapping[str, Any]],
    db: Database,
    catalog: Catalog | None = None,
    chunk_size: int = 20_000,
    source: str = "records",
    defaults: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Import canonical records (e.g. from the gRPC `RecordRuns` stream), all or nothing.

    Errors name `source`, the 1-based record number and the field.
    """
    ctx = ChunkContext(source, _run_name_map(catalog), dict(defaults or {}), tag=source)

    def chunks() -> Iterator[Chunk]:
        it = iter(records)
        first = 1
        while batch := list(islice(it, chunk_size)):
            yield Chunk(pd.DataFrame.from_records([dict(r) for r in batch]), first, 0)
            first += len(batch)

    return _import_chunks(chunks(), db, ctx, {}, None, 0)
