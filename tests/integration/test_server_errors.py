"""The error-mapping layer on a real grpc.aio server: every PlannerError kind -> its status, details attached,
internals never leaked, time budgets -> DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from planner.catalog import parse_catalog
from planner.errors import (
    AlreadyExistsError,
    BudgetExhaustedError,
    CatalogError,
    FailedPreconditionError,
    FieldViolation,
    ImportRowError,
    InfeasibleError,
    InvalidArgumentError,
    NotFoundError,
    NotImplementedYetError,
)
from planner.servicers.errors import ErrorMappingInterceptor
from planner.servicers.state import ServiceState
from planner.settings import Settings

CATALOG = parse_catalog(
    """
[[tiers]]
name = "t"
total_params_b = 8
active_params_b = 8
[[strategies]]
name = "single"
[[targets]]
name = "h100"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
usd_per_hour = 3.0
"""
)

BAD = grpc.StatusCode.INVALID_ARGUMENT
CASES: dict[str, tuple[BaseException, grpc.StatusCode]] = {
    "invalid": (InvalidArgumentError("bad", [FieldViolation("a.b", 3, "must be even")]), BAD),
    "catalog": (CatalogError("bad catalog", [FieldViolation("tiers[0].name", "", "empty")]), BAD),
    "row": (ImportRowError("f.csv", 7, "score", 2.0, "must be in [0, 1]"), grpc.StatusCode.INVALID_ARGUMENT),
    "not_found": (NotFoundError("no tier named 'x'"), grpc.StatusCode.NOT_FOUND),
    "exists": (AlreadyExistsError("version 3 exists"), grpc.StatusCode.ALREADY_EXISTS),
    "precondition": (FailedPreconditionError("no predictor trained"), grpc.StatusCode.FAILED_PRECONDITION),
    "infeasible": (InfeasibleError("no allocation fits the budget"), grpc.StatusCode.FAILED_PRECONDITION),
    "budget": (BudgetExhaustedError("tenant acme spent its day"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    "unbuilt": (NotImplementedYetError("Plan is not implemented yet"), grpc.StatusCode.UNIMPLEMENTED),
    "bug": (KeyError("secret internal detail"), grpc.StatusCode.INTERNAL),
    "zero": (ZeroDivisionError("division by zero in /srv/secret.py"), grpc.StatusCode.INTERNAL),
}  # fmt: skip


class Handlers(grpc.GenericRpcHandler):
    """Raw-bytes methods: /t.T/<case> raises its error; Slow sleeps in the worker pool; Stream yields."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        name = details.method.rsplit("/", 1)[-1]
        if name in CASES:
            return grpc.unary_unary_rpc_method_handler(self._raiser(CASES[name][0]))
        if name == "Slow":
            return grpc.unary_unary_rpc_method_handler(self._slow)
        if name == "Stream":
            return grpc.unary_stream_rpc_method_handler(self._stream)
        return None

    @staticmethod
    def _raiser(exc: BaseException) -> Callable[..., Any]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            raise exc

        return handler

    async def _slow(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        import time

        await self.state.run_blocking(context, time.sleep, 0.5)
        return b"done"

    async def _stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"one"
        raise NotFoundError("ran out of things")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    state = ServiceState(settings=Settings(default_deadline_s=0.05), catalog=CATALOG)
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    server.add_generic_rpc_handlers([Handlers(state)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(0)
    state.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_error_kind_maps_to_one_status(channel: grpc.aio.Channel, case: str) -> None:
    exc, code = CASES[case]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(f"/t.T/{case}")(b"")
    err = info.value
    assert err.code() is code
    status = rpc_status.from_call(err)
    if code is grpc.StatusCode.INTERNAL:
        assert "internal error (reference" in err.details()
        assert "secret" not in err.details()
        assert status is None or not status.details
        return
    assert err.details() == str(exc)
    assert status is not None
    kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
    assert "google.rpc.ErrorInfo" in kinds
    if isinstance(exc, InvalidArgumentError):
        bad = error_details_pb2.BadRequest()
        next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
        assert [v.field for v in bad.field_violations] == [v.field for v in exc.violations]


async def test_own_time_budget_running_out_is_deadline_exceeded(channel: grpc.aio.Channel) -> None:
    # No client deadline: the server's default budget (0.05 s) runs out while the worker sleeps 0.5 s.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/t.T/Slow")(b"")
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_client_deadline_is_deadline_exceeded(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/t.T/Slow")(b"", timeout=0.01)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0)


async def test_server_streaming_errors_are_mapped_after_partial_output(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/t.T/Stream")(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call:
            received.append(item)
    assert received == [b"one"]
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
