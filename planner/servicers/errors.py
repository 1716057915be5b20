"""The ONE place where exceptions become gRPC statuses.

Mapping (first match in class order wins):

| exception | status |
|---|---|
| `InvalidArgumentError` (incl. `CatalogError`, `ImportRowError`) | INVALID_ARGUMENT + BadRequest |
| `NotFoundError` | NOT_FOUND |
| `AlreadyExistsError` | ALREADY_EXISTS |
| `FailedPreconditionError` | FAILED_PRECONDITION |
| `InfeasibleError` | FAILED_PRECONDITION (see below) |
| `BudgetExhaustedError` | RESOURCE_EXHAUSTED |
| `NotImplementedYetError` | UNIMPLEMENTED |
| `TimeoutError` (our own time budget ran out) | DEADLINE_EXCEEDED |
| any other exception | INTERNAL, generic message with a reference id; traceback logged, never sent |

`InfeasibleError` maps to FAILED_PRECONDITION, not RESOURCE_EXHAUSTED: the request is well formed but
the system (its caps, SLOs, capacity and guard rails together) admits no allocation; retrying cannot
help until the constraints change -- the gRPC guide's definition of FAILED_PRECONDITION. RESOURCE_EXHAUSTED is
kept for a quota running out (`BudgetExhaustedError`: the tenant's period budget is spent; it refills).

Every PlannerError also carries a `google.rpc.ErrorInfo` (reason = exception class, domain = "planner").
The mapping is applied to every RPC of the server by `ErrorMappingInterceptor`, so servicers just raise.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from planner.errors import (
    AlreadyExistsError,
    BudgetExhaustedError,
    FailedPreconditionError,
    InfeasibleError,
    InvalidArgumentError,
    NotFoundError,
    NotImplementedYetError,
    PlannerError,
)

log = structlog.get_logger(__name__)

ERROR_DOMAIN = "planner"
MAX_VALUE_CHARS = 200
"""Offending values are echoed in field violations, truncated to this many characters."""

STATUS_FOR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (InfeasibleError, grpc.StatusCode.FAILED_PRECONDITION),
    (BudgetExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotImplementedYetError, grpc.StatusCode.UNIMPLEMENTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
)


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The status code an exception maps to (INTERNAL for anything unexpected)."""
    for kind, code in STATUS_FOR:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def bad_request(exc: InvalidArgumentError) -> error_details_pb2.BadRequest:
    """`google.rpc.BadRequest` with one field violation per `FieldViolation` of the error."""
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=f"{v.reason} (got {_short(v.value)})"
            )
            for v in exc.violations
        ]
    )


def to_rpc_status(exc: BaseException, ref: str | None = None) -> status_pb2.Status:
    """The full `google.rpc.Status` (code, message, details) sent for an exception."""
    code = status_code_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        ref = ref or uuid.uuid4().hex[:12]
        return status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (reference {ref})")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and not isinstance(exc, PlannerError):
        return status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message="the call's time budget ran out")
    details = []
    if isinstance(exc, InvalidArgumentError) and exc.violations:
        details.append(_pack(bad_request(exc)))
    if isinstance(exc, PlannerError):
        details.append(_pack(error_details_pb2.ErrorInfo(reason=type(exc).__name__, domain=ERROR_DOMAIN)))
    return status_pb2.Status(code=code.value[0], message=str(exc) or type(exc).__name__, details=details)


def _is_grpc_control_flow(exc: BaseException) -> bool:
    """Exceptions grpc itself uses to end a call (abort); they must pass through untouched."""
    return isinstance(exc, grpc.aio.AbortError | grpc.aio.UsageError)


async def abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    """Log `exc` and end the call with its mapped status (raises grpc's AbortError)."""
    code = status_code_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        log.error("rpc.internal_error", method=method, reference=ref, exc_info=exc)
        status = to_rpc_status(exc, ref)
    else:
        log.info("rpc.error", method=method, code=code.name, error=str(exc))
        status = to_rpc_status(exc)
    await context.abort_with_status(rpc_status.to_status(status))


Handler = Callable[..., Any]


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request message whose bytes could not be parsed (see `safe_deserializer`)."""

    error: str


def safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that returns `Undecodable` instead of raising, so a corrupt request becomes
    INVALID_ARGUMENT (grpc itself would answer UNKNOWN with the exception's class name)."""
    if deserializer is None:
        return None

    def safe(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return Undecodable(str(exc))

    return safe


def check_decoded(request: Any) -> Any:
    """`request` itself, or `InvalidArgumentError` when it could not be decoded."""
    if isinstance(request, Undecodable):
        raise InvalidArgumentError.for_field("(request)", "<bytes>", f"not a valid message: {request.error}")
    return request


async def checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The request stream, raising `InvalidArgumentError` at the first undecodable message."""
    async for request in requests:
        yield check_decoded(request)


def map_errors(behavior: Handler, method: str = "", request_streaming: bool = False) -> Handler:
    """Wrap one RPC behavior (coroutine or async generator) so exceptions become mapped statuses and corrupt
    request messages become INVALID_ARGUMENT."""
    name = method or getattr(behavior, "__qualname__", "rpc")

    def checked(request: Any) -> Any:
        return checked_stream(request) if request_streaming else check_decoded(request)

    if inspect.isasyncgenfunction(behavior):

        async def stream_wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            structlog.contextvars.bind_contextvars(rpc=name)  # each RPC runs in its own task / context
            try:
                async for item in behavior(checked(request), context):
                    yield item
            except Exception as exc:
                if _is_grpc_control_flow(exc):
                    raise
                await abort_for(exc, context, name)

        return stream_wrapper

    if not inspect.iscoroutinefunction(behavior):
        return behavior

    async def unary_wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        structlog.contextvars.bind_contextvars(rpc=name)  # each RPC runs in its own task / context
        try:
            return await behavior(checked(request), context)
        except Exception as exc:
            if _is_grpc_control_flow(exc):
                raise
            await abort_for(exc, context, name)

    return unary_wrapper


_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """The same method handler with its behavior wrapped by `map_errors`."""
    kind = (bool(handler.request_streaming), bool(handler.response_streaming))
    behavior = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[kind]
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        return handler
    return _HANDLER_FACTORIES[kind](
        map_errors(behavior, method, request_streaming=kind[0]),
        request_deserializer=safe_deserializer(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Applies `map_errors` to every RPC handler of the server."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return wrap_handler(handler, handler_call_details.method)
