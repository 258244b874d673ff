"""How errors become HTTP responses, in the shape each protocol promises, never a traceback.

The native API answers `{"detail": "..."}` (FastAPI's convention); the Open Inference Protocol
answers `{"error": "..."}` on every /v2 path, which is what tritonclient and the kserve SDK read.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.errors import (
    BodyTimeoutError,
    ClientError,
    MissingFieldError,
    ModelNotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from app.observability import metrics

logger = logging.getLogger(__name__)

V2_PREFIX = "/v2"


def is_v2_path(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(path: str, message: str) -> dict[str, str]:
    return {"error": message} if is_v2_path(path) else {"detail": message}


_CLOSE = {"Connection": "close"}  # the rest of the body may still be arriving; closing is how not to read it
_RETRY = {"Retry-After": "1"}
# Each domain error's status and headers; an error not named here answers as its nearest ancestor.
HTTP_ANSWERS: dict[type[ClientError], tuple[int, dict[str, str] | None]] = {
    ClientError: (400, None),
    UnsupportedMediaTypeError: (415, None),
    PayloadTooLargeError: (413, _CLOSE),
    UnauthorizedError: (401, {"WWW-Authenticate": "Bearer"}),
    BodyTimeoutError: (408, _CLOSE),
    OverloadedError: (503, _RETRY),
    NotReadyError: (503, _RETRY),
    ModelNotFoundError: (404, None),
    MissingFieldError: (422, None),
}


def http_answer(error: ClientError) -> tuple[int, dict[str, str] | None]:
    """The HTTP status and headers that answer this error."""
    return next(HTTP_ANSWERS[kind] for kind in type(error).__mro__ if kind in HTTP_ANSWERS)


def client_error_response(error: ClientError, path: str) -> JSONResponse:
    metrics.REJECTED.labels(error.reason).inc()
    status, headers = http_answer(error)
    return JSONResponse(error_body(path, error.detail), status_code=status, headers=headers)


async def _client_error(request: Request, error: ClientError) -> JSONResponse:
    return client_error_response(error, request.url.path)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own 404 and 405, in the protocol's shape."""
    path = request.url.path
    detail = str(error.detail)
    if error.status_code == 404 and len(path) > 1 and path.endswith("/") and _is_a_route(request, path.rstrip("/")):
        detail = f"{detail}: {path} has a trailing slash; the path is {path.rstrip('/')}"
    return JSONResponse(error_body(path, detail), error.status_code, headers=error.headers)


def _is_a_route(request: Request, path: str) -> bool:
    scope = {**request.scope, "path": path}
    return any(route.matches(scope)[0] is not Match.NONE for route in request.app.routes)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return validation_error_response(error, request.url.path)


def validation_error_response(error: RequestValidationError, path: str) -> JSONResponse:
    """Parameters that do not validate: V2's 400 `{"error"}`, or FastAPI's 422 with each problem."""
    metrics.REJECTED.labels("validation").inc()
    problems = [
        {key: value for key, value in problem.items() if key in ("type", "loc", "msg")} for problem in error.errors()
    ]
    detail = "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in problems)
    if is_v2_path(path):
        return JSONResponse({"error": detail}, status_code=400)
    return JSONResponse({"detail": detail, "errors": problems}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(request.url.path, "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
