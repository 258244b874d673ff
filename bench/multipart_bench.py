"""Microseconds per body for the multipart readers (issue #17).

Compares, on the same bodies cut into the 64 KiB chunks uvicorn delivers:
- before: the whole-body `parse_multipart` of commit c62ef9a, the last without the streaming
  reader (loaded from git), given the joined body as `request.body()` gave it;
- MultipartReader: fed chunk by chunk;
- python-multipart: its streaming MultipartParser, with the callbacks Starlette uses to collect
  headers and data, and parse_options_header on each Content-Disposition.

Run: .venv/bin/python bench/multipart_bench.py [--repeat N]
"""

import argparse
import os
import subprocess
import sys
import time
import timeit
import types
from collections.abc import Callable
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.protocols.native.multipart import MultipartReader  # noqa: E402

CHUNK_BYTES = 64 * 1024
BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"  # a browser's, as long as real ones
BEFORE_REVISION = "c62ef9a"  # the last commit with only the whole-body reader


def before_parse_multipart() -> Callable[[bytes, str], list]:
    """The whole-body reader from before this change, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_REVISION}:app/protocols/native/multipart.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("multipart_before")
    exec(compile(source, "multipart_before.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module.parse_multipart


def body_of(files: list[tuple[str, bytes]]) -> bytes:
    """A browser-shaped body: each file in field `files` (or `file` for one) with a Content-Type."""
    field = "file" if len(files) == 1 else "files"
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def chunks_of(body: bytes) -> list[bytes]:
    return [body[start : start + CHUNK_BYTES] for start in range(0, len(body), CHUNK_BYTES)]


def read_with_reader(chunks: list[bytes], content_type: str, field: str, max_files: int) -> list:
    reader = MultipartReader(content_type, field, max_files, 2 * 1024 * 1024)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


def read_with_python_multipart(chunks: list[bytes], content_type: str) -> list:
    """Collect (field, filename, data) as Starlette's MultiPartParser does, minus the temp files."""
    _, options = parse_options_header(content_type)
    parts: list[tuple[bytes, bytes | None, bytes]] = []
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    headers: dict[bytes, bytes] = {}
    data: list[bytes] = []
    current: dict[str, object] = {}

    def on_header_end() -> None:
        headers[b"".join(header_field).lower()] = b"".join(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        current["name"], current["filename"] = disposition.get(b"name"), disposition.get(b"filename")

    def on_part_end() -> None:
        parts.append((current["name"], current["filename"], b"".join(data)))
        data.clear()
        headers.clear()

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_header_field": lambda buffer, start, end: header_field.append(buffer[start:end]),
            "on_header_value": lambda buffer, start, end: header_value.append(buffer[start:end]),
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": lambda buffer, start, end: data.append(buffer[start:end]),
            "on_part_end": on_part_end,
        },
    )
    for chunk in chunks:
        parser.write(chunk)
    parser.finalize()
    return parts


def microseconds(function: Callable[[], object], repeat: int) -> float:
    """The best of `repeat` rounds of about 20 ms each, in CPU time: on a shared machine, time
    spent waiting for a core would otherwise count."""
    timer = timeit.Timer(function, timer=time.process_time)
    number, _ = timer.autorange()
    number = max(1, number // 10)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    repeat = parser.parse_args().repeat
    before = before_parse_multipart()
    random_bytes = os.urandom(1_100_000)
    digits = [(REPO / "samples" / f"{digit}.png").read_bytes() for digit in range(10)]
    cases = {
        "1 file, 600 B body": [("7.png", random_bytes[:430])],
        "1 file, 1 kB": [("7.png", random_bytes[:1000])],
        "1 file, 10 kB": [("7.png", random_bytes[:10_000])],
        "1 file, 1 MB": [("7.png", random_bytes[:1_000_000])],
        "64 files of ~300 B": [(f"{index}.png", digits[index % 10]) for index in range(64)],
    }
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    print(f"{'body':<22}{'bytes':>10}{'before':>12}{'reader':>12}{'python-multipart':>18}   (us per body)")
    for label, files in cases.items():
        body = body_of(files)
        chunks = chunks_of(body)
        field = "file" if len(files) == 1 else "files"
        expected = [data for _, data in files]
        assert [part.data for part in read_with_reader(chunks, content_type, field, 64)] == expected
        assert [data for _, _, data in read_with_python_multipart(chunks, content_type)] == expected
        assert [part.data for part in before(b"".join(chunks), content_type)] == expected
        timings = (
            microseconds(lambda chunks=chunks: before(b"".join(chunks), content_type), repeat),
            microseconds(lambda chunks=chunks, field=field: read_with_reader(chunks, content_type, field, 64), repeat),
            microseconds(lambda chunks=chunks: read_with_python_multipart(chunks, content_type), repeat),
        )
        print(f"{label:<22}{len(body):>10}{timings[0]:>12.1f}{timings[1]:>12.1f}{timings[2]:>18.1f}")


if __name__ == "__main__":
    main()
