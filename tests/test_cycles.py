"""No request leaves reference cycles behind, answered or refused.

Objects in a cycle wait for the garbage collector's full collection, which a process that imported
torch runs rarely (it has millions of objects to scan): in the soak, a cycle per early 413 grew
each worker's memory by megabytes a minute between those collections. Here every kind of request
goes through real uvicorn, with automatic collection paused, and a collection afterwards must find
less than one unreachable object per request.
"""

import gc
import http.client
import json
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import uvicorn

from tests.conftest import REPO_ROOT, running_uvicorn
from tests.helpers import multipart_body

REQUESTS_PER_KIND = 20
PNG = (REPO_ROOT / "samples" / "7.png").read_bytes()


def _multipart(field: str, name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    body, content_type = multipart_body([(field, name, data)])
    return body, {"Content-Type": content_type}


def _v2_json(rows: int) -> tuple[bytes, dict[str, str]]:
    request = {"inputs": [{"name": "input", "shape": [rows, 784], "datatype": "FP32", "data": [0.0] * 784 * rows}]}
    return json.dumps(request).encode(), {"Content-Type": "application/json"}


def _v2_binary() -> tuple[bytes, dict[str, str]]:
    tensor = {"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", "parameters": {"binary_data_size": 784}}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + bytes(784), {"Inference-Header-Content-Length": str(len(header))}


KINDS = {
    "a digit": ("/predict", *_multipart("file", "7.png", PNG)),
    "a batch": ("/predict/batch", *_multipart("files", "7.png", PNG)),
    "V2 JSON": ("/v2/models/mnist/infer", *_v2_json(1)),
    "V2 binary": ("/v2/models/mnist/infer", *_v2_binary()),
    "not an image": ("/predict", *_multipart("file", "note.txt", b"not an image at all\n")),
    "a truncated PNG": ("/predict", *_multipart("file", "7.png", PNG[: len(PNG) // 2])),
    "an empty file": ("/predict", *_multipart("file", "empty.png", b"")),
    "the wrong field": ("/predict", *_multipart("image", "7.png", PNG)),
    "a file over the limit": ("/predict", *_multipart("file", "big.png", PNG + bytes(20 * 1024))),
    "a body over the limit": ("/predict", *_multipart("file", "big.png", PNG + bytes(64 * 1024))),
    "an unknown model": ("/predict?model=nope", *_multipart("file", "7.png", PNG)),
    "not multipart": ("/predict", PNG, {"Content-Type": "image/png"}),
    "V2 bad JSON": ("/v2/models/mnist/infer", b"{", {"Content-Type": "application/json"}),
    "V2 over the limit": ("/v2/models/mnist/infer", *_v2_json(4)),
    "an unknown route": ("/nowhere", b"x", {}),
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[tuple[str, int], uvicorn.Server]]:
    with running_uvicorn(max_upload_bytes=16 * 1024, max_batch_bytes=8 * 1024) as (url, server):
        address = urlsplit(url)
        yield (address.hostname, address.port), server


def _send(address: tuple[str, int], path: str, body: bytes, headers: dict[str, str], times: int) -> set[int]:
    """Each request on a connection of its own, closed after the answer: what a connection leaves counts too."""
    statuses = set()
    for _ in range(times):
        connection = http.client.HTTPConnection(*address, timeout=30)
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        statuses.add(response.status)
        connection.close()
    return statuses


def _until_every_connection_is_closed(server: uvicorn.Server) -> None:
    deadline = time.monotonic() + 30
    while server.server_state.connections:
        assert time.monotonic() < deadline, "the server kept connections open"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_requests_leave_no_reference_cycles(server, kind):
    address, uvicorn_server = server
    path, body, headers = KINDS[kind]
    _send(address, path, body, headers, 3)  # first-time caches and imports
    _until_every_connection_is_closed(uvicorn_server)
    gc.collect()
    gc.disable()
    try:
        statuses = _send(address, path, body, headers, REQUESTS_PER_KIND)
        _until_every_connection_is_closed(uvicorn_server)
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert len(statuses) == 1, statuses
    assert unreachable < REQUESTS_PER_KIND, f"{kind} ({statuses}): {unreachable} unreachable objects"
