"""Eager (opportunistic) adaptive batching for /classify.

While the model runs one batch, new requests queue; when it finishes, everything queued (up to
`max_batch` crops) becomes the next batch. Nobody waits on purpose: a lone request runs at once,
and under load batches grow by themselves to whatever the model can absorb.

Why not BentoML's batcher (`batchable=True`): its CorkDispatcher holds a batch back while
`n * wait_of_newest <= 0.95 * average recent wait`, and that average includes its own holds,
so a deliberate wait keeps itself alive. Measured side by side in one run (2026-12-01, 2 cores,
the FER2013 `cpu` architecture, 3.39 M parameters, which served at most ~160 requests/s that
day; `benchmarks/results/serving-batchers-cpuarch.json`, 5 fixed-rate runs per setup):

    setup                  p50 at concurrency 1   best requests/s   200/s: p99 median   failed
    eager, 1 worker              18.5 ms               157              3.26 s          133/8000
    eager, 2 workers             18.2 ms               169              2.90 s           24/8000
    BentoML, 1 worker           380 ms                 114              3.37 s         4949/8000
    BentoML, 2 workers          385 ms                 130              1.44 s         3719/8000

200 requests/s was past that day's capacity for every setup, so those columns compare
overload behaviour: BentoML's lower p99 with 2 workers comes from refusing ~46 % of the
requests. At concurrency 1 (most clients) the cork made every request wait 20x longer. The
eager batcher stays and the `serving.batching` switch is gone.

The model runs on one dedicated thread: TensorFlow spreads one call over all cores anyway, and
one call at a time keeps batches large and latency predictable. A request that has waited past
`max_wait_s` before its batch starts is refused as overload (503) rather than served late.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class OverloadedError(RuntimeError):
    """The request waited in the queue past the configured limit."""


@dataclass
class _Job:
    crops: Sequence            # this request's crops (any sequence; converted in the batch)
    future: asyncio.Future
    enqueued: float


class EagerBatcher:
    """`await batcher.submit(crops)` -> one answer per crop, computed in a shared batch.

    `run(batch)` maps a list of N crops to N answers. It is called from one worker thread,
    never concurrently with itself, so turning the JSON lists into an array happens there too
    and not on the event loop that reads requests.
    """

    def __init__(self, run: Callable[[list], Sequence], max_batch: int,
                 max_wait_s: float, on_batch: Callable[[int], None] | None = None) -> None:
        self._run = run
        self._on_batch = on_batch  # e.g. a metrics histogram of batch sizes
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max_wait_s
        self._queue: collections.deque[_Job] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ferops-model")
        self.batches = 0       # counters for /info and the benchmark
        self.items = 0

    async def submit(self, crops: Sequence) -> list:
        if self._task is None or self._task.done():
            # Started lazily: the service's event loop does not exist at construction time.
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        job = _Job(crops, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    def _take(self) -> list[_Job]:
        """The oldest queued jobs up to max_batch crops (a job is never split), expired ones
        answered with OverloadedError."""
        taken, n = [], 0
        now = time.perf_counter()
        while self._queue:
            job = self._queue[0]
            if job.future.cancelled():        # the client went away
                self._queue.popleft()
                continue
            if now - job.enqueued > self.max_wait_s:
                self._queue.popleft()
                job.future.set_exception(OverloadedError(
                    f"waited {1000 * (now - job.enqueued):.0f} ms for the model, over the "
                    f"{1000 * self.max_wait_s:.0f} ms limit (serving.batch_max_latency_ms)"))
                continue
            if taken and n + len(job.crops) > self.max_batch:
                break
            taken.append(self._queue.popleft())
            n += len(job.crops)
        return taken

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            jobs = self._take()
            if not jobs:
                continue
            batch = [crop for job in jobs for crop in job.crops]
            try:
                answers = await loop.run_in_executor(self._pool, self._run, batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            if self._on_batch:
                self._on_batch(len(batch))
            start = 0
            for job in jobs:
                end = start + len(job.crops)
                if not job.future.done():
                    job.future.set_result(list(answers[start:end]))
                start = end
