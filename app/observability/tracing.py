"""Optional OpenTelemetry tracing: on when the standard OTEL_* variables ask for it, off and free otherwise.

On, each worker has its own tracer provider (started in the lifespan, flushed at shutdown) that
exports spans in batches from the SDK's own thread: over OTLP/HTTP to the collector the variables
name, or to standard output. A request gets one server span, a child of the caller's W3C
`traceparent` when it sends one, whose context goes back in the response's `traceparent` header,
with the request id, route, status, and the model and version that answered. Reading the body,
decoding, preprocessing and the model call are its child spans; a model call that served several
requests at once (app/inference/batching.py) is a child of the first and links every request it
served. A request the sampler (OTEL_TRACES_SAMPLER) leaves out gets its server span's context,
which the response names, and nothing else: its steps make no spans.

Off, nothing is created: `span()` hands out one shared null context, `current_link()` is None, and
the front skips its tracing code entirely.
"""

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.settings import Settings

TRACER_NAME = "mnist-serve"
_NOTHING = nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()


class _Tracing:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None


_state = _Tracing()


def build_exporter(settings: Settings) -> SpanExporter | None:
    """The exporter the settings ask for; None when they ask for no tracing."""
    kind = settings.trace_exporter()
    if kind == "otlp":
        return OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint())
    if kind == "console":
        return ConsoleSpanExporter()
    return None


def build_sampler(settings: Settings) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names, as the OpenTelemetry specification defines each."""
    ratio = settings.otel_traces_sampler_arg
    samplers = {
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBasedTraceIdRatio(ratio),
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
    }
    return samplers[settings.otel_traces_sampler]


def start(settings: Settings) -> bool:
    """Trace in this process when the settings ask for it; whether tracing is now on."""
    exporter = build_exporter(settings)
    if exporter is None:
        return False
    provider = TracerProvider(
        sampler=build_sampler(settings),
        resource=Resource.create({"service.name": settings.otel_service_name}),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _state.provider, _state.tracer = provider, provider.get_tracer(TRACER_NAME)
    return True


def stop() -> None:
    """Export the spans still queued, then stop tracing."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state.tracer is not None


def span(name: str, **attributes: Any) -> AbstractContextManager:
    """A child of the current span for a step of the work; nothing when tracing is off or the
    request is not sampled."""
    if _state.tracer is None or not trace.get_current_span().is_recording():
        return _NOTHING
    return _state.tracer.start_as_current_span(name, attributes=attributes)


def current_link() -> Link | None:
    """A link to the current span, for work done later on behalf of this request; None when tracing
    is off or the request is not sampled."""
    if _state.tracer is None:
        return None
    current = trace.get_current_span()
    return Link(current.get_span_context()) if current.is_recording() else None


def linked_span(name: str, links: list[Link | None], **attributes: Any) -> AbstractContextManager:
    """A span for work done on behalf of several requests: the child of the first of them that is
    sampled, linking each that is; nothing when none is."""
    sampled = [link for link in links if link is not None]
    if _state.tracer is None or not sampled:
        return _NOTHING
    parent = trace.set_span_in_context(NonRecordingSpan(sampled[0].context))
    return _state.tracer.start_as_current_span(name, context=parent, links=sampled, attributes=attributes)


def annotate(fields: Mapping[str, Any]) -> None:
    """A request's fields (model, version, classes) on the current span, the request's in an endpoint,
    as `mnist.<name>`; nothing when off."""
    if _state.tracer is not None:
        trace.get_current_span().set_attributes({f"mnist.{name}": value for name, value in fields.items()})


@contextmanager
def request_span(method: str, path: str, headers: Mapping[str, str], request_id: str) -> Iterator[Span]:
    """The server span of one request, current while the request is served; tracing must be on."""
    parent = _PROPAGATOR.extract(headers)
    assert _state.tracer is not None
    with _state.tracer.start_as_current_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path, "mnist.request_id": request_id},
        record_exception=False,
        set_status_on_exception=False,
    ) as server_span:
        yield server_span


def response_headers(server_span: Span) -> list[tuple[bytes, bytes]]:
    """The span's W3C context as response headers, so a caller can find the trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(server_span, context.Context()))
    return [(name.encode(), value.encode()) for name, value in carrier.items()]


def finish_request_span(server_span: Span, method: str, route: str, status: int) -> None:
    server_span.update_name(f"{method} {route}")
    server_span.set_attributes({"http.route": route, "http.response.status_code": status})
    if status >= 500:
        server_span.set_status(Status(StatusCode.ERROR))
