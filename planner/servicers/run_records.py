"""Conversions between `planner.v1.RunRecord` messages and the canonical run records of the import schema."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from planner.errors import FieldViolation, ImportRowError, InvalidArgumentError
from planner.v1 import runs_pb2

_OPTIONAL = (
    "prompt_chars", "output_chars", "score", "input_tokens", "output_tokens",
    "cost_usd", "latency_s", "energy_j",
)  # fmt: skip
_TEXT = ("query_id", "task", "prompt", "model", "tier", "strategy", "target", "tenant")


def record_from_proto(msg: runs_pb2.RunRecord) -> dict[str, Any]:
    """A canonical record: empty strings and unset optional fields become missing (defaults / derivation)."""
    rec: dict[str, Any] = {name: getattr(msg, name) or None for name in _TEXT}
    rec["sample_index"] = msg.sample_index
    for name in _OPTIONAL:
        rec[name] = getattr(msg, name) if msg.HasField(name) else None  # type: ignore[arg-type]
    rec["correct"] = int(msg.correct) if msg.HasField("correct") else None
    rec["tags"] = ",".join(msg.tags) or None
    rec["features"] = dict(msg.features) or None
    rec["strategy_params"] = (
        json_format.MessageToDict(msg.strategy_params) if msg.HasField("strategy_params") else None
    )
    rec["timestamp"] = msg.timestamp.ToDatetime(tzinfo=UTC).isoformat() if msg.HasField("timestamp") else None
    return rec


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def record_to_proto(rec: Mapping[str, Any]) -> runs_pb2.RunRecord:
    """A `RunRecord` from a stored canonical record (None / NaN fields left unset)."""
    msg = runs_pb2.RunRecord()
    for name in _TEXT:
        if _present(rec.get(name)):
            setattr(msg, name, str(rec[name]))
    if _present(rec.get("sample_index")):
        msg.sample_index = int(rec["sample_index"])
    for name in _OPTIONAL:
        value = rec.get(name)
        if _present(value):
            field_type = type(getattr(msg, name))
            setattr(msg, name, field_type(value))
    if _present(rec.get("correct")):
        msg.correct = bool(rec["correct"])
    if rec.get("tags"):
        msg.tags.extend(t for t in str(rec["tags"]).split(",") if t)
    if rec.get("features"):
        msg.features.update({str(k): float(v) for k, v in rec["features"].items()})
    if rec.get("strategy_params"):
        json_format.ParseDict(dict(rec["strategy_params"]), msg.strategy_params)
    when = rec.get("timestamp")
    if _present(when):
        msg.timestamp.FromDatetime(when if isinstance(when, datetime) else datetime.fromisoformat(str(when)))
    return msg


def record_error(exc: ImportRowError) -> InvalidArgumentError:
    """Re-state an import error (1-based record number) as a violation on `records[i].<field>` (0-based)."""
    index = exc.row - 1
    first = exc.violations[0] if exc.violations else FieldViolation("record", None, str(exc))
    prefix = f"row {exc.row}: "
    reason = first.reason.removeprefix(prefix)
    return InvalidArgumentError(
        f"record {index}: bad field {first.field!r}",
        [FieldViolation(f"records[{index}].{first.field}", first.value, reason)],
    )
