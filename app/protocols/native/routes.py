"""The native API's endpoints. Handlers stay thin: read the upload, ask the inference core, shape the answer.

`/predict` and `/predict/batch` read a body, so the front serves them from their declaration
(app/http/routing.py); their handlers return a Response.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from app.errors import BadBatchError, MissingFieldError
from app.http.front import annotate_request
from app.http.limits import MULTIPART_OVERHEAD_BYTES, BodyRule
from app.http.routing import RequestBody, post_with_body
from app.inference.classifier import Detector, DigitClassifier
from app.inference.decode import ACCEPTED_DESCRIPTION
from app.inference.pipeline import ModelStatus, Upload
from app.observability import metrics, tracing
from app.protocols.common import inference_core, json_response
from app.protocols.native.multipart import FilePart, MultipartReader, TooManyFilesError
from app.protocols.native.responses import prediction_bodies
from app.protocols.native.schemas import (
    BatchPrediction,
    Health,
    ModelDescription,
    Prediction,
    Readiness,
    RepositoryIndex,
    error_response,
)
from app.settings import Settings
from mnist_core.contract import CONTRACT_DESCRIPTION

_LONGEST_PATH_SHOWN = 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "Not an image, a damaged image, an image declaring too many pixels, or a blank image",
        f"not a recognised image; send {ACCEPTED_DESCRIPTION}",
    ),
    401: error_response(
        "API_KEY is set and the request has no valid key",
        "missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>",
    ),
    404: error_response(
        "No served model has the name or version asked for with ?model= or ?version=",
        "no model named 'mnist-v9' is served; served models: mnist, mnist-reference",
    ),
    408: error_response(
        "The request body stopped arriving (BODY_TIMEOUT_SECONDS, BODY_MIN_RATE)",
        "the request body stopped arriving: 1.2 KiB in 20 s (BODY_TIMEOUT_SECONDS and BODY_MIN_RATE)",
    ),
    413: error_response(
        "The file or the body is larger than allowed (MAX_UPLOAD_BYTES, MAX_BATCH_BYTES)",
        "the file is 3.4 MiB; the limit is 1.0 MiB: send a smaller file, or raise MAX_UPLOAD_BYTES",
    ),
    415: error_response(
        "A format that is not accepted, or a body that is not multipart/form-data",
        f"PDF is not an accepted image format; send {ACCEPTED_DESCRIPTION}",
    ),
    422: error_response(
        "The multipart body has no file in the expected field",
        "no file in field 'file' (the upload has: 'image'); send it as: curl -F file=@digit.png .../predict",
    ),
    503: error_response(
        "The models are not loaded yet, or too many request bodies are arriving at once (see Retry-After)",
        "the server is busy: 63.5 MiB of request bodies are arriving (BODY_BUFFER_BYTES is 64.0 MiB); "
        "retry in a moment",
    ),
}
_MODEL_ERRORS = {status: _ERRORS[status] for status in (401, 404, 503)}
_UPLOAD_DESCRIPTION = (
    f"An image file: {ACCEPTED_DESCRIPTION}. A 28x28 8-bit grayscale image (white digit on black, like MNIST) "
    "is used pixel for pixel; any other image is normalised like MNIST (light background inverted, ink "
    "cropped, fitted to 20x20, centred by mass in 28x28). The content type and filename sent are ignored."
)
ModelName = Annotated[
    str | None,
    Query(description="the model to ask (GET /models lists them); default: DEFAULT_MODEL", examples=["mnist"]),
]
ShowInput = Annotated[
    bool,
    Query(
        description="also return, as `input_image`, the 28x28 image the network was given (after the "
        "preprocessing and the model's own input steps), as a PNG data URL",
    ),
]
# A string, as the resolver takes it: what is not a served version number gets the 404 naming the
# versions that are, rather than a validation error.
VersionNumber = Annotated[
    str | None,
    Query(description="the model's version, a number such as 2; default: its newest served version", examples=["1"]),
]

prediction_router = APIRouter(tags=["prediction"])
model_router = APIRouter(tags=["models"])
operations_router = APIRouter(tags=["operations"])


_SINGLE_USAGE = "curl -F file=@digit.png .../predict"
_BATCH_USAGE = "curl -F files=@a.png -F files=@b.png .../predict/batch"
_MULTIPART = "multipart/form-data"


def _upload_body(field: str, many: bool, rule: Callable[[Settings], BodyRule]) -> RequestBody:
    """Files in a multipart field; /docs turns the binary strings into file pickers."""
    file_schema = {
        "type": "string",
        "contentMediaType": "application/octet-stream",
        "minLength": 1,
        "description": _UPLOAD_DESCRIPTION,
    }
    schema = {"type": "array", "items": file_schema, "minItems": 1} if many else file_schema
    openapi = {
        "required": True,
        "content": {_MULTIPART: {"schema": {"type": "object", "required": [field], "properties": {field: schema}}}},
    }
    return RequestBody(openapi, rule)


def _upload_limit(settings: Settings) -> int:
    return settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES


_SINGLE_UPLOAD = _upload_body(
    "file",
    many=False,
    rule=lambda settings: BodyRule(_upload_limit(settings), "MAX_UPLOAD_BYTES", _MULTIPART.encode(), _SINGLE_USAGE),
)
_BATCH_UPLOAD = _upload_body(
    "files",
    many=True,
    rule=lambda settings: BodyRule(
        min(settings.max_batch_bytes, settings.max_batch * _upload_limit(settings)),
        "MAX_BATCH_BYTES",
        _MULTIPART.encode(),
        _BATCH_USAGE,
    ),
)


async def _read_uploads(request: Request, field: str, usage: str) -> list[Upload]:
    """The files sent in `field`, read as the body arrives, each within MAX_UPLOAD_BYTES."""
    settings = request.app.state.settings
    batch = field == "files"
    reader = MultipartReader(
        request.headers.get("content-type", ""), field, settings.max_batch if batch else 1, settings.max_upload_bytes
    )
    try:
        with tracing.span("read body"):
            async for chunk in request.stream():
                reader.feed(chunk)
            files = reader.finish()
    except TooManyFilesError as error:
        advice = "send at most that many per batch (MAX_BATCH)" if batch else "use /predict/batch (field 'files')"
        raise BadBatchError(f"{error.detail}: {advice}") from None
    if not files:
        sent = ", ".join(sorted({repr(name) for name in reader.other_fields})) or "no fields"
        raise MissingFieldError(f"no file in field {field!r} (the upload has: {sent}); send it as: {usage}")
    for part in files:
        _refuse_a_path_sent_as_text(part, field)
    uploads = []
    for index, part in enumerate(files):
        metrics.UPLOAD_BYTES.observe(len(part.data))
        uploads.append(Upload(data=part.data, filename=part.filename, index=index if batch else None))
    return uploads


def _refuse_a_path_sent_as_text(part: FilePart, field: str) -> None:
    """`curl -F file=digit.png` (the @ forgotten) sends the path itself as a text field."""
    # No accepted image format is printable text: each starts with a byte outside it (PNG, JPEG)
    # or holds control bytes within its first few (GIF, BMP, WebP, TIFF).
    if part.filename is not None or not 0 < len(part.data) <= _LONGEST_PATH_SHOWN:
        return
    try:
        text = part.data.decode("utf-8")
    except UnicodeDecodeError:
        return
    if text.isprintable():
        raise MissingFieldError(
            f"field {field!r} holds the text {text!r}, not a file: to send the file it names, put @ before "
            f"the path: curl -F {field}=@{text} ..."
        )


async def _predictions(
    request: Request, model: str | None, version: str | None, show_input: bool, field: str, usage: str
) -> list[dict[str, Any]]:
    """The prediction bodies for the files sent in `field`, by the model version asked for (defaults:
    DEFAULT_MODEL at its newest version)."""
    core = inference_core(request)
    classifier = core.resolve(model, version)
    uploads = await _read_uploads(request, field, usage)
    return prediction_bodies(await core.classify_files(classifier, uploads), with_input_images=show_input)


@post_with_body(
    prediction_router.post,
    "/predict",
    _SINGLE_UPLOAD,
    summary="Classify one digit image",
    description="Send one image as multipart field `file`, as in `curl -F file=@digit.png .../predict`.",
    response_model=Prediction,
    responses=_ERRORS,
)
async def predict(
    request: Request, model: ModelName = None, version: VersionNumber = None, show_input: ShowInput = False
) -> Response:
    [body] = await _predictions(request, model, version, show_input, "file", _SINGLE_USAGE)
    annotate_request(
        request,
        model=body["model"],
        version=body["version"],
        **{"class": body["class"], "confidence": round(body["confidence"], 4)},
    )
    return json_response(body)


@post_with_body(
    prediction_router.post,
    "/predict/batch",
    _BATCH_UPLOAD,
    summary="Classify several digit images in one forward pass",
    description="Send 1 to MAX_BATCH images as repeated multipart field `files` "
    "(`curl -F files=@a.png -F files=@b.png .../predict/batch`). Predictions come back in upload order; "
    "one bad file fails the whole request with a message naming it (index and filename).",
    response_model=BatchPrediction,
    responses=_ERRORS,
)
async def predict_batch(
    request: Request, model: ModelName = None, version: VersionNumber = None, show_input: ShowInput = False
) -> Response:
    bodies = await _predictions(request, model, version, show_input, "files", _BATCH_USAGE)
    annotate_request(
        request,
        model=bodies[0]["model"],
        version=bodies[0]["version"],
        files=len(bodies),
        classes="".join(str(body["class"]) for body in bodies),
    )
    return json_response({"predictions": bodies})


def describe_version(classifier: DigitClassifier) -> dict[str, Any]:
    info = classifier.info
    return {
        "version": info.version,
        "architecture": info.network.layers,
        "architecture_class": info.network.architecture.name,
        "architecture_parameters": info.network.parameters,
        "device": info.device,
        "weights_path": str(info.path),
        "weights_sha256": info.sha256,
        "test_accuracy": info.test_accuracy,
        "canary_accuracy": classifier.canary_accuracy,
        "temperature": info.temperature,
        "torch_version": info.torch_version,
        "input_contract": (info.metadata or {}).get("input_contract", CONTRACT_DESCRIPTION),
        "detector": _describe_detector(classifier.detector),
    }


def _describe_detector(detector: Detector | None) -> dict[str, Any] | None:
    if detector is None:
        return None
    return {"architecture": detector.network.layers, "weights_sha256": detector.sha256, "threshold": detector.threshold}


@model_router.get(
    "/model",
    summary="The default model at its default version: architecture, device, weights sha256, test accuracy",
    response_model=ModelDescription,
    responses=_MODEL_ERRORS,
)
async def model_description(request: Request) -> dict[str, Any]:
    classifier = inference_core(request).resolve(None, None)
    return {"name": classifier.info.name, **describe_version(classifier)}


@model_router.get(
    "/models",
    summary="Every model in the repository: the versions served, and the versions refused with the reason",
    response_model=RepositoryIndex,
    responses=_MODEL_ERRORS,
)
async def models_index(request: Request) -> dict[str, Any]:
    core = inference_core(request)
    return {"default_model": core.default_model, "models": [_index_entry(model) for model in core.models()]}


def _index_entry(model: ModelStatus) -> dict[str, Any]:
    served = model.served
    return {
        "name": model.name,
        "default_version": served.default_version if served else None,
        "versions": [describe_version(classifier) for classifier in served.versions.values()] if served else [],
        "refused": [{"version": refusal.version, "reason": refusal.reason} for refusal in model.refused],
    }


@operations_router.get("/healthz", summary="Liveness: the process is up", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@operations_router.get(
    "/readyz",
    summary="Readiness: the default model is loaded and warmed up",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Still starting, shutting down, or the default model is gone from the repository",
            "content": {"application/json": {"example": {"status": "not ready"}}},
        }
    },
)
async def readyz(request: Request) -> Response:
    core = request.app.state.core
    ready = core is not None and core.ready()
    return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)


@operations_router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "mnist_http_requests_total{...} 1.0"}}}},
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
