"""The service's configuration: one immutable object read from environment variables by
pydantic-settings.

Each field's variable is its name in capitals, and its description says what it does; the
README's table is checked against these by the tests, so the two cannot drift. `Settings(...)`
takes only what it is given (the tests build it so); `Settings.from_env()` reads the environment
and says what is wrong with a value in one line.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from mnist_core.files import MODEL_NAME_PATTERN, VERSION_PATTERN

MIB = 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
TRACE_EXPORTERS = ("otlp", "console", "none")
TRACE_SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


# Settings that earlier versions read, and what replaces them: set, they stop the service with
# this advice rather than be ignored without a word.
RETIRED_SETTINGS = {
    "MAX_CONCURRENCY": "uploads are bounded by the bytes in progress per worker; set BODY_BUFFER_BYTES instead",
}


@dataclass(frozen=True)
class VersionPolicies:
    """MODEL_VERSIONS: the versions each named model serves (None: all on disk); unnamed models serve their latest."""

    versions: Mapping[str, frozenset[int] | None]

    @classmethod
    def parse(cls, raw: str) -> "VersionPolicies":
        versions: dict[str, frozenset[int] | None] = {}
        for entry in filter(None, (item.strip() for item in raw.split(","))):
            name, equals, policy = (part.strip() for part in entry.partition("="))
            numbers = policy.split("+")
            if not (equals and MODEL_NAME_PATTERN.fullmatch(name)) or not (
                policy == "all" or all(VERSION_PATTERN.fullmatch(number) for number in numbers)
            ):
                raise SettingsError(
                    f"MODEL_VERSIONS={raw!r}: write name=version, name=1+2 or name=all, separated by commas"
                )
            versions[name] = None if policy == "all" else frozenset(int(number) for number in numbers)
        return cls(versions)

    def __str__(self) -> str:
        return ",".join(
            f"{name}={'all' if chosen is None else '+'.join(map(str, sorted(chosen)))}"
            for name, chosen in self.versions.items()
        )


def _policies(value: Any) -> Any:
    return VersionPolicies.parse(value) if isinstance(value, str) else value


def _lowered(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, arbitrary_types_allowed=True, str_strip_whitespace=True, protected_namespaces=()
    )

    model_repository: Path = Field(
        Path("models"), description="folder of models: <name>/<version>/model.pt with its model.json"
    )
    default_model: str = Field("mnist-cnn", description="model that /predict and /model use without ?model=")
    model_versions: Annotated[VersionPolicies | None, NoDecode, BeforeValidator(_policies)] = Field(
        None, description="versions to serve per model, e.g. mnist=2 or mnist=1+2 or mnist=all; others: latest"
    )
    model_poll_seconds: float = Field(
        0.0, ge=0, description="rescan the repository this often and swap in changes; 0: never"
    )
    model_path: Path | None = Field(
        None, description="serve this one state_dict (and the .json beside it) as DEFAULT_MODEL version 1"
    )
    allow_sha256_mismatch: bool = Field(
        False, description="serve weights even if their sha256 differs from their .json's"
    )
    gate_min_accuracy: float = Field(
        90.0, ge=0, le=100, description="percent of the 1,000 canary digits a version must name right to be served"
    )
    gate_max_accuracy_drop: float = Field(
        1.5, ge=0, le=100, description="most canary points a version may fall below the served version it replaces"
    )
    unsure_below: float = Field(
        0.8, ge=0, le=1, description='served confidence under which a digit is answered "unsure"'
    )
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda or cuda:N")
    torch_threads: int = Field(1, ge=1, description="CPU threads per worker for torch, numpy and OpenCV")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (python -m app)")
    host: str = Field("127.0.0.1", description="address to listen on (python -m app)")
    port: int = Field(8000, ge=1, description="port to listen on (python -m app)")
    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="port of the Open Inference Protocol over gRPC, on HOST, served by every worker; 0 turns it off",
    )
    shutdown_timeout_seconds: float = Field(
        5.0, ge=0, description="on SIGTERM, time given to requests in progress (python -m app)"
    )
    max_upload_bytes: int = Field(MIB, ge=1, description="largest image file accepted")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="largest width x height an image may declare")
    max_batch: int = Field(64, ge=1, description="most images in one /predict/batch request")
    max_batch_bytes: int = Field(
        8 * MIB, ge=1, description="largest body of a batch request (/predict/batch; V2 infer, which it bounds in rows)"
    )
    body_buffer_bytes: int = Field(
        64 * MIB, ge=1, description="request body bytes one worker holds at once before answering 503"
    )
    body_timeout_seconds: float = Field(
        20.0,
        ge=0.001,
        description="time allowed for a body, plus 1 s per BODY_MIN_RATE bytes received; then 408",
    )
    body_min_rate: int = Field(500, ge=1, description="bytes per second that extend BODY_TIMEOUT_SECONDS by one second")
    header_timeout_seconds: float = Field(
        20.0, ge=0.001, description="time to send a request's headers before 408 (python -m app)"
    )
    keep_alive_seconds: float = Field(
        5.0, ge=0.001, description="idle time before a kept-alive connection closes (python -m app)"
    )
    linger_seconds: float = Field(
        5.0,
        ge=0,
        description="after an early answer (413, 408) while the body still arrives, time spent reading and "
        "discarding it so the client can read the answer, then the connection closes (python -m app)",
    )
    linger_bytes: int = Field(
        16 * MIB, ge=0, description="most body bytes read and discarded after an early answer (python -m app)"
    )
    max_connections: int = Field(
        1024, ge=1, description="open connections per worker; more are answered 503 and closed (python -m app)"
    )
    api_key: str | None = Field(None, repr=False, description="when set, prediction and model routes require this key")
    log_level: Annotated[Literal[LOG_LEVELS], BeforeValidator(_lowered)] = Field("info", description="log level")
    log_format: Annotated[Literal[LOG_FORMATS], BeforeValidator(_lowered)] = Field(
        "text", description="text, or json for one JSON object per line"
    )
    # OpenTelemetry's own variables, read here to decide whether to trace; the exporter also reads
    # the rest of them itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE).
    otel_traces_exporter: Annotated[Literal[TRACE_EXPORTERS] | None, BeforeValidator(_lowered)] = Field(
        None,
        description="tracing: otlp (OTLP over HTTP) or console turns it on, none off; unset, it is on only when "
        "an OTLP endpoint is set",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="tracing: the OpenTelemetry collector's base URL (http://host:4318); spans go to /v1/traces"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None, description="tracing: the whole URL spans are sent to, over OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_protocol: Annotated[Literal["http/protobuf"] | None, BeforeValidator(_lowered)] = Field(
        None, description="tracing: http/protobuf, the one OTLP transport spoken here"
    )
    otel_service_name: str = Field("mnist-serve", description="tracing: the service.name of every span")
    otel_traces_sampler: Annotated[Literal[TRACE_SAMPLERS], BeforeValidator(_lowered)] = Field(
        "parentbased_always_on",
        description="tracing: which requests are traced; parentbased_traceidratio follows the caller's choice and "
        "samples the rest at OTEL_TRACES_SAMPLER_ARG",
    )
    otel_traces_sampler_arg: float = Field(
        1.0, ge=0, le=1, description="tracing: the share of traces the *traceidratio samplers keep (0.01: one in 100)"
    )
    otel_sdk_disabled: bool = Field(False, description="tracing: true turns it off, whatever else is set")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *others: Any, **named: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the constructor is given: the environment is read by from_env(), so tests and
        # benchmarks that build Settings(...) get exactly what they ask for, whatever is exported.
        return (init_settings,)

    def trace_exporter(self) -> str | None:
        """The span exporter the OTEL_* variables ask for: "otlp", "console", or None for no tracing."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_traces_exporter is not None:
            return self.otel_traces_exporter
        return "otlp" if self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint else None

    def otlp_traces_endpoint(self) -> str:
        """Where OTLP spans go, as the OpenTelemetry specification derives it."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        return (self.otel_exporter_otlp_endpoint or "http://localhost:4318").rstrip("/") + "/v1/traces"

    def server_settings_given(self) -> list[str]:
        """The variables of `python -m app`'s server that were set, for an application served by
        another server, which would ignore them."""
        return [variable(name) for name in SERVER_SETTINGS if name in self.model_fields_set]

    @classmethod
    def from_env(cls) -> "Settings":
        for name, advice in RETIRED_SETTINGS.items():
            if os.environ.get(name, "").strip():
                raise SettingsError(f"{name} is no longer a setting: {advice}")
        # A variable that is empty or only blanks counts as unset, as it always has.
        found = EnvSettingsSource(cls)()
        values = {name: value for name, value in found.items() if not (isinstance(value, str) and not value.strip())}
        try:
            return cls(**values)
        except ValidationError as error:
            raise SettingsError("; ".join(_one_line(problem) for problem in error.errors())) from None


# Read by the server `python -m app` runs (app/http/server.py), not by the application: uvicorn
# started on its own has options of its own for some, and no equivalent for the rest.
SERVER_SETTINGS = (
    "workers",
    "host",
    "port",
    "shutdown_timeout_seconds",
    "header_timeout_seconds",
    "keep_alive_seconds",
    "linger_seconds",
    "linger_bytes",
    "max_connections",
)


def variable(field_name: str) -> str:
    """The environment variable of a setting."""
    return field_name.upper()


def setting_variables() -> dict[str, str]:
    """Each environment variable and its description, in declaration order."""
    return {variable(name): spec.description or "" for name, spec in Settings.model_fields.items()}


def _one_line(problem: Mapping[str, Any]) -> str:
    """A problem pydantic found with one variable, in the words the service has always used."""
    if problem["type"] == "value_error":
        return str(problem["ctx"]["error"])  # our own parser's message, which names the variable
    shown = f"{variable(str(problem['loc'][0]))}={problem['input']!r}"
    if problem["type"] in ("greater_than_equal", "greater_than"):
        return f"{shown} must be at least {next(iter(problem['ctx'].values()))}"
    if problem["type"] == "literal_error":
        return f"{shown} must be one of {problem['ctx']['expected']}"
    if problem["type"].endswith("_parsing"):
        return f"{shown} is not a valid {problem['type'].removesuffix('_parsing')}"
    return f"{shown}: {problem['msg']}"
