"""Request ids, one access-log line per request, and request metrics, around every request.

The middleware is plain ASGI (no BaseHTTPMiddleware) because it runs on every request and the
service's own work per request is only a few hundred microseconds.
"""

import logging
import os
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import metrics
from app.observability.logs import access_logger, request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ACCESS_FIELDS_KEY = "mnist.access_log_fields"
UNMATCHED_ROUTE = "<unmatched>"


def annotate_access_log(request: Request, **fields: Any) -> None:
    """Add fields (such as the predicted class) to this request's access-log line."""
    request.scope.setdefault(_ACCESS_FIELDS_KEY, {}).update(fields)


class RequestObservabilityMiddleware:
    def __init__(self, app: ASGIApp, route_paths: frozenset[str]) -> None:
        self.app = app
        # Uploads refused before routing (by the upload guard) still get their route's label.
        self.route_paths = route_paths
        # (route, method, status) -> its counter and histogram series; labels() costs a lock
        # and a tuple per call, and the set of combinations is small and fixed.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        status = 500
        header = (_REQUEST_ID_HEADER_KEY, request_id.encode())

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            metrics.IN_FLIGHT.dec()
            self._record(scope, status, time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        path = scope["path"]
        route_label = route.path if route is not None else (path if path in self.route_paths else UNMATCHED_ROUTE)
        key = (route_label, scope["method"], status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                metrics.REQUESTS.labels(route_label, scope["method"], str(status)),
                metrics.REQUEST_SECONDS.labels(route_label, str(status)),
            )
        series[0].inc()
        series[1].observe(seconds)
        if access_logger.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                **scope.get(_ACCESS_FIELDS_KEY, {}),
            }
            access_logger.info("%s %s %d", scope["method"], path, status, extra={"fields": fields})


def _request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == _REQUEST_ID_HEADER_KEY:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode()
            break
    return os.urandom(16).hex()
