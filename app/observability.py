"""Request ids, one access-log line per request, request metrics, and the log format.

The middleware is plain ASGI (no BaseHTTPMiddleware) because it runs on every request and the
service's own work per request is only a few hundred microseconds.
"""

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ACCESS_FIELDS_KEY = "mnist.access_log_fields"
UNMATCHED_ROUTE = "<unmatched>"
_HANDLER_NAME = "mnist-serve"

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
access_logger = logging.getLogger("mnist.access")


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


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger message`, one line per event; an access line's message is its fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        fields = getattr(record, "fields", None)
        if fields:
            record.message = " ".join(f"{key}={value}" for key, value in fields.items())
        elif record.request_id != "-":
            record.message = f"{record.message} request_id={record.request_id}"
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.request_id != "-":
            entry["request_id"] = record.request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record, uvicorn's included, through one handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only a handler installed here before, so handlers added by others (pytest's
    # log capture, an embedding application) keep working.
    root.handlers[:] = [existing for existing in root.handlers if existing.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # This service writes its own access line per request (with request id and prediction).
    logging.getLogger("uvicorn.access").disabled = True
