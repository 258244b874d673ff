"""Micro-batching: requests that reach the model in the same turn of the event loop share one call."""

import asyncio

import numpy as np
import pytest

from app.inference.batching import MicroBatcher


class CountingModel:
    """Row sums as 'probabilities', and a record of each call's batch size."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        self.calls.append(len(inputs))
        if self.fail:
            raise RuntimeError("the model broke")
        return inputs.sum(axis=1, keepdims=True)


def _rows(first: float, count: int) -> np.ndarray:
    return np.arange(first, first + count, dtype=np.float32).reshape(count, 1).repeat(3, axis=1)


def test_requests_waiting_together_share_one_call_and_get_their_own_rows():
    model = CountingModel()
    batcher = MicroBatcher(model)

    async def three_requests() -> list[np.ndarray]:
        return await asyncio.gather(
            batcher.assess(_rows(0, 1)), batcher.assess(_rows(10, 2)), batcher.assess(_rows(20, 3))
        )

    first, second, third = asyncio.run(three_requests())
    assert model.calls == [6]
    assert first.ravel().tolist() == [0]
    assert second.ravel().tolist() == [30, 33]
    assert third.ravel().tolist() == [60, 63, 66]


def test_a_request_alone_is_served_at_once_without_waiting_for_company():
    model = CountingModel()
    batcher = MicroBatcher(model)

    async def one_after_another() -> None:
        for start in range(3):
            assert (await batcher.assess(_rows(start, 1))).ravel().tolist() == [3 * start]

    asyncio.run(one_after_another())
    assert model.calls == [1, 1, 1]


def test_a_failing_model_call_fails_every_request_that_shared_it():
    batcher = MicroBatcher(CountingModel(fail=True))

    async def two_requests() -> list[object]:
        return await asyncio.gather(batcher.assess(_rows(0, 1)), batcher.assess(_rows(1, 1)), return_exceptions=True)

    results = asyncio.run(two_requests())
    assert [str(result) for result in results] == ["the model broke", "the model broke"]


def test_a_request_that_left_does_not_stop_the_others_getting_their_rows():
    model = CountingModel()
    batcher = MicroBatcher(model)

    async def one_cancelled() -> np.ndarray:
        leaving = asyncio.ensure_future(batcher.assess(_rows(0, 1)))
        staying = asyncio.ensure_future(batcher.assess(_rows(5, 1)))
        await asyncio.sleep(0)  # both are waiting now
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(one_cancelled()).ravel().tolist() == [15]
    assert model.calls == [2]
