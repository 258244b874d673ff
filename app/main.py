"""The application: `uvicorn app.main:app`, or `python -m app` for the production server settings.

Settings are read when the application is built; the models are loaded in the lifespan, so
importing this module loads nothing and a server only accepts traffic once its models are warm.

    ServiceFront (ids, trace spans, metrics, access log, body limits, the routes that read a body)
      -> FastAPI (docs, operations, model descriptions, V2 metadata)
    both protocols -> InferenceCore (decode -> preprocess -> model) -> ModelRepository
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cv2
import grpc
import torch
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from threadpoolctl import threadpool_limits

from app.http.error_handlers import install_error_handlers
from app.http.front import ServiceFront
from app.http.pages import STATIC_DIR, page_router
from app.http.security import require_api_key
from app.inference.classifier import ModelLoadError
from app.inference.pipeline import InferenceCore
from app.memory import malloc_trim, trim_forever
from app.observability import metrics, tracing
from app.observability.logs import configure_logging
from app.protocols import native, v2
from app.protocols.grpc import service as grpc_door
from app.repository.gate import CanarySet, Gate
from app.repository.layout import scan_repository, single_file
from app.repository.registry import ModelRepository, poll_forever
from app.settings import Settings, SettingsError

logger = logging.getLogger("mnist.service")

DESCRIPTION = """
Classifies handwritten digits with the classic MNIST feed-forward network (784 -> 50 -> ReLU -> 10),
serving every model in the model repository.

Send an image with `curl -F file=@digit.png {server}/predict`. A 28x28 grayscale
MNIST-style digit is used as is; photos, scans and drawings are normalised like MNIST first.
Errors are JSON `{"detail": "..."}` with the status codes listed on each endpoint.

The same models speak the Open Inference Protocol (KServe V2) under `/v2`, with Triton's binary
tensor extension; its errors are `{"error": "..."}` as that protocol requires.
"""


def build_repository(settings: Settings) -> ModelRepository:
    if settings.model_path is not None:
        source = lambda: [single_file(settings.model_path, settings.default_model)]  # noqa: E731
    else:
        source = lambda: scan_repository(settings.model_repository)  # noqa: E731
    gate = Gate(CanarySet.load(), settings.gate_min_accuracy, settings.gate_max_accuracy_drop)
    return ModelRepository(
        source, settings.device, settings.default_model, gate, settings.model_versions, settings.allow_sha256_mismatch
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    if tracing.start(settings):
        logger.info("tracing: spans go to %s", _trace_destination(settings))
    _limit_threads(settings.torch_threads)
    repository = build_repository(settings)
    repository.refresh()
    core = InferenceCore(repository, settings.max_image_pixels, settings.unsure_below)
    if not core.ready():
        raise ModelLoadError(_nothing_to_serve(repository, settings))
    app.state.core = core
    logger.info("serving with %d torch thread(s)", torch.get_num_threads())
    grpc_server = await _start_grpc(app, settings)
    chores = (
        [asyncio.create_task(poll_forever(repository, settings.model_poll_seconds))]
        if settings.model_poll_seconds
        else []
    )
    trim = malloc_trim()
    if trim is not None:
        chores.append(asyncio.create_task(trim_forever(trim)))
    try:
        yield
    finally:
        if grpc_server is not None:
            await grpc_server.stop(settings.shutdown_timeout_seconds)  # calls in progress finish first
        for chore in chores:
            chore.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chore
        app.state.core = None
        metrics.mark_worker_exited()
        tracing.stop()


async def _start_grpc(app: FastAPI, settings: Settings) -> grpc.aio.Server | None:
    if not settings.grpc_port:
        return None
    server = await grpc_door.start_server(settings, lambda: app.state.core, app.version)
    logger.info("Open Inference Protocol over gRPC on %s:%d", settings.host, settings.grpc_port)
    return server


def _trace_destination(settings: Settings) -> str:
    return settings.otlp_traces_endpoint() if settings.trace_exporter() == "otlp" else "standard output"


def _limit_threads(threads: int) -> None:
    """TORCH_THREADS for every library that computes: torch, numpy's BLAS (the deskew step's
    products) and OpenCV. Throughput comes from worker processes, one per core; a batch of a few
    hundred digits would otherwise make numpy's BLAS take a second core behind the worker's back."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    cv2.setNumThreads(threads)


def _nothing_to_serve(repository: ModelRepository, settings: Settings) -> str:
    """Why the default model cannot be served, naming each refused version's problem."""
    where = settings.model_path or settings.model_repository
    refusals = repository.refusals.get(settings.default_model, [])
    if refusals:
        return "; ".join(refusal.reason for refusal in refusals)
    return f"{where}: no version of model {settings.default_model!r} found (DEFAULT_MODEL)"


def create_app(settings: Settings | None = None) -> ServiceFront:
    settings = settings if settings is not None else Settings.from_env()
    app = FastAPI(
        title="mnist-serve",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by app/http/pages.py, with this server's address in it
        # A redirect answers a POST to /predict/ with an empty 307 that curl does not follow;
        # the 404 says which path was meant instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.core = None
    install_error_handlers(app)
    # The key check (and its security schemes in /docs) exists only when a key is configured.
    keyed = [Depends(require_api_key)] if settings.api_key else None
    app.include_router(native.prediction_router, dependencies=keyed)
    app.include_router(native.model_router, dependencies=keyed)
    app.include_router(native.operations_router)
    app.include_router(v2.server_router)
    app.include_router(v2.model_router, dependencies=keyed)
    app.include_router(v2.infer_router, dependencies=keyed)
    app.include_router(page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    v2.document_schemas(app)
    return ServiceFront(app, settings)


def __getattr__(name: str) -> ServiceFront:
    """`app.main:app` for `uvicorn app.main:app`, built when uvicorn asks for it rather than at import.

    `python -m app` builds its application with create_app (app/http/server.py); a server started
    on its own would silently ignore the settings of that server, so they stop it here instead."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise SystemExit(f"error: {error}") from None
    ignored = settings.server_settings_given()
    if ignored:
        raise SystemExit(
            f"error: {', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} read by `python -m app`'s server "
            "only: serve with `python -m app`, or unset them and use uvicorn's own options (--host, --port, "
            "--workers, --timeout-keep-alive, --timeout-graceful-shutdown)"
        )
    application = globals()["app"] = create_app(settings)
    return application
