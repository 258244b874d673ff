"""The production HTTP server: uvicorn (httptools, uvloop) with the limits that only a server can set.

With several workers the metrics go through prometheus-client's multiprocess mode, and a worker
that fails to start (bad weights, say) stops the whole server with a non-zero exit.

A client that trickles its request headers never reaches the application, so the application
cannot time it out; uvicorn has no header timeout of its own (only keep-alive, between
requests). GuardedHttpToolsProtocol adds the two defences nginx and Apache ship against
slowloris-style clients: a deadline for a request's headers (HEADER_TIMEOUT_SECONDS, like
nginx's client_header_timeout) and a cap on open connections per worker (MAX_CONNECTIONS,
like worker_connections), past which a new connection gets a 503 and is closed at once, before
it can hold a file descriptor for long.

An early answer (a 413 for a body over its limit, a 408) ends the connection while the client may
still be sending the body. Closing a socket with unread bytes makes the kernel reset the
connection, and a client that sends its whole body before it reads then gets the reset instead
of the answer. So the protocol closes as nginx's lingering_close does: it sends the answer and
its end (FIN), then reads and discards what still arrives, for at most LINGER_SECONDS and
LINGER_BYTES, and only then closes.
"""

import asyncio
import functools
import logging
import os
import resource
import shutil
import tempfile
import weakref
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from app.observability import metrics
from app.observability.metrics import MULTIPROCESS_ENV
from app.settings import Settings

logger = logging.getLogger("mnist.server")

# File descriptors a worker needs besides its client connections (listening socket, logs,
# model files, the metrics files of multiprocess mode, the event loop's own).
_SPARE_DESCRIPTORS = 64
FACTORY = "app.main:create_app"  # each worker builds its application with the settings it reads


def _plain_response(status: str, text: str, extra_headers: str = "") -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n{extra_headers}"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY_CONNECTIONS = _plain_response(
    "503 Service Unavailable", "too many open connections (MAX_CONNECTIONS); retry in a moment\n", "retry-after: 1\r\n"
)
_HEADER_TIMEOUT = _plain_response("408 Request Timeout", "the request headers did not arrive in time\n")


class LingeringTransport:
    """A connection's transport whose close() lingers while the request body is still arriving.

    uvicorn closes the transport itself once an answer with `Connection: close` is sent; this is
    the one place every such close passes through.
    """

    def __init__(self, transport: asyncio.Transport, protocol: "GuardedHttpToolsProtocol") -> None:
        self._transport = transport
        # Weak: the protocol holds this transport, and a cycle between them would keep every closed
        # connection's objects until a full garbage collection (tests/test_cycles.py).
        self._protocol = weakref.ref(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        protocol = self._protocol()
        if protocol is not None and protocol.request_body_unread():
            protocol.linger()
        else:
            self._transport.close()

    def is_closing(self) -> bool:
        protocol = self._protocol()
        return (protocol is not None and protocol.lingering) or self._transport.is_closing()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request headers, a cap on connections,
    and a lingering close after early answers."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        max_connections: int,
        linger_seconds: float,
        linger_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._max_connections = max_connections
        self._header_deadline: asyncio.TimerHandle | None = None
        self._linger_seconds = linger_seconds
        self._linger_bytes_left = linger_bytes
        self._linger_deadline: asyncio.TimerHandle | None = None
        self.lingering = False
        self._socket_transport: asyncio.Transport | None = None  # beneath the LingeringTransport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._socket_transport = transport
        super().connection_made(LingeringTransport(transport, self))  # type: ignore[arg-type]
        if len(self.connections) > self._max_connections:
            metrics.REJECTED.labels("too_many_connections").inc()
            transport.write(_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        # A connection that never sends a byte is held to the same deadline as a slow one.
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self._linger_deadline is not None:
            self._linger_deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.lingering:
            super().data_received(data)
            return
        self._linger_bytes_left -= len(data)
        if self._linger_bytes_left < 0:
            self._close_now()

    def request_body_unread(self) -> bool:
        """Whether the request being answered still has body bytes to come."""
        return self.cycle is not None and self.cycle.more_body and not self.transport.is_closing()

    def linger(self) -> None:
        """Send what is written and then FIN, and discard what the client still sends, within bounds."""
        if self.lingering:
            return
        self.lingering = True
        self._disarm_header_deadline()
        self.flow.resume_reading()  # reading may be paused while the body waited for the app
        if self._socket_transport.can_write_eof():
            self._socket_transport.write_eof()
        self._linger_deadline = self.loop.call_later(self._linger_seconds, self._close_now)

    def _close_now(self) -> None:
        self._socket_transport.close()

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_timed_out(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            metrics.REJECTED.labels("header_timeout").inc()
            self.transport.write(_HEADER_TIMEOUT)
            self.transport.close()


def uvicorn_config(settings: Settings, app: str | ASGIApp = FACTORY, factory: bool = True) -> uvicorn.Config:
    """How `python -m app` runs the service (and the benchmarks and system tests run it): `app` is
    an application or its import string, or with `factory` the import string of a function each
    worker builds its own application with."""
    return uvicorn.Config(
        app,
        factory=factory and isinstance(app, str),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=functools.partial(
            GuardedHttpToolsProtocol,
            header_timeout=settings.header_timeout_seconds,
            max_connections=settings.max_connections,
            linger_seconds=settings.linger_seconds,
            linger_bytes=settings.linger_bytes,
        ),
        loop="uvloop",
        log_config=None,
        access_log=False,  # the front writes one richer line per request
        proxy_headers=False,  # nothing here reads the client address, so X-Forwarded-* need no parsing
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # uvicorn restarts a worker that misses a 5 s health ping; one still loading its models on
        # a starved CPU is slow, not dead, and killing it only starts the load again.
        timeout_worker_healthcheck=30,
        server_header=False,
    )


def raise_descriptor_limit(max_connections: int) -> None:
    """Lift the soft limit on open files to the hard one, so MAX_CONNECTIONS can really be reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_DESCRIPTORS
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        logger.warning(
            "open files are limited to %d (ulimit -n), fewer than MAX_CONNECTIONS=%d needs (%d); raise the limit "
            "or lower MAX_CONNECTIONS",
            soft,
            max_connections,
            wanted,
        )


def run(settings: Settings, app: str = FACTORY, factory: bool = True) -> int:
    """Serve `app` until a signal stops it: its exit status (3 if a worker failed to start)."""
    raise_descriptor_limit(settings.max_connections)
    config = uvicorn_config(settings, app, factory)
    if settings.workers == 1:
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    owns_metrics_dir = MULTIPROCESS_ENV not in os.environ
    if owns_metrics_dir:
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="mnist-serve-metrics-")
    try:
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
        return STARTUP_FAILURE if failed else 0
    finally:
        if owns_metrics_dir:
            shutil.rmtree(os.environ[MULTIPROCESS_ENV], ignore_errors=True)
