"""Per-worker limits on the upload endpoints, enforced before and while the body is read.

- more than `max_concurrency` uploads in progress: 503 with Retry-After, at once, instead of
  queueing without bound;
- a body that is not multipart/form-data: 415, without reading it;
- a declared Content-Length over the limit: 413, without reading it;
- a body that grows past the limit as it arrives (Content-Length absent or false): 413 as soon
  as the limit is crossed, so at most the limit is ever buffered;
- a body that is still arriving after `body_timeout_seconds`: 408.
"""

import asyncio
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTimeoutError, ClientError, OverloadedError, PayloadTooLargeError, UnsupportedMediaTypeError

# Room for the multipart boundaries and part headers around the file bytes themselves.
MULTIPART_OVERHEAD_BYTES = 16 * 1024

ErrorResponder = Callable[[ClientError, Scope, Receive, Send], object]


class UploadGuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        body_limits: Mapping[str, int],
        max_concurrency: int,
        body_timeout_seconds: float,
        respond_with_error: ErrorResponder,
    ) -> None:
        self.app = app
        self.body_limits = body_limits  # path -> largest body accepted
        self.max_concurrency = max_concurrency
        self.body_timeout_seconds = body_timeout_seconds
        self.respond_with_error = respond_with_error
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.body_limits.get(scope["path"]) if scope["type"] == "http" else None
        if limit is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, limit)
        if refusal is not None:
            await self.respond_with_error(refusal, scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, self._bounded_receive(receive, limit), send)
        finally:
            self.in_progress -= 1

    def _refusal(self, scope: Scope, limit: int) -> ClientError | None:
        if self.in_progress >= self.max_concurrency:
            return OverloadedError(
                f"the server is busy ({self.max_concurrency} uploads in progress); retry in a moment"
            )
        content_type, declared = b"", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"content-length":
                declared = value
        if content_type != b"multipart/form-data":
            shown = content_type.decode("latin-1")[:100] or "none"
            return UnsupportedMediaTypeError(
                f"send the image as multipart/form-data (curl -F file=@digit.png), not {shown}"
            )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return PayloadTooLargeError(f"the request body is {int(declared)} bytes; the limit is {limit}")
        return None

    def _bounded_receive(self, receive: Receive, limit: int) -> Receive:
        deadline = asyncio.get_running_loop().time() + self.body_timeout_seconds
        received = 0
        body_complete = False

        async def bounded_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:
                # Later calls only wait for the client to disconnect; no limit applies to that.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeoutError(
                    f"the request body did not arrive within {self.body_timeout_seconds:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")
                body_complete = not message.get("more_body", False)
            return message

        return bounded_receive
