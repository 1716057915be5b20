"""PredictorService: TrainPredictor (server-streaming progress, training on a worker thread), ListPredictors,
PromotePredictor / RollbackPredictor (load the artifact first, then switch the store, then hot-swap the
server's active predictor whole), EvaluatePredictor. Domain errors are raised; `planner.servicers.errors`
maps them. The logic lives in `planner.predictors`; this module only translates messages."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import timestamp_pb2

from planner.errors import FailedPreconditionError
from planner.predictors import (
    ActivePredictor,
    EvaluationMetrics,
    TrainConfig,
    TrainProgress,
    TrainResult,
    TrainStage,
    evaluate_version,
    install,
    list_versions,
    load_version,
    promote_version,
    rollback_target,
    rollback_version,
    train_predictor,
)
from planner.predictors.active import poll_interval, watch_registry
from planner.servicers.state import ServiceState
from planner.store import Database, PredictorVersion
from planner.v1 import predictors_pb2 as pb
from planner.v1 import predictors_pb2_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["PredictorService"].full_name
Ctx: TypeAlias = grpc.aio.ServicerContext

STAGES: dict[TrainStage, pb.TrainStage.ValueType] = {
    TrainStage.LOADING: pb.TRAIN_STAGE_LOADING,
    TrainStage.FEATURES: pb.TRAIN_STAGE_FEATURES,
    TrainStage.FITTING: pb.TRAIN_STAGE_FITTING,
    TrainStage.CALIBRATING: pb.TRAIN_STAGE_CALIBRATING,
    TrainStage.EVALUATING: pb.TRAIN_STAGE_EVALUATING,
    TrainStage.SAVING: pb.TRAIN_STAGE_SAVING,
    TrainStage.DONE: pb.TRAIN_STAGE_DONE,
}


def metrics_message(data: EvaluationMetrics | dict[str, Any]) -> pb.EvaluationMetrics:
    m = data if isinstance(data, EvaluationMetrics) else EvaluationMetrics.from_dict(data)
    return pb.EvaluationMetrics(
        n=m.n,
        brier=m.brier,
        log_loss=m.log_loss,
        auc=m.auc,
        ece=m.ece,
        baseline_brier=m.baseline_brier,
        token_mape=m.token_mape,
        token_p90_coverage=m.token_p90_coverage,
        per_tier=[
            pb.TierMetrics(tier=t.tier, n=t.n, brier=t.brier, auc=t.auc, ece=t.ece, base_rate=t.base_rate)
            for t in m.per_tier
        ],
    )


def version_message(v: PredictorVersion) -> pb.PredictorVersion:
    created = timestamp_pb2.Timestamp()
    if v.created_at is not None:
        created.FromDatetime(v.created_at)
    return pb.PredictorVersion(
        version=v.version,
        kind=v.kind,
        task=str(v.meta.get("task", "")),
        tiers=[str(t) for t in v.meta.get("tiers", ())],
        train_runs=int(v.meta.get("train_runs", 0)),
        created_at=created,
        active=v.active,
        metrics=metrics_message(dict(v.metrics)),
    )


def progress_message(p: TrainProgress) -> pb.TrainPredictorResponse:
    fraction = p.fraction if math.isfinite(p.fraction) else 0.0
    return pb.TrainPredictorResponse(stage=STAGES[p.stage], fraction=fraction, message=p.message)


@dataclass(frozen=True)
class _Job:
    """A training job running on a worker thread, its progress queue and its cancel flag."""

    future: asyncio.Future[TrainResult]
    queue: asyncio.Queue[TrainProgress]
    cancel: threading.Event


class PredictorServicer(predictors_pb2_grpc.PredictorServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._swap_lock = asyncio.Lock()
        """Serialises promote / roll-back / post-training swaps of the active predictor."""
        self._train_lock = asyncio.Lock()
        """One training job at a time per server (each holds a worker thread and much memory)."""
        self._watcher = self._start_watcher()

    def _start_watcher(self) -> asyncio.Task[None] | None:
        """Poll the registry so promotions made elsewhere (CLI, other replicas) reach this server."""
        interval = poll_interval(self.state.settings)
        if self.state.db is None or interval <= 0:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # built outside a running loop (tests of the servicer alone)
            return None
        task = loop.create_task(watch_registry(self.state, self._swap_lock, interval))

        def stop() -> None:
            task.cancel()

        self.state.closers.append(stop)
        return task

    def _db(self) -> Database:
        if self.state.db is None:
            raise FailedPreconditionError("this server has no store; predictors need one")
        db: Database = self.state.db
        return db

    async def TrainPredictor(
        self, request: pb.TrainPredictorRequest, context: Ctx
    ) -> AsyncIterator[pb.TrainPredictorResponse]:
        db = self._db()
        config = TrainConfig.create(
            request.kind, request.task, request.holdout_fraction, request.seed, dict(request.params)
        )
        if self._train_lock.locked():
            yield pb.TrainPredictorResponse(
                stage=pb.TRAIN_STAGE_LOADING, message="queued behind another training job"
            )
        await self._train_lock.acquire()
        try:
            job = self._start(db, config, request.promote_if_better)
        except BaseException:
            self._train_lock.release()
            raise
        job.future.add_done_callback(self._job_ended)  # the lock is held until the worker thread ends
        async for message in self._stream(job):
            yield message

    def _job_ended(self, future: asyncio.Future[TrainResult]) -> None:
        self._train_lock.release()
        if not future.cancelled():
            future.exception()  # retrieved here, so a cancelled call's failed job is not logged as lost

    def _start(self, db: Database, config: TrainConfig, promote_if_better: bool) -> _Job:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TrainProgress] = asyncio.Queue()
        cancel = threading.Event()

        def sink(progress: TrainProgress) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, progress)

        work = functools.partial(
            train_predictor,
            db,
            config,
            self.state.catalog.run_name_map(),
            progress=sink,
            cancel=cancel,
            promote_if_better=promote_if_better,
            catalog=self.state.catalog,
        )
        return _Job(loop.run_in_executor(self.state.executor, work), queue, cancel)

    async def _stream(self, job: _Job) -> AsyncIterator[pb.TrainPredictorResponse]:
        try:
            while not job.future.done():
                getter: asyncio.Future[TrainProgress] = asyncio.ensure_future(job.queue.get())
                waiting: set[asyncio.Future[Any]] = {getter, job.future}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    if getter.result().stage is not TrainStage.DONE:
                        yield progress_message(getter.result())
                else:
                    getter.cancel()
            while not job.queue.empty():
                progress = job.queue.get_nowait()
                if progress.stage is not TrainStage.DONE:
                    yield progress_message(progress)
            result = job.future.result()
        finally:
            job.cancel.set()  # no-op once finished; stops a job whose call was cancelled or timed out
        if result.promoted and result.predictor is not None:
            async with self._swap_lock:
                install(
                    self.state, ActivePredictor(result.version.version, result.version.kind, result.predictor)
                )
        note = "already trained" if result.reused else "stored"
        yield pb.TrainPredictorResponse(
            stage=pb.TRAIN_STAGE_DONE,
            fraction=1.0,
            message=f"{note} {result.version.version}" + (" and promoted it" if result.promoted else ""),
            predictor=version_message(result.version),
            promoted=result.promoted,
        )

    async def ListPredictors(
        self, request: pb.ListPredictorsRequest, context: Ctx
    ) -> pb.ListPredictorsResponse:
        versions, active = await self.state.run_blocking(
            context, list_versions, self._db(), request.task.strip()
        )
        return pb.ListPredictorsResponse(
            predictors=[version_message(v) for v in versions], active_version=active
        )

    async def PromotePredictor(
        self, request: pb.PromotePredictorRequest, context: Ctx
    ) -> pb.PromotePredictorResponse:
        db = self._db()
        async with self._swap_lock:
            stored, predictor = await self.state.run_blocking(
                context, load_version, db, request.version.strip()
            )
            now, previous = await self.state.run_blocking(context, promote_version, db, stored.version)
            install(self.state, ActivePredictor(now.version, now.kind, predictor))
        return pb.PromotePredictorResponse(predictor=version_message(now), previous_version=previous)

    async def RollbackPredictor(
        self, request: pb.RollbackPredictorRequest, context: Ctx
    ) -> pb.RollbackPredictorResponse:
        db = self._db()
        async with self._swap_lock:
            target = await self.state.run_blocking(context, rollback_target, db)
            _stored, predictor = await self.state.run_blocking(context, load_version, db, target)
            now, rolled_back = await self.state.run_blocking(context, rollback_version, db)
            install(self.state, ActivePredictor(now.version, now.kind, predictor))
        return pb.RollbackPredictorResponse(predictor=version_message(now), rolled_back_version=rolled_back)

    async def EvaluatePredictor(
        self, request: pb.EvaluatePredictorRequest, context: Ctx
    ) -> pb.EvaluatePredictorResponse:
        evaluation = await self.state.run_blocking(
            context,
            evaluate_version,
            self._db(),
            request.version.strip(),
            task=request.task,
            holdout_fraction=request.holdout_fraction,
            seed=request.seed,
            run_name_map=self.state.catalog.run_name_map(),
            catalog=self.state.catalog,
        )
        return pb.EvaluatePredictorResponse(
            version=evaluation.version, metrics=metrics_message(evaluation.metrics)
        )


def add_to_server(server: Any, state: ServiceState) -> str:
    predictors_pb2_grpc.add_PredictorServiceServicer_to_server(PredictorServicer(state), server)
    return SERVICE


__all__ = ["SERVICE", "PredictorServicer", "add_to_server"]
