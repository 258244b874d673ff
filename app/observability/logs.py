"""The log format (text or JSON lines), the request id every line carries, and the access logger."""

import json
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_HANDLER_NAME = "mnist-serve"

# One encoder for every line: json.dumps builds a new one per call when given `default`.
_JSON = json.JSONEncoder(default=str)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
access_logger = logging.getLogger("mnist.access")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class _SecondsCache:
    """A timestamp's text up to the second, made once per second: every access line needs one."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> tuple[str, int]:
        """The second's text and the milliseconds."""
        second = int(created)
        if second != self._second:
            self._second, self._text = second, self._render(second)
        return self._text, int((created - second) * 1000)


class TextFormatter(logging.Formatter):
    """`time level logger message`, one line per event; an access line's message is its fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._local_seconds = _SecondsCache(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        fields = getattr(record, "fields", None)
        if fields:
            message = " ".join(f"{key}={value}" for key, value in fields.items())
        elif record.request_id != "-":
            message = f"{record.message} request_id={record.request_id}"
        else:
            message = record.message
        return f"{record.asctime} {record.levelname} {record.name} {message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        seconds, milliseconds = self._local_seconds(record.created)
        return f"{seconds},{milliseconds:03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line.replace("\n", "\\n") if "\n" in line else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def __init__(self) -> None:
        super().__init__()
        self._utc_seconds = _SecondsCache(
            lambda second: datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        )

    def format(self, record: logging.LogRecord) -> str:
        seconds, milliseconds = self._utc_seconds(record.created)
        entry: dict[str, Any] = {
            "time": f"{seconds}.{milliseconds:03d}+00:00",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.request_id != "-":
            entry["request_id"] = record.request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(entry)


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record, uvicorn's included, through one handler in the chosen format."""
    # No format here shows the caller's file and line or the thread and process: skip working
    # them out for every record (the logging HOWTO's "Optimization" section). An access line
    # per request makes this measurable.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only a handler installed here before, so handlers added by others (pytest's
    # log capture, an embedding application) keep working.
    root.handlers[:] = [existing for existing in root.handlers if existing.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # This service writes its own access line per request (with request id and prediction).
    logging.getLogger("uvicorn.access").disabled = True
