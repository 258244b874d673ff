"""OpenTelemetry tracing: off unless the OTEL_* variables ask for it; on, one span per request with
the caller's trace continued, its steps as children, and batched model calls linking their requests."""

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.inference.batching import MicroBatcher
from app.observability import tracing
from app.settings import Settings
from tests.conftest import make_client
from tests.helpers import REPO_ROOT, served_version

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
PNG = (REPO_ROOT / "samples" / "7.png").read_bytes()


@pytest.mark.parametrize(
    ("variables", "exporter"),
    [
        ({}, None),
        ({"otel_traces_exporter": "none", "otel_exporter_otlp_endpoint": "http://collector:4318"}, None),
        ({"otel_exporter_otlp_endpoint": "http://collector:4318"}, "otlp"),
        ({"otel_exporter_otlp_traces_endpoint": "http://collector:4318/v1/traces"}, "otlp"),
        ({"otel_traces_exporter": "otlp"}, "otlp"),
        ({"otel_traces_exporter": "console"}, "console"),
        ({"otel_traces_exporter": "otlp", "otel_sdk_disabled": True}, None),
    ],
)
def test_tracing_is_off_unless_the_variables_ask_for_it(variables, exporter):
    assert Settings(**variables).trace_exporter() == exporter


def test_the_otlp_endpoint_is_derived_as_the_specification_says():
    assert Settings().otlp_traces_endpoint() == "http://localhost:4318/v1/traces"
    assert Settings(otel_exporter_otlp_endpoint="http://c:4318/").otlp_traces_endpoint() == "http://c:4318/v1/traces"
    assert (
        Settings(
            otel_exporter_otlp_endpoint="http://c:4318", otel_exporter_otlp_traces_endpoint="http://t:9/traces"
        ).otlp_traces_endpoint()
        == "http://t:9/traces"
    )


@pytest.fixture
def exported(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "build_exporter", lambda settings: exporter if settings.trace_exporter() else None)
    return exporter


def _by_name(spans) -> dict:
    return {span.name: span for span in spans}


def test_a_request_continues_the_callers_trace_with_a_span_for_each_step(exported):
    with make_client(otel_traces_exporter="otlp") as client:
        response = client.post("/predict", files={"file": ("7.png", PNG)}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = _by_name(exported.get_finished_spans())
    server = spans["POST /predict"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == CALLER_SPAN_ID
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{server.context.span_id:016x}-01"
    assert server.attributes["mnist.request_id"] == response.headers["X-Request-ID"]
    assert (server.attributes["mnist.model"], server.attributes["mnist.version"]) == (
        "mnist",
        int(served_version("mnist")),
    )
    assert server.attributes["http.route"] == "/predict"
    assert server.attributes["http.response.status_code"] == 200
    for step in ("read body", "decode", "preprocess", "model"):
        assert spans[step].parent.span_id == server.context.span_id, step
        assert spans[step].context.trace_id == server.context.trace_id, step


def test_v2_requests_and_refusals_are_traced_too(exported):
    tensor = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
    with make_client(otel_traces_exporter="otlp") as client:
        assert client.post("/v2/models/mnist/infer", json={"inputs": [tensor]}).status_code == 200
        assert client.post("/predict", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.get("/v2/models/mnist").status_code == 200
    spans = exported.get_finished_spans()
    routes = sorted(
        (span.name, span.attributes.get("http.response.status_code")) for span in spans if span.parent is None
    )
    assert routes == [
        ("GET /v2/models/{model_name}", 200),
        ("POST /predict", 415),
        ("POST /v2/models/{model_name}/infer", 200),
    ]


def _batched_requests(*traceparents: str | None) -> None:
    """Requests that reach one MicroBatcher in the same loop turn, each in its server span (the
    caller's traceparent continued when given), ids "0", "1", ..."""
    tracing.start(Settings(otel_traces_exporter="otlp"))
    try:
        batcher = MicroBatcher(lambda inputs: np.full((len(inputs), 10), 0.1, dtype=np.float32))

        async def request(request_id: str, traceparent: str | None) -> None:
            headers = {"traceparent": traceparent} if traceparent else {}
            with tracing.request_span("POST", "/predict", headers, request_id):
                await batcher.assess(np.zeros((1, 784), dtype=np.float32))

        async def at_once() -> None:
            await asyncio.gather(*(request(str(number), parent) for number, parent in enumerate(traceparents)))

        asyncio.run(at_once())
    finally:
        tracing.stop()


def _request_span_ids(spans) -> dict[str, int]:
    return {span.attributes["mnist.request_id"]: span.context.span_id for span in spans if span.name == "POST"}


def test_a_model_call_shared_by_requests_links_each_of_them(exported):
    _batched_requests(None, None)
    spans = exported.get_finished_spans()
    requests = _request_span_ids(spans)
    [model] = [span for span in spans if span.name == "model"]
    assert (model.attributes["requests"], model.attributes["rows"]) == (2, 2)
    assert model.parent.span_id == requests["0"]
    assert [link.context.span_id for link in model.links] == [requests["0"], requests["1"]]


def test_a_shared_model_call_belongs_to_the_first_sampled_request(exported):
    _batched_requests(TRACEPARENT[:-2] + "00", TRACEPARENT)
    spans = exported.get_finished_spans()
    requests = _request_span_ids(spans)
    assert list(requests) == ["1"]
    [model] = [span for span in spans if span.name == "model"]
    assert model.parent.span_id == requests["1"]
    assert [link.context.span_id for link in model.links] == [requests["1"]]
    assert (model.attributes["requests"], model.attributes["rows"]) == (2, 2)


def test_a_ratio_sampler_follows_the_callers_choice_and_samples_the_rest(exported):
    unsampled_parent = TRACEPARENT[:-2] + "00"
    with make_client(
        otel_traces_exporter="otlp", otel_traces_sampler="parentbased_traceidratio", otel_traces_sampler_arg=0
    ) as client:
        sampled = client.post("/predict", files={"file": ("7.png", PNG)}, headers={"traceparent": TRACEPARENT})
        unasked = client.post("/predict", files={"file": ("7.png", PNG)})
        declined = client.post("/predict", files={"file": ("7.png", PNG)}, headers={"traceparent": unsampled_parent})
    assert [response.status_code for response in (sampled, unasked, declined)] == [200, 200, 200]
    spans = exported.get_finished_spans()
    assert {format(span.context.trace_id, "032x") for span in spans} == {TRACE_ID}
    assert len(spans) == 5
    # Not recorded, a request still answers with its trace context, its sampled flag clear.
    for response in (unasked, declined):
        flags = int(response.headers["traceparent"].rsplit("-", 1)[1], 16)
        assert flags & 1 == 0
    assert declined.headers["traceparent"].startswith(f"00-{TRACE_ID}-")


def test_a_sampler_ratio_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="otel_traces_sampler_arg"):
        Settings(otel_traces_sampler="traceidratio", otel_traces_sampler_arg=1.5)


def test_off_nothing_is_traced_and_no_header_is_added(exported):
    with make_client() as client:
        response = client.post("/predict", files={"file": ("7.png", PNG)}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    assert exported.get_finished_spans() == ()
    assert not tracing.enabled()


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A real OTLP/HTTP endpoint on 127.0.0.1 that keeps what it is sent."""
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf":
                received.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *arguments: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_spans_reach_a_real_otlp_http_receiver(otlp_receiver):
    endpoint, received = otlp_receiver
    with make_client(otel_exporter_otlp_endpoint=endpoint, otel_service_name="digits-test") as client:
        response = client.post("/predict", files={"file": ("7.png", PNG)}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    # The lifespan's end flushed the exporter: everything has arrived.
    resource_spans = [spans for request in received for spans in request.resource_spans]
    services = {
        attribute.value.string_value
        for spans in resource_spans
        for attribute in spans.resource.attributes
        if attribute.key == "service.name"
    }
    assert services == {"digits-test"}
    names = {span.name for spans in resource_spans for scope in spans.scope_spans for span in scope.spans}
    assert names == {"POST /predict", "read body", "decode", "preprocess", "model"}
    trace_ids = {span.trace_id.hex() for spans in resource_spans for scope in spans.scope_spans for span in scope.spans}
    assert trace_ids == {TRACE_ID}
