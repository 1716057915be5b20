"""Run import: formats, mapping, derivations, validation errors with row numbers, all-or-nothing writes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from planner.catalog import parse_catalog
from planner.errors import ImportRowError, InvalidArgumentError
from planner.ingest import RUN_SCHEMA, import_file, import_records, preset
from planner.store import Database, RunStore

CATALOG = parse_catalog(
    """
[[tiers]]
name = "small"
total_params_b = 1
active_params_b = 1
run_names = ["small-v1", "small-v1@host"]
[[strategies]]
name = "single"
[[targets]]
name = "gpu"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
usd_per_hour = 2
"""
)


def _frame(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(n)],
            "question": [f"What is {i} plus {i}?" for i in range(n)],
            "model": ["small-v1@host" if i % 2 else "other-model" for i in range(n)],
            "correct": [i % 3 == 0 for i in range(n)],
            "output_chars": [10 * i for i in range(n)],
            "task": "arith",
        }
    ).assign(correct=lambda f: f["correct"].astype(int))


MAPPING = {"question": "prompt"}


def _write(frame: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif ".jsonl" in name:
        text = "".join(json.dumps(r) + "\n" for r in frame.to_dict("records"))
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["runs.csv", "runs.csv.gz", "runs.jsonl", "runs.jsonl.gz", "runs.parquet"])
def test_every_format_imports_the_same_rows(sqlite_db: Database, tmp_path: Path, name: str) -> None:
    path = _write(_frame(), tmp_path / name)
    result = import_file(path, sqlite_db, MAPPING, chunk_size=7, catalog=CATALOG)
    assert (result.rows_read, result.inserted, result.skipped_duplicates) == (30, 30, 0)
    frame = RunStore(sqlite_db).load_frame().set_index("query_id")
    assert frame.loc["q1", "tier"] == "small" and frame.loc["q2", "tier"] == "other-model"
    assert frame.loc["q3", "prompt"] == "What is 3 plus 3?"
    assert frame.loc["q3", "prompt_chars"] == len("What is 3 plus 3?")
    assert frame.loc["q3", "input_tokens"] == 5  # ceil(17 / 4)
    assert frame.loc["q3", "output_tokens"] == 8  # ceil(30 / 4)
    assert frame.loc["q3", "score"] == 1.0 and frame.loc["q4", "score"] == 0.0
    assert (frame["strategy"] == "single").all() and (frame["tenant"] == "default").all()


def test_reimport_adds_nothing_and_progress_is_reported(db: Database, tmp_path: Path) -> None:
    path = _write(_frame(), tmp_path / "runs.csv")
    seen: list[int] = []
    import_file(path, db, MAPPING, chunk_size=10, progress=lambda p: seen.append(p.rows_read))
    again = import_file(path, db, MAPPING)
    assert (again.inserted, again.skipped_duplicates) == (0, 30)
    assert seen == [10, 20, 30]
    assert RunStore(db).count() == 30


def test_bad_row_in_the_middle_is_reported_and_nothing_is_written(db: Database, tmp_path: Path) -> None:
    RunStore(db).add_batch([{"query_id": "existing", "model": "m", "correct": 1}])
    frame = _frame(50)
    frame.loc[36, "correct"] = 7  # data row 37, in the fourth chunk of 10
    path = _write(frame, tmp_path / "runs.csv")
    with pytest.raises(ImportRowError) as info:
        import_file(path, db, MAPPING, chunk_size=10)
    err = info.value
    assert err.row == 37 and err.source == str(path)
    assert err.violations[0].field == "correct" and str(err.violations[0].value) == "7"
    assert "row 37" in str(err)
    assert RunStore(db).count() == 1


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("score", 1.5, "[0, 1]"),
        ("output_tokens", -3, ">= 0"),
        ("sample_index", 1.5, "whole number"),
        ("cost_usd", "cheap", "finite number"),
        ("timestamp", "yesterday", "ISO 8601"),
        ("features", '{"x": ', "JSON object"),
        ("features", '{"x": "high"}', "numbers"),
        ("strategy_params", "[1, 2]", "JSON object"),
        ("query_id", "", "required"),
    ],
)
def test_each_rule_names_row_field_and_value(
    sqlite_db: Database, tmp_path: Path, column: str, value: object, reason: str
) -> None:
    frame = _frame(5).astype(object)
    if column not in frame:
        frame[column] = None
    frame.loc[3, column] = value
    path = _write(frame, tmp_path / "runs.jsonl")
    with pytest.raises(ImportRowError, match=reason) as info:
        import_file(path, sqlite_db, MAPPING)
    assert info.value.row == 4 and info.value.violations[0].field == column


def test_json_values_parsed_once_per_distinct_value_still_name_the_first_bad_row(
    sqlite_db: Database, tmp_path: Path
) -> None:
    frame = _frame(8).assign(strategy="majority_vote", strategy_params='{"n": 5}')
    frame.loc[[2, 6], "strategy_params"] = "[5]"  # the same bad value twice
    frame.loc[4, "strategy_params"] = '{"n": '  # a different bad value between them
    with pytest.raises(ImportRowError, match="JSON object") as info:
        import_file(_write(frame, tmp_path / "runs.csv"), sqlite_db, MAPPING)
    assert info.value.row == 3 and info.value.violations[0].value == "[5]"
    frame.loc[[2, 4, 6], "strategy_params"] = ['{"n":16}', None, '{ "n": 16 }']
    assert import_file(_write(frame, tmp_path / "runs.csv"), sqlite_db, MAPPING).inserted == 8
    params = RunStore(sqlite_db).load_frame()["strategy_params"]
    assert [p and p["n"] for p in params] == [5, 5, 16, 5, None, 5, 16, 5]


def test_missing_correct_and_score_is_rejected(sqlite_db: Database, tmp_path: Path) -> None:
    path = _write(_frame(3).drop(columns="correct"), tmp_path / "runs.csv")
    with pytest.raises(ImportRowError, match="one of correct/score"):
        import_file(path, sqlite_db, MAPPING)


def test_optional_columns_round_trip(sqlite_db: Database, tmp_path: Path) -> None:
    frame = _frame(2).assign(
        score=[0.25, 1.0],
        features=['{"len": 3}', '{"len": 4.5}'],
        strategy="vote5",
        strategy_params='{"n": 5}',
        target="gpu",
        cost_usd=0.002,
        timestamp=["2026-11-23T10:00:00Z", "2026-11-23 11:00:00+01:00"],
        tenant="acme",
        tags="math,easy",
    )
    import_file(_write(frame, tmp_path / "runs.csv"), sqlite_db, MAPPING)
    out = RunStore(sqlite_db).load_frame().set_index("query_id")
    assert out.loc["q0", "score"] == 0.25 and out.loc["q1", "features"] == {"len": 4.5}
    assert out.loc["q0", "strategy_params"] == {"n": 5} and out.loc["q0", "target"] == "gpu"
    assert out.loc["q1", "timestamp"] == pd.Timestamp("2026-11-23T10:00:00Z")
    assert out.loc["q0", "tenant"] == "acme" and out.loc["q0", "cost_usd"] == pytest.approx(0.002)


def test_prompts_read_back_per_run_across_chunks(db: Database, tmp_path: Path) -> None:
    """Every chunk stores its queries' first prompts; a later chunk repeating a query with other prompts
    keeps those on its runs (and blanks only the ones equal to the stored prompt)."""
    prompts = ["A", "A", "B", None, "B", "A", "C", "A"]  # one query, chunks of 3: [A A B] [- B A] [C A]
    frame = pd.DataFrame(
        {"query_id": "q", "model": [f"m{i}" for i in range(8)], "correct": 1, "question": prompts}
    )
    import_file(_write(frame, tmp_path / "runs.csv"), db, MAPPING, chunk_size=3)
    got = {r["model"]: r["prompt"] for r in RunStore(db).query(limit=100)}
    assert got == {f"m{i}": "A" if p is None else p for i, p in enumerate(prompts)}
    assert import_file(tmp_path / "runs.csv", db, MAPPING, chunk_size=5).inserted == 0


def test_mapping_and_defaults(sqlite_db: Database, tmp_path: Path) -> None:
    frame = _frame(4).drop(columns="task").rename(columns={"query_id": "id", "correct": "ok"})
    path = _write(frame, tmp_path / "runs.csv")
    mapping = {"id": "query_id", "ok": "correct", "question": "prompt"}
    result = import_file(path, sqlite_db, mapping, defaults={"task": "custom"})
    assert result.inserted == 4 and result.ignored_columns == ()
    assert set(RunStore(sqlite_db).load_frame()["task"]) == {"custom"}
    with pytest.raises(InvalidArgumentError, match="not a canonical run column"):
        import_file(path, sqlite_db, {"id": "identifier"})


def test_unsupported_file_and_unknown_preset(sqlite_db: Database, tmp_path: Path) -> None:
    bad = tmp_path / "runs.xlsx"
    bad.write_text("x")
    with pytest.raises(InvalidArgumentError, match="unsupported file type"):
        import_file(bad, sqlite_db)
    with pytest.raises(InvalidArgumentError, match="zeroeval"):
        preset("nope")
    assert preset("zeroeval") == {"question": "prompt", "question_chars": "prompt_chars"}


def test_import_records_validates_and_names_the_record(db: Database) -> None:
    records = [{"query_id": f"q{i}", "model": "small-v1", "correct": 1} for i in range(5)]
    assert import_records(records, db, catalog=CATALOG).inserted == 5
    bad = [*records, {"query_id": "q9", "model": "small-v1", "score": -0.1}]
    with pytest.raises(ImportRowError) as info:
        import_records(bad, db, catalog=CATALOG, source="RecordRuns")
    assert info.value.row == 6 and info.value.source == "RecordRuns"
    assert info.value.violations[0].field == "score"
    assert RunStore(db).count() == 5
    assert set(RunStore(db).load_frame()["tier"]) == {"small"}


def test_record_runs_and_a_file_agree_on_strategy_params_keys(db: Database, tmp_path: Path) -> None:
    """`RecordRuns` records (params through a protobuf Struct: n=5 arrives as 5.0) and a file with the same
    runs (params as JSON text) are one set of keys: n=5 and n=16 are two runs, the file adds none of them."""
    from planner.servicers.run_records import record_from_proto, record_to_proto

    runs = [
        {"query_id": "q1", "model": "small-v1", "strategy": "majority_vote", "strategy_params": {"n": n},
         "correct": 1}
        for n in (5, 16)
    ] + [{"query_id": "q1", "model": "small-v1", "correct": 0}]  # fmt: skip
    records = [record_from_proto(record_to_proto(r)) for r in runs]
    assert records[0]["strategy_params"] == {"n": 5.0}
    assert import_records(records, db, catalog=CATALOG).inserted == 3
    frame = pd.DataFrame(runs).assign(strategy_params=['{"n":5}', '{ "n": 16 }', None])
    again = import_file(_write(frame, tmp_path / "runs.csv"), db, catalog=CATALOG)
    assert (again.inserted, again.skipped_duplicates) == (0, 3)
    assert sorted(str(p) for p in RunStore(db).load_frame()["strategy_params"]) == [
        "None", "{'n': 16.0}", "{'n': 5.0}"
    ]  # fmt: skip


def test_schema_lists_every_canonical_column() -> None:
    names = [c.name for c in RUN_SCHEMA]
    assert names[:2] == ["query_id", "task"] and len(names) == len(set(names)) == 22
    assert [c.name for c in RUN_SCHEMA if c.required] == ["query_id", "model"]


@pytest.mark.shared_data
def test_gsm8k_imports_twice_to_exactly_54760_rows(sqlite_db: Database, gsm8k_runs_path: Path) -> None:
    first = import_file(gsm8k_runs_path, sqlite_db, preset("zeroeval"))
    second = import_file(gsm8k_runs_path, sqlite_db, preset("zeroeval"))
    assert (first.inserted, second.inserted, second.skipped_duplicates) == (54_760, 0, 54_760)
    stats = RunStore(sqlite_db).stats()
    assert (stats.rows, stats.queries, stats.models) == (54_760, 1_319, 42)
    assert first.ignored_columns == ("answer_extracted",)
