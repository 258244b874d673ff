"""Reading the file parts out of a multipart/form-data body as it arrives (RFC 7578, RFC 2046).

FastAPI's form parsing wraps every part in an UploadFile backed by a spooled temporary file and
feeds the body through python-multipart's byte-level state machine; for a digit of a few hundred
bytes that costs more than decoding and classifying it. `MultipartReader` is fed the body chunk by
chunk instead and finds delimiters and header blocks with `bytes.find` and a few regular
expressions, so each `feed` costs time in proportion to its chunk (bench/multipart_bench.py
measures it against python-multipart).

What it keeps between chunks is bounded: a partial delimiter (at most the boundary + 3 bytes) or
one part's unfinished header block (at most `MAX_HEADER_BLOCK_BYTES`), plus the bytes of the
wanted field's parts, each at most `max_file_bytes` and held in one buffer however small the chunks
it arrives in. Other fields' bytes are counted, never kept.

What it accepts, and where that differs from python-multipart's parser:
- delimiters are `CRLF--boundary`; the first may open the body without the CRLF, and what comes
  before it (the preamble) is ignored, as is everything after the close delimiter (the epilogue)
  (python-multipart refuses a preamble);
- a delimiter is followed by spaces and tabs (transport padding) and CRLF, or by `--`; anything
  else is refused: RFC 2046 forbids the boundary at the start of a line inside a part, so
  `CRLF--boundaryX` cannot be data (python-multipart reads it as data, the old reader refused it;
  python-multipart also refuses padding after the first delimiter);
- header lines follow RFC 7230: a token, a colon, a value of any bytes but CR and LF, each line
  ending in CRLF; a bare CR or LF, a line without a colon, a continuation line and a second
  Content-Disposition are refused (python-multipart folds a bare LF into the value before it);
- header values are trimmed of spaces and tabs only. Content-Disposition's parameters are read by
  python-multipart's `parse_options_header`, or by a regular expression when they have the shape
  every common client sends, for which both read the same bytes.
"""

import re
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

from app.errors import BadBatchError, ClientError, PayloadTooLargeError
from app.http.limits import human_bytes

# RFC 2046 section 5.1.1 allows 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70
# Browsers and HTTP libraries send two header lines of well under 1 KiB; the room beyond that
# is for long filenames (they are only ever shown, cut short, in error messages).
MAX_HEADER_BLOCK_BYTES = 16 * 1024
MAX_HEADER_LINES = 8  # python-multipart's default too
# Parts of other fields read besides the wanted ones (a form may carry a few extra fields).
MAX_OTHER_PARTS = 8

_SHOWN_CHARACTERS = 80
_MERGED_PIECE_BYTES = 4096  # smaller pieces of a file are copied into one buffer
_PADDING = b" \t"
_PADDING_RUN = re.compile(rb"[ \t]*")
# RFC 7230 section 3.2.6: the characters of a header name (a token).
_TOKEN_CHARACTERS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEADER_LINE = b"[" + re.escape(_TOKEN_CHARACTERS) + rb"]+:[^\r\n]*"
# A header block without its final CRLF: lines of `token:value` joined by CRLF. Checking the
# usual block with one expression costs a third of walking its lines; `_header_problem` walks
# them only to say what is wrong with one that does not match.
_HEADER_BLOCK = re.compile(_HEADER_LINE + rb"(?:\r\n" + _HEADER_LINE + rb")*")
_DISPOSITION_HEADER = re.compile(rb"^content-disposition:([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
# Shapes for which parse_options_header's answer is simply the bytes between the quotes (no
# quote, backslash or semicolon inside): what every common client sends, read at a tenth of
# the cost. Anything else goes through parse_options_header.
_SIMPLE_DISPOSITION = re.compile(rb'form-data; name="([^"\\;]*)"(?:; filename="([^"\\;]*)")?')
_SIMPLE_CONTENT_TYPE = re.compile(r'multipart/form-data; ?boundary=(?:"([^"\\;]*)"|([^"\\; \t]*))')
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))

# The reader's states, each the index of its step in _STEPS.
_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _DATA, _EPILOGUE = range(5)


class MalformedMultipartError(ClientError):
    reason = "malformed_multipart"

    def __init__(self, problem: str) -> None:
        super().__init__(f"could not read the multipart upload: {problem}")


class TooManyFilesError(BadBatchError):
    """More parts in the wanted field than `max_files`; raised at the first one too many."""

    def __init__(self, field: str, limit: int) -> None:
        self.field = field
        self.limit = limit
        super().__init__(f"more than {limit} {'file' if limit == 1 else 'files'} sent in field '{field}'")


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str | None
    data: bytes


class MultipartReader:
    """Collects the parts of one field from a multipart/form-data body fed to it in chunks.

    `feed` each chunk as it arrives, then call `finish`. Both raise a ClientError as soon as the
    body is malformed or crosses a limit: MalformedMultipartError (400), TooManyFilesError (400)
    or PayloadTooLargeError (413). A reader reads one body; after an error it is done with.
    """

    def __init__(self, content_type: str, wanted_field: str, max_files: int, max_file_bytes: int) -> None:
        boundary = _boundary(content_type)
        self._boundary = boundary.decode("ascii")
        self._dash_boundary = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._wanted_field = wanted_field
        self._wanted_name = wanted_field.encode()
        self._max_files = max_files
        self._max_file_bytes = max_file_bytes
        self._state = _PREAMBLE
        self._at_body_start = True
        self._padded = False  # transport padding was read after the last delimiter
        self._undecided = b""  # bytes of earlier chunks that the next chunk decides about
        self._files: list[FilePart] = []
        self._other_fields: list[str] = []
        # The part being read: its field, whether it is kept, its filename and its bytes so far.
        self._part_field = b""
        self._collecting = False
        self._part_filename: str | None = None
        self._part_size = 0
        self._pieces: list[bytes | bytearray] = []

    def feed(self, chunk: bytes) -> None:
        """Read the next bytes of the body."""
        buffer = self._undecided + chunk if self._undecided else chunk
        position = 0
        state = self._state
        while True:
            position = _STEPS[state](self, buffer, position)
            if self._state == state:  # the step could not complete: the rest waits for more bytes
                break
            state = self._state
        self._undecided = buffer[position:]

    @property
    def other_fields(self) -> list[str]:
        """The field names of the other parts read so far, in body order (at most MAX_OTHER_PARTS)."""
        return self._other_fields

    def finish(self) -> list[FilePart]:
        """The wanted field's parts in body order, once the whole body has been fed."""
        if self._state == _EPILOGUE:
            return self._files
        if self._state == _PREAMBLE:
            problem = f"the body does not contain the boundary {self._boundary!r} named in its Content-Type"
        elif self._state == _HEADERS:
            problem = "a part has no blank line after its headers"
        else:
            problem = "the body does not end with its closing boundary"
        raise MalformedMultipartError(problem)

    # Each step reads from `position` and returns where it stopped. It moves to another state
    # when it completes, and otherwise stays, having consumed what it could decide about.

    def _skip_preamble(self, buffer: bytes, position: int) -> int:
        if self._at_body_start:
            if len(buffer) < len(self._dash_boundary) and self._dash_boundary.startswith(buffer):
                return position  # the body may yet open with the boundary
            self._at_body_start = False
            if buffer.startswith(self._dash_boundary):
                self._state = _AFTER_DELIMITER
                return len(self._dash_boundary)
        found = buffer.find(self._delimiter, position)
        if found < 0:
            return max(position, len(buffer) - len(self._delimiter) + 1)
        self._state = _AFTER_DELIMITER
        return found + len(self._delimiter)

    def _after_delimiter(self, buffer: bytes, position: int) -> int:
        if len(buffer) - position < 2:
            return position
        if not self._padded and buffer.startswith(b"--", position):
            self._state = _EPILOGUE
            return position + 2
        end = _PADDING_RUN.match(buffer, position).end()  # always matches, if only ""
        self._padded = self._padded or end > position
        if len(buffer) - end < 2:
            return end
        if not buffer.startswith(b"\r\n", end):
            raise MalformedMultipartError(
                f"the delimiter --{self._boundary} is followed by {buffer[end : end + 20]!r}, not by a line break or --"
            )
        self._padded = False
        self._state = _HEADERS
        return end + 2

    def _read_headers(self, buffer: bytes, position: int) -> int:
        if len(buffer) - position < 2:
            return position
        if buffer.startswith(b"\r\n", position):
            raise MalformedMultipartError("a part has no Content-Disposition header")
        end = buffer.find(b"\r\n\r\n", position, position + MAX_HEADER_BLOCK_BYTES + 4)
        if end < 0:
            if len(buffer) - position >= MAX_HEADER_BLOCK_BYTES + 4:
                raise MalformedMultipartError(f"a part's headers exceed {MAX_HEADER_BLOCK_BYTES} bytes")
            return position
        self._begin_part(buffer[position:end])
        self._state = _DATA
        return end + 4

    def _read_data(self, buffer: bytes, position: int) -> int:
        found = buffer.find(self._delimiter, position)
        if found >= 0:
            self._take(buffer, position, found)
            self._end_part()
            self._state = _AFTER_DELIMITER
            return found + len(self._delimiter)
        # The delimiter may have begun in the last bytes: keep those for the next chunk. It holds
        # one CR, its first byte (boundaries are printable), so only the last CR can begin it.
        undecided = buffer.rfind(b"\r", max(position, len(buffer) - len(self._delimiter) + 1))
        if undecided < 0 or not self._delimiter.startswith(buffer[undecided:]):
            undecided = len(buffer)
        self._take(buffer, position, undecided)
        return undecided

    def _skip_epilogue(self, buffer: bytes, position: int) -> int:
        return len(buffer)

    # Parts

    def _begin_part(self, header_block: bytes) -> None:
        field, filename = self._field_and_filename(header_block)
        self._part_field = field
        self._part_size = 0
        self._collecting = field == self._wanted_name
        if self._collecting:
            if len(self._files) >= self._max_files:
                raise TooManyFilesError(self._wanted_field, self._max_files)
            self._part_filename = None if filename is None else filename.decode("utf-8", "replace")
            return
        if len(self._other_fields) >= MAX_OTHER_PARTS:
            raise MalformedMultipartError(
                f"the body has more than {MAX_OTHER_PARTS} parts in fields other than '{self._wanted_field}'"
            )
        self._other_fields.append(field.decode("utf-8", "replace"))

    def _field_and_filename(self, header_block: bytes) -> tuple[bytes, bytes | None]:
        """The field name and filename from a part's header lines (without the blank line)."""
        if header_block.count(b"\n") >= MAX_HEADER_LINES or _HEADER_BLOCK.fullmatch(header_block) is None:
            raise MalformedMultipartError(self._header_problem(header_block))
        dispositions = _DISPOSITION_HEADER.findall(header_block)
        if len(dispositions) != 1:
            many = "two Content-Disposition headers" if dispositions else "no Content-Disposition header"
            raise MalformedMultipartError(f"a part has {many}")
        disposition = dispositions[0].strip(_PADDING)
        simple = _SIMPLE_DISPOSITION.fullmatch(disposition)
        if simple is not None:
            return simple.group(1), simple.group(2)
        kind, parameters = parse_options_header(disposition)
        field = parameters.get(b"name")
        if kind != b"form-data" or field is None:
            raise MalformedMultipartError("a part is not form-data with a field name")
        return field, parameters.get(b"filename")

    def _header_problem(self, header_block: bytes) -> str:
        """What makes a header block that _HEADER_BLOCK refuses malformed, in a client's words."""
        lines = header_block.split(b"\r\n")
        if len(lines) > MAX_HEADER_LINES:
            return f"a part has more than {MAX_HEADER_LINES} header lines"
        for line in lines:
            if b"\r" in line or b"\n" in line:
                return "a part's headers contain a bare CR or LF"
            name, colon, _ = line.partition(b":")
            if not colon:
                if line.startswith(self._dash_boundary):
                    return "a part has no blank line after its headers"
                return "a part has a header line without a colon"
            if not name or name.translate(None, _TOKEN_CHARACTERS):
                return f"a part has a header named {name[:_SHOWN_CHARACTERS]!r}"
        return "a part's headers are malformed"  # not reached while the checks mirror _HEADER_BLOCK

    def _take(self, buffer: bytes, start: int, end: int) -> None:
        """Count (and for a wanted part, keep) the part's bytes buffer[start:end]."""
        if end == start:
            return
        self._part_size += end - start
        if self._part_size > self._max_file_bytes:
            raise PayloadTooLargeError(
                f"{self._part_description()} is larger than {human_bytes(self._max_file_bytes)}: "
                "send a smaller file, or raise MAX_UPLOAD_BYTES"
            )
        if self._collecting:
            self._keep(buffer[start:end])

    def _keep(self, piece: bytes) -> None:
        # Large pieces are kept as they are: slicing a whole chunk returns the chunk itself, so
        # most are not copies. Small ones are merged into one growing buffer, since an object per
        # piece costs many times the bytes themselves when a client sends a few bytes at a time.
        pieces = self._pieces
        if len(piece) >= _MERGED_PIECE_BYTES or not pieces:
            pieces.append(piece)
        elif isinstance(pieces[-1], bytearray):
            pieces[-1] += piece
        elif len(pieces[-1]) < _MERGED_PIECE_BYTES:
            pieces[-1] = bytearray(pieces[-1]) + piece
        else:
            pieces.append(bytearray(piece))

    def _part_description(self) -> str:
        if self._collecting:
            return f"file #{len(self._files)} ({_shown(self._part_filename)}) in field '{self._wanted_field}'"
        return f"a part in field {_shown(self._part_field.decode('utf-8', 'replace'))}"

    def _end_part(self) -> None:
        if self._collecting:
            self._files.append(FilePart(self._wanted_field, self._part_filename, b"".join(self._pieces)))
            self._pieces = []


# Plain functions, not bound methods kept on the reader: those would make each reader a reference
# cycle, holding its files until the garbage collector runs.
_STEPS = (
    MultipartReader._skip_preamble,
    MultipartReader._after_delimiter,
    MultipartReader._read_headers,
    MultipartReader._read_data,
    MultipartReader._skip_epilogue,
)


def _boundary(content_type: str) -> bytes:
    simple = _SIMPLE_CONTENT_TYPE.fullmatch(content_type)
    if simple is not None:
        quoted, bare = simple.groups()
        boundary = (bare if quoted is None else quoted).encode("latin-1")
    else:
        boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    if not boundary:
        raise MalformedMultipartError("the Content-Type header names no boundary")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise MalformedMultipartError(
            f"the boundary is {len(boundary)} characters long; RFC 2046 allows at most {MAX_BOUNDARY_LENGTH}"
        )
    # Printable ASCII only, so that the boundary can be shown in messages and a delimiter holds
    # no CR but its first byte (_read_data relies on that to find one split across chunks).
    if boundary.translate(None, _PRINTABLE_ASCII):
        raise MalformedMultipartError("the boundary holds characters other than printable ASCII")
    return boundary


def _shown(text: str | None) -> str:
    """A client-chosen name as error messages show it: quoted, escaped and cut short."""
    if not text:
        return "(no name)"
    return repr(text[:_SHOWN_CHARACTERS] + ("..." if len(text) > _SHOWN_CHARACTERS else ""))
