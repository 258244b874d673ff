"""The Open Inference Protocol (KServe V2) over REST: a thin front door over the same inference core.

Infer reads a body, so the front serves it from its declaration (app/http/routing.py), like the
native predictions; the health and metadata routes go through FastAPI. Errors are `{"error": ...}` on every /v2 path
(app/http/error_handlers.py).
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import Response

from app.errors import NotReadyError
from app.http.front import annotate_request
from app.http.limits import BodyRule
from app.http.routing import RequestBody, post_with_body, without_parameter
from app.inference.classifier import DigitClassifier
from app.observability import tracing
from app.protocols.common import inference_core
from app.protocols.v2.schemas import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
    error_response,
)
from app.protocols.v2.tensors import (
    HEADER_LENGTH,
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    encode_infer_response,
    max_rows,
    parse_infer_request,
)

SERVER_NAME = "mnist-serve"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "pytorch"

_NOT_FOUND = error_response("No served model has this name or version", "no model named 'mnist-v9' is served")
_NOT_READY = error_response("The models are not loaded yet (see Retry-After)", "the models are not loaded yet")
_UNAUTHORIZED = error_response(
    "API_KEY is set and the request has no valid key",
    "missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>",
)
_INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "A malformed request: JSON, names, datatypes, shapes, data counts, binary sizes, values or batch size",
        "input 'input' must have shape ['N', 784] with N from 1 to 64; got [1, 28, 28]",
    ),
    401: _UNAUTHORIZED,
    404: _NOT_FOUND,
    408: error_response("The request body stopped arriving", "the request body stopped arriving"),
    413: error_response("The body is larger than MAX_BATCH_BYTES", "the request body is 9.0 MiB; the limit is 8.0 MiB"),
    503: _NOT_READY,
}


_TENSORS = RequestBody(
    {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "the JSON header, then the binary tensors (Inference-Header-Content-Length)",
            },
        },
    },
    lambda settings: BodyRule(settings.max_batch_bytes, "MAX_BATCH_BYTES"),
)
# A string, as parse_infer_request takes it: its messages say what is wrong with the length sent.
HeaderLength = Annotated[
    str | None,
    Header(
        alias=HEADER_LENGTH,
        description="binary tensor data extension: the JSON header's length; the tensors' bytes follow it",
        examples=["112"],
    ),
]

server_router = APIRouter(prefix="/v2", tags=["open inference protocol"])
model_router = APIRouter(prefix="/v2/models", tags=["open inference protocol"])
infer_router = APIRouter(prefix="/v2/models", tags=["open inference protocol"])


@server_router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@server_router.get("/health/live", summary="Server liveness", response_model=Live)
async def server_live() -> dict[str, bool]:
    return {"live": True}


@server_router.get(
    "/health/ready",
    summary="Server readiness: the default model is served",
    response_model=Ready,
    responses={503: _NOT_READY},
)
async def server_ready(request: Request) -> dict[str, bool]:
    core = inference_core(request)
    if not core.ready():
        raise NotReadyError(f"the default model {core.default_model!r} is not served")
    return {"ready": True}


def _model(request: Request, model_name: str, model_version: str | None) -> DigitClassifier:
    return inference_core(request).resolve(model_name, model_version)


_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {401: _UNAUTHORIZED, 404: _NOT_FOUND, 503: _NOT_READY}


def _unversioned_and_versioned(register: Callable[..., Callable], suffix: str, **options: Any) -> Callable:
    """Register an endpoint at /{model_name}/versions/{model_version}<suffix> and at /{model_name}<suffix>,
    the protocol's optional version left out: one function serves both."""

    def register_both(endpoint: Callable) -> Callable:
        register("/{model_name}/versions/{model_version}" + suffix, **options)(endpoint)
        register("/{model_name}" + suffix, **options)(without_parameter(endpoint, "model_version"))
        return endpoint

    return register_both


@_unversioned_and_versioned(
    model_router.get, "", summary="Model metadata", response_model=ModelMetadata, responses=_MODEL_ERRORS
)
async def model_metadata(request: Request, model_name: str, model_version: str | None) -> dict[str, Any]:
    name = _model(request, model_name, model_version).info.name
    versions = inference_core(request).served_versions(name)
    max_request_bytes = request.app.state.settings.max_batch_bytes
    return {
        "name": name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in MODEL_INPUTS],
        "outputs": [spec.metadata() for spec in MODEL_OUTPUTS],
        # Triton reports max_batch_size in a model's configuration; here it is the rows of the
        # largest input that fit in a request, whichever input a client sends.
        "parameters": {
            "max_batch_bytes": max_request_bytes,
            "max_batch_size": min(max_rows(spec, max_request_bytes) for spec in MODEL_INPUTS),
        },
    }


@_unversioned_and_versioned(
    model_router.get, "/ready", summary="Model readiness", response_model=ModelReady, responses=_MODEL_ERRORS
)
async def model_ready(request: Request, model_name: str, model_version: str | None) -> dict[str, Any]:
    return {"name": _model(request, model_name, model_version).info.name, "ready": True}


@_unversioned_and_versioned(
    lambda path, **options: post_with_body(infer_router.post, path, _TENSORS, **options),
    "/infer",
    summary="Inference (JSON tensors, or Triton's binary tensor data extension)",
    response_model=InferenceResponse,
    responses=_INFER_ERRORS,
)
async def infer(
    request: Request, model_name: str, model_version: str | None, header_length: HeaderLength = None
) -> Response:
    classifier = _model(request, model_name, model_version)
    core = inference_core(request)
    with tracing.span("read body"):
        body = await request.body()
    parsed = parse_infer_request(body, header_length, request.app.state.settings.max_batch_bytes)
    if parsed.input.name == "image":
        result = await core.classify_digits(classifier, parsed.array)
    else:
        result = await core.classify_inputs(classifier, parsed.array)
    info = classifier.info
    body, headers = encode_infer_response(parsed, result)
    annotate_request(
        request,
        model=info.name,
        version=info.version,
        inputs=len(result.classes),
        classes="".join(map(str, result.classes.tolist())),
    )
    return Response(body, headers=headers)


def document_schemas(app: FastAPI) -> None:
    """Add the infer request's schema to the OpenAPI components: the endpoint reads its body itself."""
    generate = app.openapi

    def openapi_with_request_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            request_schema = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["InferenceRequest"] = request_schema
            components.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        return app.openapi_schema

    app.openapi = openapi_with_request_schema
