"""Chunked readers for run files: CSV (.csv, .csv.gz), JSON lines (.jsonl, .ndjson, optionally .gz), Parquet.

Each yields `Chunk`s of at most `chunk_size` records as DataFrames in the file's own column names, with the
1-based number of the chunk's first data record (header excluded; blank JSON lines are not records) and how
far through the file (bytes of the file as stored, so compressed bytes for .gz) reading has got.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq

from planner.errors import ImportRowError, InvalidArgumentError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Chunk:
    frame: pd.DataFrame
    first_row: int
    bytes_done: int


def file_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name; the error lists the supported suffixes."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (gzipped and fmt == "parquet"):
        valid = ".csv, .csv.gz, .jsonl, .jsonl.gz, .ndjson, .parquet"
        raise InvalidArgumentError.for_field("path", str(path), f"unsupported file type; valid: {valid}")
    return fmt, gzipped


def read_chunks(path: Path, chunk_size: int) -> Iterator[Chunk]:
    """Stream `path` in chunks of `chunk_size` records."""
    if chunk_size < 1:
        raise InvalidArgumentError.for_field("chunk_size", chunk_size, "must be >= 1")
    if not path.is_file():
        raise InvalidArgumentError.for_field("path", str(path), "no such file")
    fmt, gzipped = file_format(path)
    if fmt == "parquet":
        yield from _parquet_chunks(path, chunk_size)
        return
    with path.open("rb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if gzipped else raw  # type: ignore[assignment]
        if fmt == "csv":
            yield from _csv_chunks(stream, raw, chunk_size, path)
        else:
            yield from _jsonl_chunks(stream, raw, chunk_size, path)


def _csv_chunks(stream: IO[bytes], raw: IO[bytes], chunk_size: int, path: Path) -> Iterator[Chunk]:
    try:
        # dtype=object: plain Python strings, which validation and the driver use as they are (the default
        # Arrow-backed `str` dtype costs a conversion each way)
        reader = pd.read_csv(
            stream, chunksize=chunk_size, dtype=object, keep_default_na=False, na_values=[""]
        )
    except pd.errors.EmptyDataError:
        return
    row = 1
    try:
        for frame in reader:
            yield Chunk(frame, row, raw.tell())
            row += len(frame)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ImportRowError(str(path), row, "(file)", None, f"cannot parse CSV: {exc}") from None


def _jsonl_chunks(stream: IO[bytes], raw: IO[bytes], chunk_size: int, path: Path) -> Iterator[Chunk]:
    records: list[dict[str, Any]] = []
    row = 0
    first = 1
    text = io.TextIOWrapper(stream, encoding="utf-8")  # kept referenced: closing it closes `raw`
    for line in text:
        if not line.strip():
            continue
        row += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportRowError(
                str(path), row, "(record)", line[:80], f"not valid JSON: {exc.msg}"
            ) from None
        if not isinstance(record, dict):
            raise ImportRowError(str(path), row, "(record)", line[:80], "not a JSON object")
        records.append(record)
        if len(records) == chunk_size:
            yield Chunk(pd.DataFrame.from_records(records), first, raw.tell())
            first, records = row + 1, []
    if records:
        yield Chunk(pd.DataFrame.from_records(records), first, raw.tell())


def _parquet_chunks(path: Path, chunk_size: int) -> Iterator[Chunk]:
    pfile = pq.ParquetFile(path)
    total_rows = max(pfile.metadata.num_rows, 1)
    size = path.stat().st_size
    row = 1
    for batch in pfile.iter_batches(batch_size=chunk_size):
        frame = batch.to_pandas()
        done = row - 1 + len(frame)
        yield Chunk(frame, row, int(size * done / total_rows))
        row += len(frame)
