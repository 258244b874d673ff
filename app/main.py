"""The FastAPI application: `uvicorn app.main:app`, or `python -m app` to use the settings' workers.

Settings are read when the application is built; the model is loaded in the lifespan, so
importing this module loads nothing and a server only accepts traffic once the model is warm.
"""

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.error_handlers import install_error_handlers, respond_with_error
from app.http.limits import MULTIPART_OVERHEAD_BYTES, UploadGuardMiddleware
from app.http.observe import RequestObservabilityMiddleware
from app.http.pages import STATIC_DIR, page_router
from app.http.security import require_api_key
from app.inference.classifier import ModelLoadError, load_classifier
from app.inference.pipeline import PredictionPipeline
from app.observability import metrics
from app.observability.logs import configure_logging
from app.protocols.native.routes import operations_router, prediction_router
from app.settings import Settings

logger = logging.getLogger("mnist.service")

DESCRIPTION = """
Classifies handwritten digits with the classic MNIST feed-forward network (784 -> 50 -> ReLU -> 10).

Send an image with `curl -F file=@digit.png http://127.0.0.1:8000/predict`. A 28x28 grayscale
MNIST-style digit is used as is; photos, scans and drawings are normalised like MNIST first.
Errors are JSON `{"detail": "..."}` with the status codes listed on each endpoint.
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    torch.set_num_threads(settings.torch_threads)
    classifier = load_classifier(settings.model_path, settings.device, settings.allow_sha256_mismatch)
    info = classifier.info
    metrics.MODEL_INFO.labels(info.sha256, info.device, info.torch_version, str(info.hidden_size)).set(1)
    app.state.pipeline = PredictionPipeline(classifier, settings.max_image_pixels)
    logger.info(
        "serving %s (sha256 %s, test accuracy %s %%) on %s with %d torch thread(s)",
        info.path,
        info.sha256,
        info.test_accuracy if info.test_accuracy is not None else "unknown",
        info.device,
        torch.get_num_threads(),
    )
    try:
        yield
    finally:
        app.state.pipeline = None
        metrics.mark_worker_exited()


class _ConciseStartupFailure:
    """Report a model or configuration problem at startup as one line, not a traceback.

    Uvicorn logs whatever text comes with `lifespan.startup.failed`, and Starlette puts the
    whole traceback there; for a missing or bad weights file the operator needs the message.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_concisely(message: Message) -> None:
            # Starlette sends this message from inside its `except` block, so the error
            # being handled is the one that stopped the startup.
            error = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(error, ModelLoadError):
                message = {**message, "message": f"cannot start: {error}"}
            await send(message)

        await self.app(scope, receive, send_concisely)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings.from_env()
    app = FastAPI(title="mnist-serve", version="1.0.0", description=DESCRIPTION, lifespan=_lifespan, docs_url=None)
    app.state.settings = settings
    app.state.pipeline = None
    install_error_handlers(app)
    # The key check (and its security scheme in /docs) exists only when a key is configured.
    app.include_router(prediction_router, dependencies=[Depends(require_api_key)] if settings.api_key else None)
    app.include_router(operations_router)
    app.include_router(page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    body_limits = {
        "/predict": settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        "/predict/batch": settings.max_batch * (settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES),
    }
    # Starlette runs the middleware added last first: startup reporting, then request
    # ids, logs and metrics around everything, then the upload limits.
    app.add_middleware(
        UploadGuardMiddleware,
        body_limits=body_limits,
        max_concurrency=settings.max_concurrency,
        body_timeout_seconds=settings.body_timeout_seconds,
        respond_with_error=respond_with_error,
    )
    app.add_middleware(RequestObservabilityMiddleware, route_paths=frozenset(body_limits))
    app.add_middleware(_ConciseStartupFailure)
    return app


app = create_app()
