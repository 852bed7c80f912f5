"""serving/batcher.py: eager batching routes every answer to its request and never waits on
purpose. The model is a slow fake here (a unit test of the queueing logic); the real model
behind a real `bentoml serve` is exercised in tests/serving."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from serving.batcher import EagerBatcher, OverloadedError


class SlowDouble:
    """Doubles each item; each call takes `delay` seconds and records its batch."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.calls: list[list] = []
        self.threads: set[str] = set()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, batch: list) -> list:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.current_thread().name)
        self.calls.append(list(batch))
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        return [2 * x for x in batch]


def test_a_lone_request_runs_at_once_without_waiting_for_company():
    model = SlowDouble(delay=0.0)
    batcher = EagerBatcher(model, max_batch=64, max_wait_s=1.0)

    async def go():
        t = time.perf_counter()
        out = await batcher.submit([21])
        return out, time.perf_counter() - t

    out, took = asyncio.run(go())
    assert out == [42]
    assert took < 0.05, f"a lone request waited {took * 1000:.0f} ms"
    assert model.calls == [[21]]


def test_requests_arriving_while_the_model_is_busy_share_the_next_call():
    model = SlowDouble(delay=0.1)
    batcher = EagerBatcher(model, max_batch=64, max_wait_s=5.0)

    async def go():
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.sleep(0.02)  # the model is now busy with [0]
        rest = [asyncio.create_task(batcher.submit([i, 100 + i])) for i in range(1, 8)]
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(go())
    assert first == [0]
    assert rest == [[2 * i, 2 * (100 + i)] for i in range(1, 8)]  # each gets its own answers
    assert len(model.calls) == 2 and len(model.calls[1]) == 14
    assert model.max_active == 1 and len(model.threads) == 1  # one call at a time, one thread


def test_max_batch_is_respected_and_a_request_is_never_split():
    model = SlowDouble(delay=0.05)
    batcher = EagerBatcher(model, max_batch=5, max_wait_s=5.0)

    async def go():
        busy = asyncio.create_task(batcher.submit([0]))
        await asyncio.sleep(0.01)
        jobs = [asyncio.create_task(batcher.submit([i] * 3)) for i in range(1, 5)]
        await busy
        return await asyncio.gather(*jobs)

    answers = asyncio.run(go())
    assert answers == [[2 * i] * 3 for i in range(1, 5)]
    assert all(len(call) <= 5 for call in model.calls)
    for call in model.calls[1:]:
        assert len(call) % 3 == 0  # whole requests only


def test_a_request_queued_past_the_deadline_is_refused_as_overload():
    model = SlowDouble(delay=0.3)
    batcher = EagerBatcher(model, max_batch=1, max_wait_s=0.1)

    async def go():
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.01)
        late = asyncio.create_task(batcher.submit([2]))
        return await first, await asyncio.gather(late, return_exceptions=True)

    first, (late,) = asyncio.run(go())
    assert first == [2]
    assert isinstance(late, OverloadedError) and "limit" in str(late)
    assert [2] not in model.calls  # never computed


def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs():
    calls = []

    def flaky(batch):
        calls.append(batch)
        if len(calls) == 1:
            raise ValueError("model exploded")
        return [x + 1 for x in batch]

    batcher = EagerBatcher(flaky, max_batch=8, max_wait_s=5.0)

    async def go():
        bad = await asyncio.gather(batcher.submit([1]), return_exceptions=True)
        good = await batcher.submit([5])
        return bad[0], good

    bad, good = asyncio.run(go())
    assert isinstance(bad, ValueError) and "exploded" in str(bad)
    assert good == [6]


def test_a_cancelled_request_is_not_computed():
    model = SlowDouble(delay=0.1)
    batcher = EagerBatcher(model, max_batch=8, max_wait_s=5.0)

    async def go():
        busy = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.submit([99]))
        kept = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.01)
        gone.cancel()
        return await busy, await kept

    assert asyncio.run(go()) == ([2], [6])
    assert all(99 not in call for call in model.calls)


@pytest.mark.parametrize("max_batch", [0, -3])
def test_max_batch_below_one_means_one(max_batch):
    assert EagerBatcher(lambda b: b, max_batch=max_batch, max_wait_s=1).max_batch == 1
