"""The `Forecast` RPC of SimulationService: daily spend forecast with prediction intervals and a backtest.

History: the store's runs priced per UTC day (`simulator.history.runs_spend`: recorded `cost_usd`, else the
tokens at the active catalog's unit costs), or a seeded synthetic history when `synthetic` is set. Model and
backtest: `simulator.forecast` (rolling origin; the seasonal-naive baseline on the same folds). Fitting
runs on the worker pool within the call's deadline. `SimulationServicer.Forecast` delegates here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import grpc
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from planner.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from planner.servicers.state import ServiceState
from planner.store import Database
from planner.store.runs import RUNS
from planner.v1 import simulation_pb2
from simulator.costmodel import CostModel
from simulator.forecast import Backtest, ForecastModel, SpendForecast, backtest, forecast
from simulator.history import SpendHistory, runs_spend, synthetic_daily

DEFAULT_LEVEL = 0.9
DEFAULT_FOLDS = 8
MAX_FOLDS = 60
SEASON = 7
SYNTHETIC_DAYS = 365
MIN_TRAIN = max(3 * SEASON, 10)


@dataclass(frozen=True)
class ForecastArgs:
    """A validated ForecastRequest."""

    horizon: int
    level: float
    tenant: str
    model: ForecastModel
    synthetic: bool
    seed: int
    folds: int
    reprice: bool


def parse_request(request: simulation_pb2.ForecastRequest) -> ForecastArgs:
    """Validate every field at once; InvalidArgumentError lists each bad one."""
    bad: list[FieldViolation] = []
    if not 1 <= request.horizon_days <= 366:
        bad.append(FieldViolation("horizon_days", request.horizon_days, "must be in [1, 366]"))
    level = request.interval_level or DEFAULT_LEVEL
    if not (0 < level < 1 and math.isfinite(level)):
        bad.append(FieldViolation("interval_level", request.interval_level, "must be in (0, 1) or 0"))
    if not 0 <= request.backtest_folds <= MAX_FOLDS:
        bad.append(FieldViolation("backtest_folds", request.backtest_folds, f"must be in [0, {MAX_FOLDS}]"))
    model = ForecastModel.AUTO
    try:
        model = ForecastModel.parse(request.model)
    except InvalidArgumentError as exc:
        bad.extend(exc.violations)
    if bad:
        raise InvalidArgumentError("bad ForecastRequest", bad)
    return ForecastArgs(
        request.horizon_days,
        float(level),
        request.tenant,
        model,
        request.synthetic,
        int(request.seed),
        request.backtest_folds or DEFAULT_FOLDS,
        request.reprice,
    )


def _cost_model(state: ServiceState) -> CostModel:
    cached = state.extras.get("forecasting.cost_model")
    if cached is not None and cached[0] == state.catalog_version:
        model: CostModel = cached[1]
        return model
    model = CostModel(state.catalog)
    state.extras["forecasting.cost_model"] = (state.catalog_version, model)
    return model


HISTORY_COLUMNS = ("timestamp", "tier", "model", "target", "input_tokens", "output_tokens", "prompt_chars",
                   "output_chars", "cost_usd", "tenant")  # fmt: skip


def history_frame(db: Database, tenant: str | None) -> pd.DataFrame:
    """Only the columns pricing needs, of timestamped runs (one query; no prompts or features read)."""
    c = RUNS.c
    stmt = select(*(c[name] for name in HISTORY_COLUMNS)).where(c.timestamp.is_not(None))
    if tenant:
        stmt = stmt.where(c.tenant == tenant)
    with db.engine.connect() as conn:
        frame = pd.read_sql(stmt, conn)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def load_history(state: ServiceState, args: ForecastArgs) -> SpendHistory:
    """The daily spend history the forecast is fitted on (blocking: reads the store)."""
    if args.synthetic:
        return synthetic_daily(SYNTHETIC_DAYS, args.seed)
    if state.db is None:
        raise FailedPreconditionError("this server runs without a database: no run history to forecast from")
    frame = history_frame(state.db, args.tenant or None)
    if frame.empty:
        who = f" for tenant {args.tenant!r}" if args.tenant else ""
        raise FailedPreconditionError(
            f"no stored run{who} has a timestamp: import runs with timestamps first"
        )
    return runs_spend(frame, _cost_model(state), tenant=args.tenant or None, reprice=args.reprice)


def run_forecast(
    state: ServiceState, args: ForecastArgs
) -> tuple[SpendHistory, SpendForecast, Backtest | None]:
    """History, forecast and (when the history is long enough) the rolling-origin backtest."""
    history = load_history(state, args)
    y = history.spend
    if len(y) < 2:
        raise FailedPreconditionError(f"the history spans {len(y)} day(s); a forecast needs at least 2")
    fc = forecast(y, args.horizon, args.level, args.model, SEASON)
    bt_h = min(args.horizon, len(y) - MIN_TRAIN)
    bt = None
    if bt_h >= 1:
        model = args.model if args.model is ForecastModel.AUTO else ForecastModel(fc.model)
        bt = backtest(y, bt_h, (args.level,), model, SEASON, args.folds, MIN_TRAIN)
    return history, fc, bt


def to_response(
    history: SpendHistory, fc: SpendForecast, bt: Backtest | None
) -> simulation_pb2.ForecastResponse:
    points = []
    for ts, mean, lo, hi in zip(fc.index, fc.mean, fc.lo, fc.hi, strict=True):
        day = Timestamp()
        day.FromDatetime(ts.to_pydatetime())
        points.append(simulation_pb2.ForecastPoint(day=day, mean=float(mean), lo=float(lo), hi=float(hi)))
    metrics = simulation_pb2.BacktestMetrics()
    if bt is not None:
        metrics = simulation_pb2.BacktestMetrics(
            folds=bt.folds,
            mae=bt.mae,
            mape=bt.mape,
            coverage=bt.coverage[fc.level],
            baseline_mae=bt.baseline_mae,
            baseline_mape=bt.baseline_mape,
            baseline_coverage=bt.baseline_coverage[fc.level],
            horizon_days=bt.horizon,
        )
    return simulation_pb2.ForecastResponse(
        points=points,
        model=fc.model,
        backtest=metrics,
        history_days=len(history.spend),
        source=history.source,
        skipped_runs=history.skipped_rows,
        interval_level=fc.level,
    )


async def handle_forecast(
    state: ServiceState, request: simulation_pb2.ForecastRequest, context: grpc.aio.ServicerContext | Any
) -> simulation_pb2.ForecastResponse:
    """Validate, load the history and fit on the worker pool, answer with points and backtest metrics."""
    args = parse_request(request)
    history, fc, bt = await state.run_blocking(context, run_forecast, state, args)
    return to_response(history, fc, bt)
