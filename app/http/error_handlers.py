"""How errors become responses: `{"detail": ...}` with the right status, never a traceback."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from app.errors import ClientError
from app.observability import metrics

logger = logging.getLogger(__name__)


def client_error_response(error: ClientError) -> JSONResponse:
    metrics.REJECTED.labels(error.reason).inc()
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def respond_with_error(error: ClientError, scope: Scope, receive: Receive, send: Send) -> None:
    """For middleware that refuses a request before it reaches the application."""
    await client_error_response(error)(scope, receive, send)


async def _client_error(request: Request, error: ClientError) -> JSONResponse:
    return client_error_response(error)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    metrics.REJECTED.labels("validation").inc()
    problems = [
        {key: value for key, value in problem.items() if key in ("type", "loc", "msg")} for problem in error.errors()
    ]
    detail = "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in problems)
    return JSONResponse({"detail": detail, "errors": problems}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
