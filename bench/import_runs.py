"""Import speed: rows/s of `planner runs import` for the shared GSM8K run file, on SQLite and PostgreSQL.

For each store it imports the file into an empty database (the figure the issue targets), then re-imports
it (idempotency: nothing is added, every row is skipped as a duplicate). As a same-run baseline it times
reading and parsing the file alone with pandas (no validation, no database), so the ratio says how much of
the import time is validation and the store. CPU time (process time, both threads) is printed beside wall
time because the machine these figures come from is shared. The headline figure is the median of the
repeats; the first trial (the process's first import, as one `planner runs import` command does) is printed
too: it is slower, the process's heap and SQLite's page cache being still new (more page faults).

    python bench/import_runs.py [--runs PATH] [--postgres-url URL] [--repeats 3] [--json]

PostgreSQL is measured when `--postgres-url` or `PLANNER_TEST_POSTGRES_URL` is given (`scripts/postgres.sh
url`); it uses its own database `planner_bench` on that server, dropped and recreated for each repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from planner.ingest import import_file, preset
from planner.store import Database

DEFAULT_RUNS = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"
)


def _bench_database(url: str) -> str:
    """A separate database `planner_bench` on the same server (never the tests' one), created if absent."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = 'planner_bench'")).first()
        if exists is None:
            conn.execute(sa.text("CREATE DATABASE planner_bench"))
    engine.dispose()
    return str(sa.engine.make_url(url).set(database="planner_bench").render_as_string(hide_password=False))


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def _time_import(url: str, path: Path) -> dict[str, Any]:
    db = Database(url)
    try:
        mapping = preset("zeroeval")
        start, cpu = time.perf_counter(), time.process_time()
        first = import_file(path, db, mapping=mapping)
        first_s, first_cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        second = import_file(path, db, mapping=mapping)
        second_s = time.perf_counter() - start
    finally:
        db.dispose()
    return {
        "rows": first.rows_read,
        "inserted_first": first.inserted,
        "inserted_second": second.inserted,
        "first_s": first_s,
        "first_cpu_s": first_cpu,
        "second_s": second_s,
    }


def _measure(name: str, make_url: Any, path: Path, repeats: int, parse_s: float) -> dict[str, Any]:
    trials = [_time_import(make_url(i), path) for i in range(repeats)]
    rows = trials[0]["rows"]
    first = statistics.median(t["first_s"] for t in trials)
    second = statistics.median(t["second_s"] for t in trials)
    cpu = statistics.median(t["first_cpu_s"] for t in trials)
    return {
        "store": name,
        "rows": rows,
        "inserted_first": trials[0]["inserted_first"],
        "inserted_second": trials[0]["inserted_second"],
        "import_s_median": round(first, 3),
        "rows_per_s": round(rows / first),
        "import_s_first_trial": round(trials[0]["first_s"], 3),
        "rows_per_s_first_trial": round(rows / trials[0]["first_s"]),
        "import_cpu_s_median": round(cpu, 3),
        "rows_per_cpu_s": round(rows / cpu),
        "reimport_s_median": round(second, 3),
        "reimport_rows_per_s": round(rows / second),
        "import_vs_parse_only": round(first / parse_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS.resolve())
    parser.add_argument("--postgres-url", default=os.environ.get("PLANNER_TEST_POSTGRES_URL"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    parse = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pd.read_csv(args.runs)
        parse.append(time.perf_counter() - start)
    parse_s = statistics.median(parse)
    results: dict[str, Any] = {"file": str(args.runs), "parse_only_s_median": round(parse_s, 3), "stores": []}

    with tempfile.TemporaryDirectory() as tmp:
        results["stores"].append(
            _measure("sqlite", lambda i: f"sqlite:///{tmp}/bench{i}.db", args.runs, args.repeats, parse_s)
        )
    if args.postgres_url:
        bench_url = _bench_database(args.postgres_url)

        def pg_url(_: int) -> str:
            _reset_postgres(bench_url)
            return bench_url

        results["stores"].append(_measure("postgresql", pg_url, args.runs, args.repeats, parse_s))
        _reset_postgres(bench_url)

    if args.json:
        print(json.dumps(results))
        return
    print(f"file {results['file']}; pandas parse only: {parse_s:.3f} s (median of {args.repeats})")
    for s in results["stores"]:
        print(
            f"{s['store']:>10}: {s['rows']} rows, import {s['import_s_median']} s = {s['rows_per_s']} rows/s "
            f"(first trial: {s['import_s_first_trial']} s = {s['rows_per_s_first_trial']} rows/s) "
            f"({s['import_vs_parse_only']}x parse-only; CPU {s['import_cpu_s_median']} s = "
            f"{s['rows_per_cpu_s']} rows per CPU-s); re-import adds {s['inserted_second']} rows in "
            f"{s['reimport_s_median']} s = {s['reimport_rows_per_s']} rows/s"
        )


if __name__ == "__main__":
    main()
