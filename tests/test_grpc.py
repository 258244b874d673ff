"""The Open Inference Protocol over gRPC, through this project's own messages against real uvicorn:
the same answers and refusals as the REST doors, health, limits, and a descriptor set that is current.

tritonclient.grpc and kserve's client are driven in tests/system/test_grpc_clients.py, each in a
process of its own (their modules and ours register the same protobuf names)."""

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from app.protocols.grpc import messages as pb
from tests.conftest import running_server
from tests.helpers import REPO_ROOT, served_version

MNIST_VERSION = served_version("mnist")  # the version requests that name none get

KEY = "grpc-test-key"
Input = pb.ModelInferRequest.InferInputTensor


class Stub:
    """The service's methods as callables on a channel, as a stub protoc generates gives them."""

    def __init__(self, channel: grpc.Channel) -> None:
        for name, (request, response) in pb.METHODS.items():
            method = channel.unary_unary(
                f"/{pb.SERVICE}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            setattr(self, name, method)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def grpc_service(**overrides) -> Iterator[tuple[str, grpc.Channel]]:
    """The app under real uvicorn with its gRPC door on a free port: its HTTP URL and a channel."""
    port = _free_port()
    with running_server(grpc_port=port, **overrides) as url, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield url, channel


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, Stub, grpc.Channel]]:
    with grpc_service() as (url, channel):
        yield url, Stub(channel), channel


def _digits() -> np.ndarray:
    return np.stack([np.asarray(Image.open(REPO_ROOT / "samples" / f"{digit}.png")) for digit in range(10)])


def _infer(stub, array: np.ndarray, name: str, datatype: str, raw: bool, **fields) -> Any:
    tensor = Input(name=name, datatype=datatype, shape=list(array.shape))
    if raw:
        return stub.ModelInfer(pb.ModelInferRequest(inputs=[tensor], raw_input_contents=[array.tobytes()], **fields))
    contents = tensor.contents.fp32_contents if datatype == "FP32" else tensor.contents.uint_contents
    contents.extend(array.reshape(-1).tolist())
    return stub.ModelInfer(pb.ModelInferRequest(inputs=[tensor], **fields))


_OUTPUT_FORMS = {"FP32": ("<f4", "fp32_contents"), "INT64": ("<i8", "int64_contents"), "BOOL": ("|b1", "bool_contents")}


def _outputs(response: Any) -> dict[str, np.ndarray]:
    arrays = {}
    for position, output in enumerate(response.outputs):
        dtype, contents = _OUTPUT_FORMS[output.datatype]
        if response.raw_output_contents:
            array = np.frombuffer(response.raw_output_contents[position], dtype=dtype)
        else:
            array = np.asarray(getattr(output.contents, contents), dtype=dtype)
        arrays[output.name] = array.reshape(list(output.shape))
    return arrays


def test_health_and_metadata_as_the_protocol_defines_them(service):
    _, stub, channel = service
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="mnist", version=MNIST_VERSION)).ready
    # A state, as Triton answers it, rather than an error tritonclient's is_model_ready would raise.
    assert not stub.ModelReady(pb.ModelReadyRequest(name="mnist", version="9")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="mnist-v9")).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "mnist-serve"
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"))
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("mnist", [MNIST_VERSION], "pytorch")
    assert [(tensor.name, tensor.datatype, list(tensor.shape)) for tensor in metadata.inputs] == [
        ("input", "FP32", [-1, 784]),
        ("image", "UINT8", [-1, 28, 28]),
    ]
    assert [(tensor.name, tensor.datatype, list(tensor.shape)) for tensor in metadata.outputs] == [
        ("probabilities", "FP32", [-1, 10]),
        ("label", "INT64", [-1]),
        ("digit_probability", "FP32", [-1]),
        ("is_digit", "BOOL", [-1]),
    ]
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(service="mnist-reference")).status == serving
    with pytest.raises(grpc.RpcError) as refused:
        health.Check(health_pb2.HealthCheckRequest(service="mnist-v9"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("raw", [True, False], ids=["raw contents", "typed contents"])
def test_digits_get_the_classes_and_scores_predict_gives(service, raw):
    url, stub, _ = service
    digits = _digits()
    response = _infer(stub, digits, "image", "UINT8", raw, model_name="mnist", model_version=MNIST_VERSION, id="req-7")
    assert (response.model_name, response.model_version, response.id) == ("mnist", MNIST_VERSION, "req-7")
    assert bool(response.raw_output_contents) is raw
    outputs = _outputs(response)
    with httpx.Client(base_url=url) as client:
        answers = [
            client.post(
                "/predict", files={"file": (f"{digit}.png", (REPO_ROOT / "samples" / f"{digit}.png").read_bytes())}
            )
            for digit in range(10)
        ]
    assert outputs["label"].tolist() == [answer.json()["class"] for answer in answers]
    expected = np.asarray([answer.json()["scores"] for answer in answers], dtype=np.float32)
    # Ten rows in one call against one at a time: products round by blocks (batching.py).
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-6)
    assert outputs["is_digit"].tolist() == [answer.json()["verdict"] != "not_a_digit" for answer in answers]
    digit_probabilities = [answer.json()["digit_probability"] for answer in answers]
    np.testing.assert_allclose(outputs["digit_probability"], digit_probabilities, atol=1e-6)


def test_scaled_inputs_typed_or_raw_give_the_same_scores(service):
    _, stub, _ = service
    inputs = (_digits().reshape(10, 784) / np.float32(255)).astype(np.float32)
    raw = _outputs(_infer(stub, inputs, "input", "FP32", raw=True, model_name="mnist"))
    typed = _outputs(_infer(stub, inputs, "input", "FP32", raw=False, model_name="mnist"))
    np.testing.assert_array_equal(raw["probabilities"], typed["probabilities"])
    assert raw["label"].tolist() == typed["label"].tolist()


def test_only_the_outputs_asked_for_come_back(service):
    _, stub, _ = service
    request = pb.ModelInferRequest(
        model_name="mnist",
        inputs=[Input(name="image", datatype="UINT8", shape=[1, 28, 28])],
        raw_input_contents=[_digits()[7:8].tobytes()],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="label")],
    )
    response = stub.ModelInfer(request)
    assert [output.name for output in response.outputs] == ["label"]
    assert _outputs(response)["label"].tolist() == [7]


def _refusal(stub, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    return refused.value.code(), refused.value.details()


def _v2_error(url: str, path: str, body: dict) -> tuple[int, str]:
    answer = httpx.post(url + path, json=body)
    return answer.status_code, answer.json()["error"]


@pytest.mark.parametrize(
    ("grpc_request", "rest_path", "rest_body", "code", "status"),
    [
        (
            pb.ModelInferRequest(model_name="mnist-v9", inputs=[Input(name="input", datatype="FP32", shape=[1, 784])]),
            "/v2/models/mnist-v9/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}]},
            grpc.StatusCode.NOT_FOUND,
            404,
        ),
        (
            pb.ModelInferRequest(
                model_name="mnist",
                inputs=[Input(name="input", datatype="FP32", shape=[1, 28, 28])],
                raw_input_contents=[bytes(784 * 4)],
            ),
            "/v2/models/mnist/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 28, 28], "data": [0.0] * 784}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            400,
        ),
        (
            pb.ModelInferRequest(
                model_name="mnist",
                inputs=[Input(name="input", datatype="FP64", shape=[1, 784])],
                raw_input_contents=[bytes(784 * 8)],
            ),
            "/v2/models/mnist/infer",
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 784], "data": [0.0] * 784}]},
            grpc.StatusCode.INVALID_ARGUMENT,
            400,
        ),
        (
            pb.ModelInferRequest(model_name="mnist", inputs=[]),
            "/v2/models/mnist/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}] * 2},
            grpc.StatusCode.INVALID_ARGUMENT,
            400,
        ),
    ],
    ids=["unknown model", "bad shape", "bad datatype", "not one input"],
)
def test_refusals_carry_the_rest_doors_message_as_a_status(service, grpc_request, rest_path, rest_body, code, status):
    url, stub, _ = service
    refused_code, message = _refusal(stub, grpc_request)
    assert refused_code == code
    rest_status, rest_message = _v2_error(url, rest_path, rest_body)
    assert rest_status == status
    if code != grpc.StatusCode.INVALID_ARGUMENT or "datatype" in message:
        assert message == rest_message
    else:
        assert message.split(";")[0] == rest_message.split(";")[0]


def test_values_out_of_range_and_raw_sizes_are_refused(service):
    _, stub, _ = service
    tensor = Input(name="image", datatype="UINT8", shape=[1, 28, 28])
    tensor.contents.uint_contents.extend([256] * 784)
    code, message = _refusal(stub, pb.ModelInferRequest(model_name="mnist", inputs=[tensor]))
    assert (code, message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'image' (UINT8) must hold whole numbers from 0 to 255 only",
    )
    short = pb.ModelInferRequest(
        model_name="mnist",
        inputs=[Input(name="image", datatype="UINT8", shape=[1, 28, 28])],
        raw_input_contents=[bytes(783)],
    )
    assert _refusal(stub, short) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'image': raw_input_contents[0] holds 783 bytes, but UINT8 [1, 28, 28] takes 784",
    )


def test_a_message_over_the_batch_limit_is_refused_before_it_is_read():
    with grpc_service(max_batch_bytes=64 * 1024) as (_, channel):
        stub = Stub(channel)
        rows = 200  # 627 KB, over 64 KiB plus the message overhead allowed
        big = pb.ModelInferRequest(
            model_name="mnist",
            inputs=[Input(name="input", datatype="FP32", shape=[rows, 784])],
            raw_input_contents=[bytes(rows * 784 * 4)],
        )
        code, _ = _refusal(stub, big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ServerLive(pb.ServerLiveRequest()).live


def test_with_an_api_key_model_calls_need_it_in_the_metadata():
    with grpc_service(api_key=KEY) as (_, channel):
        stub = Stub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # health needs no key, as over REST
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for metadata in ((("authorization", f"Bearer {KEY}"),), (("x-api-key", KEY),)):
            assert stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"), metadata=metadata).name == "mnist"
        with pytest.raises(grpc.RpcError) as wrong:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"), metadata=(("x-api-key", "guess"),))
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_calls_are_counted_by_method_and_code(service):
    url, stub, _ = service
    stub.ServerLive(pb.ServerLiveRequest())
    with pytest.raises(grpc.RpcError):
        stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist-v9"))
    text = httpx.get(url + "/metrics").text
    assert 'mnist_grpc_requests_total{code="OK",method="ServerLive"}' in text
    assert 'mnist_grpc_requests_total{code="NOT_FOUND",method="ModelMetadata"}' in text


def test_the_descriptor_set_is_compiled_from_the_proto_as_committed(tmp_path: Path):
    made = tmp_path / "inference.binpb"
    proto = pb.DESCRIPTOR_SET.with_suffix(".proto").relative_to(REPO_ROOT)
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--descriptor_set_out={made}", proto.as_posix()]
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    assert made.read_bytes() == pb.DESCRIPTOR_SET.read_bytes(), "run make proto"


def test_calls_get_an_access_line_with_their_request_id_and_never_the_key(capsys):
    with grpc_service(log_format="json", api_key=KEY) as (_, channel):
        capsys.readouterr()
        request = pb.ModelInferRequest(
            model_name="mnist",
            inputs=[Input(name="image", datatype="UINT8", shape=[1, 28, 28])],
            raw_input_contents=[_digits()[7:8].tobytes()],
        )
        Stub(channel).ModelInfer(request, metadata=(("x-api-key", KEY), ("x-request-id", "grpc-req-1")))
    output = capsys.readouterr().err
    assert KEY not in output
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    [line] = [entry for entry in entries if entry["logger"] == "mnist.access" and entry.get("protocol") == "grpc"]
    assert (line["request_id"], line["method"], line["status"]) == ("grpc-req-1", "ModelInfer", "OK")
    assert (line["model"], line["version"], line["classes"]) == ("mnist", int(MNIST_VERSION), "7")
    assert line["latency_ms"] > 0


def test_the_cnn_answers_over_grpc_as_predict_does(service):
    url, stub, _ = service
    outputs = _outputs(_infer(stub, _digits(), "image", "UINT8", True, model_name="mnist-cnn"))
    with httpx.Client(base_url=url) as client:
        answers = [
            client.post(
                "/predict",
                params={"model": "mnist-cnn"},
                files={"file": (f"{digit}.png", (REPO_ROOT / "samples" / f"{digit}.png").read_bytes())},
            ).json()
            for digit in range(10)
        ]
    assert {(answer["model"], answer["version"]) for answer in answers} == {
        ("mnist-cnn", int(served_version("mnist-cnn")))
    }
    assert outputs["label"].tolist() == [answer["class"] for answer in answers]
    expected = np.asarray([answer["scores"] for answer in answers], dtype=np.float32)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=0, atol=1e-5)


def _call_that_never_sends(channel: grpc.Channel, method: str, unblock: threading.Event) -> grpc.Future:
    """A call opened on `method` whose request message never comes, until `unblock` is set."""

    def nothing() -> Iterator[bytes]:
        unblock.wait(30)
        yield from ()

    call = channel.stream_unary(method, request_serializer=bytes, response_deserializer=bytes)
    return call.future(nothing())


def test_a_call_whose_message_never_comes_ends_at_the_body_timeout_and_frees_its_slot():
    """With unary handlers, two such calls held both of MAX_CONNECTIONS=2 slots for as long as they
    liked and every other call was refused (RESOURCE_EXHAUSTED)."""
    unblock = threading.Event()
    with grpc_service(max_connections=2, body_timeout_seconds=0.5) as (_, channel):
        try:
            stalled = [
                _call_that_never_sends(channel, f"/{pb.SERVICE}/ModelInfer", unblock),
                _call_that_never_sends(channel, "/grpc.health.v1.Health/Check", unblock),
            ]
            for call in stalled:
                with pytest.raises(grpc.RpcError) as refused:
                    call.result(timeout=10)
                assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert refused.value.details() == (
                    "the request message did not arrive whole within 0.5 s (BODY_TIMEOUT_SECONDS)"
                )
            assert Stub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5).live
        finally:
            unblock.set()
