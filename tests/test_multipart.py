"""The streaming multipart reader: agreement with python-multipart on valid bodies, a clear error
for each malformed shape, and bounded time and memory on bodies crafted to be expensive."""

import gc
import itertools
import string
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.errors import ClientError, PayloadTooLargeError
from app.http.error_handlers import http_answer
from app.protocols.native.multipart import (
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADER_LINES,
    MAX_OTHER_PARTS,
    FilePart,
    MalformedMultipartError,
    MultipartReader,
    TooManyFilesError,
)

MIB = 1024 * 1024
CHUNK_BYTES = 64 * 1024  # what uvicorn hands over at most per receive()
# The batch body limit of issue #17: MAX_BATCH x (MAX_UPLOAD_BYTES + 16 KiB of framing).
BATCH_BODY_LIMIT = 64 * (MIB + 16 * 1024)

# RFC 2046 section 5.1.1: the characters of a boundary (a space, but not as the last one).
BOUNDARY_CHARACTERS = string.ascii_letters + string.digits + "'()+_,-./:=? "
TOKEN_CHARACTERS = set(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def read(
    body: bytes, content_type: str, field: str = "file", splits: Sequence[int] = (), max_file_bytes: int = MIB
) -> MultipartReader:
    """A reader fed the body cut at these offsets; finished, so that its errors show."""
    reader = MultipartReader(content_type, field, 64, max_file_bytes)
    edges = [0, *sorted(splits), len(body)]
    for start, end in itertools.pairwise(edges):
        reader.feed(body[start:end])
    reader.finish()
    return reader


def files_of(body: bytes, content_type: str, field: str = "file", splits: Sequence[int] = ()) -> list[FilePart]:
    return read(body, content_type, field, splits).finish()


def python_multipart_parts(body: bytes, boundary: bytes) -> list[tuple[str | None, str | None, bytes]]:
    """(field, filename, bytes) of every part as python-multipart reads it, collected as Starlette does."""
    parts: list[tuple[str | None, str | None, bytes]] = []
    headers: dict[bytes, bytes] = {}
    name: list[bytes] = []
    value: list[bytes] = []
    data: list[bytes] = []

    def on_header_end() -> None:
        headers[b"".join(name).lower()] = b"".join(value)
        name.clear()
        value.clear()

    def on_part_end() -> None:
        _, options = parse_options_header(headers[b"content-disposition"])
        field, filename = options.get(b"name"), options.get(b"filename")
        parts.append(
            (
                None if field is None else field.decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
                b"".join(data),
            )
        )
        headers.clear()
        data.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda buffer, start, end: name.append(buffer[start:end]),
            "on_header_value": lambda buffer, start, end: value.append(buffer[start:end]),
            "on_header_end": on_header_end,
            "on_part_data": lambda buffer, start, end: data.append(buffer[start:end]),
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    assert parser.state == MultipartState.END, "python-multipart did not reach the close delimiter"
    return parts


# Generated valid bodies


def without_delimiter(data: bytes, delimiter: bytes) -> bytes:
    """`data` changed as little as needed so that `delimiter` first occurs in data + delimiter at its end."""
    while (found := (data + delimiter).find(delimiter)) < len(data):
        data = data[: found + 1] + b"x" + data[found + 1 :]  # splits its CRLF
    return data


def quoted(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@st.composite
def boundaries(draw: st.DrawFn) -> str:
    short = st.text(alphabet="ab-", min_size=1, max_size=3)  # its characters fill the data too
    boundary = draw(short | st.text(alphabet=BOUNDARY_CHARACTERS, min_size=1, max_size=70))
    return boundary[:-1] + "x" if boundary.endswith(" ") else boundary


@st.composite
def content_types(draw: st.DrawFn, boundary: str) -> str:
    needs_quotes = not set(boundary) <= TOKEN_CHARACTERS
    value = quoted(boundary).decode() if needs_quotes or draw(st.booleans()) else boundary
    separator = draw(st.sampled_from(["; ", ";", ";  "]))
    extra = draw(st.sampled_from(["", "; charset=utf-8"]))
    return f"multipart/form-data{separator}boundary={value}{extra}"


def tricky_bytes(boundary: bytes) -> st.SearchStrategy[bytes]:
    """Bytes full of CR, LF, dashes and pieces of the boundary, as a delimiter is made of."""
    pieces = [b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--", boundary, boundary[:1], boundary[:-1], b"--" + boundary]
    return st.lists(st.sampled_from(pieces) | st.binary(max_size=6), max_size=12).map(b"".join)


@st.composite
def dispositions(draw: st.DrawFn, field: str, filename: str | None) -> bytes:
    """Content-Disposition values as clients write them, and a few as they may."""
    name_value = field.encode() if set(field) <= TOKEN_CHARACTERS and draw(st.booleans()) else quoted(field)
    parameters = [b"name=" + name_value]
    if filename is not None:
        parameters.append(b"filename=" + quoted(filename))
    if draw(st.booleans()):
        parameters.reverse()
    if draw(st.booleans()):
        parameters.append(b"size=3")
    kind = draw(st.sampled_from([b"form-data", b"Form-Data"]))
    separator = draw(st.sampled_from([b"; ", b";", b" ; "]))
    return separator.join([kind, *parameters]) + draw(st.sampled_from([b"", b" ", b"\t"]))


@st.composite
def parts(draw: st.DrawFn, boundary: bytes) -> bytes:
    """One part: its header lines in any order, a blank line and its data (no delimiter)."""
    # Clients escape CR and LF in names (browsers and httpx as %0D and %0A).
    characters = st.characters(codec="utf-8", exclude_characters="\r\n") | st.sampled_from('\\";= ')
    text = st.text(alphabet=characters, max_size=12)
    field = draw(st.sampled_from(["file", "files", "other"]) | text.filter(bool))
    filename = draw(st.none() | text)
    name = draw(st.sampled_from([b"Content-Disposition", b"content-disposition", b"CONTENT-DISPOSITION"]))
    value_bytes = st.binary(max_size=20).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b""))
    headers = [name + b":" + draw(st.sampled_from([b" ", b"", b"  ", b"\t"])) + draw(dispositions(field, filename))]
    if draw(st.booleans()):
        headers.append(b"Content-Type: " + draw(st.sampled_from([b"image/png", b"application/octet-stream"])))
    header_names = st.text(alphabet=sorted(TOKEN_CHARACTERS), min_size=1, max_size=10).filter(
        lambda name: name.lower() != "content-disposition"
    )
    extras = draw(st.lists(header_names, max_size=2))
    headers += [extra.encode() + b":" + draw(st.sampled_from([b" ", b""])) + draw(value_bytes) for extra in extras]
    headers = draw(st.permutations(headers))
    return b"\r\n".join(headers) + b"\r\n\r\n" + without_delimiter(draw(tricky_bytes(boundary)), b"\r\n--" + boundary)


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[str, bytes, bytes, bytes]:
    """(content type, body, the same body as python-multipart reads it, boundary).

    python-multipart refuses a preamble and padding after the first delimiter, which RFC 2046
    allows; its copy of the body has neither.
    """
    boundary = draw(boundaries())
    encoded = boundary.encode()
    delimiter = b"\r\n--" + encoded
    body_parts = draw(st.lists(parts(encoded), max_size=6))
    padding = st.text(alphabet=" \t", max_size=3).map(str.encode)
    middle = b"".join(delimiter + draw(padding) + b"\r\n" + part for part in body_parts[1:])
    close = delimiter + b"--" + draw(st.sampled_from([b"", b"\r\n", b"  \r\n"]))
    epilogue = draw(st.binary(max_size=20))
    if body_parts:
        opening = [b"--" + encoded + draw(padding) + b"\r\n" + body_parts[0], b"--" + encoded + b"\r\n" + body_parts[0]]
        rest = middle + close + epilogue
    else:
        opening, rest = [b"--" + encoded, b"--" + encoded], b"--" + draw(st.sampled_from([b"", b"\r\n"])) + epilogue
    preamble = draw(st.none() | tricky_bytes(encoded))
    if preamble is not None:
        preamble = without_delimiter(preamble, delimiter) + b"\r\n"
        if preamble.startswith(b"--" + encoded):
            preamble = b"x" + preamble  # else it would be the first delimiter
    return draw(content_types(boundary)), (preamble or b"") + opening[0] + rest, opening[1] + rest, encoded


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_bodies(), st.data())
def test_reads_what_python_multipart_reads_from_valid_bodies(case, data):
    content_type, body, plain_body, boundary = case
    expected = python_multipart_parts(plain_body, boundary)
    # A quoted name parse_options_header cannot read back (a trailing backslash) leaves no name.
    assume(all(field is not None for field, _, _ in expected))
    splits = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    for field in {field for field, _, _ in expected} | {"file"}:
        files = files_of(body, content_type, field, splits)
        assert [(part.field, part.filename, part.data) for part in files] == [
            part for part in expected if part[0] == field
        ]


# What may sit between the quotes of a parameter, raw: the characters that make quoting tricky.
QUOTED_TEXT = st.text(alphabet='\\";= aé', max_size=6)
ALMOST_CLIENT_SHAPED = st.builds(
    lambda name, filename: f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"'),
    QUOTED_TEXT,
    st.none() | QUOTED_TEXT,
)
PIECES = st.lists(st.sampled_from(["form-data", "; ", ";", "name=", "filename=", '"', "\\", "a", "é", " ", "="]))


@settings(max_examples=300, deadline=None)
@given(ALMOST_CLIENT_SHAPED | PIECES.map("".join))
def test_reads_content_disposition_as_parse_options_header_does(disposition_text):
    disposition = disposition_text.encode()
    body = b"--b\r\nContent-Disposition: " + disposition + b"\r\n\r\ndata\r\n--b--"
    kind, options = parse_options_header(disposition.strip(b" \t"))
    if kind != b"form-data" or b"name" not in options:
        with pytest.raises(MalformedMultipartError, match="not form-data with a field name"):
            files_of(body, "multipart/form-data; boundary=b")
        return
    field = options[b"name"].decode("utf-8", "replace")
    [part] = files_of(body, "multipart/form-data; boundary=b", field)
    filename = options.get(b"filename")
    assert (part.field, part.filename) == (field, None if filename is None else filename.decode())


# Valid bodies, by hand


def test_a_delimiter_split_at_every_byte_is_found():
    body = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\r\n--xy\r\r\n--xyz--\r\n'
    for split in range(len(body) + 1):
        [part] = files_of(body, "multipart/form-data; boundary=xyz", splits=[split])
        assert part == FilePart("file", "a.png", b"\r\n--xy\r")
    reader = MultipartReader("multipart/form-data; boundary=xyz", "file", 1, 100)
    for byte in body:
        reader.feed(bytes([byte]))
    assert reader.finish() == [FilePart("file", "a.png", b"\r\n--xy\r")]


def test_preamble_padding_epilogue_and_boundary_text_inside_the_data():
    body = (
        b"This is the preamble.\r\n--b \t\r\n"
        b'Content-Disposition: form-data; name="file"; filename="caf\xc3\xa9.png"\r\n\r\n'
        b"x--b\r\n-\r--b\r\n--"  # the boundary, but never right after a CRLF
        b"\r\n--b\t\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\nhello'
        b"\r\n--b--  \r\nThis is the epilogue, --b\r\n--b\r\n ignored."
    )
    reader = read(body, 'multipart/form-data; boundary="b"')
    assert reader.finish() == [FilePart("file", "café.png", b"x--b\r\n-\r--b\r\n--")]
    assert reader.other_fields == ["note"]


def test_an_empty_form_and_parts_without_filename_or_bytes():
    assert files_of(b"--b--", "multipart/form-data; boundary=b") == []
    body = b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n\r\n--b--"
    assert files_of(body, "multipart/form-data;boundary=b") == [FilePart("file", None, b"")]


def test_a_whole_chunk_of_file_bytes_is_kept_without_a_copy():
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    chunk = bytes(range(256)) * 256
    reader = MultipartReader("multipart/form-data; boundary=b", "file", 1, MIB)
    reader.feed(head)
    reader.feed(chunk)
    reader.feed(b"\r\n--b--")
    assert reader.finish()[0].data is chunk


@pytest.mark.parametrize("chunk_bytes", [2, 16, CHUNK_BYTES])
def test_a_file_arriving_in_tiny_chunks_is_held_in_about_its_own_size(chunk_bytes):
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    data = bytes(range(256)) * 1024  # 256 KiB
    body = memoryview(head + data + b"\r\n--b--")
    reader = MultipartReader("multipart/form-data; boundary=b", "file", 1, MIB)
    tracemalloc.start()
    try:
        for start in range(0, len(body), chunk_bytes):
            reader.feed(bytes(body[start : start + chunk_bytes]))
        [part] = reader.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert part.data == data
    # The file's bytes while they arrive, and once more as the finished part; a list of the chunks
    # themselves cost many times the file in 2-byte chunks.
    assert peak < 3 * len(data), f"the reader's memory peaked at {peak / len(data):.1f}x the file"


def test_a_reader_is_freed_as_soon_as_it_is_dropped():
    gc.disable()
    try:
        reader = MultipartReader("multipart/form-data; boundary=b", "file", 1, MIB)
        reader.feed(b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata\r\n--b--')
        freed = weakref.ref(reader)
        del reader
        assert freed() is None, "a reference cycle keeps the reader (and its files) until the next collection"
    finally:
        gc.enable()


# Malformed bodies: each a clear error, raised as soon as the bytes show it

PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\ndata\r\n'


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("multipart/form-data", PART + b"--b--", "the Content-Type header names no boundary"),
        ('multipart/form-data; boundary=""', PART + b"--b--", "the Content-Type header names no boundary"),
        (f"multipart/form-data; boundary={'b' * 71}", b"", "the boundary is 71 characters long; RFC 2046 allows"),
        ("multipart/form-data; boundary=b\x7f", b"", "the boundary holds characters other than printable ASCII"),
        ("multipart/form-data; boundary=b", b"", "the body does not contain the boundary 'b' named in"),
        ("multipart/form-data; boundary=c", PART + b"--b--", "the body does not contain the boundary 'c' named in"),
        ("multipart/form-data; boundary=b", PART, "the body does not end with its closing boundary"),
        ("multipart/form-data; boundary=b", PART + b"--b", "the body does not end with its closing boundary"),
        ("multipart/form-data; boundary=b", b"--bXYZ\r\n", "the delimiter --b is followed by b'XY"),
        ("multipart/form-data; boundary=b", PART + b"--b-x", "the delimiter --b is followed by b'-x'"),
        ("multipart/form-data; boundary=b", PART + b"--b --\r\n", "the delimiter --b is followed by b'--"),
        ("multipart/form-data; boundary=b", b"--b\n" + PART[4:], "the delimiter --b is followed by b'\\n"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=file\r\n--b--\r\n",
            "a part has no blank line after its headers",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=file\r\n" + PART + b"--b--",
            "a part has no blank line after its headers",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nno colon here\r\n\r\ndata\r\n--b--",
            "a part has a header line without a colon",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition : form-data; name=file\r\n\r\ndata\r\n--b--",
            "a part has a header named b'Content-Disposition '",
        ),
        ("multipart/form-data; boundary=b", b"--b\r\n: x\r\n\r\ndata\r\n--b--", "a part has a header named b''"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\n Content-Disposition: form-data; name=file\r\n\r\ndata\r\n--b--",
            "a part has a header named b' Content-Disposition'",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nX-A: 1\nContent-Disposition: form-data; name=file\r\n\r\ndata\r\n--b--",
            "a part's headers contain a bare CR or LF",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=file\rX: 1\r\n\r\ndata\r\n--b--",
            "a part's headers contain a bare CR or LF",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\n" + b"X: 1\r\n" * MAX_HEADER_LINES + b"Content-Disposition: form-data; name=file\r\n\r\n--b--",
            f"a part has more than {MAX_HEADER_LINES} header lines",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nX-Other: 1\r\n\r\ndata\r\n--b--",
            "a part has no Content-Disposition",
        ),
        ("multipart/form-data; boundary=b", b"--b\r\n\r\ndata\r\n--b--", "a part has no Content-Disposition header"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=a\r\ncontent-disposition: form-data; name=file\r\n\r\n--b--",
            "a part has two Content-Disposition headers",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: attachment; name=file\r\n\r\ndata\r\n--b--",
            "a part is not form-data with a field name",
        ),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; filename="a.png"\r\n\r\ndata\r\n--b--',
            "a part is not form-data with a field name",
        ),
    ],
    ids=[
        "no-boundary",
        "empty-boundary",
        "boundary-too-long",
        "boundary-not-printable",
        "empty-body",
        "wrong-boundary",
        "no-close-delimiter",
        "close-delimiter-cut-short",
        "garbage-after-the-first-delimiter",
        "garbage-after-a-delimiter",
        "padding-before-the-close-dashes",
        "bare-lf-after-a-delimiter",
        "no-blank-line-at-the-end",
        "no-blank-line-before-the-next-part",
        "header-without-colon",
        "space-before-the-colon",
        "empty-header-name",
        "continuation-line",
        "bare-lf-in-headers",
        "bare-cr-in-headers",
        "too-many-header-lines",
        "no-disposition",
        "no-headers",
        "two-dispositions",
        "not-form-data",
        "no-field-name",
    ],
)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_malformed_body_is_a_400_naming_the_problem(content_type, body, problem, data):
    splits = data.draw(st.lists(st.integers(0, len(body)), max_size=4), label="splits")
    with pytest.raises(MalformedMultipartError) as raised:
        read(body, content_type, splits=splits)
    assert http_answer(raised.value)[0] == 400
    assert raised.value.detail.startswith(f"could not read the multipart upload: {problem}")


def feed_until_refused(reader: MultipartReader, chunks: Iterator[bytes]) -> tuple[ClientError, int]:
    """Feed chunks until the reader refuses one; the error and how many bytes it had been fed by then."""
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            reader.feed(chunk)
        except ClientError as error:
            return error, fed
    pytest.fail("the reader took every chunk")


def test_a_header_block_over_the_cap_is_refused_as_soon_as_it_is():
    reader = MultipartReader("multipart/form-data; boundary=b", "file", 1, MIB)
    header = b"--b\r\nContent-Disposition: form-data; name=file; filename=" + b"a" * MIB
    error, fed = feed_until_refused(reader, (header[start : start + 1000] for start in range(0, len(header), 1000)))
    assert (
        error.detail == f"could not read the multipart upload: a part's headers exceed {MAX_HEADER_BLOCK_BYTES} bytes"
    )
    assert fed <= MAX_HEADER_BLOCK_BYTES + 1000 + 10


def test_a_long_filename_within_the_cap_is_read():
    name = "a" * 10_000  # tests/test_hostile_uploads.py sends one
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=" + quoted(name) + b"\r\n\r\n7\r\n--b--"
    assert files_of(body, "multipart/form-data; boundary=b") == [FilePart("file", name, b"7")]


def test_a_file_over_the_limit_is_a_413_as_soon_as_it_grows_past_it():
    reader = MultipartReader("multipart/form-data; boundary=b", "files", 4, 1000)
    reader.feed(PART.replace(b'"file"', b'"files"'))
    reader.feed(b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n\r\n')
    reader.feed(b"\0" * 1000)
    with pytest.raises(PayloadTooLargeError) as raised:
        reader.feed(b"\0")
    assert http_answer(raised.value)[0] == 413
    assert raised.value.detail == (
        "file #1 ('big.png') in field 'files' is larger than 1000 bytes: send a smaller file, or raise MAX_UPLOAD_BYTES"
    )


def test_a_part_of_another_field_over_the_limit_is_a_413_too():
    body = b"--b\r\nContent-Disposition: form-data; name=note\r\n\r\n" + b"\0" * 1001 + b"\r\n--b--"
    with pytest.raises(PayloadTooLargeError, match="a part in field 'note' is larger than 1000 bytes"):
        read(body, "multipart/form-data; boundary=b", max_file_bytes=1000)


def test_one_file_too_many_is_a_400_at_once():
    reader = MultipartReader("multipart/form-data; boundary=b", "file", 1, MIB)
    reader.feed(PART)
    with pytest.raises(TooManyFilesError) as raised:
        reader.feed(PART)
    assert http_answer(raised.value)[0] == 400
    assert raised.value.detail == "more than 1 file sent in field 'file'"
    assert (raised.value.field, raised.value.limit) == ("file", 1)


def test_more_than_a_few_other_parts_is_a_400_at_once():
    other = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n\r\n"
    reader = MultipartReader("multipart/form-data; boundary=b", "file", 64, MIB)
    reader.feed(other * MAX_OTHER_PARTS)
    with pytest.raises(MalformedMultipartError, match=f"more than {MAX_OTHER_PARTS} parts in fields other than 'file'"):
        reader.feed(other)
    assert reader.other_fields == ["x"] * MAX_OTHER_PARTS


# Bodies crafted to be expensive (issue #17), at the batch body limit


def repeated(head: bytes, pattern: bytes, total: int = BATCH_BODY_LIMIT) -> Callable[[], Iterator[bytes]]:
    """A body of `total` bytes, `head` then `pattern` over and over, made 64 KiB at a time as it is sent."""

    def chunks() -> Iterator[bytes]:
        yield head
        filler = pattern * (CHUNK_BYTES // len(pattern) + 2)
        for sent in range(len(head), total, CHUNK_BYTES):
            offset = (sent - len(head)) % len(pattern)
            yield filler[offset : offset + min(CHUNK_BYTES, total - sent)]

    return chunks


EMPTY_PART = b"\r\n--b\r\nContent-Disposition: form-data; name=x\r\n\r\n"
# name -> (content type, body chunks, what the reader answers)
CRAFTED_BODIES: dict[str, tuple[str, Callable[[], Iterator[bytes]], str]] = {
    "many-tiny-empty-parts": ("multipart/form-data; boundary=b", repeated(EMPTY_PART[2:], EMPTY_PART), "other than"),
    "many-tiny-empty-files": (
        "multipart/form-data; boundary=b",
        repeated(b"--b\r\nContent-Disposition: form-data; name=files\r\n\r\n", EMPTY_PART.replace(b"=x", b"=files")),
        "more than 64 files",
    ),
    "boundary-fragments": ("multipart/form-data; boundary=b", repeated(b"--b", b"ab--b"), "is followed by b'ab--bab"),
    "boundary-fragments-in-a-file": (
        "multipart/form-data; boundary=bb",
        repeated(b"--bb\r\nContent-Disposition: form-data; name=files; filename=x\r\n\r\n", b"\r\n--b"),
        "is larger than",
    ),
    "boundary-fragments-as-preamble": ("multipart/form-data; boundary=bb", repeated(b"", b"\r\n--b"), "boundary 'bb'"),
    "huge-disposition-parameter-list": (
        "multipart/form-data; boundary=b",
        repeated(b"--b\r\nContent-Disposition: form-data; name=files", b'; a="b;c"'),
        "headers exceed",
    ),
}


def refusal(reader: MultipartReader, chunks: Iterator[bytes], times: list[float]) -> ClientError:
    """What the reader answers to the body (it must refuse it); each feed's time goes to `times`."""
    # The reader's own work: CPU time of this thread (a busy machine's waits do not count), with
    # the garbage collector held off (a pass over the whole test process takes about 0.2 s).
    gc.disable()
    try:
        for chunk in chunks:
            started = time.thread_time()
            try:
                reader.feed(chunk)
            finally:
                times.append(time.thread_time() - started)
        reader.finish()
    except ClientError as error:
        return error
    finally:
        gc.enable()
    pytest.fail("the reader accepted the body")


@pytest.mark.parametrize("kind", CRAFTED_BODIES)
def test_a_crafted_body_is_refused_in_bounded_time_and_memory(kind):
    content_type, chunks, problem = CRAFTED_BODIES[kind]
    times: list[float] = []
    tracemalloc.start()
    try:
        error = refusal(MultipartReader(content_type, "files", 64, MIB), chunks(), times)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 400 <= http_answer(error)[0] < 500
    assert problem in error.detail
    # Issue #17's targets are 0.5 s and 300 MB; a chunk costs well under a millisecond.
    assert max(times) < 0.1, f"the slowest of {len(times)} chunks took {max(times) * 1000:.1f} ms"
    assert peak < 8 * MIB, f"the reader's memory peaked at {peak / MIB:.1f} MiB"
