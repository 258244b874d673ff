"""The Open Inference Protocol over gRPC against REST, on one service, with one load generator (issue #24).

One `python -m app` worker serves both doors. h2load (nghttp2) loads each in turn with the same
connections and duration, HTTP/1.1 for REST and h2c for gRPC, so the client's own cost is alike:

- batches: 64 FP32 rows, V2 REST with binary tensor data against gRPC ModelInfer with
  raw_input_contents (images/s);
- single digits: samples/7.png to `/predict` against one UINT8 [1, 28, 28] image to ModelInfer
  (requests/s and latency percentiles from h2load's per-request log);
- single digits beside large requests: the same single-digit loads while a second h2load sends
  V2 REST requests of 2,000 FP32 rows (6.3 MB) one after another on one more connection, to see
  whether large requests starve small ones (their rows/s are reported too).

The first two comparisons also load a floor (bench/bare_grpc.py): grpc.aio on the same event loop
answering ModelInfer with the model call alone, none of the door's work, to show what any door
built on grpc.aio could reach here.

Rounds alternate the doors; the tables give medians. Each body is checked first with a real
answer (gRPC's with this project's own messages), since h2load counts HTTP statuses only and a
gRPC error is an HTTP 200.

Run: make bench-grpc, or .venv/bin/python bench/grpc_bench.py [--seconds S] [--rounds R] [--connections C]
(needs h2load: apt-get install nghttp2-client).
"""

import argparse
import contextlib
import json
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from harness import (  # noqa: E402
    DIGIT,
    WORK,
    digit_upload,
    free_port,
    launch,
    serving,
    start_service,
    stop_group,
    tree_cpu_seconds,
    v2_binary_request,
)

from app.protocols.grpc import messages  # noqa: E402

ROWS = 64
LARGE_ROWS = 2000
BARE_READY_TIMEOUT_S = 60


@dataclass(frozen=True)
class Load:
    """One request h2load repeats: where, its body, its headers, the rows it carries, and the
    process that answers it (whose CPU is counted)."""

    name: str
    url: str
    body: Path
    headers: tuple[str, ...]
    rows: int
    h1: bool
    server_pid: int


def _grpc_frame(message: object) -> bytes:
    """A gRPC message on the wire: not compressed, its length, its bytes."""
    payload = message.SerializeToString()
    return struct.pack(">?I", False, len(payload)) + payload


def _infer_request(tensor: np.ndarray, name: str, datatype: str) -> object:
    request = messages.ModelInferRequest(model_name="mnist", raw_input_contents=[tensor.tobytes()])
    request.inputs.add(name=name, datatype=datatype, shape=list(tensor.shape))
    return request


@dataclass(frozen=True)
class Door:
    """Where a server listens, and its process."""

    address: str
    pid: int


def loads(rest: Door, grpc_door: Door, bare: Door, folder: Path) -> tuple[dict[str, tuple[Load, ...]], Load]:
    """Each comparison: the REST load, the gRPC load and the bare gRPC floor's, with bodies written
    to `folder`; and the large requests that the single digits are measured beside."""
    folder.mkdir(parents=True, exist_ok=True)
    digit = np.asarray(Image.open(DIGIT), dtype=np.uint8)
    rows = np.repeat((digit.reshape(1, 784) / np.float32(255)).astype(np.float32), ROWS, axis=0)
    batch_request = _infer_request(rows, "input", "FP32")
    single_request = _infer_request(digit[None], "image", "UINT8")
    for name, request in (("grpc-batch", batch_request), ("grpc-single", single_request)):
        for door in (grpc_door, bare):
            _check_grpc(door.address, request)
        (folder / f"{name}.body").write_bytes(_grpc_frame(request))
    grpc_headers = ("content-type: application/grpc", "te: trailers")

    def infer(door: Door, name: str, body: str, row_count: int) -> Load:
        url = f"http://{door.address}/{messages.SERVICE}/ModelInfer"
        return Load(name, url, folder / body, grpc_headers, row_count, h1=False, server_pid=door.pid)

    v2_url = f"http://{rest.address}/v2/models/mnist/infer"
    large = _v2_binary_load(v2_url, folder / "rest-large.body", np.repeat(rows[:1], LARGE_ROWS, axis=0), rest.pid)
    return {
        f"batches of {ROWS} FP32 rows": (
            _v2_binary_load(v2_url, folder / "rest-batch.body", rows, rest.pid),
            infer(grpc_door, "gRPC, raw contents", "grpc-batch.body", ROWS),
            infer(bare, BARE, "grpc-batch.body", ROWS),
        ),
        "single digits": (
            Load("REST /predict, PNG", f"http://{rest.address}/predict", digit_upload(),
                 ("content-type: multipart/form-data; boundary=mnist-serve-bench-boundary",), 1, h1=True,
                 server_pid=rest.pid),
            infer(grpc_door, "gRPC, UINT8 image", "grpc-single.body", 1),
            infer(bare, BARE, "grpc-single.body", 1),
        ),
    }, large  # fmt: skip


BARE = "bare grpc.aio, the model call only"


def _v2_binary_load(url: str, body: Path, rows: np.ndarray, server_pid: int) -> Load:
    """V2 REST infer with `rows` (FP32 [N, 784]) as binary tensor data, its body written to `body`."""
    data, header_length = v2_binary_request(rows, [{"name": "label"}])
    body.write_bytes(data)
    headers = ("content-type: application/octet-stream", f"inference-header-content-length: {header_length}")
    return Load("V2 REST, binary", url, body, headers, len(rows), h1=True, server_pid=server_pid)


@contextlib.contextmanager
def bare_grpc(port: int) -> Iterator[Door]:
    """bench/bare_grpc.py on 127.0.0.1:`port`, once it answers."""
    log = WORK / "bare-grpc.log"
    process = launch([sys.executable, "-m", "bench.bare_grpc"], log, {"GRPC_PORT": str(port)})
    door = Door(f"127.0.0.1:{port}", process.pid)
    try:
        _wait_listening(door.address, process, log)
        yield door
    finally:
        stop_group(process)


def _wait_listening(address: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + BARE_READY_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(grpc.FutureTimeoutError):
                ready.result(timeout=1)
                return
    raise SystemExit(f"the bare gRPC server did not start:\n{log.read_text()[-2000:]}")


def _check_grpc(address: str, request: object) -> None:
    request_type, response_type = messages.METHODS["ModelInfer"]
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(
            f"/{messages.SERVICE}/ModelInfer",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        response = infer(request, timeout=30)
    labels = np.frombuffer(response.raw_output_contents[1], dtype="<i8")
    if not (labels == 7).all():
        raise SystemExit(f"gRPC answered {labels[:5]} for samples/7.png")


def h2load_command(load: Load, seconds: int, connections: int, log: Path) -> list[str]:
    log.unlink(missing_ok=True)  # h2load appends to its log
    command = ["h2load", "-D", str(seconds), "-c", str(connections), "-t", "1", "-m", "1"]
    command += ["-d", str(load.body), f"--log-file={log}"]
    for header in load.headers:
        command += ["-H", header]
    if load.h1:
        command.append("--h1")
    return [*command, load.url]


def h2load_results(load: Load, seconds: int, log: Path, output: str) -> dict[str, float]:
    """Requests/s and latency percentiles from h2load's per-request log; every status must be 200."""
    lines = [line.split("\t") for line in log.read_text().splitlines() if line]
    statuses = {line[1] for line in lines}
    if statuses != {"200"}:
        raise SystemExit(f"{load.name}: statuses {statuses}\n{output[-2000:]}")
    durations_ms = np.asarray([int(line[2]) for line in lines]) / 1000
    return {
        "requests_per_second": len(lines) / seconds,
        "p50_ms": float(np.percentile(durations_ms, 50)),
        "p99_ms": float(np.percentile(durations_ms, 99)),
    }


def h2load(load: Load, seconds: int, connections: int, log: Path) -> dict[str, float]:
    command = h2load_command(load, seconds, connections, log)
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return h2load_results(load, seconds, log, completed.stdout)


def h2load_beside(load: Load, large: Load, seconds: int, connections: int) -> dict[str, float]:
    """`load` measured while `large` requests run one after another on one more connection, from
    before it starts until after it ends; with the large requests' rows per second."""
    large_log = WORK / "h2load-large.log"
    background = subprocess.Popen(
        h2load_command(large, seconds + 2, 1, large_log), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(1)
        run = h2load(load, seconds, connections, WORK / "h2load.log")
    finally:
        output, _ = background.communicate()
    if background.returncode != 0:
        raise SystemExit(f"{large.name}: h2load exited with {background.returncode}\n{output[-2000:]}")
    large_run = h2load_results(large, seconds + 2, large_log, output)
    run["large_rows_per_second"] = large_run["requests_per_second"] * large.rows
    return run


def measure(arguments: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    grpc_port, bare_port = free_port(), free_port()
    log = WORK / "grpc-bench.log"
    start = lambda: start_service("grpc", log, GRPC_PORT=str(grpc_port), WORKERS="1", LOG_LEVEL="warning")  # noqa: E731
    results: dict[str, dict[str, dict[str, float]]] = {}
    with serving(start) as server, bare_grpc(bare_port) as bare:
        pid = server.process.pid
        rest = Door(server.url.removeprefix("http://").removesuffix("/predict"), pid)
        comparisons, large = loads(rest, Door(f"127.0.0.1:{grpc_port}", pid), bare, WORK / "grpc-bodies")
        plans = [(comparison, doors, None) for comparison, doors in comparisons.items()]
        # Beside the large requests, only the service's own doors: the floor does not serve them.
        plans.append((f"single digits beside {LARGE_ROWS:,}-row requests", comparisons["single digits"][:2], large))
        for comparison, doors, beside in plans:
            runs: dict[str, list[dict[str, float]]] = {load.name: [] for load in doors}
            for _ in range(arguments.rounds):
                for load in doors:
                    runs[load.name].append(_measured_run(load, beside, arguments))
            results[comparison] = {
                name: {key: statistics.median(run[key] for run in done) for key in done[0]}
                for name, done in runs.items()
            }
    return results


def _measured_run(load: Load, beside: Load | None, arguments: argparse.Namespace) -> dict[str, float]:
    """One h2load run of `load` (beside a stream of `beside` requests, if given), with the images it
    carried per second and per CPU-second of its server (the large requests' CPU included)."""
    cpu_before = tree_cpu_seconds(load.server_pid)
    if beside is None:
        run = h2load(load, arguments.seconds, arguments.connections, WORK / "h2load.log")
    else:
        run = h2load_beside(load, beside, arguments.seconds, arguments.connections)
    cpu = tree_cpu_seconds(load.server_pid) - cpu_before
    run["images_per_server_cpu_second"] = run["requests_per_second"] * arguments.seconds * load.rows / cpu
    run["images_per_second"] = run["requests_per_second"] * load.rows
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="each run's duration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed (apt-get install nghttp2-client, or make bench-grpc as root)")
    results = measure(arguments)
    print(
        f"| load | door | images/s | images per server CPU-second | p50 | p99 |  ({arguments.connections} connections)"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for comparison, doors in results.items():
        for door, run in doors.items():
            beside = f" (large: {run['large_rows_per_second']:,.0f} rows/s)" if "large_rows_per_second" in run else ""
            print(
                f"| {comparison} | {door} | {run['images_per_second']:,.0f}{beside} | "
                f"{run['images_per_server_cpu_second']:,.0f} | {run['p50_ms']:.2f} ms | {run['p99_ms']:.2f} ms |"
            )
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
