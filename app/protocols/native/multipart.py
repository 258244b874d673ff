"""Reading the file parts out of a multipart/form-data body.

FastAPI's form parsing wraps every part in an UploadFile backed by a spooled temporary file and
feeds the body byte by byte through a pure-Python state machine; for a digit of a few hundred
bytes that costs more than decoding and classifying it. The upload guard has already bounded
the body's size and arrival time, so the body is read whole and split on its boundary here,
with python-multipart parsing the header parameters (RFC 7578).
"""

from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

from app.errors import ClientError


class MalformedMultipartError(ClientError):
    reason = "malformed_multipart"

    def __init__(self, problem: str) -> None:
        super().__init__(f"could not read the multipart upload: {problem}")


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str | None
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> list[FilePart]:
    """Every part of the body in order, with its field name, filename and bytes."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedMultipartError("the Content-Type header names no boundary")
    sections = body.split(b"--" + boundary)
    # sections[0] is the preamble; the closing delimiter leaves "--" (and any epilogue) last.
    if len(sections) < 2 or not sections[-1].startswith(b"--"):
        raise MalformedMultipartError("the body does not end with its closing boundary")
    return [_parse_part(section) for section in sections[1:-1]]


def _parse_part(section: bytes) -> FilePart:
    if not (section.startswith(b"\r\n") and section.endswith(b"\r\n")):
        raise MalformedMultipartError("a boundary is not followed by a line break")
    head, blank_line, data = section[2:-2].partition(b"\r\n\r\n")
    if not blank_line:
        raise MalformedMultipartError("a part has no blank line after its headers")
    disposition = None
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise MalformedMultipartError("a part has a header line without a colon")
        if name.strip().lower() == b"content-disposition":
            disposition = value.strip()
    if disposition is None:
        raise MalformedMultipartError("a part has no Content-Disposition header")
    kind, parameters = parse_options_header(disposition)
    if kind != b"form-data" or b"name" not in parameters:
        raise MalformedMultipartError("a part is not form-data with a field name")
    filename = parameters.get(b"filename")
    return FilePart(
        field=parameters[b"name"].decode("utf-8", "replace"),
        filename=None if filename is None else filename.decode("utf-8", "replace"),
        data=data,
    )
