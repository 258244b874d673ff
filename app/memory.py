"""Giving memory the C library holds back to the system.

glibc's malloc keeps memory freed in the middle of its heap for reuse rather than return it, and
after a large block is freed it serves blocks of that size from the heap instead of mmap. A
worker that reads large bodies (uploads, and over-limit bodies read and discarded while
lingering) therefore grows by fragments that are free but held: in the soak, its RSS climbed
steadily under early 413s, and `malloc_trim(0)` gave it all back (the README has the figures).
Each worker trims every TRIM_SECONDS, in a thread: a trim takes well under a millisecond here.
"""

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_SECONDS = 10.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS) and there is nothing to do."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


async def trim_forever(trim: Callable[[int], int], seconds: float = TRIM_SECONDS) -> None:
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(trim, 0)
