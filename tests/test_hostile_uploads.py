"""Bad and odd uploads against the real server: the intended answer, never a 5xx, and the server
keeps serving."""

import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import running_server
from tests.corpus import CORPUS, CorpusFile
from tests.helpers import REPO_ROOT, multipart_body

GOOD_SAMPLE = REPO_ROOT / "samples" / "7.png"


@pytest.fixture(scope="module")
def http(live_url):
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def good_digit() -> bytes:
    with open(GOOD_SAMPLE, "rb") as stream:
        return stream.read()


def _assert_still_serving(http, good_digit: bytes) -> None:
    response = http.post("/predict", files={"file": ("7.png", good_digit)})
    assert response.status_code == 200
    assert response.json()["class"] == 7


def test_the_corpus_has_at_least_30_kinds():
    assert len({case.kind for case in CORPUS}) == len(CORPUS) >= 30


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.kind)
def test_single_upload(http, good_digit, case: CorpusFile):
    response = http.post("/predict", files={"file": ("digit.png", case.build(), "image/png")})
    assert response.status_code == case.status, response.text
    body = response.json()
    if case.status == 200:
        assert case.expect is None or body["class"] == case.expect
    else:
        assert case.expect in body["detail"]
    _assert_still_serving(http, good_digit)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.kind)
def test_in_a_batch(http, good_digit, case: CorpusFile):
    files = [
        ("files", ("first.png", good_digit)),
        ("files", ("odd.bin", case.build())),
        ("files", ("last.png", good_digit)),
    ]
    response = http.post("/predict/batch", files=files)
    assert response.status_code == case.status, response.text
    body = response.json()
    if case.status == 200:
        classes = [prediction["class"] for prediction in body["predictions"]]
        assert classes[0] == classes[2] == 7
        assert case.expect is None or classes[1] == case.expect
    else:
        assert body["detail"].startswith("file #1 ('odd.bin'): ")
        assert case.expect in body["detail"]
    _assert_still_serving(http, good_digit)


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_request_level_mistakes(http, good_digit, endpoint):
    field = "file" if endpoint == "/predict" else "files"
    wrong_field = http.post(endpoint, files={"image": ("7.png", good_digit)})
    assert wrong_field.status_code == 422
    hint = wrong_field.json()["detail"]
    assert hint.startswith(f"no file in field '{field}' (the upload has: 'image'); send it as: curl -F {field}=@")
    assert hint.endswith(endpoint)
    as_json = http.post(endpoint, json={"file": "aGVsbG8="})
    assert as_json.status_code == 415
    assert "multipart/form-data" in as_json.json()["detail"]
    as_form = http.post(endpoint, data={field: "not a file"})
    assert as_form.status_code == 415
    lying_type = http.post(endpoint, files={field: ("7.jpg", good_digit, "text/plain")})
    assert lying_type.status_code == 200
    _assert_still_serving(http, good_digit)


def test_two_files_in_predict(http, good_digit):
    response = http.post("/predict", files=[("file", ("a.png", good_digit)), ("file", ("b.png", good_digit))])
    assert response.status_code == 400
    assert response.json()["detail"] == "more than 1 file sent in field 'file': use /predict/batch (field 'files')"


def test_more_than_max_batch_files(http, good_digit):
    response = http.post("/predict/batch", files=[("files", (f"{i}.png", good_digit)) for i in range(9)])
    assert response.status_code == 400
    assert (
        response.json()["detail"]
        == "more than 8 files sent in field 'files': send at most that many per batch (MAX_BATCH)"
    )


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("../../etc/passwd", "'../../etc/passwd'"),
        ("C:\\temp\\x.png", "'x.png'"),
        ("nul\x00byte.png", "'nul\\x00byte.png'"),
        ("a" * 10_000, "'" + "a" * 80 + "...'"),
    ],
    ids=["slashes", "windows-path-reduced-to-its-name", "nul", "10000-characters"],
)
def test_odd_filenames_are_ignored_or_shown_escaped(http, good_digit, filename, shown):
    body, content_type = multipart_body([("file", filename, good_digit)])
    single = http.post("/predict", content=body, headers={"content-type": content_type})
    assert single.status_code == 200
    assert single.json()["class"] == 7
    body, content_type = multipart_body([("files", filename, b"not an image")])
    batch = http.post("/predict/batch", content=body, headers={"content-type": content_type})
    assert batch.status_code == 400
    assert batch.json()["detail"].startswith(f"file #0 ({shown}): not a recognised image")


def _raw_request(url: str, head: bytes, body_parts: list[bytes], pause: float = 0.0) -> bytes:
    """Send a request by hand (chunked, slow or endless) and return what the server answers."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=15) as connection:
        connection.sendall(head)
        try:
            for part in body_parts:
                connection.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the client finished: that is the point
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _chunked_head(path: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_a_chunked_body_that_never_ends_gets_a_408(live_url, http, good_digit, endpoint):
    started = time.monotonic()
    answer = _raw_request(
        live_url,
        _chunked_head(endpoint, "multipart/form-data; boundary=b"),
        [_chunk(b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n')],
    )
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert re.search(rb"the request body stopped arriving: 66 bytes in \d+ s \(BODY_TIMEOUT_SECONDS", answer)
    assert time.monotonic() - started < 10
    _assert_still_serving(http, good_digit)


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_a_chunked_file_over_its_limit_gets_a_413_before_the_body_ends(endpoint):
    # 6 KiB of file inside a body limit of 20 KiB or more: only the file limit can trip, and the
    # body never ends, so the answer proves the server stopped reading at that limit.
    with running_server(max_upload_bytes=4096, max_batch=2) as url:
        head = _chunked_head(endpoint, "multipart/form-data; boundary=b")
        part_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        answer = _raw_request(url, head, [_chunk(part_head + b"\0" * 6144)])
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"is larger than 4.0 KiB: send a smaller file, or raise MAX_UPLOAD_BYTES" in answer


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_a_chunked_body_over_the_limit_gets_a_413_without_content_length(endpoint):
    # 1.6 MB sent as fast as the socket takes it crosses the file limit and the body limit within
    # one read; whichever the server meets first, the answer names that limit and its setting.
    with running_server(max_upload_bytes=4096, max_batch=2) as url:
        head = _chunked_head(endpoint, "multipart/form-data; boundary=b")
        part_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        answer = _raw_request(url, head, [_chunk(part_head)] + [_chunk(b"\0" * 8192) for _ in range(200)])
        assert answer.startswith(b"HTTP/1.1 413 ")
        file_limit = b"is larger than 4.0 KiB: send a smaller file, or raise MAX_UPLOAD_BYTES"
        body_limit = re.compile(
            rb"the request body is larger than allowed; the limit is \d+\.\d KiB: "
            rb"send a smaller file, or raise MAX_(UPLOAD|BATCH)_BYTES"
        )
        assert file_limit in answer or body_limit.search(answer), answer


@pytest.mark.parametrize("endpoint", ["/predict", "/predict/batch"])
def test_a_declared_content_length_over_the_limit_gets_a_413_unread(http, endpoint):
    response = http.post(
        endpoint, content=b"\0" * (70 * 1024 * 1024), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413
    assert "the limit is" in response.json()["detail"]


def test_a_body_that_would_overdraw_the_byte_budget_gets_a_fast_503_with_retry_after(good_digit):
    with running_server(body_buffer_bytes=4096, body_timeout_seconds=5) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port)) as slow:
            slow.sendall(_chunked_head("/predict", "multipart/form-data; boundary=b"))
            slow.sendall(_chunk(b"--b\r\n" + b"x" * 4000))  # holds nearly all the budget while it dawdles
            # Until the server has read those bytes, the budget is free: ask until it is not.
            response = _first_answer_with(503, url, good_digit)
            assert response.headers["retry-after"] == "1"
            assert "BODY_BUFFER_BYTES" in response.json()["detail"]
            # Refused at once, not after waiting out the slow body (BODY_TIMEOUT_SECONDS is 5).
            assert response.elapsed.total_seconds() < 4
        _first_answer_with(200, url, good_digit)  # the slow client left: its bytes are free again


def _first_answer_with(status: int, url: str, good_digit: bytes, within: float = 10) -> httpx.Response:
    """POST the digit to /predict until the answer has `status` (the server catches up under load)."""
    deadline = time.monotonic() + within
    while True:
        response = httpx.post(f"{url}/predict", files={"file": ("7.png", good_digit)}, timeout=10)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.05)


def test_stalled_uploads_that_send_nothing_hold_no_capacity(good_digit):
    """Counting bytes, not uploads: a hundred silent uploads leave a small budget untouched."""
    with running_server(body_buffer_bytes=4096, body_timeout_seconds=5) as url:
        address = urlsplit(url)
        stalled = [socket.create_connection((address.hostname, address.port)) for _ in range(100)]
        try:
            for connection in stalled:
                connection.sendall(_chunked_head("/predict", "multipart/form-data; boundary=b"))
            time.sleep(0.3)
            for _ in range(5):
                response = httpx.post(f"{url}/predict", files={"file": ("7.png", good_digit)}, timeout=10)
                assert response.status_code == 200
        finally:
            for connection in stalled:
                connection.close()


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("multipart/form-data", b"--b\r\n\r\n--b--\r\n", "the Content-Type header names no boundary"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n7",
            "the body does not end with its closing boundary",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=file\r\n--b--\r\n",
            "a part has no blank line after its headers",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nX-Other: 1\r\n\r\ndata\r\n--b--\r\n",
            "a part has no Content-Disposition header",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nno colon here\r\n\r\ndata\r\n--b--\r\n",
            "a part has a header line without a colon",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--bXYZ\r\n",
            "the delimiter --b is followed by b'XYZ\\r\\n', not by a line break or --",
        ),
    ],
    ids=["no-boundary", "unterminated", "no-blank-line", "no-disposition", "bad-header", "wrong-boundary"],
)
def test_malformed_multipart_bodies_are_a_400_naming_the_problem(http, good_digit, content_type, body, problem):
    for endpoint in ("/predict", "/predict/batch"):
        response = http.post(endpoint, content=body, headers={"content-type": content_type})
        assert response.status_code == 400
        assert response.json()["detail"] == f"could not read the multipart upload: {problem}"
    _assert_still_serving(http, good_digit)
