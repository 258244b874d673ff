"""Each worker hands the memory glibc holds back to the system, on a timer, off the event loop."""

import asyncio
import platform
import threading

import pytest

from app.memory import malloc_trim, trim_forever


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_malloc_trim_is_found_and_runs():
    trim = malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: there was none to release


def test_trims_run_on_a_timer_in_another_thread_until_cancelled():
    calls: list[tuple[int, int]] = []

    def trim(pad: int) -> int:
        calls.append((pad, threading.get_ident()))
        return 0

    async def run() -> int:
        chore = asyncio.create_task(trim_forever(trim, seconds=0.01))
        async with asyncio.timeout(30):
            while len(calls) < 3:
                await asyncio.sleep(0.01)
        chore.cancel()
        with pytest.raises(asyncio.CancelledError):
            await chore
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert all(pad == 0 and thread != loop_thread for pad, thread in calls)
