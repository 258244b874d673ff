"""The one ASGI layer in front of the FastAPI app: request ids, metrics, access log, body limits,
and a direct path to the routes that read a body.

Every request passes here once. The routes that read a body (`/predict`, `/predict/batch`, V2
infer) are dispatched straight to their endpoint functions, from their FastAPI declaration
(app/http/routing.py): FastAPI's per-request machinery (its middleware stack, router, dependency
solving) would cost more than decoding and classifying a digit (the README has the figures).
FastAPI serves every other route as usual, and makes the OpenAPI document and /docs for all.
"""

import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from app.errors import ClientError, StartError
from app.http.error_handlers import client_error_response, error_body, validation_error_response
from app.http.limits import BodyBudget, GuardedBody, check_headers
from app.http.routing import DirectRoute, direct_routes
from app.http.security import check_api_key
from app.inference.classifier import ModelLoadError
from app.observability import metrics, tracing
from app.observability.logs import access_log, request_id_var
from app.repository.layout import RepositoryError
from app.settings import Settings

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ACCESS_FIELDS_KEY = "mnist.access_log_fields"
UNMATCHED_ROUTE = "<unmatched>"


def annotate_request(request: Request, **fields: Any) -> None:
    """Add fields (such as the model and the predicted class) to this request's access-log line and,
    when tracing, to its span."""
    request.scope.setdefault(_ACCESS_FIELDS_KEY, {}).update(fields)
    tracing.annotate(fields)


class ServiceFront:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.direct_routes = direct_routes(app, settings)
        self.budget = BodyBudget(settings.body_buffer_bytes)
        # (route, method, status) -> its counter and histogram series; labels() costs a lock
        # and a tuple per call, and the set of combinations is small and fixed.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, _concise_startup_failure(send))
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        if not tracing.enabled():
            await self._serve(scope, receive, send, request_id, ())
            return
        method = scope["method"]
        with tracing.request_span(method, scope["path"], _trace_context(scope), request_id) as server_span:
            status = await self._serve(scope, receive, send, request_id, tracing.response_headers(server_span))
            tracing.finish_request_span(server_span, method, self._route_label(scope), status)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, extra_headers: Iterable[tuple[bytes, bytes]]
    ) -> int:
        """Serve the request, count and log it; its status."""
        started = time.perf_counter()
        token = request_id_var.set(request_id)
        status = 500
        headers = [(_REQUEST_ID_HEADER_KEY, request_id.encode()), *extra_headers]

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            direct = self._direct_route(scope)
            if direct is None:
                await self.app(scope, receive, send_with_headers)
            else:
                await self._dispatch(scope, receive, send_with_headers, direct)
        finally:
            metrics.IN_FLIGHT.dec()
            self._record(scope, status, time.perf_counter() - started, request_id)
            request_id_var.reset(token)
        return status

    def _direct_route(self, scope: Scope) -> DirectRoute | None:
        for direct in self.direct_routes:
            match, child_scope = direct.route.matches(scope)
            if match is Match.FULL:
                scope.update(child_scope, route=direct.route)
                return direct
        return None

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, direct: DirectRoute) -> None:
        scope["app"] = self.app  # what Starlette would set, so request.app works in the endpoint
        body = GuardedBody(
            receive, direct.rule, self.budget, self.settings.body_timeout_seconds, self.settings.body_min_rate
        )
        try:
            response = await self._respond(scope, body, direct)
            await response(scope, receive, send)
        finally:
            body.release()

    async def _respond(self, scope: Scope, body: GuardedBody, direct: DirectRoute) -> Response:
        try:
            if direct.api_key is not None:
                check_api_key(scope, direct.api_key)
            check_headers(scope, direct.rule, self.budget)
            return await direct.call(Request(scope, body.receive))
        except ClientError as error:
            return client_error_response(error, scope["path"])
        except RequestValidationError as error:
            return validation_error_response(error, scope["path"])
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            return _json_error(scope["path"], "internal server error", 500)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route_label = self._route_label(scope)
        key = (route_label, scope["method"], status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                metrics.REQUESTS.labels(route_label, scope["method"], str(status)),
                metrics.REQUEST_SECONDS.labels(route_label, str(status)),
            )
        series[0].inc()
        series[1].observe(seconds)
        if access_log.enabled:
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                **scope.get(_ACCESS_FIELDS_KEY, {}),
            }
            access_log.write(f"{scope['method']} {scope['path']} {status}", fields)

    def _route_label(self, scope: Scope) -> str:
        """The route template (or the mount's path) that served the request; `<unmatched>` for unknown paths."""
        route = scope.get("route")
        if route is not None:
            return route.path
        # Starlette routes that FastAPI serves itself (/openapi.json) and mounts (/static) do
        # not record themselves in the scope; find them, only for these few requests. A mount
        # has rewritten the scope's root_path by now, so match the request as it came in.
        arrived = {"type": "http", "path": scope["path"], "root_path": "", "method": scope["method"]}
        for candidate in self.app.routes:
            path = getattr(candidate, "path", None)
            if path is not None and candidate.matches(arrived)[0] is not Match.NONE:
                return path
        return UNMATCHED_ROUTE


def _json_error(path: str, message: str, status: int) -> Response:
    return JSONResponse(error_body(path, message), status_code=status)


def _trace_context(scope: Scope) -> dict[str, str]:
    """The caller's W3C trace context headers, for the request's span to continue its trace."""
    return {
        name.decode(): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }


def _request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == _REQUEST_ID_HEADER_KEY:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode()
            break
    return os.urandom(16).hex()


def _concise_startup_failure(send: Send) -> Send:
    """Report a model or configuration problem at startup as one line, not a traceback.

    Uvicorn logs whatever text comes with `lifespan.startup.failed`, and Starlette puts the
    whole traceback there; for a missing or bad weights file the operator needs the message.
    """

    async def send_concisely(message: Message) -> None:
        # Starlette sends this message from inside its `except` block, so the error being
        # handled is the one that stopped the startup.
        error = sys.exc_info()[1]
        if message["type"] == "lifespan.startup.failed" and isinstance(
            error, (ModelLoadError, RepositoryError, StartError)
        ):
            message = {**message, "message": f"cannot start: {error}"}
        await send(message)

    return send_concisely
