"""Open Inference Protocol tensors over REST: reading an inference request, writing its response.

A request body is a JSON header, optionally followed by raw tensor bytes (Triton's binary tensor
data extension): `Inference-Header-Content-Length` says where the JSON ends, each binary input
declares its `binary_data_size`, and the bytes follow in the order the inputs are listed. The
response comes back the same way for every output asked for with `binary_data`.

Everything a client sends is checked here, before anything is allocated from it: a mistake is a
V2Error (400) naming what was wrong, never a 422 or a 5xx.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.errors import ClientError
from app.http.limits import human_bytes
from app.inference.classifier import NOT_A_DIGIT
from app.inference.pipeline import Classification
from mnist_core.contract import IMAGE_SIDE, INPUT_SIZE, NUM_CLASSES

HEADER_LENGTH = "Inference-Header-Content-Length"

# Every datatype the protocol names, with its size in bytes (BYTES: variable; BF16: Triton's).
DATATYPE_SIZES: dict[str, int | None] = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "BF16": 2,
    "FP32": 4,
    "FP64": 8,
    "BYTES": None,
}


class V2Error(ClientError):
    """A malformed or unacceptable inference request (400 `{"error": ...}`)."""

    reason = "invalid_tensor"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: the batch dimension
    dtype: str  # numpy's little-endian type for the binary form
    description: str

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


MODEL_INPUTS = (
    TensorSpec("input", "FP32", (-1, INPUT_SIZE), "<f4", "MNIST-style digits scaled to [0, 1], flattened row by row"),
    TensorSpec("image", "UINT8", (-1, IMAGE_SIDE, IMAGE_SIDE), "|u1", "28x28 pixels, white digit on black"),
)
MODEL_OUTPUTS = (
    TensorSpec("probabilities", "FP32", (-1, NUM_CLASSES), "<f4", "softmax probabilities of the digits 0-9"),
    TensorSpec("label", "INT64", (-1,), "<i8", "the most probable digit"),
    TensorSpec(
        "digit_probability",
        "FP32",
        (-1,),
        "<f4",
        "the version's detector's probability that the input is a digit at all (NaN without a detector)",
    ),
    TensorSpec("is_digit", "BOOL", (-1,), "|b1", "false where the version's detector says the input is not a digit"),
)
_INPUTS = {spec.name: spec for spec in MODEL_INPUTS}
_OUTPUTS = {spec.name: spec for spec in MODEL_OUTPUTS}
_ACCEPTED_INPUTS = " or ".join(f"{spec.name} ({spec.datatype} {list(spec.shape)})" for spec in MODEL_INPUTS)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    input: TensorSpec
    array: np.ndarray  # float32 (N, 784) or uint8 (N, 28, 28), checked and writable
    outputs: tuple[RequestedOutput, ...]


def parse_infer_request(body: bytes, header_length: str | None, max_request_bytes: int) -> InferRequest:
    """The request as the model can take it, or a V2Error saying what is wrong with it.

    Its rows are bounded by bytes, not by a count: a request carries as many as fit in
    `max_request_bytes` (MAX_BATCH_BYTES) in the binary format, the smallest a row can take."""
    header, binary = _split_body(body, header_length)
    document = _load_json(header)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("'id' must be a string")
    parameters = _object(document.get("parameters", {}), "'parameters'")
    binary_by_default = _flag(parameters, "binary_data_output", "the request's parameters")
    spec, array = _read_input(document.get("inputs"), binary, max_request_bytes)
    outputs = _requested_outputs(document.get("outputs"), binary_by_default)
    return InferRequest(request_id, spec, array, outputs)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    # isascii too: a latin-1 header may hold "³", which isdigit takes and int refuses.
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise V2Error(
            f"Inference-Header-Content-Length must be the size of the JSON header, at most the body's "
            f"{len(body)} bytes; got {header_length[:20]!r}"
        )
    if int(header_length) == 0:
        raise V2Error("raw binary requests (Inference-Header-Content-Length: 0) are not supported; send a JSON header")
    split = int(header_length)
    return body[:split], body[split:]


def _reject_constant(name: str) -> None:
    raise V2Error(f"{name} is not a number JSON allows; tensors must hold finite numbers")


def _load_json(header: bytes) -> dict[str, Any]:
    try:
        document = json.loads(header, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise V2Error(f"the request is not valid JSON: {error}") from None
    except RecursionError:
        raise V2Error("the request's JSON is nested too deeply") from None
    return _object(document, "the request")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise V2Error(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise V2Error(f"{key} in {where} must be true or false")
    return value


def _read_input(inputs: Any, binary: bytes, max_request_bytes: int) -> tuple[TensorSpec, np.ndarray]:
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(f"'inputs' must be a list holding one input: {_ACCEPTED_INPUTS}")
    check_single_input(len(inputs))
    tensor = _object(inputs[0], "an input")
    spec, shape = checked_input(tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), max_request_bytes)
    parameters = _object(tensor.get("parameters", {}), f"parameters of input {spec.name!r}")
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise V2Error(f"input {spec.name!r} has both 'data' and binary_data_size; send one")
        array = _binary_array(spec, shape, parameters["binary_data_size"], binary)
    else:
        if binary:
            raise V2Error(f"{len(binary)} bytes follow the JSON header but no input declares binary_data_size")
        array = _json_array(spec, shape, tensor.get("data"))
    return spec, model_array(spec, array)


def checked_input(name: Any, datatype: Any, shape: Any, max_request_bytes: int) -> tuple[TensorSpec, tuple[int, ...]]:
    """The model input a tensor's name asks for, and its shape, once the datatype and shape fit it."""
    spec = _INPUTS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise V2Error(f"unknown input {str(name)[:40]!r}; this model takes {_ACCEPTED_INPUTS}")
    _check_datatype(spec, datatype)
    return spec, _check_shape(spec, shape, max_request_bytes)


def check_single_input(count: int) -> None:
    if count != 1:
        raise V2Error(f"send exactly one input, {_ACCEPTED_INPUTS}; got {count}")


def model_array(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """A tensor read from a request as the model takes it, once its values are in range."""
    _check_values(spec, array)
    return array.astype(spec.dtype.lstrip("<|"))


def raw_array(spec: TensorSpec, shape: tuple[int, ...], raw: bytes, source: str) -> np.ndarray:
    """A tensor's elements as raw little-endian bytes, row-major (Triton's binary data, gRPC's raw contents)."""
    expected = math.prod(shape) * np.dtype(spec.dtype).itemsize
    if len(raw) != expected:
        raise V2Error(
            f"input {spec.name!r}: {source} holds {len(raw)} bytes, but {spec.datatype} {list(shape)} takes {expected}"
        )
    # Read-only, over the request: model_array copies it into memory torch may own.
    return np.frombuffer(raw, dtype=spec.dtype).reshape(shape)


def typed_array(spec: TensorSpec, shape: tuple[int, ...], values: Sequence[float | int]) -> np.ndarray:
    """A tensor's elements as a flat sequence of numbers of its datatype (gRPC's typed contents)."""
    count = math.prod(shape)
    if len(values) != count:
        raise V2Error(f"input {spec.name!r}: {list(shape)} takes {count} values; got {len(values)}")
    if spec.datatype == "FP32":
        return np.asarray(values, dtype=np.float32).reshape(shape)
    array = np.asarray(values, dtype=np.int64)
    if count and (array.min() < 0 or array.max() > 255):
        raise V2Error(f"input {spec.name!r} (UINT8) must hold whole numbers from 0 to 255 only")
    return array.reshape(shape)


def _check_datatype(spec: TensorSpec, datatype: Any) -> None:
    if datatype not in DATATYPE_SIZES:
        raise V2Error(f"unknown datatype {str(datatype)[:20]!r} for input {spec.name!r}; it must be {spec.datatype}")
    if datatype != spec.datatype:
        raise V2Error(f"input {spec.name!r} must be {spec.datatype}, not {datatype}")


def max_rows(spec: TensorSpec, max_request_bytes: int) -> int:
    """The most rows of this input a request of `max_request_bytes` can carry (as binary data)."""
    return max_request_bytes // (math.prod(spec.shape[1:]) * np.dtype(spec.dtype).itemsize)


def _check_shape(spec: TensorSpec, shape: Any, max_request_bytes: int) -> tuple[int, ...]:
    expected = [dim if dim >= 0 else "N" for dim in spec.shape]
    most = max_rows(spec, max_request_bytes)
    if (
        not isinstance(shape, list)
        or len(shape) != len(spec.shape)
        or not all(type(dim) is int for dim in shape)
        or any(want >= 0 and dim != want for dim, want in zip(shape, spec.shape, strict=True))
    ):
        raise V2Error(f"input {spec.name!r} must have shape {expected} with N from 1 to {most}; got {shape}")
    if not 1 <= shape[0] <= most:
        raise V2Error(
            f"input {spec.name!r} holds a batch of {shape[0]}; a request of at most {human_bytes(max_request_bytes)} "
            f"(MAX_BATCH_BYTES) carries 1 to {most} rows of {spec.datatype} {list(spec.shape[1:])}"
        )
    return tuple(shape)


def _binary_array(spec: TensorSpec, shape: tuple[int, ...], size: Any, binary: bytes) -> np.ndarray:
    expected = math.prod(shape) * np.dtype(spec.dtype).itemsize
    if type(size) is not int or size != expected:
        raise V2Error(
            f"input {spec.name!r}: binary_data_size is {size}, but {spec.datatype} {list(shape)} takes {expected} bytes"
        )
    if len(binary) != size:
        raise V2Error(
            f"input {spec.name!r} declares {size} bytes of binary data, but {len(binary)} follow the JSON header"
        )
    return raw_array(spec, shape, binary, "the binary data")


def _json_array(spec: TensorSpec, shape: tuple[int, ...], data: Any) -> np.ndarray:
    values = _flatten(spec, data, shape)
    if spec.datatype == "FP32":
        if any(type(value) not in (int, float) for value in values):
            raise V2Error(f"input {spec.name!r} (FP32) must hold JSON numbers only")
        # Checked in float64 first: a JSON number too large for float32 is an error, not an inf.
        return np.asarray(values, dtype=np.float64).reshape(shape)
    if any(type(value) is not int or not 0 <= value <= 255 for value in values):
        raise V2Error(f"input {spec.name!r} (UINT8) must hold whole numbers from 0 to 255 only")
    return np.asarray(values, dtype=np.uint8).reshape(shape)


def _flatten(spec: TensorSpec, data: Any, shape: Sequence[int]) -> list[Any]:
    """`data` flat (row-major) or nested in the tensor's own shape, as a flat list."""
    count = math.prod(shape)
    if not isinstance(data, list):
        raise V2Error(f"input {spec.name!r} needs 'data' (a list) or binary_data_size")
    if len(data) == count and not isinstance(data[0], list):
        return data
    flat: list[Any] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, list) or len(node) != shape[depth]:
            raise V2Error(f"input {spec.name!r}: 'data' must be flat with {count} values or nested as {list(shape)}")
        if depth == len(shape) - 1:
            flat.extend(node)
        else:
            for child in node:
                walk(child, depth + 1)

    walk(data, 0)
    return flat


def _check_values(spec: TensorSpec, array: np.ndarray) -> None:
    if spec.datatype != "FP32":
        return
    if not np.isfinite(array).all():
        raise V2Error(f"input {spec.name!r} holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise V2Error(
            f"input {spec.name!r} holds values from {low:g} to {high:g}, outside [0, 1]: "
            "divide 8-bit pixels by 255, or send them unscaled as the UINT8 input 'image'"
        )


def _requested_outputs(outputs: Any, binary_by_default: bool) -> tuple[RequestedOutput, ...]:
    if outputs is None:
        return tuple(RequestedOutput(spec.name, binary_by_default) for spec in MODEL_OUTPUTS)
    if not isinstance(outputs, list):
        raise V2Error("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for output in outputs:
        output = _object(output, "an output")
        name = output.get("name")
        parameters = _object(output.get("parameters", {}), f"parameters of output {str(name)[:40]!r}")
        requested.append(requested_output(name, parameters, requested, binary_by_default))
    return tuple(requested)


def requested_output(
    name: Any, parameters: dict[str, Any], earlier: Sequence[RequestedOutput], binary_by_default: bool
) -> RequestedOutput:
    """An output a request asks for by name, with its parameters, after the outputs it asked for before."""
    if name not in _OUTPUTS:
        known = ", ".join(_OUTPUTS)
        raise V2Error(f"unknown output {str(name)[:40]!r}; this model gives {known}")
    if any(output.name == name for output in earlier):
        raise V2Error(f"output {name!r} is asked for twice")
    if parameters.get("classification", 0) not in (0, False):
        raise V2Error("the classification extension is not supported; ask for 'label' and 'probabilities'")
    binary = _flag(parameters, "binary_data", f"output {name!r}") if "binary_data" in parameters else None
    return RequestedOutput(name, binary_by_default if binary is None else binary)


def output_arrays(result: Classification) -> dict[str, np.ndarray]:
    """Each output by name, in its datatype's little-endian form."""
    return {
        "probabilities": result.probabilities.astype("<f4", copy=False),
        "label": result.classes.astype("<i8", copy=False),
        "digit_probability": result.digit_probabilities.astype("<f4", copy=False),
        "is_digit": np.array([verdict != NOT_A_DIGIT for verdict in result.verdicts], dtype="|b1"),
    }


def output_datatype(name: str) -> str:
    return _OUTPUTS[name].datatype


def encode_infer_response(request: InferRequest, result: Classification) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, followed by the binary outputs when any were asked for."""
    arrays = output_arrays(result)
    model_name, model_version = result.classifier.info.name, result.classifier.info.version
    outputs, tails = [], []
    for requested in request.outputs:
        array = arrays[requested.name]
        output: dict[str, Any] = {
            "name": requested.name,
            "datatype": output_datatype(requested.name),
            "shape": list(array.shape),
        }
        if requested.binary:
            tails.append(array.tobytes())
            output["parameters"] = {"binary_data_size": len(tails[-1])}
        else:
            output["data"] = array.reshape(-1).tolist()
        outputs.append(output)
    document: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = outputs
    header = orjson.dumps(document)
    if not tails:
        return header, {"content-type": "application/json"}
    return header + b"".join(tails), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
