"""What the serving benchmarks share: starting servers, loading them with wrk, measuring their CPU.

Every server runs in a process group of its own and is stopped as a group; every run records the
CPU seconds the server's process tree used over it, so results can be compared per server core.
"""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
LUA = REPO / "bench" / "post.lua"
DIGIT = REPO / "samples" / "7.png"
EXPECTED_CLASS = 7
BOUNDARY = "mnist-serve-bench-boundary"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CONNECTIONS = 8
READY_TIMEOUT_S = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerUnavailableError(RuntimeError):
    """A server did not start, answered wrongly, or failed requests under load."""


@dataclass
class Server:
    """A server a benchmark started, in its own process group, and the request it is loaded with."""

    name: str
    process: subprocess.Popen
    url: str
    content_type: str
    body: Path
    log: Path
    # The class the answer to `body` names, or None where the answer is not a prediction.
    answer: Callable[[Any], Any] | None = field(default=lambda reply: reply["class"])
    header: tuple[str, str] | None = None  # one more request header, e.g. V2's header length
    ready_seconds: float = 0.0  # from start to its first right answer

    def failure(self, reason: str) -> ServerUnavailableError:
        return ServerUnavailableError(f"{self.name}: {reason}")


RUNNING: list[Server] = []


def multipart(field: str, files: list[tuple[str, bytes]]) -> bytes:
    """A multipart/form-data body (MULTIPART_TYPE) with each (filename, bytes) in `field`."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def v2_binary_request(tensor: Any, outputs: list[dict[str, Any]]) -> tuple[bytes, int]:
    """A V2 infer body with `tensor` (FP32 [N, 784], numpy) as binary tensor data: the body and the
    length of its JSON header (Inference-Header-Content-Length)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(tensor.shape),
                    "parameters": {"binary_data_size": tensor.nbytes},
                }
            ],
            "outputs": outputs,
        }
    ).encode()
    return header + tensor.tobytes(), len(header)


def digit_upload() -> Path:
    """samples/7.png as a one-file multipart body for /predict, written once."""
    body = WORK / "bodies" / "digit.body"
    if not body.exists():
        body.parent.mkdir(parents=True, exist_ok=True)
        body.write_bytes(multipart("file", [(DIGIT.name, DIGIT.read_bytes())]))
    return body


def start_python(module: str, name: str, log: Path, environment: dict[str, str]) -> Server:
    """`python -m <module>` on a free 127.0.0.1 port, loaded with samples/7.png on /predict."""
    port = free_port()
    process = launch(
        [sys.executable, "-m", module], log, {"HOST": "127.0.0.1", "PORT": str(port), "GRPC_PORT": "0", **environment}
    )
    return Server(name, process, f"http://127.0.0.1:{port}/predict", MULTIPART_TYPE, digit_upload(), log)


def start_service(name: str, log: Path, **environment: str) -> Server:
    """The service itself (`python -m app`), with these settings over its defaults.

    Requests that name no model get `mnist`, the network the peers serve from the same weights and
    every earlier figure measured, rather than the shipped default (mnist-cnn)."""
    return start_python("app", name, log, {"DEFAULT_MODEL": BENCHMARKED_MODEL, **environment})


BENCHMARKED_MODEL = "mnist"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(command: list[str], log: Path, env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen:
    # A session of its own: Ctrl+C in the terminal reaches the benchmark only, which then stops every
    # server in order, and whatever a server forks stays in its process group for the final sweep.
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def failure_line(log: Path) -> str:
    """The line of a log that best says what went wrong: pip's last ERROR, else the last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["(empty log)"])[-1][:300]


def _proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields from the state on (the name may hold spaces)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
    return stats


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and its descendants, reaped children included."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    ticks, pending = 0, [root]
    while pending:
        pid = pending.pop()
        if pid in stats:
            # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the name.
            ticks += sum(int(value) for value in stats[pid][11:15])
            pending.extend(children.get(pid, []))
    return ticks / CLOCK_TICKS


def worker_pids(root: int) -> list[int]:
    """The uvicorn worker processes under `python -m app`; the process itself when it serves alone."""
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    workers = [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return workers or [root]


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory figure from /proc/<pid>/status: VmRSS now, or VmHWM, its peak."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop(server: Server) -> None:
    """SIGTERM to the server's whole process group, up to 20 s to exit gracefully, then SIGKILL."""
    stop_group(server.process)
    if server in RUNNING:
        RUNNING.remove(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group `launch` started, up to 20 s to exit gracefully, then SIGKILL."""
    # The group, not just the process: `torchserve --foreground` exits on SIGTERM without passing it on
    # to its JVM, and LitServe's workers are processes of their own. The group's id is the server's
    # pid, which Linux does not hand out again while any member of the group lives.
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 20
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(group):
        os.killpg(group, signal.SIGKILL)
    process.wait()


def measured(measure: Callable[[], None]) -> int:
    """Run a benchmark's measurements; every server it started is stopped at the end, also on
    Ctrl+C or SIGTERM. The exit status: 1 when a server failed, 130 when interrupted."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM as Ctrl+C: unwinds through the blocks that stop servers

    signal.signal(signal.SIGTERM, interrupt)
    try:
        measure()
    except ServerUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the servers are stopped", file=sys.stderr)
        return 130
    finally:
        # Each server stops as its `serving` block ends; this sweep finishes one whose stop a
        # second Ctrl+C cut short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in list(RUNNING):
            stop(server)
    return 0


@contextlib.contextmanager
def serving(start: Callable[[], Server]) -> Iterator[Server]:
    server = start()
    RUNNING.append(server)
    try:
        server.ready_seconds = wait_answers(server)
        yield server
    finally:
        stop(server)


def post(server: Server) -> Any:
    """The server's JSON answer to one request; OSError until it listens and answers 200."""
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"Content-Type": server.content_type, **dict([server.header] if server.header else [])}
    try:
        connection.request("POST", url.path, server.body.read_bytes(), headers)
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        length = response.getheader("Inference-Header-Content-Length")
        payload = response.read()
        return json.loads(payload[: int(length)] if length else payload)
    finally:
        connection.close()


def wait_answers(server: Server) -> float:
    """Seconds until the server answers its request right: the one readiness check every server shares."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise server.failure(f"exited with {code} during start ({failure_line(server.log)}; log: {server.log})")
        try:
            reply = post(server)
        except (OSError, ValueError):  # not listening yet, or 404/503 while the model loads
            time.sleep(0.01)
            continue
        if server.answer is not None:
            try:
                predicted = server.answer(reply)
            except (KeyError, IndexError, TypeError) as error:
                raise server.failure(f"unexpected answer {str(reply)[:200]}") from error
            if predicted != EXPECTED_CLASS:
                raise server.failure(f"answers class {predicted} for {DIGIT.name}, not {EXPECTED_CLASS}")
        return time.monotonic() - started
    raise server.failure(f"no right answer after {READY_TIMEOUT_S:.0f} s (log: {server.log})")


def wrk(server: Server, seconds: int, connections: int = CONNECTIONS) -> dict[str, Any]:
    """One wrk run against `server`, with the CPU its process tree used meanwhile."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), server.url]
    command += ["--", server.content_type, str(server.body), *(server.header or ())]
    load = float(Path("/proc/loadavg").read_text().split()[0])
    cpu_before, started = tree_cpu_seconds(server.process.pid), time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    cores = (tree_cpu_seconds(server.process.pid) - cpu_before) / wall
    match = re.search(r"^WRK_JSON (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no statistics:\n{output}")
    stats = json.loads(match.group(1))
    failures = sum(stats.pop(key) for key in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts"))
    if failures:
        raise server.failure(f"{failures} of {stats['requests']} requests failed under load")
    return {**stats, "cores": round(cores, 3), "load1_before": load}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = statistics.mean(run["rps"] for run in runs)
    cores = statistics.mean(run["cores"] for run in runs)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(statistics.median(run["p50_ms"] for run in runs), 3),
        "p99_ms": round(statistics.median(run["p99_ms"] for run in runs), 3),
        "cores": round(cores, 3),
        "rps_per_core": round(rps / cores, 1),
        "rounds_rps": [run["rps"] for run in runs],
    }


def alternate(first: Server, second: Server, rounds: int, seconds: int, warm_up: int = 2) -> dict[str, Any]:
    """A B A B ... with both servers up, so drift on a shared machine weighs on both; A against B."""
    wrk(first, warm_up)
    wrk(second, warm_up)
    first_runs, second_runs = [], []
    for _ in range(rounds):
        first_runs.append(wrk(first, seconds))
        report(first.name, first_runs[-1])
        second_runs.append(wrk(second, seconds))
        report(second.name, second_runs[-1])
    return pair_result(first_runs, second_runs)


def pair_result(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    result = {"mnist_serve": summarise(ours), "peer": summarise(theirs)}
    result["ratio"] = round(result["mnist_serve"]["rps"] / result["peer"]["rps"], 3)
    result["ratio_per_core"] = round(result["mnist_serve"]["rps_per_core"] / result["peer"]["rps_per_core"], 3)
    result["rounds"] = [{"mnist_serve": a, "peer": b} for a, b in zip(ours, theirs, strict=True)]
    return result


def report(label: str, run: dict[str, Any]) -> None:
    print(
        f"  {label:<34} {run['rps']:8.1f} req/s  p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  "
        f"cores {run['cores']:.2f}",
        flush=True,
    )
