"""Prometheus metrics of the gRPC server: calls and latency per method and status code.

Each server gets its own `CollectorRegistry` (no global state) and, when `settings.metrics_port` is non-zero,
its own HTTP endpoint (`/metrics`) that stops with the server. Server-streaming calls are not timed.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from planner.servicers.errors import status_code_for

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class RpcMetrics:
    """Counters and histograms of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "planner_rpc_calls",
            "RPCs finished, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "planner_rpc_latency_seconds", "RPC handling time, by method", ["method"], registry=self.registry
        )
        self._http: Any = None

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(seconds)

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose `/metrics` on `port`."""
        self._http, _thread = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _code_of(exc: BaseException | None, context: Any) -> str:
    if exc is None:
        code = context.code() if hasattr(context, "code") else None
        return code.name if isinstance(code, grpc.StatusCode) else "OK"
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return status_code_for(exc).name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times unary-response handlers and counts every call's final status (place it outside error mapping)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.response_streaming:
            return handler
        behavior = handler.unary_unary or handler.stream_unary
        if not inspect.iscoroutinefunction(behavior):
            return handler
        method = handler_call_details.method
        metrics = self.metrics

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.observe(method, _code_of(error, context), time.perf_counter() - start)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
