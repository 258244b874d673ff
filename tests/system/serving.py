"""Starting the real service (`python -m app`) as a separate process for the system suites."""

import os
import socket
import subprocess
import sys
import time
from typing import IO

import httpx

from tests.helpers import REPO_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(output: IO | int, **environment: str) -> tuple[subprocess.Popen, str]:
    """`python -m app` on a free 127.0.0.1 port with these settings; returns it and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PORT": str(port), **environment},
    )
    return process, f"http://127.0.0.1:{port}"


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service was not ready after {timeout} s")
        time.sleep(0.05)
