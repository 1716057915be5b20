"""RunService: stream run records into the store (validated, all or nothing), page through them, summarise."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sqlalchemy import distinct, func, select

from planner.errors import FailedPreconditionError, ImportRowError, InvalidArgumentError
from planner.ingest import ImportResult, import_records
from planner.servicers.run_records import record_error, record_from_proto, record_to_proto
from planner.servicers.state import ServiceState
from planner.store import Database, RunFilter, RunStore
from planner.store.runs import RUNS
from planner.v1 import runs_pb2, runs_pb2_grpc

SERVICE = runs_pb2.DESCRIPTOR.services_by_name["RunService"].full_name
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _db(state: ServiceState) -> Database:
    if state.db is None:
        raise FailedPreconditionError("this server runs without a database: runs cannot be stored or read")
    db: Database = state.db
    return db


def _import(records: list[dict[str, Any]], state: ServiceState, source: str) -> ImportResult:
    try:
        return import_records(records, _db(state), catalog=state.catalog, source=source)
    except ImportRowError as exc:
        raise record_error(exc) from None


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgumentError.for_field("page_token", token, "not a token from QueryRuns") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgumentError.for_field("page_token", token, "not a token from QueryRuns")
    return offset


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgumentError.for_field("page_size", requested, "must be >= 0")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def run_filter(msg: runs_pb2.RunFilter) -> RunFilter:
    if msg.HasField("since") and msg.HasField("until") and msg.since.ToDatetime() >= msg.until.ToDatetime():
        raise InvalidArgumentError.for_field("filter.until", msg.until.ToJsonString(), "must be after since")
    return RunFilter(
        task=msg.task or None,
        query_id=msg.query_id or None,
        tier=msg.tier or None,
        strategy=msg.strategy or None,
        tenant=msg.tenant or None,
        models=tuple(msg.models),
        since=msg.since.ToDatetime() if msg.HasField("since") else None,
        until=msg.until.ToDatetime() if msg.HasField("until") else None,
    )


def run_stats(db: Database, task: str | None) -> runs_pb2.GetRunStatsResponse:
    """Per (tier, strategy) aggregates in one grouped query, plus totals."""
    c = RUNS.c
    where = [c.task == task] if task else []
    grouped = (
        select(
            c.tier,
            c.strategy,
            func.count(),
            func.count(distinct(c.query_id)),
            func.avg(func.coalesce(c.correct, c.score)),
            func.avg(c.score),
            func.avg(c.output_tokens),
            func.avg(c.cost_usd),
            func.avg(c.latency_s),
        )
        .where(*where)
        .group_by(c.tier, c.strategy)
        .order_by(c.tier, c.strategy)
    )
    queries = select(c.task, c.query_id).where(*where).group_by(c.task, c.query_id).subquery()
    with db.engine.connect() as conn:
        rows = conn.execute(grouped).all()
        total_queries = conn.execute(select(func.count()).select_from(queries)).scalar_one()
        tasks = [str(t) for (t,) in conn.execute(select(c.task).distinct().where(*where).order_by(c.task))]
    tiers = [
        runs_pb2.TierRunStats(
            tier=str(tier),
            strategy=str(strategy),
            runs=int(n),
            queries=int(nq),
            accuracy=float(acc or 0.0),
            mean_score=float(score or 0.0),
            mean_output_tokens=float(tok or 0.0),
            mean_cost_usd=float(cost or 0.0),
            mean_latency_s=float(lat or 0.0),
        )
        for tier, strategy, n, nq, acc, score, tok, cost, lat in rows
    ]
    return runs_pb2.GetRunStatsResponse(
        tiers=tiers, total_runs=sum(t.runs for t in tiers), total_queries=int(total_queries), tasks=tasks
    )


class RunServicer(runs_pb2_grpc.RunServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def RecordRuns(
        self, request_iterator: AsyncIterator[runs_pb2.RecordRunsRequest], context: grpc.aio.ServicerContext
    ) -> runs_pb2.RecordRunsResponse:
        _db(self.state)
        # Tell the client its stream is accepted: from here a graceful shutdown lets it finish.
        await context.send_initial_metadata(())
        records: list[dict[str, Any]] = []
        source = ""
        async for request in request_iterator:
            source = source or request.source
            records.extend(record_from_proto(r) for r in request.records)
        if not records:
            return runs_pb2.RecordRunsResponse()
        result = await self.state.run_blocking(context, _import, records, self.state, source or "RecordRuns")
        return runs_pb2.RecordRunsResponse(inserted=result.inserted, duplicates=result.skipped_duplicates)

    async def QueryRuns(
        self, request: runs_pb2.QueryRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.QueryRunsResponse:
        size, offset = page_size(request.page_size), decode_page_token(request.page_token)
        flt = run_filter(request.filter)
        store = RunStore(_db(self.state))
        rows = await self.state.run_blocking(context, store.query, flt, size + 1, offset)
        more = len(rows) > size
        return runs_pb2.QueryRunsResponse(
            runs=[record_to_proto(r) for r in rows[:size]],
            next_page_token=encode_page_token(offset + size) if more else "",
        )

    async def GetRunStats(
        self, request: runs_pb2.GetRunStatsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.GetRunStatsResponse:
        return await self.state.run_blocking(context, run_stats, _db(self.state), request.task or None)


def add_to_server(server: Any, state: ServiceState) -> str:
    runs_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(state), server)
    return SERVICE
