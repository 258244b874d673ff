"""The log format (text or JSON lines), the request id every line carries, and the access log.

Every record goes through one handler in the chosen format. The access log, one line per request,
is written by `access_log` straight to that handler's stream in the same format: the logging
module's work per record (a LogRecord, filters, a flush per line) cost several times the line's
own formatting, a visible share of a /predict (the README's performance section has the figures).
Its lines are flushed within FLUSH_SECONDS, and whenever another record is logged or the process
ends.
"""

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_HANDLER_NAME = "mnist-serve"
ACCESS_LOGGER = "mnist.access"
FLUSH_SECONDS = 0.5

# One encoder for every line: json.dumps builds a new one per call when given `default`.
_JSON = json.JSONEncoder(default=str)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


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


class TextLines:
    """`time level logger message`, one line per event."""

    def __init__(self) -> None:
        self._local_seconds = _SecondsCache(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))

    def line(self, created: float, level: str, logger: str, message: str) -> str:
        seconds, milliseconds = self._local_seconds(created)
        line = f"{seconds},{milliseconds:03d} {level} {logger} {message}"
        return line.replace("\n", "\\n") if "\n" in line else line

    def access(self, created: float, summary: str, fields: Mapping[str, Any]) -> str:
        """An access line's message is its fields as key=value."""
        return self.line(created, "INFO", ACCESS_LOGGER, " ".join(f"{key}={value}" for key, value in fields.items()))


class JsonLines:
    """One JSON object per line, for log shippers."""

    def __init__(self) -> None:
        self._utc_seconds = _SecondsCache(
            lambda second: datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        )

    def line(self, created: float, level: str, logger: str, message: str, **fields: Any) -> str:
        seconds, milliseconds = self._utc_seconds(created)
        entry = {"time": f"{seconds}.{milliseconds:03d}+00:00", "level": level, "logger": logger, "message": message}
        return _JSON.encode({**entry, **fields})

    def access(self, created: float, summary: str, fields: Mapping[str, Any]) -> str:
        return self.line(created, "INFO", ACCESS_LOGGER, summary, **fields)


class _LineFormatter(logging.Formatter):
    """A logging record in the chosen line format, with the request id it was logged under."""

    def __init__(self, lines: TextLines | JsonLines) -> None:
        super().__init__()
        self.lines = lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        request_id = request_id_var.get()
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if isinstance(self.lines, JsonLines):
            extra: dict[str, Any] = {"request_id": request_id} if request_id != "-" else {}
            if record.exc_text:
                extra["exception"] = record.exc_text
            return self.lines.line(record.created, record.levelname, record.name, message, **extra)
        if request_id != "-":
            message = f"{message} request_id={request_id}"
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        return self.lines.line(record.created, record.levelname, record.name, message)


class AccessLog:
    """Writes the access lines to the service's log handler, in its format, without a LogRecord each."""

    def __init__(self) -> None:
        self._handler: logging.StreamHandler | None = None
        self._lines: TextLines | JsonLines = TextLines()
        self._flush_due = False

    def attach(self, handler: logging.StreamHandler, lines: TextLines | JsonLines) -> None:
        self._handler, self._lines = handler, lines

    @property
    def enabled(self) -> bool:
        """On at LOG_LEVEL info or debug; `logging.getLogger("mnist.access")` can turn it off too."""
        return self._handler is not None and logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)

    def write(self, summary: str, fields: Mapping[str, Any]) -> None:
        """One request's line; `summary` is `METHOD path status`, `fields` what the line records."""
        handler = self._handler
        line = self._lines.access(time.time(), summary, fields) + "\n"
        try:
            with handler.lock:
                handler.stream.write(line)
        except (OSError, ValueError):
            # A closed or broken log stream must not fail the request (logging's handlers do
            # the same); there is nowhere left to report it.
            return
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        with contextlib.suppress(OSError, ValueError):
            self._handler.flush()


access_log = AccessLog()


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record, uvicorn's included, through one handler in the chosen format."""
    # No format here shows the caller's file and line or the thread and process: skip working
    # them out for every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    lines = JsonLines() if log_format == "json" else TextLines()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter(lines))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only a handler installed here before, so handlers added by others (pytest's
    # log capture, an embedding application) keep working.
    root.handlers[:] = [existing for existing in root.handlers if existing.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level.upper())
    access_log.attach(handler, lines)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # This service writes its own access line per request (with request id and prediction).
    logging.getLogger("uvicorn.access").disabled = True
