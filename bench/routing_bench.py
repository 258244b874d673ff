"""Application time per request: the front's own dispatch of the routes that read a body, against
FastAPI's routing of the same declared routes (issue #21).

Both serve the same application, built by create_app, in this process, with no server and no
network: a request is one call of the ASGI application with its body in one message, so the figure
is the application's own CPU time per request (the route's whole work: routing, parameters, the key
check, multipart or tensor reading, decoding, the model, the JSON answer). The "FastAPI" variant is
the same front with its table of direct routes emptied, so FastAPI's router, middleware stack and
dependency solving serve every route; it skips the front's body guard, which can only flatter it.
Rounds alternate the variants, and each figure is the median round.

Run: .venv/bin/python bench/routing_bench.py [--requests N] [--rounds R]
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.http.front import ServiceFront  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402

KEY = "bench-key"
BOUNDARY = b"----bench7MA4YWxkTrZu0gW"


def multipart(field: str, data: bytes) -> bytes:
    return (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="' + field.encode() + b'"; filename="digit.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--" + BOUNDARY + b"--\r\n"
    )


def v2_binary(image: np.ndarray) -> tuple[bytes, int]:
    header = (
        b'{"inputs":[{"name":"image","shape":[1,28,28],"datatype":"UINT8",'
        b'"parameters":{"binary_data_size":784}}],"outputs":[{"name":"probabilities"}]}'
    )
    return header + image.tobytes(), len(header)


def requests() -> dict[str, tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    png = (REPO / "samples" / "7.png").read_bytes()
    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:22, 12:16] = 255
    tensors, header_length = v2_binary(image)
    auth = [(b"x-api-key", KEY.encode())]
    return {
        "/predict": (
            "POST",
            "/predict",
            [(b"content-type", b"multipart/form-data; boundary=" + BOUNDARY), *auth],
            multipart("file", png),
        ),
        "/v2/models/mnist/infer (binary)": (
            "POST",
            "/v2/models/mnist/infer",
            [(b"inference-header-content-length", str(header_length).encode()), *auth],
            tensors,
        ),
    }


async def call(app: Callable, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def started(front: ServiceFront) -> asyncio.Queue:
    """Run the application's lifespan startup (the models load there); the queue ends it."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(
        front({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise SystemExit(f"startup failed: {message}")
    return inbox


async def microseconds(app: Callable, request: tuple, count: int) -> float:
    started_at = time.perf_counter()
    for _ in range(count):
        status = await call(app, *request)
        if status != 200:
            raise SystemExit(f"{request[1]} answered {status}")
    return (time.perf_counter() - started_at) / count * 1e6


async def measure(api_key: str | None, count: int, rounds: int) -> dict[str, dict[str, float]]:
    settings = Settings(log_level="warning", api_key=api_key, grpc_port=0)
    table_front = create_app(settings)
    lifespan = await started(table_front)
    # The same FastAPI application behind a front that dispatches nothing itself.
    fastapi_front = ServiceFront(table_front.app, settings)
    fastapi_front.direct_routes = []
    variants = {"route table": table_front, "FastAPI": fastapi_front}
    results = {}
    for name, request in requests().items():
        for front in variants.values():
            await microseconds(front, request, count // 10)  # warm-up
        timings: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(rounds):
            for variant, front in variants.items():
                timings[variant].append(await microseconds(front, request, count))
        results[name] = {variant: statistics.median(values) for variant, values in timings.items()}
    await lifespan.put({"type": "lifespan.shutdown"})
    return results


def command_line(description: str) -> argparse.Namespace:
    """--requests and --rounds, as this benchmark and bench/tracing_bench.py take them."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def main() -> None:
    arguments = command_line(__doc__)
    print("| route | API_KEY | route table, us | FastAPI, us | FastAPI costs |")
    print("| --- | --- | --- | --- | --- |")
    for api_key in (None, KEY):
        results = asyncio.run(measure(api_key, arguments.requests, arguments.rounds))
        for route, timings in results.items():
            table, fastapi = timings["route table"], timings["FastAPI"]
            print(
                f"| {route} | {'set' if api_key else 'unset'} | {table:.0f} | {fastapi:.0f} | "
                f"+{fastapi - table:.0f} us ({fastapi / table:.2f}x) |"
            )


if __name__ == "__main__":
    main()
