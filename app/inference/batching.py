"""Micro-batching: one model call for every request that reaches the model in the same turn of the event loop.

A request's own work (reading, decoding, preprocessing) is done on the event loop; when it needs
the model it leaves its inputs here and waits. The first one to arrive schedules a flush for the
loop's next turn, by which time the requests the loop is already running have left theirs too, and
one call serves them all. There is no waiting on a timer: alone, a request is served at once, one
loop turn later; under load the batches grow with it (TorchServe batches in its Java frontend for
the same reason). The model's cost per call is mostly fixed (dispatch, the deskew step's numpy
calls, cold caches), so a batch of eight costs little more than one.

Rows are computed in a batch with other requests' rows: a digit's scores can differ from those of
the same digit alone in the seventh decimal place (matrix products round by blocks).
"""

import asyncio
import time
from collections.abc import Callable

import numpy as np
from opentelemetry.trace import Link

from app.observability import metrics, tracing


class MicroBatcher:
    """Batches calls of `run` (float32 inputs (N, 784) -> one output row per input) made on one event loop."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray]) -> None:
        self._run = run
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray], Link | None]] = []

    async def assess(self, inputs: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((inputs, future, tracing.current_link()))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def run_now(self, inputs: np.ndarray, links: list[Link | None] | None = None) -> np.ndarray:
        """One model call for these rows alone, at once: for the current request, or for the requests
        that `links` names (a batch; None for each that is not traced)."""
        if links is None:
            step = tracing.span("model", rows=len(inputs), requests=1)
        else:
            step = tracing.linked_span("model", links, rows=len(inputs), requests=len(links))
        with step:
            started = time.perf_counter()
            outputs = self._run(inputs)
            metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        return outputs

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        batch = pending[0][0] if len(pending) == 1 else np.concatenate([inputs for inputs, _, _ in pending])
        try:
            outputs = self.run_now(batch, [link for _, _, link in pending])
        except Exception as error:  # each waiting request fails with the model's error
            for _, future, _ in pending:
                if not future.done():
                    future.set_exception(error)
            return
        offset = 0
        for inputs, future, _ in pending:
            # A request whose client left (its task cancelled) no longer waits for its rows.
            if not future.done():
                future.set_result(outputs[offset : offset + len(inputs)])
            offset += len(inputs)
