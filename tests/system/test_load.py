"""Sustained load on the real server: 30 s, 32 connections, 90 % good digits and 10 % bad uploads."""

import asyncio
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.corpus import CORPUS
from tests.helpers import REPO_ROOT, multipart_body
from tests.system.serving import start_service, wait_until_ready

pytestmark = pytest.mark.system

CONNECTIONS = 32
DURATION_SECONDS = 30
WARM_UP_SECONDS = 3
BAD_SHARE = 0.10
BAD_KINDS = ("text-named-png", "pdf", "truncated-png", "png-bomb-100000x100000", "all-white", "zero-bytes")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path):
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process, url = start_service(output, WORKERS="1")
        try:
            wait_until_ready(process, url)
            yield process, url, log
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


class Tally:
    def __init__(self) -> None:
        self.statuses = Counter()
        self.server_errors = 0
        self.connection_errors = 0
        self.wrong_answers: list[str] = []


async def _drive(url: str, seconds: float, tally: Tally, seed: int) -> None:
    goods = [(digit, (REPO_ROOT / "samples" / f"{digit}.png").read_bytes()) for digit in range(10)]
    bads = [case for case in CORPUS if case.kind in BAD_KINDS]
    bad_files = [(case, case.build()) for case in bads]
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def connection(number: int) -> None:
            rng = random.Random(seed * 1000 + number)
            while time.monotonic() < deadline:
                if rng.random() < BAD_SHARE:
                    case, data = rng.choice(bad_files)
                    expected_status, expected_digit = case.status, None
                else:
                    expected_digit, data = rng.choice(goods)
                    expected_status = 200
                try:
                    response = await client.post("/predict", files={"file": ("upload.png", data)})
                except httpx.TransportError as error:
                    tally.connection_errors += 1
                    tally.wrong_answers.append(f"transport error: {error!r}")
                    continue
                tally.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    tally.server_errors += 1
                elif response.status_code != expected_status:
                    tally.wrong_answers.append(f"expected {expected_status}, got {response.status_code}")
                elif expected_digit is not None and response.json()["class"] != expected_digit:
                    tally.wrong_answers.append(f"sample {expected_digit} answered {response.json()['class']}")

        await asyncio.gather(*(connection(number) for number in range(CONNECTIONS)))


def test_thirty_seconds_of_mixed_load_then_a_clean_sigterm(server):
    process, url, log = server
    asyncio.run(_drive(url, WARM_UP_SECONDS, Tally(), seed=1))
    rss_after_warm_up = _rss_kib(process.pid)

    tally = Tally()
    started = time.monotonic()
    asyncio.run(_drive(url, DURATION_SECONDS, tally, seed=2))
    elapsed = time.monotonic() - started
    rss_after_load = _rss_kib(process.pid)
    total = sum(tally.statuses.values())
    print(
        f"\n{total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s), statuses {dict(tally.statuses)}, "
        f"RSS {rss_after_warm_up} -> {rss_after_load} KiB"
    )

    assert tally.server_errors == 0
    assert tally.connection_errors == 0
    assert tally.wrong_answers == []
    assert tally.statuses[200] > 0.85 * total
    assert 0.05 * total < total - tally.statuses[200] < 0.15 * total
    assert rss_after_load < 1.10 * rss_after_warm_up

    _sigterm_completes_the_request_in_flight(process, url, log)


def _sigterm_completes_the_request_in_flight(process: subprocess.Popen, url: str, log: Path) -> None:
    """SIGTERM while an upload is half sent: that request still gets its answer, then the server stops."""
    body, content_type = multipart_body([("file", "7.png", (REPO_ROOT / "samples" / "7.png").read_bytes())])
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        connection.sendall(
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:100]
        )
        time.sleep(0.3)
        signal_sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.poll() is None, "the server quit with a request in flight"
        connection.sendall(body[100:])
        answer = b""
        while not answer.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"class":7' in answer
    # After its graceful shutdown uvicorn re-raises the signal, so the exit status says "SIGTERM".
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert time.monotonic() - signal_sent < 10
    lines = log.read_text().splitlines()
    assert any("Application shutdown complete." in line for line in lines)
    assert not any("Traceback" in line or " ERROR " in line for line in lines)
