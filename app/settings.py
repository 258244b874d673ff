"""The service's configuration: one immutable object read from environment variables.

Every field names its variable and says what it does; the README's table is checked against
this list by the tests, so the two cannot drift.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _env(name: str, description: str, minimum: float | None = None, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """A field's metadata: its environment variable, what it does, and how it is validated."""
    return {"env": name, "help": description, "minimum": minimum, "choices": choices}


@dataclass(frozen=True)
class Settings:
    model_path: Path = field(
        default=Path("models/mnist/1/model.pt"),
        metadata=_env("MODEL_PATH", "state_dict to serve; its metadata is the .json file beside it"),
    )
    allow_sha256_mismatch: bool = field(
        default=False,
        metadata=_env("ALLOW_SHA256_MISMATCH", "start even if the weights' sha256 differs from the .json's"),
    )
    device: str = field(default="auto", metadata=_env("DEVICE", "auto (CUDA when available), cpu, cuda or cuda:N"))
    torch_threads: int = field(default=1, metadata=_env("TORCH_THREADS", "intra-op CPU threads per worker", 1))
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
    max_batch: int = field(default=64, metadata=_env("MAX_BATCH", "most files in one /predict/batch request", 1))
    max_concurrency: int = field(
        default=64, metadata=_env("MAX_CONCURRENCY", "uploads in progress per worker before answering 503", 1)
    )
    body_timeout_seconds: float = field(
        default=10.0, metadata=_env("BODY_TIMEOUT_SECONDS", "time allowed to receive an upload before 408", 0.001)
    )
    api_key: str | None = field(
        default=None, repr=False, metadata=_env("API_KEY", "when set, /predict* and /model require this key")
    )
    log_level: str = field(default="info", metadata=_env("LOG_LEVEL", "log level", choices=LOG_LEVELS))
    log_format: str = field(
        default="text", metadata=_env("LOG_FORMAT", "text, or json for one JSON object per line", choices=LOG_FORMATS)
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
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
    try:
        value = _PARSERS.get(kind, str)(raw)
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


_PARSERS = {int: int, float: float, bool: _parse_bool, Path: Path}
