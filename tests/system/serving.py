"""Starting the real service (`python -m app`) as a separate process for the system suites."""

import os
import socket
import subprocess
import sys
import time
from typing import IO

import httpx

from tests.helpers import REPO_ROOT

# Deadlines for a hung service, not for a slow one: starting takes some 16 s of CPU (torch's import
# and the model's load), which on a busy 2-core machine (a second copy of the suite, a CPU hog)
# stretches past a minute of wall time.
STARTUP_DEADLINE_SECONDS = 300
STOP_DEADLINE_SECONDS = 60

# The port each started service was given, held bound (not listening) until that service is ready.
_reservations: dict[subprocess.Popen, socket.socket] = {}


def _reserve_port() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port that no one else can be given until it is closed.

    Picking a free port and closing the probe leaves a window, seconds long while the child imports
    torch and loads the model, in which another process (a second copy of this suite, say) can be
    given the same port; the child then fails to bind, or worse, /readyz is answered by the other
    suite's server and the tests run against it. On Linux a bound socket with SO_REUSEADDR that is
    not listening keeps the kernel from handing its port to anyone else's bind(port 0), yet lets
    the child, which also sets SO_REUSEADDR (uvicorn does), bind and listen on it. Elsewhere (BSD
    and macOS refuse that second bind) the probe is closed at once, with the old, small risk.
    """
    reservation = socket.socket()
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind(("127.0.0.1", 0))
    return reservation


def start_service(output: IO | int, **environment: str) -> tuple[subprocess.Popen, str]:
    """`python -m app` on a free 127.0.0.1 port with these settings; returns it and its base URL."""
    for started, held in list(_reservations.items()):
        if started.poll() is not None:  # exited without anyone waiting for it to be ready
            held.close()
            del _reservations[started]
    reservation = _reserve_port()
    port = reservation.getsockname()[1]
    if not sys.platform.startswith("linux"):
        reservation.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PORT": str(port), "GRPC_PORT": "0", **environment},
    )
    _reservations[process] = reservation
    return process, f"http://127.0.0.1:{port}"


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float = STARTUP_DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                # A port is listened on by one socket at a time, and (on Linux) the reservation
                # kept everyone else off it, so a 200 here comes from this child.
                if httpx.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service was not ready after {timeout} s")
            time.sleep(0.05)
    finally:
        # Once the child listens, its own socket keeps the port; a child that never got there
        # has no use for it either.
        if (reservation := _reservations.pop(process, None)) is not None:
            reservation.close()


def stop_service(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not stopped by the deadline: the tests that use this check
    something else, and a service left running would hold its port and memory after the suite."""
    process.terminate()
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
