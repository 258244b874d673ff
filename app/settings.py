"""The service's configuration: one immutable object read from environment variables.

Every field names its variable and says what it does; the README's table is checked against
this list by the tests, so the two cannot drift.
"""

import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from mnist_core.files import MODEL_NAME_PATTERN, VERSION_PATTERN

MIB = 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")


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


def _env(name: str, description: str, minimum: float | None = None, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """A field's metadata: its environment variable, what it does, and how it is validated."""
    return {"env": name, "help": description, "minimum": minimum, "choices": choices}


@dataclass(frozen=True)
class Settings:
    model_repository: Path = field(
        default=Path("models"),
        metadata=_env("MODEL_REPOSITORY", "folder of models: <name>/<version>/model.pt with its model.json"),
    )
    default_model: str = field(
        default="mnist", metadata=_env("DEFAULT_MODEL", "model that /predict and /model use without ?model=")
    )
    model_versions: VersionPolicies | None = field(
        default=None,
        metadata=_env(
            "MODEL_VERSIONS", "versions to serve per model, e.g. mnist=2 or mnist=1+2 or mnist=all; others: latest"
        ),
    )
    model_poll_seconds: float = field(
        default=0.0,
        metadata=_env("MODEL_POLL_SECONDS", "rescan the repository this often and swap in changes; 0: never", 0),
    )
    model_path: Path | None = field(
        default=None,
        metadata=_env("MODEL_PATH", "serve this one state_dict (and the .json beside it) as DEFAULT_MODEL version 1"),
    )
    allow_sha256_mismatch: bool = field(
        default=False,
        metadata=_env("ALLOW_SHA256_MISMATCH", "serve weights even if their sha256 differs from their .json's"),
    )
    device: str = field(default="auto", metadata=_env("DEVICE", "auto (CUDA when available), cpu, cuda or cuda:N"))
    torch_threads: int = field(
        default=1, metadata=_env("TORCH_THREADS", "CPU threads per worker for torch, numpy and OpenCV", 1)
    )
    workers: int = field(default=1, metadata=_env("WORKERS", "uvicorn worker processes (python -m app)", 1))
    host: str = field(default="127.0.0.1", metadata=_env("HOST", "address to listen on (python -m app)"))
    port: int = field(default=8000, metadata=_env("PORT", "port to listen on (python -m app)", 1))
    shutdown_timeout_seconds: float = field(
        default=5.0, metadata=_env("SHUTDOWN_TIMEOUT_SECONDS", "on SIGTERM, time given to requests in progress", 0)
    )
    max_upload_bytes: int = field(default=MIB, metadata=_env("MAX_UPLOAD_BYTES", "largest image file accepted", 1))
    max_image_pixels: int = field(
        default=4096 * 4096, metadata=_env("MAX_IMAGE_PIXELS", "largest width x height an image may declare", 1)
    )
    max_batch: int = field(default=64, metadata=_env("MAX_BATCH", "most images or tensors in one batch request", 1))
    max_batch_bytes: int = field(
        default=8 * MIB, metadata=_env("MAX_BATCH_BYTES", "largest body of a batch request (/predict/batch, V2)", 1)
    )
    body_buffer_bytes: int = field(
        default=64 * MIB,
        metadata=_env("BODY_BUFFER_BYTES", "request body bytes one worker holds at once before answering 503", 1),
    )
    body_timeout_seconds: float = field(
        default=20.0,
        metadata=_env(
            "BODY_TIMEOUT_SECONDS",
            "time allowed for a body, plus 1 s per BODY_MIN_RATE bytes received; then 408",
            0.001,
        ),
    )
    body_min_rate: int = field(
        default=500,
        metadata=_env("BODY_MIN_RATE", "bytes per second that extend BODY_TIMEOUT_SECONDS by one second", 1),
    )
    header_timeout_seconds: float = field(
        default=20.0,
        metadata=_env("HEADER_TIMEOUT_SECONDS", "time to send a request's headers before 408 (python -m app)", 0.001),
    )
    keep_alive_seconds: float = field(
        default=5.0,
        metadata=_env("KEEP_ALIVE_SECONDS", "idle time before a kept-alive connection closes (python -m app)", 0.001),
    )
    linger_seconds: float = field(
        default=5.0,
        metadata=_env(
            "LINGER_SECONDS",
            "after an early answer (413, 408) while the body still arrives, time spent reading and discarding it "
            "so the client can read the answer, then the connection closes (python -m app)",
            0,
        ),
    )
    linger_bytes: int = field(
        default=16 * MIB,
        metadata=_env("LINGER_BYTES", "most body bytes read and discarded after an early answer (python -m app)", 0),
    )
    max_connections: int = field(
        default=1024,
        metadata=_env("MAX_CONNECTIONS", "open connections per worker; more are answered 503 and closed", 1),
    )
    api_key: str | None = field(
        default=None, repr=False, metadata=_env("API_KEY", "when set, prediction and model routes require this key")
    )
    log_level: str = field(default="info", metadata=_env("LOG_LEVEL", "log level", choices=LOG_LEVELS))
    log_format: str = field(
        default="text", metadata=_env("LOG_FORMAT", "text, or json for one JSON object per line", choices=LOG_FORMATS)
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        for name, advice in RETIRED_SETTINGS.items():
            if environ.get(name, "").strip():
                raise SettingsError(f"{name} is no longer a setting: {advice}")
        values = {}
        for spec in fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is not None and raw.strip() != "":
                values[spec.name] = _parse(spec.metadata, spec.type, raw.strip())
        return cls(**values)


def setting_variables() -> dict[str, str]:
    """Each environment variable and its help text, in declaration order."""
    return {spec.metadata["env"]: spec.metadata["help"] for spec in fields(Settings)}


def _parse(metadata: Mapping[str, Any], kind: Any, raw: str) -> Any:
    env = metadata["env"]
    if get_origin(kind) in (Union, types.UnionType):
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    try:
        value = _PARSERS.get(kind, str)(raw)
    except SettingsError:
        raise
    except ValueError as error:
        raise SettingsError(f"{env}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from error
    if metadata["minimum"] is not None and value < metadata["minimum"]:
        raise SettingsError(f"{env}={raw!r} must be at least {metadata['minimum']}")
    if metadata["choices"]:
        value = value.lower()
        if value not in metadata["choices"]:
            raise SettingsError(f"{env}={raw!r} must be one of {', '.join(metadata['choices'])}")
    return value


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_PARSERS = {int: int, float: float, bool: _parse_bool, Path: Path, VersionPolicies: VersionPolicies.parse}
