"""What tracing costs a request: off, on for every request, and on for one in 100 (issue #21).

The in-process driver of bench/routing_bench.py sends /predict and a binary V2 infer to one
application; each round runs tracing off, on for every request, and on with one trace in 100
sampled (OTEL_TRACES_SAMPLER=parentbased_traceidratio, _ARG=0.01), with tracing.start/stop
between them (the front asks `tracing.enabled()` on each request). On, spans go in batches from
the SDK's thread to an OTLP/HTTP receiver in another process that answers 200 and discards them,
so the figure holds the spans' creation, their export's serialization and the HTTP posts. Off,
what a request still runs of the tracing code is timed on its own: the calls each request makes,
a million times.

Run: .venv/bin/python bench/tracing_bench.py [--requests N] [--rounds R]
"""

import asyncio
import socket
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from routing_bench import command_line, microseconds, requests, started  # noqa: E402

from app.main import create_app  # noqa: E402
from app.observability import tracing  # noqa: E402
from app.settings import Settings  # noqa: E402

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Discard(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *arguments):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Discard).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the OTLP receiver did not listen on port {port}") from None
            time.sleep(0.05)


def off_path_microseconds() -> float:
    """The tracing calls one /predict makes when tracing is off, per request."""

    def one_request() -> None:
        tracing.enabled()
        for name in ("read body", "decode", "preprocess"):
            with tracing.span(name):
                pass
        links = [tracing.current_link()]
        with tracing.linked_span("model", links, rows=1, requests=1):
            pass
        tracing.annotate({"model": "mnist"})

    count = 1_000_000
    return min(timeit.repeat(one_request, number=count, repeat=3)) / count * 1e6


async def measure(count: int, rounds: int, endpoint: str) -> dict[str, dict[str, float]]:
    front = create_app(Settings(log_level="warning", grpc_port=0))
    lifespan = await started(front)
    variants = {
        "off": None,
        "on": Settings(otel_exporter_otlp_endpoint=endpoint),
        "1 in 100": Settings(
            otel_exporter_otlp_endpoint=endpoint,
            otel_traces_sampler="parentbased_traceidratio",
            otel_traces_sampler_arg=0.01,
        ),
    }
    results = {}
    for name, request in requests().items():
        await microseconds(front, request, count // 10)
        timings: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(rounds):
            for variant, settings in variants.items():
                if settings is not None:
                    tracing.start(settings)
                try:
                    timings[variant].append(await microseconds(front, request, count))
                finally:
                    tracing.stop()  # flushes what is queued, outside the timing
        results[name] = {variant: statistics.median(values) for variant, values in timings.items()}
    await lifespan.put({"type": "lifespan.shutdown"})
    return results


def main() -> None:
    arguments = command_line(__doc__)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        wait_for_port(port)
        results = asyncio.run(measure(arguments.requests, arguments.rounds, f"http://127.0.0.1:{port}"))
    finally:
        receiver.terminate()
        receiver.wait()
    print("| route | tracing off | on, every request | on, 1 in 100 sampled |")
    print("| --- | --- | --- | --- |")
    for route, timings in results.items():
        off = timings["off"]
        cells = [f"{timings[variant]:.0f} us ({timings[variant] / off:.2f}x)" for variant in ("on", "1 in 100")]
        print(f"| {route} | {off:.0f} us | {' | '.join(cells)} |")
    print(f"\nOff, the tracing calls of one /predict: {off_path_microseconds():.2f} us")


if __name__ == "__main__":
    main()
