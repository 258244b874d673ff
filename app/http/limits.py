"""Bounds on request bodies, per worker, enforced before and while a body arrives.

- a body that is not the media type its route reads (multipart for uploads): 415, unread;
- a declared Content-Length over the route's limit: 413, unread; a body that grows past the
  limit as it arrives (Content-Length absent or false): 413 as soon as the limit is crossed;
- memory: the bytes of all bodies in progress in this worker are counted against one budget
  (BODY_BUFFER_BYTES); a body that would overdraw it gets 503 with Retry-After. Counting bytes,
  not uploads, means connections that send nothing hold nothing, so stalled clients cannot
  take the service's capacity away by their number;
- time: a body must arrive within BODY_TIMEOUT_SECONDS plus one second for every BODY_MIN_RATE
  bytes received so far (Apache mod_reqtimeout's `body=20,MinRate=500`), else 408. A client on
  a slow link keeps earning time; one that trickles a byte now and then does not.
"""

import asyncio
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope

from app.errors import BodyTimeoutError, OverloadedError, PayloadTooLargeError, UnsupportedMediaTypeError

# Room for the multipart boundaries and part headers around the file bytes themselves.
MULTIPART_OVERHEAD_BYTES = 16 * 1024
MIB = 1024 * 1024


def human_bytes(count: int) -> str:
    """1048576 -> '1.0 MiB', 2048 -> '2.0 KiB', 500 -> '500 bytes'."""
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    if count >= 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count} bytes"


@dataclass(frozen=True)
class BodyRule:
    """What a route accepts as its body: at most `limit` bytes, of `media_type` when set."""

    limit: int
    limit_setting: str  # the setting that raises the limit, named in the 413
    media_type: bytes | None = None
    usage: str = ""  # how to send it, shown when the media type is wrong


class BodyBudget:
    """The request body bytes this worker holds right now, against BODY_BUFFER_BYTES."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    def take(self, count: int) -> None:
        if self.held + count > self.capacity:
            raise OverloadedError(
                f"the server is busy: {human_bytes(self.held)} of request bodies are arriving "
                f"(BODY_BUFFER_BYTES is {human_bytes(self.capacity)}); retry in a moment"
            )
        self.held += count

    def give_back(self, count: int) -> None:
        self.held -= count


def check_headers(scope: Scope, rule: BodyRule, budget: BodyBudget) -> None:
    """Refuse a request from its headers alone, before any of its body is read."""
    content_type, declared = b"", None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length":
            declared = int(value) if value.isdigit() else None
    # Each error is raised where it is made: one held in a local of a frame that its own traceback
    # holds is a reference cycle, which waits for a full garbage collection (rare in a process that
    # imported torch), so every early 413 would leave its request's objects behind until then.
    if rule.media_type is not None and content_type != rule.media_type:
        shown = content_type.decode("latin-1")[:100]
        sent = f"a body of type {shown}" if shown else "a body with no Content-Type"
        raise UnsupportedMediaTypeError(f"send the image as {rule.media_type.decode()} ({rule.usage}), not {sent}")
    if declared is not None and declared > rule.limit:
        raise PayloadTooLargeError(_too_large(f"the request body is {human_bytes(declared)}", rule))
    if declared is not None and budget.held + declared > budget.capacity:
        raise OverloadedError(
            f"the server is busy: a {human_bytes(declared)} body does not fit beside the "
            f"{human_bytes(budget.held)} arriving now (BODY_BUFFER_BYTES); retry in a moment"
        )


def _too_large(what: str, rule: BodyRule) -> str:
    return f"{what}; the limit is {human_bytes(rule.limit)}: send a smaller file, or raise {rule.limit_setting}"


class GuardedBody:
    """One request's body as it arrives, within its size limit, the worker's budget and the deadline."""

    def __init__(self, receive: Receive, rule: BodyRule, budget: BodyBudget, timeout: float, min_rate: int) -> None:
        self._receive = receive
        self._rule = rule
        self._budget = budget
        self._timeout = timeout
        self._min_rate = min_rate
        self._started = asyncio.get_running_loop().time()
        self.received = 0
        self._complete = False

    async def receive(self) -> Message:
        if self._complete:
            # Later calls only wait for the client to disconnect; no limit applies to that.
            return await self._receive()
        deadline = self._started + self._timeout + self.received / self._min_rate
        try:
            async with asyncio.timeout_at(deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyTimeoutError(
                f"the request body stopped arriving: {human_bytes(self.received)} in "
                f"{asyncio.get_running_loop().time() - self._started:.0f} s (BODY_TIMEOUT_SECONDS and BODY_MIN_RATE)"
            ) from None
        if message["type"] == "http.request":
            chunk = len(message.get("body", b""))
            if self.received + chunk > self._rule.limit:
                raise PayloadTooLargeError(_too_large("the request body is larger than allowed", self._rule))
            self._budget.take(chunk)
            self.received += chunk
            self._complete = not message.get("more_body", False)
        return message

    def release(self) -> None:
        """Give the body's bytes back to the budget once the request is answered."""
        self._budget.give_back(self.received)
        self.received = 0
