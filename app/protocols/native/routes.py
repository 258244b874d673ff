"""The HTTP endpoints. Handlers stay thin: read the upload, run the pipeline, shape the answer."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from app.errors import BadBatchError, NotReadyError, PayloadTooLargeError
from app.http.observe import annotate_access_log
from app.inference.decode import ACCEPTED_DESCRIPTION
from app.inference.pipeline import PredictionPipeline, Upload
from app.observability import metrics
from app.protocols.native.multipart import parse_multipart
from app.protocols.native.responses import prediction_bodies
from app.protocols.native.schemas import (
    VALIDATION_RESPONSE,
    BatchPrediction,
    Health,
    ModelDescription,
    Prediction,
    Readiness,
    error_response,
)
from mnist_core.contract import CONTRACT_DESCRIPTION
from mnist_core.network import describe_architecture

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "Not an image, a damaged image, an image declaring too many pixels, or a blank image",
        f"not a recognised image; send {ACCEPTED_DESCRIPTION}",
    ),
    401: error_response(
        "API_KEY is set and the request has no valid key",
        "missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>",
    ),
    408: error_response("The request body did not arrive in time", "the request body did not arrive within 10 s"),
    413: error_response(
        "The upload is larger than MAX_UPLOAD_BYTES", "the request body exceeds the limit of 1064960 bytes"
    ),
    415: error_response(
        "A format that is not accepted, or a body that is not multipart/form-data",
        f"PDF is not an accepted image format; send {ACCEPTED_DESCRIPTION}",
    ),
    422: VALIDATION_RESPONSE,
    503: error_response(
        "The model is not loaded yet, or too many uploads are in progress (see Retry-After)",
        "the server is busy (64 uploads in progress); retry in a moment",
    ),
}
_MODEL_ERRORS = {status: _ERRORS[status] for status in (401, 503)}
_UPLOAD_DESCRIPTION = (
    f"An image file: {ACCEPTED_DESCRIPTION}. A 28x28 8-bit grayscale image (white digit on black, like MNIST) "
    "is used pixel for pixel; any other image is normalised like MNIST (light background inverted, ink "
    "cropped, fitted to 20x20, centred by mass in 28x28). The content type and filename sent are ignored."
)

prediction_router = APIRouter()
operations_router = APIRouter(tags=["operations"])


def _upload_body(field: str, many: bool) -> dict[str, Any]:
    """The request body as OpenAPI sees it; /docs turns the binary strings into file pickers."""
    file_schema = {
        "type": "string",
        "contentMediaType": "application/octet-stream",
        "minLength": 1,
        "description": _UPLOAD_DESCRIPTION,
    }
    schema = {"type": "array", "items": file_schema, "minItems": 1} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [field], "properties": {field: schema}}
                }
            },
        }
    }


def _pipeline(request: Request) -> PredictionPipeline:
    pipeline: PredictionPipeline | None = request.app.state.pipeline
    if pipeline is None:
        raise NotReadyError("the model is not loaded yet; retry in a moment")
    return pipeline


async def _read_uploads(request: Request, batch: bool) -> list[Upload]:
    """The files sent in `files` (a batch) or `file`, each checked against MAX_UPLOAD_BYTES."""
    settings = request.app.state.settings
    field = "files" if batch else "file"
    parts = parse_multipart(await request.body(), request.headers.get("content-type", ""))
    files = [part for part in parts if part.field == field]
    if not files:
        raise RequestValidationError([{"type": "missing", "loc": ("body", field), "msg": "Field required"}])
    if batch and len(files) > settings.max_batch:
        raise BadBatchError(f"{len(files)} files sent; at most {settings.max_batch} per batch (MAX_BATCH)")
    if not batch and len(files) > 1:
        raise BadBatchError("send exactly one file in field 'file'; use /predict/batch (field 'files') for several")
    max_bytes = settings.max_upload_bytes
    uploads = []
    for index, part in enumerate(files):
        upload = Upload(data=part.data, filename=part.filename, index=index if batch else None)
        metrics.UPLOAD_BYTES.observe(len(part.data))
        if len(part.data) > max_bytes:
            where = "the file" if upload.index is None else upload.describe()
            raise PayloadTooLargeError(
                f"{where} is {len(part.data)} bytes; the limit is {max_bytes} (MAX_UPLOAD_BYTES)"
            )
        uploads.append(upload)
    return uploads


@prediction_router.post(
    "/predict",
    summary="Classify one digit image",
    description="Send one image as multipart field `file`, as in `curl -F file=@digit.png .../predict`.",
    response_model=Prediction,
    responses=_ERRORS,
    openapi_extra=_upload_body("file", many=False),
    tags=["prediction"],
)
async def predict(request: Request) -> Response:
    pipeline = _pipeline(request)
    uploads = await _read_uploads(request, batch=False)
    [body] = prediction_bodies(await pipeline.predict(uploads))
    annotate_access_log(request, **{"class": body["class"], "confidence": round(body["confidence"], 4)})
    return JSONResponse(body)


@prediction_router.post(
    "/predict/batch",
    summary="Classify several digit images in one forward pass",
    description="Send 1 to MAX_BATCH images as repeated multipart field `files` "
    "(`curl -F files=@a.png -F files=@b.png .../predict/batch`). Predictions come back in upload order; "
    "one bad file fails the whole request with a message naming it (index and filename).",
    response_model=BatchPrediction,
    responses=_ERRORS,
    openapi_extra=_upload_body("files", many=True),
    tags=["prediction"],
)
async def predict_batch(request: Request) -> Response:
    pipeline = _pipeline(request)
    uploads = await _read_uploads(request, batch=True)
    bodies = prediction_bodies(await pipeline.predict(uploads))
    annotate_access_log(request, files=len(bodies), classes="".join(str(body["class"]) for body in bodies))
    return JSONResponse({"predictions": bodies})


@operations_router.get("/healthz", summary="Liveness: the process is up", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@operations_router.get(
    "/readyz",
    summary="Readiness: the model is loaded and warmed up",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Still starting or shutting down",
            "content": {"application/json": {"example": {"status": "not ready"}}},
        }
    },
)
async def readyz(request: Request) -> Response:
    ready = request.app.state.pipeline is not None
    return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)


@prediction_router.get(
    "/model",
    summary="The served model: architecture, device, weights sha256, test accuracy",
    response_model=ModelDescription,
    responses=_MODEL_ERRORS,
    tags=["operations"],
)
async def model_description(request: Request) -> dict[str, Any]:
    info = _pipeline(request).classifier.info
    return {
        "architecture": describe_architecture(info.hidden_size),
        "hidden_size": info.hidden_size,
        "device": info.device,
        "weights_path": str(info.path),
        "weights_sha256": info.sha256,
        "test_accuracy": info.test_accuracy,
        "torch_version": info.torch_version,
        "input_contract": CONTRACT_DESCRIPTION,
    }


@operations_router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "mnist_http_requests_total{...} 1.0"}}}},
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
