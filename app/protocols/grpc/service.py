"""The Open Inference Protocol over gRPC: the third door over the same inference core.

`inference.GRPCInferenceService` (KServe's grpc_predict_v2; Triton's extends it) and the standard
`grpc.health.v1.Health`, served by a grpc.aio server on the worker's own event loop, started in
the lifespan once the models are loaded. Tensors are read and checked by the V2 REST door's own
functions (app/protocols/v2/tensors.py), so both doors accept and refuse the same requests with
the same messages; a refusal (a domain error, app/errors.py) becomes a gRPC status here, in one
table. A response carries its tensors in the form the request used: raw bytes when it sent
`raw_input_contents` (as tritonclient does), typed contents otherwise (as KServe's server does).
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from app.errors import (
    BodyTimeoutError,
    ClientError,
    ModelNotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    StartError,
    UnauthorizedError,
)
from app.http.security import check_credentials
from app.inference.pipeline import Classification, InferenceCore
from app.observability import metrics
from app.observability.logs import access_log
from app.protocols.grpc import messages
from app.protocols.v2.routes import PLATFORM, SERVER_NAME
from app.protocols.v2.tensors import (
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    RequestedOutput,
    TensorSpec,
    V2Error,
    check_single_input,
    checked_input,
    model_array,
    output_arrays,
    output_datatype,
    raw_array,
    requested_output,
    typed_array,
)
from app.settings import Settings

logger = logging.getLogger(__name__)

# Each domain error's status; an error not named here answers as its nearest ancestor.
GRPC_CODES: dict[type[ClientError], grpc.StatusCode] = {
    ClientError: grpc.StatusCode.INVALID_ARGUMENT,
    PayloadTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnauthorizedError: grpc.StatusCode.UNAUTHENTICATED,
    BodyTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    OverloadedError: grpc.StatusCode.UNAVAILABLE,
    NotReadyError: grpc.StatusCode.UNAVAILABLE,
    ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
}
# Room in a message for what is not tensor bytes: names, shapes, parameters, protobuf framing.
MESSAGE_OVERHEAD_BYTES = 64 * 1024
_TYPED_CONTENTS = {
    "FP32": "fp32_contents",
    "UINT8": "uint_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
}


def grpc_code(error: ClientError) -> grpc.StatusCode:
    return next(GRPC_CODES[kind] for kind in type(error).__mro__ if kind in GRPC_CODES)


async def read_request(context: grpc.aio.ServicerContext, timeout_seconds: float) -> Any:
    """A call's one request message, which must arrive whole within BODY_TIMEOUT_SECONDS.

    Every method is served as request-streaming on the wire (a unary client cannot tell) so that
    this wait has a deadline: for a unary handler grpc holds the call, and one of the
    MAX_CONNECTIONS slots, for as long as its client takes to finish the message, so clients that
    never finish can take every slot. grpc sees no bytes of a message before it is whole, so
    unlike REST's body timeout the deadline does not grow with what has arrived.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            request = await context.read()
    except TimeoutError:
        raise BodyTimeoutError(
            f"the request message did not arrive whole within {timeout_seconds:g} s (BODY_TIMEOUT_SECONDS)"
        ) from None
    if request is grpc.aio.EOF:
        raise ClientError("the call ended without a request message")
    return request


class InferenceService:
    """The protocol's methods over the core, each through what every call shares: the key check
    (for the model methods, as over REST), refusals as statuses, metrics and the access line."""

    def __init__(self, settings: Settings, loaded_core: Callable[[], InferenceCore | None], version: str) -> None:
        self.settings = settings
        self.loaded_core = loaded_core
        self.version = version

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Callable[..., Awaitable[Any]], bool]] = {
            "ServerLive": (self.server_live, False),
            "ServerReady": (self.server_ready, False),
            "ServerMetadata": (self.server_metadata, False),
            "ModelReady": (self.model_ready, True),
            "ModelMetadata": (self.model_metadata, True),
            "ModelInfer": (self.model_infer, True),
        }
        return grpc.method_handlers_generic_handler(
            messages.SERVICE,
            {
                name: grpc.stream_unary_rpc_method_handler(
                    self._served(name, method, keyed),
                    request_deserializer=messages.METHODS[name][0].FromString,
                    response_serializer=messages.METHODS[name][1].SerializeToString,
                )
                for name, (method, keyed) in methods.items()
            },
        )

    def _served(
        self, name: str, method: Callable[..., Awaitable[Any]], keyed: bool
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def served(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            fields: dict[str, Any] = {}
            code = grpc.StatusCode.OK
            try:
                if keyed and self.settings.api_key is not None:
                    check_credentials(context.invocation_metadata() or (), self.settings.api_key)
                request = await read_request(context, self.settings.body_timeout_seconds)
                return await method(request, fields)
            except ClientError as error:
                metrics.REJECTED.labels(error.reason).inc()
                code = grpc_code(error)
                await context.abort(code, error.detail)
            except Exception:
                logger.exception("unhandled error in gRPC %s", name)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, "internal server error")
            finally:
                _record(context, name, code, time.perf_counter() - started, fields)

        return served

    def core(self) -> InferenceCore:
        core = self.loaded_core()
        if core is None:
            raise NotReadyError("the models are not loaded yet; retry in a moment")
        return core

    def serving(self, service: str) -> bool | None:
        """For the health protocol: whether the server ("") or a model is served; None for a name
        that is neither."""
        core = self.loaded_core()
        if service == "":
            return core is not None and core.ready()
        if core is None:
            return False
        if any(model.name == service and model.served for model in core.models()):
            return True
        return None

    async def server_live(self, request: Any, fields: dict) -> Any:
        return messages.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, fields: dict) -> Any:
        return messages.ServerReadyResponse(ready=bool(self.serving("")))

    async def server_metadata(self, request: Any, fields: dict) -> Any:
        return messages.ServerMetadataResponse(name=SERVER_NAME, version=self.version)

    async def model_ready(self, request: Any, fields: dict) -> Any:
        # A state, as Triton answers it: an unknown model or version is not ready (tritonclient's
        # is_model_ready raises on any error status).
        try:
            self.core().resolve(request.name, request.version or None)
        except ModelNotFoundError:
            return messages.ModelReadyResponse(ready=False)
        return messages.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: Any, fields: dict) -> Any:
        core = self.core()
        name = core.resolve(request.name, request.version or None).info.name
        return messages.ModelMetadataResponse(
            name=name,
            versions=[str(version) for version in core.served_versions(name)],
            platform=PLATFORM,
            inputs=[_tensor_metadata(spec) for spec in MODEL_INPUTS],
            outputs=[_tensor_metadata(spec) for spec in MODEL_OUTPUTS],
        )

    async def model_infer(self, request: Any, fields: dict) -> Any:
        core = self.core()
        classifier = core.resolve(request.model_name, request.model_version or None)
        spec, array = read_input(request, self.settings.max_batch_bytes)
        outputs = requested_outputs(request)
        if spec.name == "image":
            result = await core.classify_digits(classifier, array)
        else:
            result = await core.classify_inputs(classifier, array)
        info = classifier.info
        fields.update(
            model=info.name,
            version=info.version,
            inputs=len(result.classes),
            classes="".join(map(str, result.classes.tolist())),
        )
        return infer_response(request, outputs, result)


def _record(
    context: grpc.aio.ServicerContext, method: str, code: grpc.StatusCode, seconds: float, fields: dict
) -> None:
    metrics.GRPC_REQUESTS.labels(method, code.name).inc()
    metrics.GRPC_REQUEST_SECONDS.labels(method, code.name).observe(seconds)
    if access_log.enabled:
        metadata = dict(context.invocation_metadata() or ())
        line = {
            "request_id": metadata.get("x-request-id") or secrets.token_hex(16),
            "protocol": "grpc",
            "method": method,
            "status": code.name,
            "latency_ms": round(seconds * 1000, 3),
            **fields,
        }
        access_log.write(f"gRPC {method} {code.name}", line)


def _tensor_metadata(spec: TensorSpec) -> Any:
    return messages.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def parameter_value(parameter: Any) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def _parameters(parameters: Any) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def read_input(request: Any, max_request_bytes: int) -> tuple[TensorSpec, np.ndarray]:
    """The request's one input as the model takes it, checked as the REST door checks it."""
    check_single_input(len(request.inputs))
    tensor = request.inputs[0]
    spec, shape = checked_input(tensor.name, tensor.datatype, list(tensor.shape), max_request_bytes)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise V2Error(f"raw_input_contents holds {len(request.raw_input_contents)} entries for 1 input")
        if tensor.HasField("contents"):
            raise V2Error(f"input {spec.name!r} has both contents and raw_input_contents; send one")
        array = raw_array(spec, shape, request.raw_input_contents[0], "raw_input_contents[0]")
    else:
        array = typed_array(spec, shape, getattr(tensor.contents, _TYPED_CONTENTS[spec.datatype]))
    return spec, model_array(spec, array)


def requested_outputs(request: Any) -> tuple[RequestedOutput, ...]:
    if not request.outputs:
        return tuple(RequestedOutput(spec.name, binary=False) for spec in MODEL_OUTPUTS)
    requested: list[RequestedOutput] = []
    for output in request.outputs:
        requested.append(requested_output(output.name, _parameters(output.parameters), requested, False))
    return tuple(requested)


def infer_response(request: Any, outputs: Iterable[RequestedOutput], result: Classification) -> Any:
    arrays = output_arrays(result)
    raw = bool(request.raw_input_contents)
    info = result.classifier.info
    response = messages.ModelInferResponse(model_name=info.name, model_version=str(info.version), id=request.id)
    for output in outputs:
        array = arrays[output.name]
        datatype = output_datatype(output.name)
        tensor = response.outputs.add(name=output.name, datatype=datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(array.tobytes())
        else:
            getattr(tensor.contents, _TYPED_CONTENTS[datatype]).extend(array.reshape(-1).tolist())
    return response


class HealthService:
    """grpc.health.v1: the server ("") is SERVING when its default model is served; a model's name
    is SERVING while it is served; any other name is NOT_FOUND, as the health protocol says. Check
    only (Watch is UNIMPLEMENTED, as in grpc's own servicer), its request read as every call's is."""

    NAME = "grpc.health.v1.Health"

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def handler(self) -> grpc.GenericRpcHandler:
        check = grpc.stream_unary_rpc_method_handler(
            self.check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(self.NAME, {"Check": check})

    async def check(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = await read_request(context, self.service.settings.body_timeout_seconds)
        except ClientError as error:
            await context.abort(grpc_code(error), error.detail)
        serving = self.service.serving(request.service)
        if serving is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model named {request.service[:60]!r} is served")
        status = health_pb2.HealthCheckResponse
        return status(status=status.SERVING if serving else status.NOT_SERVING)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """A message as large as a batch request over REST may be, and every worker on the port."""
    largest = settings.max_batch_bytes + MESSAGE_OVERHEAD_BYTES
    return [
        ("grpc.max_receive_message_length", largest),
        ("grpc.max_send_message_length", largest),
        ("grpc.so_reuseport", 1),
    ]


async def start_server(
    settings: Settings, loaded_core: Callable[[], InferenceCore | None], version: str
) -> grpc.aio.Server:
    """The gRPC server on HOST:GRPC_PORT, started; every worker binds the port (SO_REUSEPORT). Calls
    beyond MAX_CONNECTIONS in progress are refused with RESOURCE_EXHAUSTED."""
    service = InferenceService(settings, loaded_core, version)
    server = grpc.aio.server(options=server_options(settings), maximum_concurrent_rpcs=settings.max_connections)
    server.add_generic_rpc_handlers((service.handler(), HealthService(service).handler()))
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as error:  # grpc's word for a port another process holds
        raise StartError(f"cannot listen for gRPC on {address} (GRPC_PORT): {error}") from None
    await server.start()
    return server
