"""Bodies crafted to be expensive rather than large to send (issue #17), at the batch body limit,
against the real server: each is refused with a 4xx while /healthz keeps answering within 0.5 s
(or, on a machine too busy for that, within a few times its slowest answer just before), and the
worker's memory grows by less than 300 MB."""

import gc
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.system.serving import start_service, stop_service, wait_until_ready
from tests.test_multipart import BATCH_BODY_LIMIT, CRAFTED_BODIES

pytestmark = pytest.mark.system

HEALTHZ_LIMIT_SECONDS = 0.5  # issue #17's target
# A loaded machine (a CPU hog, a second copy of the suite) can be slower than the target with no
# body in flight at all, so the bound is also relative to /healthz's slowest answer over the
# baseline polls just before the body is sent. A worker blocked for a whole parse of the body
# (seconds, which is what issue #17 was about) still breaks either bound.
HEALTHZ_FACTOR = 5
BASELINE_POLLS = 25
MEMORY_GROWTH_LIMIT_KIB = 300 * 1000
POLL_INTERVAL_SECONDS = 0.02
POLL_DEADLINE_SECONDS = 30


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def _reset_peak_memory(pid: int) -> bool:
    """Make VmHWM (the peak resident size) start again from the current one (Linux 4.0+); False
    where the kernel does not let this process do that (a container without the capability)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except PermissionError:
        return False
    return True


class HealthzPoller(threading.Thread):
    """Asks /healthz every 20 ms and keeps the slowest answer since `restart()`."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.slowest = 0.0
        self.polls = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def restart(self) -> None:
        self.slowest = 0.0

    def wait_for_polls(self, count: int) -> None:
        """Until `count` more answers have come (or failed to), counted from now."""
        target = self.polls + count
        deadline = time.monotonic() + POLL_DEADLINE_SECONDS
        while self.polls < target:
            assert self.is_alive(), "the /healthz poller stopped"
            assert time.monotonic() < deadline, f"/healthz was not polled {count} times in {POLL_DEADLINE_SECONDS} s"
            time.sleep(POLL_INTERVAL_SECONDS)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.done.is_set():
                started = time.monotonic()
                try:
                    if client.get(f"{self.url}/healthz").status_code != 200:
                        self.failures.append("/healthz did not answer 200")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.polls += 1
                time.sleep(POLL_INTERVAL_SECONDS)


def _send(url: str, content_type: str, chunks: Iterator[bytes]) -> bytes:
    """POST the body to /predict/batch by hand, stopping as soon as the server answers; its answer."""
    address = urlsplit(url)
    head = (
        f"POST /predict/batch HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {BATCH_BODY_LIMIT}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head)
        try:
            for chunk in chunks:
                if select.select([connection], [], [], 0)[0]:
                    break  # the server has answered before the body ended: that is the point
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with part of the body unread, after answering
        return answer


@pytest.fixture(scope="module")
def service():
    process, url = start_service(
        subprocess.DEVNULL,
        WORKERS="1",  # so that the process started is the worker whose memory is measured
        LOG_LEVEL="warning",
        # The limits issue #17 was measured at: 64 files of 1 MiB plus framing, all buffered.
        MAX_BATCH_BYTES=str(BATCH_BODY_LIMIT),
        BODY_BUFFER_BYTES=str(4 * BATCH_BODY_LIMIT),
    )
    try:
        wait_until_ready(process, url)
        yield process, url
    finally:
        stop_service(process)


@pytest.mark.parametrize("kind", CRAFTED_BODIES)
def test_a_crafted_body_is_refused_while_the_worker_keeps_serving(service, kind):
    process, url = service
    content_type, chunks, problem = CRAFTED_BODIES[kind]
    poller = HealthzPoller(url)
    poller.start()
    # A full collection in this process (about 0.2 s over all it has imported) would stall the
    # poller thread too and be counted against the server; the body's chunks are freed without it.
    gc.disable()
    try:
        poller.wait_for_polls(BASELINE_POLLS)
        baseline_slowest = poller.slowest
        resident_kib = _status_kib(process.pid, "VmRSS")
        peak_measured = _reset_peak_memory(process.pid)
        poller.restart()
        started = time.monotonic()
        answer = _send(url, content_type, chunks())
        answered_in = time.monotonic() - started
        poller.wait_for_polls(2)  # one may have been under way as the answer came; the next is wholly after it
    finally:
        gc.enable()
        poller.done.set()
        poller.join()
    status = answer[9:12].decode() or "no answer"
    growth_kib = _status_kib(process.pid, "VmHWM") - resident_kib
    healthz_limit = max(HEALTHZ_LIMIT_SECONDS, HEALTHZ_FACTOR * baseline_slowest)
    print(
        f"{kind}: {status} in {answered_in:.2f} s, /healthz at worst {poller.slowest * 1000:.0f} ms "
        f"(before: {baseline_slowest * 1000:.0f} ms), worker memory peaked {growth_kib / 1024:+.0f} MiB"
    )
    assert status.startswith("4"), answer[:300]
    assert problem.encode() in answer, answer[:300]
    assert not poller.failures, poller.failures[:3]
    assert poller.slowest < healthz_limit, f"/healthz took {poller.slowest:.2f} s, {baseline_slowest:.2f} s before"
    if not peak_measured:
        pytest.skip(
            "the refusal and /healthz checks passed, but not the memory check: this machine does not permit "
            f"writing /proc/{process.pid}/clear_refs, which resets the peak it reads (some containers forbid it)"
        )
    assert growth_kib < MEMORY_GROWTH_LIMIT_KIB
