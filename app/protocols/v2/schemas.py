"""The Open Inference Protocol's bodies as documented in the OpenAPI schema (the spec's own shapes).

Requests are checked by hand in tensors.py, not by these models: the protocol wants a 400 with
`{"error"}` for every mistake, and binary requests are not JSON throughout.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.protocols.v2.tensors import MODEL_INPUTS, MODEL_OUTPUTS

Parameters = dict[str, str | int | float | bool]
_EXAMPLE_ID = "digit-42"


class ServerMetadata(BaseModel):
    name: str = Field(examples=["mnist-serve"])
    version: str = Field(examples=["1.0.0"])
    extensions: list[str] = Field(examples=[["binary_tensor_data"]])


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks the batch dimension")


class ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "mnist",
                "versions": ["1"],
                "platform": "pytorch",
                "inputs": [spec.metadata() for spec in MODEL_INPUTS],
                "outputs": [spec.metadata() for spec in MODEL_OUTPUTS],
                "parameters": {"max_batch_bytes": 8388608, "max_batch_size": 2674},
            }
        }
    )

    name: str
    versions: list[str] = Field(description="the versions served now")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, int] = Field(
        description="`max_batch_bytes`: the largest request body (MAX_BATCH_BYTES); `max_batch_size`: the most "
        "rows of either input such a request carries in binary tensor data (fewer as JSON numbers)"
    )


class RequestInput(BaseModel):
    name: str = Field(description="`input` (FP32 [N, 784], values in [0, 1]) or `image` (UINT8 [N, 28, 28])")
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size`: the input's bytes follow the JSON header instead of `data`"
    )
    data: list[Any] | None = Field(default=None, description="row-major values, flat or nested in the tensor's shape")


class RequestOutput(BaseModel):
    name: str = Field(description="`probabilities` or `label`")
    parameters: Parameters | None = Field(default=None, description="`binary_data`: return this output as bytes")


class InferenceRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": _EXAMPLE_ID,
                "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}],
                "outputs": [{"name": "label"}],
            }
        }
    )

    id: str | None = Field(default=None, description="echoed in the response")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_output`: return every output as bytes unless it says otherwise"
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=1, description="exactly one input")
    outputs: list[RequestOutput] | None = Field(default=None, description="the outputs wanted; default: all")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(default=None, description="`binary_data_size` when sent as bytes")
    data: list[float | int] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model_name": "mnist",
                "model_version": "1",
                "id": _EXAMPLE_ID,
                "outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [7]}],
            }
        }
    )

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in words")


def error_response(description: str, example: str) -> dict[str, Any]:
    """An entry for a route's `responses=`: the protocol's error schema with one example body."""
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {"application/json": {"example": {"error": example}}},
    }
